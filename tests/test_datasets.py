"""The simulated brain populations: shapes, seeding, and factors that really drive the images."""

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.decomposition import PCA, FastICA
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import Pipeline

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.inspection import best_match_scores, latent_traversal
from tests.conftest import FAST_PARAMS

pytest.importorskip("nilearn")

from nilearn.maskers import NiftiMasker  # noqa: E402

from sklearn_betavae.datasets import make_brain_population  # noqa: E402

KINDS = ["amplitude", "overlapping", "nonlinear"]


@pytest.fixture(scope="module", params=KINDS)
def population(request):
    return make_brain_population(120, kind=request.param, random_state=0)


def _masked(population):
    return NiftiMasker(population.mask_img, standardize=None).fit_transform(population.images)


def test_shapes_names_and_seeding(population):
    assert len(population.images) == 120
    assert population.images[0].shape == population.mask_img.shape == (34, 40, 33)
    np.testing.assert_array_equal(population.images[0].affine, population.mask_img.affine)
    assert population.factors.shape == (120, len(population.factor_names))
    assert population.factors.min() >= 0 and population.factors.max() <= 1
    kind = {"global_scale": "amplitude", "precuneus_left": "overlapping",
            "lesion_position": "nonlinear"}[population.factor_names[0]]
    again = make_brain_population(120, kind=kind, random_state=0)
    np.testing.assert_array_equal(again.factors, population.factors)
    np.testing.assert_array_equal(again.images[5].get_fdata(), population.images[5].get_fdata())


def test_every_factor_changes_the_images(population):
    """Moving one factor from 0 to 1, the others at 0.5, changes the volume."""
    n_factors = len(population.factor_names)
    mask = population.mask_img.get_fdata() > 0
    for j in range(n_factors):
        low, high = np.full((2, n_factors), 0.5)
        low[j], high[j] = 0.0, 1.0
        volumes = population.render(np.stack([low, high]))
        change = np.abs(volumes[1] - volumes[0])[mask]
        assert change.max() > 0.05, population.factor_names[j]


def test_factors_are_recoverable_through_the_noise(population):
    """A cross-validated ridge regression reads every factor off the noisy
    masked images (rank correlation of 0.96 or more seen)."""
    X = _masked(population)
    predicted = cross_val_predict(RidgeCV(alphas=np.logspace(-3, 3, 7)), X, population.factors, cv=4)
    for j, name in enumerate(population.factor_names):
        assert spearmanr(predicted[:, j], population.factors[:, j]).statistic > 0.9, name


def test_the_lesion_moves_along_its_path():
    population = make_brain_population(1, kind="nonlinear", noise=0.0, random_state=0)
    template = population.template_img.get_fdata()
    centres = []
    for position in (0.0, 0.5, 1.0):
        loss = template - population.render([[position, 0.5]])[0]
        centres.append(np.average(np.indices(loss.shape)[1], weights=loss))  # y voxel index
    assert centres[0] < centres[1] < centres[2]


def test_linear_methods_behave_as_reported():
    """The populations reproduce the issue's measurements: PCA recovers
    amplitude factors, FastICA overlapping ones better than PCA."""
    scores = {}
    for kind in ("amplitude", "overlapping"):
        population = make_brain_population(300, kind=kind, random_state=1)
        X = _masked(population)
        for model in (PCA(6, random_state=0), FastICA(6, whiten="unit-variance", max_iter=2000,
                                                       random_state=0)):
            Z = model.fit(X[:200]).transform(X[200:])
            scores[kind, type(model).__name__] = best_match_scores(Z, population.factors[200:]).mean()
    assert scores["amplitude", "PCA"] > 0.98
    assert scores["overlapping", "FastICA"] > scores["overlapping", "PCA"] + 0.05


@pytest.mark.slow
def test_beta_vae_factor_recovery_stands_where_the_benchmark_found_it():
    """What held in every run of ``benchmarks/bench_brain_factors.py`` (seeds
    0 and 1, defaults, 300 + 100 subjects, k=6), checked on seed 2, which the
    benchmark did not use: the default beta-VAE finds the global scale of
    amplitude populations (|rho| 0.99-1.00 seen) and the lesion's position
    (0.79-0.89 seen), but stays behind PCA on amplitude factors as a whole
    (0.57-0.66 against 0.99: the README says so)."""
    scores = {}
    for kind in ("amplitude", "nonlinear"):
        population = make_brain_population(400, kind=kind, random_state=2)
        X = _masked(population)
        for name, model in (("PCA", PCA(6, random_state=2)),
                            ("beta-VAE", BetaVAETransformer(n_components=6, device="cpu",
                                                            random_state=2))):
            Z = model.fit(X[:300]).transform(X[300:])
            scores[kind, name] = best_match_scores(Z, population.factors[300:])
    assert scores["amplitude", "beta-VAE"][0] > 0.95  # global scale
    assert scores["nonlinear", "beta-VAE"][0] > 0.7  # lesion position
    assert scores["amplitude", "beta-VAE"].mean() < scores["amplitude", "PCA"].mean() - 0.1


def test_pipeline_gives_back_images_and_traversals():
    population = make_brain_population(40, kind="amplitude", random_state=0)
    pipe = Pipeline([
        ("masker", NiftiMasker(population.mask_img, standardize=None)),
        ("vae", BetaVAETransformer(**FAST_PARAMS)),
    ])
    Z = pipe.fit_transform(population.images)
    recon = pipe.inverse_transform(Z)
    assert recon.shape == (*population.mask_img.shape, 40)
    np.testing.assert_array_equal(recon.affine, population.mask_img.affine)
    traversal = latent_traversal(pipe, 0, values=[-2.0, 0.0, 2.0])
    assert traversal.shape == (*population.mask_img.shape, 3)
    np.testing.assert_array_equal(traversal.affine, population.mask_img.affine)


@pytest.mark.parametrize("bad, match", [
    ({"kind": "linear"}, "'kind' parameter .* among .*'amplitude'"),
    ({"n_subjects": 0}, "'n_subjects' parameter .* range \\[1, inf\\)"),
    ({"n_subjects": True}, "n_subjects must be a positive integer"),
    ({"noise": -1.0}, "'noise' parameter"),
    ({"noise": np.inf}, "'noise' parameter"),
    ({"noise": np.nan}, "'noise' parameter"),
    ({"resolution": 0}, "'resolution' parameter"),
    ({"n_subjects": 2.5}, "n_subjects must be a positive integer|'n_subjects' parameter"),
])
def test_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        make_brain_population(**{"n_subjects": 2, **bad})


def test_render_checks_its_factors():
    population = make_brain_population(2, kind="nonlinear", random_state=0)
    assert population.render(population.factors).shape == (2, 34, 40, 33)
    for bad in (np.zeros((2, 3)), np.zeros((2, 1)), np.full((1, 2), np.nan), np.zeros((0, 2))):
        with pytest.raises(ValueError, match=r"render expects factors of shape \(n, 2\)|NaN|0 sample"):
            population.render(bad)
