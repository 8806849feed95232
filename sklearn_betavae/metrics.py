"""Disentanglement metrics: how well codes recover known factors, for any encoder.

They work on any codes, so PCA, FastICA and the beta-VAE are compared on the
same footing: ``factor_correlations``, ``best_match_scores``,
``mutual_information_gap``, ``dci`` and ``sap_score`` take codes and factors;
``beta_vae_score`` and ``factor_vae_score`` draw their own images from a
generator with known factors (``sklearn_betavae.datasets.make_sprites``) and
encode them with any fitted transformer. Core dependencies only (scipy comes
with scikit-learn). Most of the module's length is docstrings.
"""

from numbers import Integral, Real

import numpy as np
from scipy.stats import entropy, rankdata
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import Lasso, LogisticRegression
from sklearn.metrics import mutual_info_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import HasMethods, StrOptions, validate_params
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted

from ._validation import NumberInterval

__all__ = [
    "best_match_scores",
    "beta_vae_score",
    "dci",
    "factor_correlations",
    "factor_vae_score",
    "mutual_information_gap",
    "sap_score",
]


@validate_params({"Z": ["array-like"], "factors": ["array-like"]}, prefer_skip_nested_validation=True)
def factor_correlations(Z, factors):
    """Absolute Spearman rank correlation of every latent with every factor.

    Rank, not Pearson, correlation: the prior is Gaussian, so a latent that
    captures a uniformly distributed factor perfectly is a monotone but
    non-linear function of it, which Pearson's r would score at about 0.977.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_latents)
        Codes, from any method's ``transform``.
    factors : array-like of shape (n_samples, n_factors)
        The true factor values of the same samples.

    Returns
    -------
    correlations : ndarray of shape (n_latents, n_factors)
        In [0, 1]; 0 where a latent or factor is constant.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_betavae.metrics import factor_correlations
    >>> factors = np.random.RandomState(0).uniform(size=(100, 2))
    >>> Z = np.column_stack([np.exp(factors[:, 1]), -factors[:, 0] ** 3])
    >>> factor_correlations(Z, factors).round(2)
    array([[0.08, 1.  ],
           [1.  , 0.08]])
    """
    Z, factors = _codes_and_factors(Z, factors)
    ranks = [_standardized_ranks(a) for a in (Z, factors)]
    return np.clip(np.abs(ranks[0].T @ ranks[1] / len(Z)), 0.0, 1.0)  # rounding can pass 1


@validate_params({"Z": ["array-like"], "factors": ["array-like"]}, prefer_skip_nested_validation=True)
def best_match_scores(Z, factors):
    """For each factor, its highest absolute rank correlation with any latent.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_latents)
        Codes, from any method's ``transform``.
    factors : array-like of shape (n_samples, n_factors)
        The true factor values of the same samples.

    Returns
    -------
    scores : ndarray of shape (n_factors,)
        1 means some latent orders the samples exactly as the factor does.
        Several factors may share their best latent (a mixed code still
        scores well here; ``mutual_information_gap`` penalises it).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_betavae.metrics import best_match_scores
    >>> factors = np.random.RandomState(0).uniform(size=(100, 2))
    >>> codes = np.column_stack([-factors[:, 1], np.exp(factors[:, 0])])
    >>> best_match_scores(codes, factors).round(2)
    array([1., 1.])
    """
    return factor_correlations(Z, factors).max(axis=0)


@validate_params(
    {"Z": ["array-like"], "factors": ["array-like"],
     "n_bins": [NumberInterval(Integral, 2, None, closed="left")], "discretize_factors": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def mutual_information_gap(Z, factors, n_bins=20, *, discretize_factors=True):
    """Mutual information gap (MIG; Chen et al., NeurIPS 2018).

    For each factor, the difference between the two largest mutual
    informations it has with single latents, divided by its entropy; the
    mean over factors. 1 means every factor is captured by one latent alone,
    0 that its two best latents know as much about it.

    What is discretised: every latent is cut into ``n_bins`` equal-width bins
    over its range (the bins of ``disentanglement_lib``'s histogram
    discretiser, 20 there), and so, by default, is every factor.
    ``disentanglement_lib`` discretises the codes only and takes the factors
    as the discrete classes they are: ``discretize_factors=False`` does the
    same (pass factor classes, e.g. ``make_sprites(...).factor_classes``).
    The two agree for a factor with at most ``n_bins`` evenly spaced values
    (each value then falls in a bin of its own), not for dSprites' 32
    positions with 20 bins, which binning merges. Mutual informations and
    entropies are plug-in estimates (``sklearn.metrics.mutual_info_score``,
    in nats), biased upwards with few samples per bin, so even a perfect
    code scores below 1 (0.85 with 500 samples and 20 bins, below): compare
    methods on the same samples.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_latents)
        At least two latents.
    factors : array-like of shape (n_samples, n_factors)
        The true factor values of the same samples.
    n_bins : int, default=20
        Number of equal-width bins per latent (and per factor when
        ``discretize_factors``).
    discretize_factors : bool, default=True
        Bin the factors too; False takes each distinct factor value as a
        class, as ``disentanglement_lib``.

    Returns
    -------
    mig : float
        In [0, 1]; factors with zero entropy (constant) are left out
        (``disentanglement_lib`` would divide by zero), and a score with no
        factor left is 0.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_betavae.metrics import mutual_information_gap
    >>> factors = np.random.RandomState(0).uniform(size=(500, 2))
    >>> round(mutual_information_gap(factors[:, ::-1], factors), 2)
    0.85
    >>> mixed = factors @ np.array([[1.0, 1.0], [1.0, -1.0]])
    >>> bool(mutual_information_gap(mixed, factors) < 0.3)
    True
    """
    Z, factors = _codes_and_factors(Z, factors)
    if Z.shape[1] < 2:
        raise ValueError(f"The MIG needs at least two latents; Z has {Z.shape[1]}.")
    latents = [_bins(column, n_bins) for column in Z.T]
    gaps = []
    for column in factors.T:
        factor = _bins(column, n_bins) if discretize_factors else column
        factor_entropy = mutual_info_score(factor, factor)
        if factor_entropy <= 0:
            continue
        information = sorted((mutual_info_score(latent, factor) for latent in latents), reverse=True)
        gaps.append((information[0] - information[1]) / factor_entropy)
    return float(np.mean(gaps)) if gaps else 0.0


@validate_params(
    {
        "Z": ["array-like"],
        "factors": ["array-like"],
        "model": [StrOptions({"gradient_boosting", "lasso"}), HasMethods(["fit", "predict"])],
        "test_size": [NumberInterval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def dci(Z, factors, *, model="gradient_boosting", test_size=1 / 3, random_state=None):
    """Disentanglement, completeness and informativeness (DCI; Eastwood and Williams, ICLR 2018).

    One model per factor predicts it from all latents, fitted on a training
    split; its importances form column j of the importance matrix R
    (n_latents x n_factors). With P_ij = R_ij / sum_k R_ik and H_K the
    entropy in base K (the number of factors), latent i's disentanglement is
    ``1 - H_K(P_i.)``, and the disentanglement score their mean weighted by
    each latent's share of the total importance (as the paper); factor j's
    completeness is ``1 - H_L(R_.j / sum_i R_ij)`` (base L, the number of
    latents), and the completeness score their mean weighted by each factor's
    share of the total importance, as ``disentanglement_lib`` does. Entropies
    get 1e-11 added to every importance, as in ``disentanglement_lib``, once
    the importances are scaled to sum to the number of factors (as gradient
    boosting's do), so that no score depends on the importances' scale.

    ``model="gradient_boosting"`` follows ``disentanglement_lib``: a
    ``GradientBoostingClassifier()`` with default settings per factor, the
    factors taken as class labels, importances its
    ``feature_importances_``, informativeness the mean test accuracy
    (the paper's informativeness is a prediction error instead).
    ``model="lasso"`` follows the paper: codes and factors standardized on
    the training split, ``Lasso(alpha=0.02)`` per factor (the alpha is our
    choice), importances the absolute weights, and informativeness ``1 -
    NRMSE``, the root mean squared test error of the standardized factor
    (the paper's error, turned so that higher is better: 1 is perfect, 0 no
    better than the mean; worse, or predictions that overflow, also score
    0). Any scikit-learn classifier or regressor can be given instead
    (cloned per factor): importances from ``feature_importances_`` or else
    ``abs(coef_)`` (summed over the classes of a multi-class linear
    classifier), informativeness as for gradient boosting (classifiers) or
    lasso (regressors).

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_latents)
        At least two latents.
    factors : array-like of shape (n_samples, n_factors)
        At least two factors: discrete classes (e.g. ``make_sprites(...).factor_classes``) for a
        classifier, where a float column with at most half as many distinct
        values as samples (dSprites' latent values, such as ten levels k / 9)
        has each distinct value taken as a class, and one with more is
        refused as continuous; any values for a regressor. Each must vary in
        the training split.
    model : {"gradient_boosting", "lasso"} or estimator, default="gradient_boosting"
    test_size : float, default=1/3
        Share of the samples held out for informativeness
        (``disentanglement_lib`` uses 10,000 training and 5,000 test points).
    random_state : int, RandomState instance or None, default=None
        For the split and the built-in models.

    Returns
    -------
    scores : sklearn.utils.Bunch
        ``disentanglement``, ``completeness``, ``informativeness``
        (test) and ``informativeness_train``, floats in [0, 1] (a code
        without any importance scores 0 on the first two);
        ``importances``: ndarray of shape (n_latents, n_factors), R.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_betavae.metrics import dci
    >>> factors = np.random.RandomState(0).randint(4, size=(300, 2))
    >>> scores = dci(factors[:, ::-1], factors, random_state=0)
    >>> round(scores.disentanglement, 2), round(scores.completeness, 2), scores.informativeness
    (1.0, 1.0, 1.0)
    >>> scores.importances.round(2)
    array([[0., 1.],
           [1., 0.]])
    """
    Z, factors = _codes_and_factors(Z, factors)
    if min(Z.shape[1], factors.shape[1]) < 2:  # entropies in base 1 are undefined
        raise ValueError(f"DCI needs at least two latents and two factors; got {Z.shape[1]} "
                         f"latents and {factors.shape[1]} factors.")
    rng = check_random_state(random_state)
    if isinstance(model, str):
        seed = rng.randint(np.iinfo(np.int32).max)
        model = (GradientBoostingClassifier(random_state=seed) if model == "gradient_boosting"
                 else Lasso(alpha=0.02, random_state=seed))
    classify = is_classifier(model)
    if classify:
        factors = _factor_classes(factors, "dci", 'or model="lasso" for continuous factors')
    Z_train, Z_test, y_train, y_test = train_test_split(Z, factors, test_size=test_size, random_state=rng)
    for j, column in enumerate(y_train.T):
        if np.ptp(column) == 0:
            raise ValueError(f"factors column {j} takes a single value in the training split; "
                             "every factor must vary.")
    if not classify:  # standardize codes and factors on the training split, as the paper
        Z_train, Z_test = _standardized(Z_train, Z_test)
        y_train, y_test = _standardized(y_train, y_test)
    importances = np.zeros((Z.shape[1], factors.shape[1]))
    informativeness = np.zeros((2, factors.shape[1]))
    for j in range(factors.shape[1]):
        fitted = clone(model).fit(Z_train, y_train[:, j])
        weights = getattr(fitted, "feature_importances_", None)
        if weights is None:
            if not hasattr(fitted, "coef_"):
                raise TypeError(
                    "DCI reads each latent's importance from the model's feature_importances_ "
                    f"or coef_; a fitted {type(fitted).__name__} has neither."
                )
            # (n_classes, n_latents) for a multi-class linear classifier: summed.
            weights = np.abs(fitted.coef_).reshape(-1, Z.shape[1]).sum(axis=0)
        importances[:, j] = np.abs(weights)
        for k, (X, y) in enumerate(((Z_test, y_test[:, j]), (Z_train, y_train[:, j]))):
            predicted = fitted.predict(X)
            if classify:
                informativeness[k, j] = np.mean(predicted == y)
            else:  # 1 - NRMSE, 0 when no better than the mean (or not finite)
                error = np.sqrt(np.mean((predicted - y) ** 2))
                informativeness[k, j] = 1.0 - error if error < 1.0 else 0.0
    # The entropies' 1e-11 floor is taken relative to the importances' scale
    # (their total made the number of factors, what gradient boosting's sum
    # to): coefficients, which scale with 1 / the codes' scale, would
    # otherwise drown in it, scoring a perfect code 0 at 1e-12.
    total = importances.sum()
    relative = importances * factors.shape[1] / total if total > 0 else importances
    return Bunch(
        disentanglement=_weighted_purity(relative), completeness=_weighted_purity(relative.T),
        informativeness=float(informativeness[0].mean()),
        informativeness_train=float(informativeness[1].mean()), importances=importances,
    )


@validate_params(
    {
        "Z": ["array-like"],
        "factors": ["array-like"],
        "continuous_factors": ["boolean"],
        "test_size": [NumberInterval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def sap_score(Z, factors, *, continuous_factors=False, test_size=1 / 3, random_state=None):
    """Separated attribute predictability (SAP; Kumar et al., ICLR 2018).

    A score matrix S (n_latents x n_factors) says how well each latent alone
    predicts each factor; SAP is the mean over factors of the gap between
    the two largest scores of the factor's column. Both variants of
    ``disentanglement_lib``:

    ``continuous_factors=True``
        S_ij is the R^2 of a linear regression of factor j on latent i, the
        squared Pearson correlation, on all samples (the paper's score for
        continuous factors); 0 for a constant latent or factor (a latent
        whose variance is below 1e-12 of its largest square counts as
        constant: the score does not change when a code is rescaled).
    ``continuous_factors=False`` (``disentanglement_lib``'s setting for
        dSprites)
        S_ij is the test accuracy of ``LinearSVC(C=0.01,
        class_weight="balanced")`` predicting factor j's classes from latent
        i, fitted on a training split (the paper thresholds the latent and
        reports balanced accuracy; ``disentanglement_lib``'s classifier and
        plain accuracy are used here). A latent unrelated to a factor still
        scores chance accuracy and a one-feature linear classifier cannot
        single out a middle class, so even a perfect code scores below 1:
        about 0.5 on binary factors.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_latents)
        At least two latents; for discrete factors, values up to 1e30 in
        magnitude (liblinear, behind ``LinearSVC``, never converges on much
        larger ones).
    factors : array-like of shape (n_samples, n_factors)
        Discrete classes when ``continuous_factors=False``: floats with at
        most half as many distinct values as samples have each value taken
        as a class, more are refused as continuous.
    continuous_factors : bool, default=False
        Which of the two variants above: True for continuous factors
        (squared correlations), False for discrete classes (a classifier).
    test_size : float, default=1/3
        Held-out share for the discrete variant (``disentanglement_lib``
        uses 10,000 training and 5,000 test points); unused otherwise.
    random_state : int, RandomState instance or None, default=None
        For the split of the discrete variant.

    Returns
    -------
    sap : float
        In [0, 1]; higher is better.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_betavae.metrics import sap_score
    >>> factors = np.random.RandomState(0).uniform(size=(500, 2))
    >>> round(sap_score(factors[:, ::-1], factors, continuous_factors=True), 2)
    1.0
    >>> mixed = factors @ np.array([[1.0, 1.0], [1.0, -1.0]])
    >>> round(sap_score(mixed, factors, continuous_factors=True), 2)
    0.01
    """
    Z, factors = _codes_and_factors(Z, factors)
    if Z.shape[1] < 2:
        raise ValueError(f"SAP needs at least two latents; Z has {Z.shape[1]}.")
    scores = np.zeros((Z.shape[1], factors.shape[1]))
    if continuous_factors:
        # R^2 does not change with scale: computed on columns divided by their
        # largest magnitude, so that no square overflows, even near float64's
        # range. A latent counts as constant below a variance of 1e-12 of its
        # squared largest magnitude (a spread of 1e-6 of its values, rounding
        # noise for float32 codes): relative, so that dividing a code by a
        # constant does not change its score (an absolute cut-off scored a
        # perfect code 0 once divided by 1e7).
        Z_scale, y_scale = _max_magnitude(Z), _max_magnitude(factors)
        Zc, yc = Z / Z_scale, factors / y_scale
        Zc, yc = Zc - Zc.mean(axis=0), yc - yc.mean(axis=0)
        Z_var, y_var = np.mean(Zc**2, axis=0), np.mean(yc**2, axis=0)
        covariance = Zc.T @ yc / len(Z)
        usable = np.outer(Z_var > _CONSTANT_RELATIVE_VARIANCE, y_var > 0)
        np.divide(covariance**2, np.outer(Z_var, y_var), out=scores, where=usable)
    else:
        factors = _factor_classes(factors, "sap_score", "or continuous_factors=True")
        if np.abs(Z).max() > _MAX_SVC_CODE:
            raise ValueError(
                f"sap_score with discrete factors fits a LinearSVC to each latent, whose solver "
                f"does not converge on codes as large as {np.abs(Z).max():.3g}; codes up to "
                f"{_MAX_SVC_CODE:.0e} in magnitude are accepted, so divide Z by a constant."
            )
        Z_train, Z_test, y_train, y_test = train_test_split(
            Z, factors, test_size=test_size, random_state=check_random_state(random_state))
        for j in range(factors.shape[1]):
            if len(np.unique(y_train[:, j])) < 2:
                continue  # one class: nothing to tell apart, score 0
            for i in range(Z.shape[1]):
                classifier = LinearSVC(C=0.01, class_weight="balanced")
                classifier.fit(Z_train[:, [i]], y_train[:, j])
                scores[i, j] = np.mean(classifier.predict(Z_test[:, [i]]) == y_test[:, j])
    top = np.sort(scores, axis=0)
    return float(np.mean(top[-1] - top[-2]))


@validate_params(
    {
        "n_train": [NumberInterval(Integral, 1, None, closed="left")],
        "n_eval": [NumberInterval(Integral, 1, None, closed="left")],
        "batch_size": [NumberInterval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def beta_vae_score(estimator, dataset, *, n_train=10_000, n_eval=5_000, batch_size=64,
                   random_state=None):
    """The beta-VAE disentanglement score (Higgins et al., ICLR 2017).

    Each point: draw a factor k at random and ``batch_size`` pairs of factor
    values, uniform over the grid, the two of each pair sharing factor k's
    value; render and encode both images; the point is the mean absolute
    difference of the pairs' codes, labelled k. A linear classifier,
    scikit-learn's ``LogisticRegression``, is fitted on ``n_train`` points,
    and the score is its accuracy on ``n_eval`` new ones, as
    ``disentanglement_lib``'s ``beta_vae_sklearn`` (the paper trains a
    linear classifier with its own optimiser). The classifier has today's
    defaults (multinomial, lbfgs, C=1) but ``max_iter=1000``, so that it
    converges on unscaled codes; ``disentanglement_lib``'s scikit-learn of
    the time defaulted to one-vs-rest liblinear. A code whose
    latents each follow one factor scores near 1; one that ignores the
    factors, about one over the number of factors (chance). So does, near
    1, a code that leaves one factor out (Kim and Mnih, 2018): the
    classifier names that factor by its pairs differing in every latent.
    ``factor_vae_score`` does not have this flaw. And the score is not
    monotone in how aligned a code is: on the sprites' grid, a random
    rotation of the true factors (every factor coded, none by one latent)
    scores 80-91% with 2,000 training votes, scale and orientation and the
    two positions mixed in pairs by 45 degrees only 70%
    (``benchmarks/bench_metric_calibration.py``).

    Parameters
    ----------
    estimator : fitted transformer
        A ``BetaVAETransformer``, a ``Pipeline`` ending in one, or any
        fitted object with ``transform`` (PCA, FastICA, ...), applied to
        rendered images.
    dataset : sklearn.utils.Bunch
        From ``sklearn_betavae.datasets.make_sprites``, or any object with
        ``factor_sizes`` (the number of classes of each factor) and
        ``render(factor_classes)`` (images of an (n, n_factors) int array).
    n_train, n_eval : int, default=10000, 5000
        Points to train and to evaluate the classifier on, as in
        ``disentanglement_lib``.
    batch_size : int, default=64
        Pairs of images per point (``disentanglement_lib``'s batch size, the
        paper's L), at least 2; each point encodes 2 x ``batch_size`` images.
    random_state : int, RandomState instance or None, default=None
        Draws the factors and seeds the classifier.

    Returns
    -------
    score : float
        Evaluation accuracy, in [0, 1].

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_betavae.datasets import make_sprites
    >>> from sklearn_betavae.metrics import beta_vae_score
    >>> sprites = make_sprites(2000, random_state=0)
    >>> pca = PCA(5, random_state=0).fit(sprites.images)
    >>> score = beta_vae_score(pca, sprites, n_train=100, n_eval=50, batch_size=16,
    ...                        random_state=0)
    >>> 0.0 <= score <= 1.0
    True
    """
    encode, sizes = _encoder(estimator), _factor_sizes(dataset)
    rng = check_random_state(random_state)

    def points(n):
        features, labels = [], []
        for chunk in _chunks(n, 2 * batch_size):
            fixed = rng.randint(len(sizes), size=chunk)
            classes = rng.randint(sizes, size=(chunk, 2, batch_size, len(sizes)))
            classes[np.arange(chunk), 1, :, fixed] = classes[np.arange(chunk), 0, :, fixed]
            codes = _encode(encode, dataset, classes.reshape(-1, len(sizes)))
            codes = codes.reshape(chunk, 2, batch_size, -1)
            features.append(np.mean(np.abs(codes[:, 0] - codes[:, 1]), axis=1))
            labels.append(fixed)
        return np.concatenate(features), np.concatenate(labels)

    X_train, y_train = points(n_train)
    classifier = LogisticRegression(max_iter=1000, random_state=rng.randint(np.iinfo(np.int32).max))
    classifier.fit(X_train, y_train)
    return float(classifier.score(*points(n_eval)))


@validate_params(
    {
        "n_train": [NumberInterval(Integral, 1, None, closed="left")],
        "n_eval": [NumberInterval(Integral, 1, None, closed="left")],
        "batch_size": [NumberInterval(Integral, 2, None, closed="left")],
        "n_variance_estimate": [NumberInterval(Integral, 2, None, closed="left")],
        "collapsed_std": [NumberInterval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def factor_vae_score(estimator, dataset, *, n_train=10_000, n_eval=5_000, batch_size=64,
                     n_variance_estimate=10_000, collapsed_std=0.05, random_state=None):
    """The FactorVAE disentanglement score (Kim and Mnih, ICML 2018).

    First the codes of ``n_variance_estimate`` images drawn uniformly from
    the grid give each latent's standard deviation; latents whose standard
    deviation is below ``collapsed_std`` are collapsed and left out (the
    paper prunes collapsed latents; the threshold, 0.05 in code units, is
    ``disentanglement_lib``'s study setting). Each vote: draw a factor k at
    random and ``batch_size`` factor values that all share one random value
    of factor k; render and encode the images, divide every code by its
    latent's standard deviation, and vote (k, the kept latent of least
    variance). A majority-vote classifier, each latent predicting the factor
    it got most votes for in ``n_train`` votes, is scored by its accuracy
    on ``n_eval`` new votes (the paper's and ``disentanglement_lib``'s
    definition). A code whose latents each follow one factor scores near 1,
    one that ignores the factors about one over the number of factors, and
    a code with every latent collapsed 0.

    Parameters
    ----------
    estimator : fitted transformer
        A ``BetaVAETransformer``, a ``Pipeline`` ending in one, or any
        fitted object with ``transform``, applied to rendered images.
    dataset : sklearn.utils.Bunch
        From ``make_sprites``, or any object with ``factor_sizes`` and
        ``render(factor_classes)``.
    n_train, n_eval : int, default=10000, 5000
        Votes to build and to score the classifier (``disentanglement_lib``'s
        defaults).
    batch_size : int, default=64
        Images per vote, all sharing factor k's value; at least 2.
    n_variance_estimate : int, default=10000
        Images whose codes give the latents' standard deviations.
    collapsed_std : float, default=0.05
        The standard deviation, in code units, below which a latent counts
        as collapsed and is left out (see above).
    random_state : int, RandomState instance or None, default=None
        Draws the factors and the vote's samples.

    Returns
    -------
    score : float
        Evaluation accuracy, in [0, 1].

    Examples
    --------
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_betavae.datasets import make_sprites
    >>> from sklearn_betavae.metrics import factor_vae_score
    >>> sprites = make_sprites(2000, random_state=0)
    >>> pca = PCA(5, random_state=0).fit(sprites.images)
    >>> score = factor_vae_score(pca, sprites, n_train=100, n_eval=50, batch_size=16,
    ...                          n_variance_estimate=500, random_state=0)
    >>> 0.0 <= score <= 1.0
    True
    """
    encode, sizes = _encoder(estimator), _factor_sizes(dataset)
    rng = check_random_state(random_state)
    codes = _encode(encode, dataset, rng.randint(sizes, size=(n_variance_estimate, len(sizes))))
    scale = codes.std(axis=0, ddof=1)
    active = np.flatnonzero(scale >= collapsed_std)
    if active.size == 0:
        return 0.0

    def votes(n):
        counts = np.zeros((len(sizes), codes.shape[1]), dtype=np.int64)
        for chunk in _chunks(n, batch_size):
            fixed = rng.randint(len(sizes), size=chunk)
            classes = rng.randint(sizes, size=(chunk, batch_size, len(sizes)))
            classes[np.arange(chunk), :, fixed] = classes[np.arange(chunk), :1, fixed]
            local = _encode(encode, dataset, classes.reshape(-1, len(sizes)))
            local = local.reshape(chunk, batch_size, -1)[:, :, active] / scale[active]
            latent = active[np.argmin(local.var(axis=1, ddof=1), axis=1)]
            np.add.at(counts, (fixed, latent), 1)
        return counts

    classifier = np.argmax(votes(n_train), axis=0)  # each latent's majority factor
    evaluation = votes(n_eval)
    return float(evaluation[classifier, np.arange(codes.shape[1])].sum() / evaluation.sum())


def _codes_and_factors(Z, factors):
    Z = check_array(Z, input_name="Z")
    factors = check_array(factors, input_name="factors")
    check_consistent_length(Z, factors)
    if len(Z) < 2:
        raise ValueError("Scores need at least two samples.")
    return Z, factors


def _factor_classes(factors, function, alternative):
    """Factors as classes for a classifier: a column of non-integer floats
    with few distinct values (dSprites' ten levels k / 9, say) becomes the
    index of each value among them, which scikit-learn's classifiers would
    otherwise refuse as "continuous"; one with more distinct values than half
    the samples looks continuous and is refused, naming ``function``'s
    ``factors``. Integer-valued columns are classes already."""
    columns = []
    for j, column in enumerate(factors.T):
        if np.array_equal(column, np.round(column)):
            columns.append(column)
            continue
        values, classes = np.unique(column, return_inverse=True)
        if len(values) > len(column) / 2:
            raise ValueError(
                f"{function}'s factors column {j} holds {len(values)} distinct non-integer "
                f"values among {len(column)} samples, so it looks continuous, but {function} "
                "scores it with a classifier here, which needs classes: pass the factors' "
                "classes (e.g. make_sprites(...).factor_classes, or "
                f"np.unique(column, return_inverse=True)[1]), {alternative}."
            )
        columns.append(classes.astype(np.float64))
    return np.column_stack(columns)


def _standardized_ranks(A):
    ranks = np.apply_along_axis(rankdata, 0, A)
    spread = ranks.std(axis=0)
    centred = ranks - ranks.mean(axis=0)
    # A constant column correlates with nothing: 0 rather than 0 / 0.
    return np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)


def _bins(column, n_bins):
    edges = np.histogram_bin_edges(column, bins=n_bins)
    return np.digitize(column, edges[1:-1])


# Variance, relative to the squared largest magnitude, below which sap_score
# counts a latent as constant.
_CONSTANT_RELATIVE_VARIANCE = 1e-12
# liblinear's solver never returned on codes of 1e100 (1e50 took one iteration).
_MAX_SVC_CODE = 1e30
_MAX_IMAGES = 8192  # images rendered and encoded at once by the sampled scores


def _encoder(estimator):
    """The ``transform`` of a fitted transformer (a BetaVAETransformer, a
    Pipeline ending in one, or any object with ``transform``)."""
    last = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    if not callable(getattr(estimator, "transform", None)):
        raise TypeError(
            "estimator must be a fitted transformer (a BetaVAETransformer, a Pipeline ending in "
            f"one, or any object with transform); got {type(estimator).__name__}."
        )
    if isinstance(last, BaseEstimator):
        check_is_fitted(last)
    return estimator.transform


def _factor_sizes(dataset):
    sizes = getattr(dataset, "factor_sizes", None)
    if sizes is None or not callable(getattr(dataset, "render", None)):
        raise TypeError(
            "dataset must have factor_sizes and render(factor_classes), as the Bunch of "
            f"sklearn_betavae.datasets.make_sprites; got {type(dataset).__name__}."
        )
    sizes = np.asarray(sizes)
    if sizes.ndim != 1 or sizes.size < 2 or sizes.dtype.kind not in "iu" or np.any(sizes < 1):
        raise ValueError(f"dataset.factor_sizes must be at least two positive integers; got {sizes}.")
    return sizes


def _chunks(n, images_per_item):
    """Sizes of the chunks of ``n`` items that keep each render under _MAX_IMAGES images."""
    step = max(1, _MAX_IMAGES // images_per_item)
    return [min(step, n - start) for start in range(0, n, step)]


def _encode(encode, dataset, classes):
    codes = np.asarray(encode(dataset.render(classes)), dtype=np.float64)
    if codes.ndim != 2 or len(codes) != len(classes):
        raise ValueError(f"estimator.transform must return one row of codes per image; got shape "
                         f"{codes.shape} for {len(classes)} images.")
    return codes


def _weighted_purity(importances):
    """DCI's disentanglement of a (n_latents, n_factors) importance matrix (the
    transpose gives the completeness): ``1 - H(row)`` in base n_columns,
    weighted by each row's share of the importance."""
    # (Clipped: rounding can take a uniform row's entropy just past 1.)
    purity = np.clip(1.0 - entropy(importances.T + 1e-11, base=importances.shape[1]), 0.0, 1.0)
    if importances.sum() == 0:
        return 0.0  # no latent matters: every row is uniform, purity 0
    return float(np.sum(purity * importances.sum(axis=1) / importances.sum()))


def _nonzero(scale):
    return np.where(scale > 0, scale, 1.0)


def _max_magnitude(A):
    """Each column's largest absolute value (1 for a column of zeros)."""
    return _nonzero(np.abs(A).max(axis=0))


def _standardized(train, test):
    """``train`` and ``test`` standardized with the mean and standard deviation
    of ``train`` (a constant column is only centred), both computed after
    dividing by ``train``'s largest magnitudes, so that they cannot overflow."""
    scale = _max_magnitude(train)
    train, test = train / scale, test / scale
    mean, std = train.mean(axis=0), _nonzero(train.std(axis=0))
    return (train - mean) / std, (test - mean) / std
