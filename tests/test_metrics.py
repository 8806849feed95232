from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.datasets import make_sprites
from sklearn_betavae.metrics import (
    _weighted_purity,
    best_match_scores,
    beta_vae_score,
    dci,
    factor_correlations,
    factor_vae_score,
    mutual_information_gap,
    sap_score,
)
from tests.conftest import FAST_PARAMS


@pytest.fixture(scope="module")
def factors():
    return np.random.RandomState(0).uniform(size=(400, 3))


def test_rank_correlation_sees_through_monotone_non_linear_codes(factors):
    from scipy.stats import norm

    # A perfectly disentangled Gaussian code of uniform factors: Pearson's r
    # would stay near 0.977, the rank correlation is exactly 1.
    Z = norm.ppf(np.clip(factors[:, [2, 0, 1]], 1e-6, 1 - 1e-6))
    correlations = factor_correlations(Z, factors)
    assert correlations.shape == (3, 3)
    np.testing.assert_allclose(np.diag(correlations[[1, 2, 0]]), 1.0)
    assert np.corrcoef(Z[:, 1], factors[:, 0])[0, 1] < 0.99
    np.testing.assert_allclose(best_match_scores(-Z, factors), 1.0)


def test_constant_and_extra_columns(factors):
    Z = np.column_stack([np.ones(len(factors)), factors[:, 0], factors[:, 1] + factors[:, 2]])
    correlations = factor_correlations(Z, factors)
    assert correlations.shape == (3, 3)
    assert not correlations[0].any()  # a constant latent correlates with nothing
    assert best_match_scores(Z, factors)[0] == pytest.approx(1.0)
    assert 0.6 < best_match_scores(Z, factors)[1] < 0.8  # shared with factor 2


def test_mig_rewards_one_latent_per_factor(factors):
    perfect = mutual_information_gap(factors[:, [1, 2, 0]], factors)
    rotated = factors @ np.linalg.qr(np.random.RandomState(1).normal(size=(3, 3)))[0]
    mixed = mutual_information_gap(rotated, factors)
    duplicated = mutual_information_gap(np.column_stack([factors, factors]), factors)
    assert perfect > 0.8 and mixed < 0.3 and duplicated == pytest.approx(0.0, abs=1e-12)


def test_scores_validate_their_inputs(factors):
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        factor_correlations(factors[:10], factors)
    with pytest.raises(ValueError, match="at least two latents"):
        mutual_information_gap(factors[:, :1], factors)
    with pytest.raises(ValueError, match="n_bins"):
        mutual_information_gap(factors, factors, n_bins=1)
    assert mutual_information_gap(factors, factors, n_bins=np.int64(10)) > 0.5
    assert factor_correlations(factors, factors).max() <= 1.0
    with pytest.raises(ValueError, match="NaN"):
        best_match_scores(np.full((5, 2), np.nan), factors[:5])
    with pytest.raises(ValueError, match="Expected 2D array"):
        factor_correlations(factors[:, 0], factors)
    with pytest.raises(ValueError, match="'n_bins' parameter"):
        mutual_information_gap(factors, factors, n_bins=2.5)


# The standard disentanglement scores, on hand-made codes of known quality:
# a perfect axis-aligned code, the same with two factors rotated by 45
# degrees, a constant code, and a code with one factor in two latents.

ROTATE_45 = np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, np.sqrt(2.0)]]) / np.sqrt(2.0)


def _codes(factors):
    return {
        "perfect": factors[:, [2, 0, 1]] * [3.0, -1.0, 0.5],  # any order, sign and scale
        "rotated": factors @ ROTATE_45,
        "constant": np.ones((len(factors), 3)),
        "duplicated": np.column_stack([factors, factors[:, 0]]),
    }


@pytest.fixture(scope="module")
def classes():
    """600 samples of three discrete factors with 3, 4 and 5 values."""
    return np.random.RandomState(0).randint([3, 4, 5], size=(600, 3)).astype(float)


def _entropy(p, base):
    p = np.asarray(p, dtype=float) + 1e-11
    p = p / p.sum()
    return -np.sum(p * np.log(p)) / np.log(base)


def test_dci_formulas_follow_the_reference_on_a_known_matrix():
    """disentanglement_lib's formulas by hand: per-latent 1 - H_K of its row,
    weighted by its share; per-factor 1 - H_L of its column, weighted alike."""
    R = np.array([[0.6, 0.2], [0.2, 0.0], [0.0, 0.0]])
    D = sum((1 - _entropy(R[i], 2)) * R[i].sum() / R.sum() for i in range(3))
    C = sum((1 - _entropy(R[:, j], 3)) * R[:, j].sum() / R.sum() for j in range(2))
    assert _weighted_purity(R) == pytest.approx(D, abs=1e-9)
    assert _weighted_purity(R.T) == pytest.approx(C, abs=1e-9)
    assert _weighted_purity(np.eye(3)) == pytest.approx(1.0)
    assert _weighted_purity(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-9)
    duplicated = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert _weighted_purity(duplicated) == pytest.approx(1.0)  # each latent is about one factor
    # factor 0 split in two of three latents (1 - log 2 / log 3), factor 1 whole; weights 2:1
    assert _weighted_purity(duplicated.T) == pytest.approx(
        2 / 3 * (1 - np.log(2) / np.log(3)) + 1 / 3, abs=1e-9)
    assert _weighted_purity(np.zeros((3, 2))) == 0.0


def test_dci_with_gradient_boosting_on_known_codes(classes):
    scores = {name: dci(Z, classes, random_state=0) for name, Z in _codes(classes).items()}
    perfect = scores["perfect"]
    assert perfect.disentanglement > 0.95 and perfect.completeness > 0.95
    assert perfect.informativeness == 1.0 == perfect.informativeness_train
    assert perfect.importances.shape == (3, 3)
    np.testing.assert_array_equal(perfect.importances.argmax(axis=0), [1, 2, 0])
    rotated = scores["rotated"]
    assert rotated.disentanglement < perfect.disentanglement - 0.2
    assert rotated.completeness < perfect.completeness - 0.2
    constant = scores["constant"]
    assert constant.disentanglement == constant.completeness == 0.0
    assert not constant.importances.any()
    assert constant.informativeness < 0.5  # the majority classes only
    duplicated = scores["duplicated"]
    assert duplicated.importances.shape == (4, 3)
    assert duplicated.completeness < perfect.completeness - 0.1
    assert duplicated.informativeness == perfect.informativeness
    assert duplicated.disentanglement > 0.95


def test_dci_with_lasso_follows_the_paper():
    factors = np.random.RandomState(0).uniform(size=(500, 3))
    scores = {name: dci(Z, factors, model="lasso", random_state=0) for name, Z in _codes(factors).items()}
    assert scores["perfect"].disentanglement > 0.99 and scores["perfect"].completeness > 0.99
    assert scores["perfect"].informativeness == pytest.approx(0.98, abs=0.005)  # alpha's shrinkage
    assert scores["rotated"].disentanglement < 0.8 and scores["rotated"].completeness < 0.8
    assert scores["rotated"].informativeness == pytest.approx(0.98, abs=0.01)
    assert scores["constant"].disentanglement == 0.0 and scores["constant"].informativeness < 0.05
    # The lasso keeps one of two identical latents; two noisy copies of a factor
    # share its weight, and predict it no worse than one copy.
    noise = np.random.RandomState(1).normal(scale=0.05, size=(500, 4))
    one = dci(factors + noise[:, :3], factors, model="lasso", random_state=0)
    two = dci(np.column_stack([factors, factors[:, 0]]) + noise, factors, model="lasso", random_state=0)
    assert two.completeness < one.completeness - 0.1
    assert two.informativeness >= one.informativeness


def test_dci_takes_any_estimator_and_checks_its_inputs(classes):
    from sklearn.linear_model import Ridge
    from sklearn.tree import DecisionTreeClassifier

    Z = _codes(classes)["perfect"]
    tree = dci(Z, classes, model=DecisionTreeClassifier(random_state=0), random_state=0)
    assert tree.disentanglement > 0.95 and tree.informativeness == 1.0
    ridge = dci(Z, classes, model=Ridge(), random_state=0)
    assert ridge.disentanglement > 0.95 and ridge.informativeness > 0.95
    again = dci(Z, classes, model=DecisionTreeClassifier(random_state=0), random_state=0)
    np.testing.assert_array_equal(again.importances, tree.importances)
    for bad, match in [({"model": "forest"}, "'model' parameter"), ({"test_size": 1.0}, "'test_size'"),
                       ({"model": 3}, "'model' parameter")]:
        with pytest.raises(ValueError, match=match):
            dci(Z, classes, **bad)
    with pytest.raises(ValueError, match="at least two latents and two factors"):
        dci(Z[:, :1], classes)
    with pytest.raises(ValueError, match="column 1 takes a single value"):
        dci(Z, np.column_stack([classes[:, 0], np.zeros(len(classes))]))


def test_sap_follows_the_reference_on_known_codes():
    factors = np.random.RandomState(0).uniform(size=(500, 3))
    scores = {name: sap_score(Z, factors, continuous_factors=True) for name, Z in _codes(factors).items()}
    assert scores["perfect"] > 0.98
    assert scores["rotated"] < 0.4  # the rotated pair scores 0, the third factor about 1
    assert scores["constant"] == 0.0
    assert scores["duplicated"] == pytest.approx(scores["perfect"] * 2 / 3, abs=0.02)
    # disentanglement_lib's definition by hand: squared correlations, gap of the top two.
    Z = _codes(factors)["rotated"]
    matrix = np.corrcoef(Z.T, factors.T)[:3, 3:] ** 2
    top = np.sort(matrix, axis=0)
    assert scores["rotated"] == pytest.approx(np.mean(top[-1] - top[-2]), abs=1e-12)


def test_discrete_sap_follows_disentanglement_lib():
    from sklearn.svm import LinearSVC

    binary = np.random.RandomState(0).randint(2, size=(600, 3)).astype(float)
    noisy = binary + np.random.RandomState(1).normal(scale=0.1, size=binary.shape)
    scores = {name: sap_score(Z, binary, random_state=0) for name, Z in _codes(noisy).items()}
    # A latent unrelated to a factor still scores chance accuracy: a perfect
    # code's gap is 1 - 1/2 for binary factors.
    assert scores["perfect"] == pytest.approx(0.5, abs=0.03)
    assert scores["rotated"] < scores["perfect"] - 0.2
    assert scores["constant"] == 0.0
    assert scores["duplicated"] == pytest.approx(scores["perfect"] * 2 / 3, abs=0.03)
    # By hand: one LinearSVC(C=0.01, class_weight="balanced") per latent and factor.
    from sklearn.model_selection import train_test_split

    Z = _codes(noisy)["rotated"]
    Z_train, Z_test, y_train, y_test = train_test_split(Z, binary, test_size=1 / 3,
                                                        random_state=np.random.RandomState(0))
    matrix = np.array([[np.mean(LinearSVC(C=0.01, class_weight="balanced")
                                .fit(Z_train[:, [i]], y_train[:, j]).predict(Z_test[:, [i]]) == y_test[:, j])
                        for j in range(3)] for i in range(3)])
    top = np.sort(matrix, axis=0)
    assert scores["rotated"] == pytest.approx(np.mean(top[-1] - top[-2]), abs=1e-12)
    with pytest.raises(ValueError, match="at least two latents"):
        sap_score(Z[:, :1], binary)


def test_mig_on_known_codes_and_disentanglement_libs_discretisation(classes):
    codes = _codes(classes + np.random.RandomState(1).uniform(0, 0.5, size=classes.shape))
    scores = {name: mutual_information_gap(Z, classes) for name, Z in codes.items()}
    assert scores["perfect"] > 0.95 and scores["rotated"] < scores["perfect"] - 0.3
    assert scores["constant"] == 0.0 and scores["duplicated"] < scores["perfect"] - 0.3
    # With at most n_bins evenly spaced values a factor keeps one bin per value:
    # binning the factors changes nothing.
    for Z in codes.values():
        assert mutual_information_gap(Z, classes, discretize_factors=False) == pytest.approx(
            mutual_information_gap(Z, classes), abs=1e-12)
    # disentanglement_lib by hand: 20 histogram bins per code, factors as they are.
    from sklearn.metrics import mutual_info_score

    positions = np.random.RandomState(2).randint(32, size=(600, 2))
    Z = positions + np.random.RandomState(3).normal(scale=2.0, size=positions.shape)
    binned = [np.digitize(z, np.histogram(z, 20)[1][:-1]) for z in Z.T]
    m = np.array([[mutual_info_score(f, z) for f in positions.T] for z in binned])
    top = np.sort(m, axis=0)
    expected = np.mean((top[-1] - top[-2]) / [mutual_info_score(f, f) for f in positions.T])
    continuous = mutual_information_gap(Z, positions, discretize_factors=False)
    assert continuous == pytest.approx(expected, abs=1e-12)
    assert mutual_information_gap(Z, positions) != pytest.approx(expected, abs=1e-3)  # 32 values, 20 bins
    with pytest.raises(ValueError, match="'discretize_factors' parameter"):
        mutual_information_gap(Z, positions, discretize_factors="no")


class _Toy:
    """A generator of three factors (5, 5 and 3 values) whose "images" are the
    factor classes plus a blank pixel. The first two have the same
    distribution, so a code that mixes them cannot tell them apart."""

    factor_sizes = (5, 5, 3)

    def render(self, factor_classes):
        classes = np.asarray(factor_classes, dtype=float)
        assert classes.shape[1] == 3 and np.all(classes < self.factor_sizes)
        return np.column_stack([classes, np.zeros(len(classes))])


class _Encoder:
    """An "estimator": just a transform."""

    def __init__(self, function):
        self.function = function

    def transform(self, X):
        return self.function(np.asarray(X)[:, :3])


TOY_CODES = {
    "perfect": lambda X: X[:, [2, 0, 1]] * [3.0, -1.0, 0.5],
    "rotated": lambda X: X @ ROTATE_45,
    "constant": lambda X: np.ones((len(X), 3)),
    "random": lambda X: np.random.RandomState(len(X)).normal(size=(len(X), 3)),
    "collapsed latent": lambda X: np.column_stack([X, np.zeros(len(X))]),
}
SAMPLED = dict(n_train=300, n_eval=300, batch_size=16, random_state=0)


@pytest.mark.parametrize("score", [beta_vae_score, factor_vae_score])
def test_sampled_scores_on_known_codes(score):
    extra = {"n_variance_estimate": 1000} if score is factor_vae_score else {}
    values = {name: score(_Encoder(code), _Toy(), **SAMPLED, **extra) for name, code in TOY_CODES.items()}
    assert values["perfect"] > 0.99 and values["collapsed latent"] > 0.99
    assert values["rotated"] < values["perfect"] - 0.2
    assert values["random"] == pytest.approx(1 / 3, abs=0.1)  # chance
    if score is factor_vae_score:
        assert values["constant"] == 0.0  # every latent collapsed
    else:
        assert values["constant"] == pytest.approx(1 / 3, abs=0.1)
    again = score(_Encoder(TOY_CODES["rotated"]), _Toy(), **SAMPLED, **extra)
    assert again == values["rotated"]


def test_a_code_missing_a_factor_fools_the_beta_vae_score_not_the_factor_vae_score():
    # Kim and Mnih (2018): with one factor uncoded, the beta-VAE
    # score's classifier still names it (the one whose pairs differ in every
    # latent), so it scores perfectly; the FactorVAE score's majority vote
    # cannot, and loses that factor's share of the votes.
    missing_third = _Encoder(lambda X: np.column_stack([X[:, :2], np.zeros(len(X))]))
    toy = _Toy()
    assert beta_vae_score(missing_third, toy, **SAMPLED) > 0.99
    factor = factor_vae_score(missing_third, toy, **SAMPLED, n_variance_estimate=1000)
    assert 0.55 < factor < 0.8  # about 2 / 3: the uncoded factor's votes are lost


def test_factor_vae_score_normalises_and_drops_collapsed_latents():
    toy = _Toy()
    small = dict(n_train=200, n_eval=200, batch_size=16, n_variance_estimate=500, random_state=0)
    # Scaling a latent changes nothing: codes are divided by their std.
    scaled = factor_vae_score(_Encoder(lambda X: X * [100.0, 0.1, 1.0]), toy, **small)
    assert scaled == factor_vae_score(_Encoder(lambda X: X), toy, **small) > 0.99
    # A nearly collapsed latent of pure noise: left out below collapsed_std.
    rng = np.random.RandomState(0)
    noise = _Encoder(lambda X: np.column_stack([X[:, :2], 0.01 * rng.normal(size=len(X))]))
    assert factor_vae_score(noise, toy, **small) > 0.6  # the third factor is lost, not voted wrong
    assert factor_vae_score(noise, toy, **{**small, "collapsed_std": 1e3}) == 0.0


class _LabelledSprites:
    """Real sprites, with their factor classes appended to each image so that
    an encoder can read the true factors back."""

    def __init__(self, sprites):
        self.sprites, self.factor_sizes = sprites, sprites.factor_sizes

    def render(self, factor_classes):
        return np.hstack([self.sprites.render(factor_classes), factor_classes])


@pytest.fixture(scope="module")
def sprites():
    return make_sprites(300, random_state=0)


def test_sampled_scores_on_real_sprites(sprites):
    def read(X):
        assert X.shape[1] == 4096 + 5 and set(np.unique(X[:, :4096])) <= {0.0, 1.0}
        return X[:, 4096:]

    reader = SimpleNamespace(transform=read)  # not a scikit-learn estimator: any transform will do
    labelled = _LabelledSprites(sprites)
    assert beta_vae_score(reader, labelled, **SAMPLED) > 0.99
    assert factor_vae_score(reader, labelled, **SAMPLED, n_variance_estimate=500) > 0.99


def test_sampled_scores_take_fitted_estimators_and_pipelines(sprites):
    from sklearn.base import clone
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    small = dict(n_train=40, n_eval=40, batch_size=8, random_state=0)
    for score, extra in ((beta_vae_score, {}), (factor_vae_score, {"n_variance_estimate": 200})):
        vae = BetaVAETransformer(**{**FAST_PARAMS, "default_dist": "bernoulli"})
        pipe = Pipeline([("identity", FunctionTransformer()), ("vae", clone(vae))])
        for estimator in (vae, pipe, PCA(3)):
            with pytest.raises(NotFittedError):
                score(estimator, sprites, **small, **extra)
        for estimator in (vae, pipe, PCA(3, random_state=0)):
            estimator.fit(sprites.images)
            value = score(estimator, sprites, **small, **extra)
            assert 0.0 <= value <= 1.0 and value == score(estimator, sprites, **small, **extra)
        with pytest.raises(TypeError, match="estimator must be a fitted transformer"):
            score(object(), sprites, **small, **extra)
        with pytest.raises(TypeError, match="dataset must have factor_sizes and render"):
            score(vae, sprites.images, **small, **extra)
        for bad, match in [({"n_train": 0}, "'n_train' parameter"), ({"batch_size": 1}, "'batch_size'"),
                           ({"random_state": "x"}, "'random_state' parameter")]:
            with pytest.raises(ValueError, match=match):
                score(vae, sprites, **{**small, **extra, **bad})
    with pytest.raises(ValueError, match="'collapsed_std' parameter"):
        factor_vae_score(vae, sprites, collapsed_std=-1.0)
    with pytest.raises(ValueError, match="one row of codes per image"):
        beta_vae_score(_Encoder(lambda X: X[:1]), _Toy(), **small)


@pytest.mark.parametrize("scale", [1e-30, 1e-7, 1.0, 1e7, 1e30])
def test_continuous_sap_does_not_change_with_the_codes_scale(scale):
    # The constant-latent cut-off was an absolute variance of 1e-12: a perfect
    # code scored 0.9998, the same code divided by 1e7 scored 0.
    factors = np.random.RandomState(0).uniform(size=(300, 2))
    reference = sap_score(factors[:, ::-1], factors, continuous_factors=True)
    assert reference > 0.99
    assert sap_score(factors[:, ::-1] * scale, factors, continuous_factors=True) == pytest.approx(
        reference, rel=1e-9)
    # A latent constant up to rounding is still constant, at any scale.
    offset = np.column_stack([factors[:, 1], 1.0 + 1e-9 * factors[:, 0]]) * scale
    assert sap_score(offset, factors, continuous_factors=True) == pytest.approx(
        sap_score(np.column_stack([factors[:, 1], np.ones(300)]), factors, continuous_factors=True))


def test_dci_does_not_depend_on_the_importances_scale(classes):
    from sklearn.tree import DecisionTreeClassifier

    class TinyImportances(DecisionTreeClassifier):
        """Importances scaled as the coefficients of codes a trillion times larger."""

        @property
        def feature_importances_(self):
            return super().feature_importances_ * 1e-12

    Z = _codes(classes)["perfect"]
    tiny = dci(Z, classes, model=TinyImportances(random_state=0), random_state=0)
    tree = dci(Z, classes, model=DecisionTreeClassifier(random_state=0), random_state=0)
    assert tree.disentanglement > 0.95
    assert tiny.disentanglement == pytest.approx(tree.disentanglement, abs=1e-9)
    assert tiny.completeness == pytest.approx(tree.completeness, abs=1e-9)


def test_classifier_scores_take_float_coded_discrete_factors_as_classes(classes):
    # dSprites ships its latent values as floats (ten levels k / 9): scikit-learn's
    # classifiers refused them as "continuous".
    levels = classes / 9.0
    Z = _codes(classes)["perfect"]
    as_floats = dci(Z, levels, random_state=0)
    as_classes = dci(Z, classes, random_state=0)
    for name in ("disentanglement", "completeness", "informativeness", "informativeness_train"):
        assert as_floats[name] == pytest.approx(as_classes[name], abs=1e-12)
    assert sap_score(Z, levels, random_state=0) == sap_score(Z, classes, random_state=0)
    continuous = np.random.RandomState(0).uniform(size=classes.shape)
    with pytest.raises(ValueError, match=r"dci's factors column 0 holds .* looks continuous.*lasso"):
        dci(Z, continuous, random_state=0)
    with pytest.raises(ValueError, match=r"sap_score's factors column 0 .*continuous_factors=True"):
        sap_score(Z, continuous, random_state=0)
    assert dci(Z, continuous, model="lasso", random_state=0).informativeness >= 0.0
