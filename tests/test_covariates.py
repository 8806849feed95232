"""Tests of ``_covariates`` and of the estimator conditioned on covariates
(issue 34: a conditional beta-VAE)."""

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_betavae import BetaVAETransformer, load_pipeline, save_pipeline
from sklearn_betavae._covariates import CovariateEncoding
from tests.conftest import FAST_PARAMS, LinearEncoder, requires_cuda

N = 240


@pytest.fixture(scope="module")
def population():
    """Rows with a site offset, a linear age effect and three factors, and
    their covariates as a DataFrame (age continuous, site and sex
    categorical)."""
    rng = np.random.default_rng(0)
    site = rng.choice(["a", "b", "c"], N)
    age = rng.uniform(20, 80, N)
    sex = rng.choice([True, False], N)
    factors = rng.normal(size=(N, 3)) * [3.0, 2.0, 1.5]
    X = (factors @ rng.normal(size=(3, 30))
         + np.eye(3)[pd.Categorical(site).codes] @ rng.normal(size=(3, 30)) * 3
         + (age[:, None] - 50) / 10 * rng.normal(size=(1, 30))
         + 0.3 * rng.normal(size=(N, 30)))
    return X, pd.DataFrame({"age": age, "site": site, "sex": sex})


@pytest.fixture(scope="module")
def conditioned(population):
    X, covariates = population
    return BetaVAETransformer(**FAST_PARAMS).fit(X, covariates=covariates)


# The encoding ------------------------------------------------------------------


def test_continuous_covariates_are_scaled_and_categorical_ones_one_hot(population):
    _, covariates = population
    encoding = CovariateEncoding.fit(covariates, "from_dtype", N)
    assert encoding.kinds == ("continuous", "categorical", "categorical")
    assert encoding.levels == ((), ("a", "b", "c"), (False, True))
    encoded = encoding.transform(covariates, N, "transform")
    assert encoded.shape == (N, 1 + 3 + 2) == (N, encoding.width)
    age = covariates.age
    np.testing.assert_allclose(encoded[:, 0], (age - age.mean()) / age.std(ddof=0))
    np.testing.assert_array_equal(encoded[:, 1:4], pd.get_dummies(covariates.site).to_numpy(float))
    assert CovariateEncoding.from_json(encoding.to_json()) == encoding


def test_kinds_from_dtype_and_declared():
    frame = pd.DataFrame({"site": pd.Categorical([1, 2, 1, 3]), "age": [20.0, 30, 40, 50]})
    assert CovariateEncoding.fit(frame, "from_dtype", 4).kinds == ("categorical", "continuous")
    numbers = frame.to_numpy(dtype=float)
    assert CovariateEncoding.fit(numbers, "from_dtype", 4).kinds == ("continuous", "continuous")
    for declared in ([0], ["site"], [True, False]):
        source = numbers if declared == [0] else frame
        encoding = CovariateEncoding.fit(source, declared, 4)
        assert encoding.kinds == ("categorical", "continuous")
        assert encoding.levels[0] == (1, 2, 3) or encoding.levels[0] == (1.0, 2.0, 3.0)
    strings = np.array([["a"], ["b"], ["a"], ["b"]])
    assert CovariateEncoding.fit(strings, "from_dtype", 4).kinds == ("categorical",)
    for bad, message in ((["nope"], "not a column"), ([5], "column indices"),
                         ([True], "boolean mask")):
        with pytest.raises(ValueError, match=message):
            CovariateEncoding.fit(frame, bad, 4)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c[["site", "age", "sex"]], r"in that order.*\(reordered\)"),
    (lambda c: c[["age", "site"]], r"missing \['sex'\]"),
    (lambda c: c.assign(extra=1.0), r"unexpected \['extra'\]"),
    (lambda c: c.to_numpy(), "must be a DataFrame with the columns"),
    (lambda c: c.iloc[:-1], r"one row per sample \(240\); got 239"),
    (lambda c: c.assign(age=np.r_[np.nan, c.age[1:]]), "'age' holds nan at row 0"),
    (lambda c: c.assign(age=np.r_[c.age[:5], np.inf, c.age[6:]]), "'age' holds inf at row 5"),
    (lambda c: c.assign(site=np.r_[c.site[:7], ["z"], c.site[8:]]),
     "'site' has the level 'z' \\(row 7\\), which fit did not see"),
])
def test_covariates_that_cannot_be_encoded_are_refused_clearly(population, edit, message):
    _, covariates = population
    encoding = CovariateEncoding.fit(covariates, "from_dtype", N)
    with pytest.raises(ValueError, match=message):
        encoding.transform(edit(covariates), N, "transform")


def test_arrays_are_refused_in_place_of_a_frame_and_the_reverse():
    encoding = CovariateEncoding.fit(np.ones((4, 2)), "from_dtype", 4)
    with pytest.raises(ValueError, match="not a DataFrame"):
        encoding.transform(pd.DataFrame({"a": [1.0] * 4, "b": [1.0] * 4}), 4, "transform")
    with pytest.raises(ValueError, match="must have 2 column"):
        encoding.transform(np.ones((4, 3)), 4, "transform")
    with pytest.raises(ValueError, match=r"must be 2-D.*reshape\(-1, 1\)"):
        encoding.transform(np.ones(4), 4, "transform")


def test_missing_levels_are_refused_at_fit():
    with pytest.raises(ValueError, match="'site' is categorical and holds (None|nan) at row 1"):
        CovariateEncoding.fit(pd.DataFrame({"site": ["a", None, "b"]}), "from_dtype", 3)


def test_documents_no_fit_writes_are_refused():
    good = CovariateEncoding.fit(pd.DataFrame({"age": [1.0, 2.0]}), "from_dtype", 2).to_json()
    for edit in ({"scales": [0.0]}, {"kinds": ["ordinal"]}, {"levels": [["a"]]},
                 {"names": ["a", "b"]}, {"means": [float("nan")]}):
        with pytest.raises(ValueError, match="covariate encoding"):
            CovariateEncoding.from_json({**good, **edit})


# The conditional estimator -------------------------------------------------------


def test_every_method_takes_the_covariates(conditioned, population):
    X, covariates = population
    Z = conditioned.transform(X, covariates=covariates)
    assert Z.shape == (N, 3) and np.isfinite(Z).all()
    assert conditioned.inverse_transform(Z, covariates=covariates).shape == X.shape
    assert conditioned.score_samples(X, covariates=covariates).shape == (N,)
    elbo = conditioned.score_samples(X, covariates=covariates)
    assert conditioned.score(X, covariates=covariates) == np.mean(elbo)
    weights = np.arange(N) % 3
    assert conditioned.score(X, sample_weight=weights, covariates=covariates) == pytest.approx(
        np.sum(weights * elbo) / np.sum(weights))
    assert conditioned.sample(4, random_state=0, covariates=covariates.iloc[:4]).shape == (4, 30)
    refit = BetaVAETransformer(**FAST_PARAMS)
    np.testing.assert_array_equal(refit.fit_transform(X, covariates=covariates), Z)


def test_the_decoder_reads_the_covariates(conditioned, population):
    X, covariates = population
    Z = conditioned.transform(X[:5], covariates=covariates.iloc[:5])
    other_site = covariates.iloc[:5].assign(site=["c" if s != "c" else "a" for s in covariates.site[:5]])
    assert not np.allclose(conditioned.inverse_transform(Z, covariates=covariates.iloc[:5]),
                           conditioned.inverse_transform(Z, covariates=other_site))


def test_missing_or_unexpected_covariates_are_refused_and_change_nothing(conditioned, population):
    X, covariates = population
    vae = copy.deepcopy(conditioned)
    Z = vae.transform(X, covariates=covariates)
    for call in (lambda: vae.transform(X), lambda: vae.score(X),
                 lambda: vae.inverse_transform(Z), lambda: vae.sample(2)):
        with pytest.raises(ValueError, match=r"fitted with 3 covariate\(s\) \(age, site, sex\)"):
            call()
    with pytest.raises(ValueError, match="one row per sample"):
        vae.sample(3, covariates=covariates.iloc[:2])
    vae.set_params(warm_start=True)
    with pytest.raises(ValueError, match="fit needs them too"):
        vae.fit(X)
    plain = BetaVAETransformer(**FAST_PARAMS).fit(X)
    with pytest.raises(ValueError, match="fitted without covariates, so it takes none"):
        plain.transform(X, covariates=covariates)
    with pytest.raises(ValueError, match="set warm_start=False"):
        plain.set_params(warm_start=True).fit(X, covariates=covariates)
    assert plain.n_iter_ == FAST_PARAMS["max_iter"]
    np.testing.assert_array_equal(vae.transform(X, covariates=covariates), Z)


def test_warm_start_continues_with_the_fitted_encoding(conditioned, population):
    X, covariates = population
    vae = copy.deepcopy(conditioned).set_params(warm_start=True, max_iter=2)
    # New rows may hold fewer levels: the fitted encoding is kept.
    vae.fit(X[:60], covariates=covariates.iloc[:60])
    assert vae.n_iter_ == conditioned.n_iter_ + 2
    assert vae._covariate_encoding_ == conditioned._covariate_encoding_


def test_save_load_pickle_and_pipeline_files_keep_the_encoding(conditioned, population, tmp_path):
    X, covariates = population
    Z = conditioned.transform(X, covariates=covariates)
    conditioned.save(tmp_path / "vae.safetensors")
    for copy_ in (BetaVAETransformer.load(tmp_path / "vae.safetensors"),
                  pickle.loads(pickle.dumps(conditioned))):
        np.testing.assert_array_equal(copy_.transform(X, covariates=covariates), Z)
        with pytest.raises(ValueError, match="level 'z'"):
            copy_.transform(X[:1], covariates=covariates.iloc[:1].assign(site="z"))
    pipe = Pipeline([("vae", conditioned)])
    save_pipeline(pipe, tmp_path / "pipe.safetensors")
    loaded = load_pipeline(tmp_path / "pipe.safetensors")
    np.testing.assert_array_equal(loaded.named_steps["vae"].transform(X, covariates=covariates), Z)


def test_a_crafted_encoding_in_a_file_is_refused(conditioned, tmp_path):
    from sklearn_betavae._persistence import read_model_file, write_model_file

    conditioned.save(tmp_path / "vae.safetensors")
    document, tensors = read_model_file(tmp_path / "vae.safetensors")
    document["fitted"]["covariates_"]["levels"][1] = ["a", "b"]  # one column short
    write_model_file(tmp_path / "crafted.safetensors", document, tensors)
    with pytest.raises(ValueError, match=r"covariates_ encoded in 5 column\(s\).*reads 6"):
        BetaVAETransformer.load(tmp_path / "crafted.safetensors")


def test_metadata_routing_passes_covariates_through_a_pipeline(population):
    X, covariates = population
    with sklearn.config_context(enable_metadata_routing=True):
        vae = (BetaVAETransformer(**FAST_PARAMS)
               .set_fit_request(covariates=True)
               .set_transform_request(covariates=True)
               .set_score_request(covariates=True))
        pipe = Pipeline([("scale", StandardScaler()), ("vae", vae)]).fit(X, covariates=covariates)
        Z = pipe.transform(X, covariates=covariates)
        assert np.isfinite(pipe.score(X, covariates=covariates))
        groups = np.arange(N) % 6
        search = GridSearchCV(pipe, {"vae__beta": [1.0, 4.0]}, cv=GroupKFold(3))
        search.fit(X, covariates=covariates, groups=groups)
        assert np.isfinite(search.cv_results_["mean_test_score"]).all()
        scores = cross_validate(pipe, X, params={"covariates": covariates}, cv=3)["test_score"]
        assert np.isfinite(scores).all()
    direct = BetaVAETransformer(**FAST_PARAMS).fit(
        StandardScaler().fit_transform(X), covariates=covariates)
    np.testing.assert_array_equal(Z, direct.transform(StandardScaler().fit(X).transform(X),
                                                      covariates=covariates))


def test_the_pca_start_regresses_out_the_covariates():
    rng = np.random.default_rng(0)
    n, d = 700, 200
    site, age = rng.choice(["a", "b", "c"], n), rng.uniform(20, 80, n)
    covariates = pd.DataFrame({"age": age, "site": site})
    X = (rng.normal(size=(n, 3)) * [3.0, 2.0, 1.5] @ rng.normal(size=(3, d))
         + np.eye(3)[pd.Categorical(site).codes] @ rng.normal(size=(3, d)) * 3
         + (age[:, None] - 50) / 10 * rng.normal(size=(1, d)) + 0.3 * rng.normal(size=(n, d)))
    train, test = slice(0, 500), slice(500, None)
    # One step of a vanishing learning rate: the start itself. beta=0.1 keeps
    # the posterior mean's shrinkage small (seen: 1.0004; 1.03 at beta=1).
    vae = BetaVAETransformer(beta=0.1, device="cpu", n_components=3, hidden_layer_sizes=(),
                             max_iter=1, learning_rate_init=1e-12, standardize=True,
                             random_state=0)
    vae.fit(X[train], covariates=covariates.iloc[train])
    # The linear baseline: PCA of the standardized rows after their
    # regression on the covariates.
    scaler = StandardScaler().fit(X[train])
    S = scaler.transform(X)
    design = np.column_stack([age, pd.get_dummies(site).to_numpy(float)])
    regression = LinearRegression().fit(design[train], S[train])
    residuals = S - regression.predict(design)
    pca = PCA(3).fit(residuals[train])
    decoder = vae.net_.module_.decoder.linear_map().weight.detach().double().numpy()[:, :3]
    assert subspace_angles(decoder, pca.components_.T).max() < 1e-3  # seen: 3e-8
    baseline = scaler.inverse_transform(
        regression.predict(design[test]) + pca.inverse_transform(pca.transform(residuals[test])))
    Z = vae.transform(X[test], covariates=covariates.iloc[test])
    vae_mse = np.mean((vae.inverse_transform(Z, covariates=covariates.iloc[test]) - X[test]) ** 2)
    assert 1 <= vae_mse / np.mean((baseline - X[test]) ** 2) < 1.01


def test_your_own_modules_read_the_covariate_columns(population):
    X, covariates = population
    n_encoded = 1 + 3 + 2
    params = {**FAST_PARAMS, "encoder": LinearEncoder(30 + n_encoded, 3),
              "decoder": torch.nn.Linear(3 + n_encoded, 30)}
    vae = BetaVAETransformer(**params).fit(X, covariates=covariates)
    assert vae.transform(X, covariates=covariates).shape == (N, 3)
    narrow = {**params, "encoder": LinearEncoder(30, 3)}
    with pytest.raises(ValueError, match=r"encoder reads rows of 30 \+ 6 columns.*take 36 input"):
        BetaVAETransformer(**narrow).fit(X, covariates=covariates)
    narrow = {**params, "decoder": torch.nn.Linear(3, 30)}
    with pytest.raises(ValueError, match=r"decoder reads rows of 3 \+ 6 columns"):
        BetaVAETransformer(**narrow).fit(X, covariates=covariates)


def test_an_accelerated_fit_takes_covariates(population):
    accelerate = pytest.importorskip("accelerate")
    X, covariates = population
    # Batches drawn by a DataLoader: another random stream, so close rather
    # than identical (as without covariates, tests/test_distributed.py).
    params = {**FAST_PARAMS, "device": "auto", "max_iter": 15}
    vae = BetaVAETransformer(**params, accelerator=accelerate.Accelerator(cpu=True))
    vae.fit(X, covariates=covariates)
    plain = BetaVAETransformer(**params).fit(X, covariates=covariates)
    assert vae.score(X, covariates=covariates) == pytest.approx(
        plain.score(X, covariates=covariates), rel=0.03)
    vae.set_params(warm_start=True, max_iter=1).fit(X, covariates=covariates)
    assert vae.n_iter_ == 16


def test_inspection_takes_the_covariates(conditioned, population):
    from sklearn_betavae.inspection import latent_kl, latent_maps, latent_traversal

    X, covariates = population
    kl = latent_kl(conditioned, X, covariates=covariates)
    assert kl.shape == (3,) and (kl >= 0).all()
    subject = covariates.iloc[[4]]
    traversal = latent_traversal(conditioned, 0, [-1.0, 0.0, 1.0], covariates=subject)
    codes = np.zeros((3, 3))
    codes[:, 0] = [-1.0, 0.0, 1.0]
    np.testing.assert_array_equal(
        traversal, conditioned.inverse_transform(codes, covariates=covariates.iloc[[4, 4, 4]]))
    with pytest.raises(ValueError, match="must be one row"):
        latent_traversal(conditioned, 0, covariates=covariates.iloc[:2])
    maps = latent_maps(conditioned, X, covariates=covariates)
    assert maps.maps.shape == (3, 30) and np.isfinite(maps.maps).all()
    # The average of each row's Jacobian: one row alone gives its own maps.
    one = latent_maps(conditioned, covariates=covariates.iloc[:1]).maps
    two = latent_maps(conditioned, covariates=covariates.iloc[1:2]).maps
    both = latent_maps(conditioned, covariates=covariates.iloc[:2]).maps
    np.testing.assert_allclose(both, (one + two) / 2, rtol=1e-5, atol=1e-8)
    for call in (lambda: latent_kl(conditioned, X), lambda: latent_maps(conditioned)):
        with pytest.raises(ValueError, match="fitted with 3 covariate"):
            call()


def test_a_linear_conditional_decoder_has_the_same_maps_for_every_row(population):
    from sklearn_betavae.inspection import latent_maps

    X, covariates = population
    vae = BetaVAETransformer(**{**FAST_PARAMS, "hidden_layer_sizes": ()}).fit(X, covariates=covariates)
    first = latent_maps(vae, covariates=covariates.iloc[:1]).maps
    np.testing.assert_allclose(latent_maps(vae, covariates=covariates).maps, first, rtol=1e-5, atol=1e-7)
    weight = vae.net_.module_.decoder.linear_map().weight.detach().double().numpy()[:, :3]
    np.testing.assert_allclose(first, weight.T * vae.scale_, rtol=1e-6)


def test_covariates_go_through_a_masker_pipeline():
    pytest.importorskip("nilearn")
    from nilearn.maskers import NiftiMasker

    from sklearn_betavae.datasets import make_brain_population

    population = make_brain_population(24, resolution=12, random_state=0)
    covariates = pd.DataFrame({"age": np.linspace(20, 80, 24), "site": ["a", "b", "c"] * 8})
    with sklearn.config_context(enable_metadata_routing=True):
        vae = (BetaVAETransformer(**FAST_PARAMS)
               .set_fit_request(covariates=True)
               .set_transform_request(covariates=True)
               .set_inverse_transform_request(covariates=True))
        pipe = Pipeline([("masker", NiftiMasker(population.mask_img, standardize=None)),
                         ("vae", vae)]).fit(population.images, covariates=covariates)
        Z = pipe.transform(population.images, covariates=covariates)
        images = pipe.inverse_transform(Z, covariates=covariates)
    assert Z.shape == (24, 3) and images.shape[-1] == 24
    masked = pipe.named_steps["masker"].transform(population.images)
    np.testing.assert_array_equal(Z, pipe.named_steps["vae"].transform(masked, covariates=covariates))


def test_the_plots_take_covariates_and_refuse_a_conditional_model_without(conditioned, population):
    pytest.importorskip("matplotlib")
    from sklearn_betavae.plotting import plot_latent_maps, plot_latent_traversals

    X, covariates = population
    assert len(plot_latent_maps(conditioned, X[:40], covariates=covariates.iloc[:40]).axes) == 3
    figure = plot_latent_traversals(conditioned, values=[-1, 0, 1], covariates=covariates.iloc[:1])
    assert len(figure.axes) == 9
    for call in (lambda: plot_latent_maps(conditioned), lambda: plot_latent_traversals(conditioned)):
        with pytest.raises(ValueError, match="fitted with 3 covariate"):
            call()
    with pytest.raises(ValueError, match="covariates must be one row"):
        plot_latent_traversals(conditioned, covariates=covariates.iloc[:2])


@requires_cuda
def test_covariates_on_cuda(population, tmp_path):
    X, covariates = population
    params = {**FAST_PARAMS, "device": "cuda"}
    vae = BetaVAETransformer(**params).fit(X, covariates=covariates)
    Z = vae.transform(X, covariates=covariates)
    assert Z.shape == (N, 3) and np.isfinite(Z).all()
    assert vae.sample(2, random_state=0, covariates=covariates.iloc[:2]).shape == (2, 30)
    vae.save(tmp_path / "cuda.safetensors")
    moved = BetaVAETransformer.load(tmp_path / "cuda.safetensors", device="cpu")
    np.testing.assert_allclose(moved.transform(X, covariates=covariates), Z, rtol=1e-5, atol=1e-5)
