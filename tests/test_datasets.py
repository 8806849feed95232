"""The simulated data: dSprites-like sprites (core dependencies only) and brain
populations (nilearn): shapes, seeding, and factors that really drive the images."""

import numpy as np
import pytest
from scipy.ndimage import map_coordinates
from scipy.stats import spearmanr
from sklearn.decomposition import PCA, FastICA
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import Pipeline

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.datasets import make_brain_cohort, make_brain_population, make_sprites
from sklearn_betavae.inspection import latent_traversal
from sklearn_betavae.metrics import best_match_scores
from tests.conftest import FAST_PARAMS

try:
    from nilearn.maskers import NiftiMasker
except ImportError:  # the sprites need no extra; the brain populations need nilearn
    NiftiMasker = None

needs_nilearn = pytest.mark.skipif(NiftiMasker is None, reason="needs the neuro extra (nilearn)")

KINDS = ["amplitude", "overlapping", "nonlinear", "deformation"]


@pytest.fixture(scope="module", params=KINDS)
def population(request):
    return make_brain_population(120, kind=request.param, random_state=0)


def _masked(population):
    return NiftiMasker(population.mask_img, standardize=None).fit_transform(population.images)


@needs_nilearn
def test_shapes_names_and_seeding(population):
    assert len(population.images) == 120
    assert population.images[0].shape == population.mask_img.shape == (34, 40, 33)
    np.testing.assert_array_equal(population.images[0].affine, population.mask_img.affine)
    assert population.factors.shape == (120, len(population.factor_names))
    assert population.factors.min() >= 0 and population.factors.max() <= 1
    kind = {"global_scale": "amplitude", "precuneus_left": "overlapping",
            "lesion_position": "nonlinear",
            "ventricular_expansion": "deformation"}[population.factor_names[0]]
    again = make_brain_population(120, kind=kind, random_state=0)
    np.testing.assert_array_equal(again.factors, population.factors)
    np.testing.assert_array_equal(again.images[5].get_fdata(), population.images[5].get_fdata())


@needs_nilearn
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


@needs_nilearn
def test_factors_are_recoverable_through_the_noise(population):
    """A cross-validated ridge regression reads every factor off the noisy
    masked images (rank correlation of 0.96 or more seen)."""
    X = _masked(population)
    predicted = cross_val_predict(RidgeCV(alphas=np.logspace(-3, 3, 7)), X, population.factors, cv=4)
    for j, name in enumerate(population.factor_names):
        assert spearmanr(predicted[:, j], population.factors[:, j]).statistic > 0.9, name


@needs_nilearn
def test_the_lesion_moves_along_its_path():
    population = make_brain_population(1, kind="nonlinear", noise=0.0, random_state=0)
    template = population.template_img.get_fdata()
    centres = []
    for position in (0.0, 0.5, 1.0):
        loss = template - population.render([[position, 0.5]])[0]
        centres.append(np.average(np.indices(loss.shape)[1], weights=loss))  # y voxel index
    assert centres[0] < centres[1] < centres[2]


@needs_nilearn
def test_the_deformation_moves_grey_matter_as_documented():
    population = make_brain_population(1, kind="deformation", noise=0.0, random_state=0)
    template = population.template_img.get_fdata()
    rest, expanded, short, long = population.render([[0, 0.5], [1, 0.5], [0, 0], [0, 1]])
    np.testing.assert_allclose(rest, template, atol=1e-5)  # no displacement at all
    millimetres = np.moveaxis(np.indices(template.shape), 0, -1) @ \
        population.template_img.affine[:3, :3].T + population.template_img.affine[:3, 3]
    # 30 mm from the ventricles' centre, each voxel shows what the template
    # has 17 mm closer to it.
    outward = millimetres - population.factor_centres["ventricular_expansion"]
    from_ventricles = np.linalg.norm(outward, axis=-1)
    shell = (np.abs(from_ventricles - 30.0) < 3.0) & (template > 0.1)
    source = millimetres - 17.0 * outward / from_ventricles[..., None]
    source_voxels = (source - population.template_img.affine[:3, 3]) @ \
        np.linalg.inv(population.template_img.affine[:3, :3]).T
    pushed = map_coordinates(template, source_voxels[shell].T, order=1)
    assert np.corrcoef(expanded[shell], pushed)[0, 1] > 0.95
    assert np.corrcoef(expanded[shell], template[shell])[0, 1] < 0.8
    front_to_back = millimetres[..., 1]
    spread = [np.sqrt(np.cov(front_to_back.ravel(), aweights=volume.ravel())) for volume in
              (short, rest, long)]
    assert spread[0] < 0.95 * spread[1] and spread[2] > 1.05 * spread[1]


@needs_nilearn
def test_ten_components_explain_the_lesion_but_not_the_deformation():
    """As documented: of 400 noise-free maps, 10 principal components leave
    less than 1% of the default noise's variance unexplained for the moving
    lesion and more than 20% for the deformation (0.7% and 39% measured on
    1,000 maps)."""
    unexplained = {}
    for kind in ("nonlinear", "deformation"):
        population = make_brain_population(1, kind=kind, random_state=0)
        factors = np.random.RandomState(0).uniform(size=(400, 2))
        X = population.render(factors)[:, population.mask_img.get_fdata() > 0]
        pca = PCA(10).fit(X)
        residual = X - pca.inverse_transform(pca.transform(X))
        unexplained[kind] = np.mean(residual**2) / 0.02**2
    assert unexplained["nonlinear"] < 0.01
    assert unexplained["deformation"] > 0.2


@needs_nilearn
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


@needs_nilearn
@pytest.mark.slow
def test_beta_vae_factor_recovery_stands_where_the_benchmark_found_it():
    """What held on every fit of ``benchmarks/bench_brain_factors.py --seeds 0 1 2 3 4
    --model-seeds 3`` (issue 15: 5 populations of each kind, 3 model seeds
    each, 300 + 100 subjects, 8,656 voxels, k=6, one torch thread; population
    2 and model seed 2 checked here, with the suite's threads).

    With the defaults, which on this many voxels scale them all by one number
    (``standardize="auto"`` is ``"global"`` here), the beta-VAE is within
    0.007 of PCA's mean best match on amplitude populations (the issue's
    target is 0.02), and FastICA on its codes is ahead of PCA on overlapping
    regions by 0.122-0.271 (15 of 15). Per-feature z-scoring
    (``standardize=True``, the default before) still finds the global scale
    (|rho| 1.00 on all 15 amplitude fits), with a mean best match of
    0.915-0.965, 0.030-0.073 behind PCA's. (The lesion's position is left
    out: it was ahead of PCA on 11 of 15 fits, not all, and one more fit of
    this size costs the suite half a minute.)"""
    scores = {}
    for kind in ("amplitude", "overlapping"):
        population = make_brain_population(400, kind=kind, random_state=2)
        X = _masked(population)
        X_train, X_test, factors = X[:300], X[300:], population.factors[300:]
        pca = PCA(6, random_state=2).fit(X_train)
        scores[kind, "PCA"] = best_match_scores(pca.transform(X_test), factors)
        vae = BetaVAETransformer(n_components=6, device="cpu", random_state=2)
        codes_train = vae.fit_transform(X_train)
        assert np.all(vae.scale_ == vae.scale_[0])  # one scale for all voxels
        codes_test = vae.transform(X_test)
        scores[kind, "defaults"] = best_match_scores(codes_test, factors)
        ica = FastICA(6, whiten="unit-variance", max_iter=2000, random_state=2).fit(codes_train)
        scores[kind, "defaults + FastICA"] = best_match_scores(ica.transform(codes_test), factors)
        if kind == "amplitude":
            per_feature = BetaVAETransformer(n_components=6, device="cpu", standardize=True,
                                             random_state=2).fit(X_train)
            scores[kind, "per feature"] = best_match_scores(per_feature.transform(X_test), factors)
    assert scores["amplitude", "per feature"][0] > 0.95  # global scale
    assert scores["amplitude", "per feature"].mean() > 0.85
    assert scores["amplitude", "defaults"].mean() > scores["amplitude", "PCA"].mean() - 0.02, scores
    overlapping_pca = scores["overlapping", "PCA"].mean()
    assert scores["overlapping", "defaults + FastICA"].mean() > overlapping_pca + 0.05, scores


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


@needs_nilearn
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


@needs_nilearn
def test_render_checks_its_factors():
    population = make_brain_population(2, kind="nonlinear", random_state=0)
    assert population.render(population.factors).shape == (2, 34, 40, 33)
    for bad in (np.zeros((2, 3)), np.zeros((2, 1)), np.full((1, 2), np.nan), np.zeros((0, 2))):
        with pytest.raises(ValueError, match=r"render expects factors of shape \(n, 2\)|NaN|0 sample"):
            population.render(bad)


# Cohorts: the populations with an age, a sex and a site (issue 34).


@pytest.fixture(scope="module")
def cohort():
    return make_brain_cohort(60, kind="overlapping", n_sites=4, random_state=0)


def _change_in(volumes, mask, centres, millimetres, radius):
    """Largest change inside and outside ``radius`` mm of the centres, in the mask."""
    near = np.zeros(mask.shape, dtype=bool)
    for centre in centres:
        near |= np.linalg.norm(millimetres - np.asarray(centre), axis=-1) < radius
    change = np.abs(volumes[1] - volumes[0])
    return change[mask & near].max(), change[mask & ~near].max()


@needs_nilearn
def test_cohort_covariates_shapes_and_seeding(cohort):
    covariates = cohort.covariates
    assert len(cohort.images) == len(covariates) == len(cohort.factors) == 60
    assert list(covariates.columns) == ["age", "sex", "site"]
    assert covariates["age"].between(20, 80).all()
    assert list(covariates["sex"].cat.categories) == ["F", "M"]
    assert list(covariates["site"].cat.categories) == ["site_1", "site_2", "site_3", "site_4"]
    assert cohort.site_scales.shape == (4,) and cohort.site_offsets.shape == (4, 34, 40, 33)
    assert cohort.factor_names == ["precuneus_left", "precuneus_centre", "precuneus_right"]
    again = make_brain_cohort(60, kind="overlapping", n_sites=4, random_state=0)
    np.testing.assert_array_equal(again.images[7].get_fdata(), cohort.images[7].get_fdata())
    more = make_brain_cohort(90, kind="overlapping", n_sites=4, random_state=0)
    np.testing.assert_array_equal(more.site_offsets, cohort.site_offsets)
    # The noise-free volumes plus the noise are the images.
    volumes = cohort.render(cohort.factors[:3], covariates.iloc[:3])
    residual = np.stack([image.get_fdata() for image in cohort.images[:3]]) - volumes
    assert 0.015 < residual.std() < 0.025


@needs_nilearn
def test_each_covariate_changes_the_images_where_documented(cohort):
    import pandas as pd

    from sklearn_betavae.datasets import _voxel_millimetres

    mask = cohort.mask_img.get_fdata() > 0
    millimetres = _voxel_millimetres(mask.shape, cohort.mask_img.affine)
    factors = np.full((2, 3), 0.5)

    def subjects(**columns):
        base = {"age": [20.0, 20.0], "sex": ["F", "F"], "site": ["site_1", "site_1"], **columns}
        return pd.DataFrame(base)

    inside, outside = _change_in(cohort.render(factors, subjects(age=[20.0, 80.0])), mask,
                                 cohort.covariate_centres["age"], millimetres, radius=25.0)
    assert inside > 0.1 and outside < 0.02 * inside
    young, middle, old = cohort.render(np.full((3, 3), 0.5), pd.DataFrame(
        {"age": [20.0, 50.0, 80.0], "sex": ["F"] * 3, "site": ["site_1"] * 3}))
    # Nonlinear in age: the first 30 years do a quarter of what the next 30 do.
    first, second = np.abs(middle - young)[mask].max(), np.abs(old - middle)[mask].max()
    assert 0.2 < first / second < 0.4
    inside, outside = _change_in(cohort.render(factors, subjects(sex=["F", "M"])), mask,
                                 cohort.covariate_centres["sex"], millimetres, radius=36.0)
    assert inside > 0.03 and outside < 0.02 * inside
    site_1, site_2 = cohort.render(factors, subjects(site=["site_1", "site_2"]))
    expected = (cohort.site_scales[1] / cohort.site_scales[0]) * (site_1 - cohort.site_offsets[0])
    np.testing.assert_allclose(site_2, expected + cohort.site_offsets[1], atol=1e-5)


@needs_nilearn
def test_patients_carry_a_focal_loss_where_their_mask_says(cohort):
    with_patients = make_brain_cohort(60, kind="overlapping", n_sites=4, n_patients=6,
                                      random_state=0)
    assert len(with_patients.images) == len(with_patients.covariates) == 66
    assert list(with_patients.diagnosis) == ["control"] * 60 + ["patient"] * 6
    # The controls are those of the cohort without patients.
    np.testing.assert_array_equal(with_patients.images[59].get_fdata(), cohort.images[59].get_fdata())
    masks, losses = with_patients.abnormality_masks, with_patients.abnormalities
    assert masks.shape == losses.shape == (6, 34, 40, 33) and masks.dtype == bool
    assert (masks.sum(axis=(1, 2, 3)) > 0).all()
    np.testing.assert_allclose(losses.max(axis=(1, 2, 3)), with_patients.abnormality_depths, rtol=0.2)
    patients = slice(60, 66)
    healthy = with_patients.render(with_patients.factors[patients],
                                   with_patients.covariates.iloc[patients])
    ill = with_patients.render(with_patients.factors[patients],
                               with_patients.covariates.iloc[patients], losses)
    template = with_patients.template_img.get_fdata()
    for k in range(6):
        lost = (healthy[k] - ill[k])[masks[k] & (template > 0.2)]
        assert lost.size == 0 or lost.min() > 0
        np.testing.assert_allclose((healthy[k] - ill[k])[~masks[k] & (losses[k] < 1e-3)], 0,
                                   atol=2e-3)
    with pytest.raises(ValueError, match="losses in \\[0, 1\\)"):
        with_patients.render(with_patients.factors[:1], with_patients.covariates.iloc[:1],
                             np.ones((1, 34, 40, 33)))


@needs_nilearn
def test_cohort_render_and_arguments_are_checked(cohort):
    import pandas as pd

    good = cohort.covariates.iloc[:2]
    with pytest.raises(ValueError, match=r"the columns \['age', 'sex', 'site'\].*got the columns"):
        cohort.render(cohort.factors[:2], good[["site", "sex", "age"]])
    with pytest.raises(ValueError, match="as a DataFrame .* got a ndarray"):
        cohort.render(cohort.factors[:2], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="one row of covariates per row of factors"):
        cohort.render(cohort.factors[:2], cohort.covariates.iloc[:3])
    unseen = pd.DataFrame({"age": [30.0], "sex": ["F"], "site": ["site_9"]})
    with pytest.raises(ValueError, match=r"site levels .*got \['site_9'\]"):
        cohort.render(cohort.factors[:1], unseen)
    with pytest.raises(ValueError, match="NaN"):
        cohort.render(cohort.factors[:1], unseen.assign(age=np.nan, site="site_1"))
    for bad, match in (({"n_sites": 0}, "'n_sites' parameter"), ({"n_sites": True}, "n_sites must"),
                       ({"kind": "linear"}, "'kind' parameter")):
        with pytest.raises(ValueError, match=match):
            make_brain_cohort(2, **bad)


# dSprites-like sprites: core dependencies only.

SPRITE_GRID = (3, 6, 40, 32, 32)


def _sprite(sprites, classes):
    return sprites.render([classes]).reshape(64, 64)


@pytest.fixture(scope="module")
def sprites():
    return make_sprites(300, random_state=0)


def test_sprites_bunch(sprites):
    assert sprites.images.shape == (300, 4096) and sprites.images.dtype == np.float32
    assert sprites.factor_names == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert sprites.factor_sizes == SPRITE_GRID and sprites.image_shape == (64, 64)
    assert sprites.factor_classes.shape == sprites.factors.shape == (300, 5)
    assert sprites.factor_classes.dtype.kind == "i"
    for j, values in enumerate(sprites.factor_values):
        np.testing.assert_array_equal(sprites.factors[:, j], values[sprites.factor_classes[:, j]])
    np.testing.assert_array_equal(sprites.factor_values[0], [1.0, 2.0, 3.0])  # dSprites' codes
    np.testing.assert_allclose(sprites.factor_values[1], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(sprites.factor_values[2][[0, 1, -1]], [0.0, 2 * np.pi / 39, 2 * np.pi])
    np.testing.assert_allclose(sprites.factor_values[3][[0, 1, -1]], [0.0, 1 / 31, 1.0])
    np.testing.assert_array_equal(sprites.images, sprites.render(sprites.factor_classes))


def test_sprite_images_are_binary_in_every_dtype(sprites):
    assert set(np.unique(sprites.images)) == {0.0, 1.0}
    for dtype in (np.float64, np.uint8, "uint8"):
        other = make_sprites(300, random_state=0, dtype=dtype)
        assert other.images.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(other.images, sprites.images)
    assert sprites.images.sum(axis=1).min() >= 50  # the smallest ellipse has 56 pixels


def test_a_sprite_subset_is_reproducible_and_without_replacement(sprites):
    again = make_sprites(300, random_state=0)
    np.testing.assert_array_equal(again.images, sprites.images)
    np.testing.assert_array_equal(again.factor_classes, sprites.factor_classes)
    other = make_sprites(300, random_state=1)
    assert not np.array_equal(other.factor_classes, sprites.factor_classes)
    flat = np.ravel_multi_index(tuple(sprites.factor_classes.T), SPRITE_GRID)
    assert len(np.unique(flat)) == 300
    everything = make_sprites(240, shapes=("heart",), random_state=np.random.RandomState(0))
    assert set(everything.factors[:, 0]) == {3.0}  # the heart keeps its dSprites code


def test_each_sprite_factor_changes_the_image(sprites):
    base = [1, 3, 5, 10, 12]
    image = _sprite(sprites, base)
    for j, size in enumerate(SPRITE_GRID):
        for value in {0, size // 2, size - 2}:  # not the last orientation: 2 pi draws as 0
            if value != base[j]:
                changed = list(base)
                changed[j] = value
                assert not np.array_equal(_sprite(sprites, changed), image), (j, value)


def test_what_each_sprite_factor_does(sprites):
    base = np.array([2, 2, 7, 10, 12])
    image = _sprite(sprites, base)
    # pos_x moves the sprite one column right per step, pos_y one row down.
    np.testing.assert_array_equal(_sprite(sprites, base + [0, 0, 0, 3, 0]), np.roll(image, 3, axis=1))
    np.testing.assert_array_equal(_sprite(sprites, base + [0, 0, 0, 0, 5]), np.roll(image, 5, axis=0))
    # scale grows the area; every shape fits whole at the corners of the grid.
    areas = [_sprite(sprites, [2, s, 7, 0, 0]).sum() for s in range(6)]
    assert np.all(np.diff(areas) > 0)
    for shape in range(3):
        for orientation in range(0, 40, 3):
            corners = [_sprite(sprites, [shape, 5, orientation, x, y]).sum()
                       for x, y in ((0, 0), (31, 31), (0, 31))]
            assert corners[0] == corners[1] == corners[2]
    # orientation: 0 and 2 pi draw the same image, as in dSprites; a quarter turn
    # turns the ellipse, lying along the x axis at 0, upright.
    np.testing.assert_array_equal(_sprite(sprites, [1, 5, 0, 16, 16]), _sprite(sprites, [1, 5, 39, 16, 16]))
    lying = _sprite(sprites, [1, 5, 0, 16, 16])
    rows, columns = np.nonzero(lying)
    assert np.ptp(columns) > 1.8 * np.ptp(rows)
    upright = _sprite(sprites, [1, 5, 10, 16, 16])  # 10 * 2 pi / 39, close to a quarter turn
    rows, columns = np.nonzero(upright)
    assert np.ptp(rows) > 1.5 * np.ptp(columns)
    # the heart's point is at the bottom at orientation 0.
    heart = _sprite(sprites, [2, 5, 0, 16, 16])
    rows = np.nonzero(heart.any(axis=1))[0]
    assert heart[rows[0]].sum() > 2 * heart[rows[-1]].sum()


def test_the_grid_of_one_shape_is_complete_and_canonical():
    """One shape's whole grid (245,760 images, 1 GB in uint8): in dSprites'
    order, the last factor fastest, each image the one render draws."""
    grid = make_sprites(shapes=("ellipse",), dtype=np.uint8)
    assert grid.images.shape == (245_760, 4096) and grid.images.dtype == np.uint8
    expected = np.indices((1, 6, 40, 32, 32)).reshape(5, -1).T
    np.testing.assert_array_equal(grid.factor_classes, expected)
    rows = np.random.RandomState(0).choice(len(expected), 500, replace=False)
    np.testing.assert_array_equal(grid.images[rows], grid.render(expected[rows]))
    assert grid.images[::1000].max() == 1


@pytest.mark.slow
def test_the_full_sprite_grid():
    """All 737,280 images, 3 GB in uint8 (about 6 s on a busy core)."""
    grid = make_sprites(dtype=np.uint8)
    assert grid.images.shape == (737_280, 4096)
    flat = np.ravel_multi_index(tuple(grid.factor_classes.T), SPRITE_GRID)
    np.testing.assert_array_equal(flat, np.arange(737_280))
    assert grid.images.max() == 1 and grid.images[:, :].sum(axis=1).min() >= 50


@pytest.mark.parametrize("bad, match", [
    ({"n_samples": 0}, "'n_samples' parameter .* range \\[1, inf\\)"),
    ({"n_samples": True}, "n_samples must be a positive integer or None"),
    ({"n_samples": 2.5}, "'n_samples' parameter"),
    ({"n_samples": 737_281}, "at most the 737280 images"),
    ({"n_samples": 245_761, "shapes": ["heart"]}, "at most the 245760 images"),
    ({"shapes": ()}, "shapes must be distinct names"),
    ({"shapes": ("circle",)}, "shapes must be distinct names .*'square', 'ellipse', 'heart'"),
    ({"shapes": ("heart", "heart")}, "shapes must be distinct names"),
    ({"shapes": "heart"}, "'shapes' parameter"),
    ({"dtype": np.int32}, "dtype must be np.float32, np.float64 or np.uint8"),
    ({"dtype": "pixels"}, "dtype must be"),
    ({"dtype": None}, "dtype must be"),
    ({"random_state": "seed"}, "'random_state' parameter"),
])
def test_make_sprites_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        make_sprites(**{"n_samples": 2, **bad})


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 4), dtype=int), r"factor classes of shape \(n, 5\)"),
    (np.zeros(5, dtype=int), r"shape \(n, 5\)"),
    (np.zeros((0, 5), dtype=int), r"n >= 1"),
    ([[0, 0, 40, 0, 0]], r"factor 'orientation' must be in \[0, 40\); got 40"),
    ([[-1, 0, 0, 0, 0]], r"factor 'shape' must be in \[0, 3\)"),
    ([[0, 0, 0, 0, 0.5]], "integer factor classes"),
    ([[0, 0, 0, 0, np.nan]], "integer factor classes"),
    ([["a", 0, 0, 0, 0]], "integer factor classes"),
])
def test_render_checks_its_factor_classes(sprites, bad, match):
    with pytest.raises(ValueError, match=match):
        sprites.render(bad)
    assert sprites.render(np.array([[0, 0, 0, 0, 1.0]])).shape == (1, 4096)  # whole floats are fine
