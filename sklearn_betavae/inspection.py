"""Inspecting a fitted beta-VAE: which latents it uses, what they mean, how
well they recover known factors.

Core dependencies only (scipy comes with scikit-learn). The factor-recovery
scores work on any codes, so PCA, FastICA and the beta-VAE are compared on
the same footing.
"""

from numbers import Integral

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import mutual_info_score
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted

from ._estimator import BetaVAETransformer

__all__ = [
    "best_match_scores",
    "factor_correlations",
    "latent_kl",
    "latent_traversal",
    "mutual_information_gap",
]


@validate_params({"X": ["array-like"]}, prefer_skip_nested_validation=True)
def latent_kl(estimator, X):
    """Mean KL divergence from the prior of each latent, over the samples of X.

    A latent whose KL is near zero carries no information about the data
    (its posterior is the prior for every sample); one well above zero (say
    0.1 nats or more) is in use. The sum over latents is the KL term of the
    loss.

    Parameters
    ----------
    estimator : BetaVAETransformer or Pipeline ending in one
        Fitted.
    X : array-like of shape (n_samples, n_features)
        Data in the estimator's input space (a pipeline's: its earlier steps
        transform X first).

    Returns
    -------
    kl : ndarray of shape (n_components,)
        KL(q(z_j|x) || N(0, 1)) averaged over X, in nats, per latent j.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_betavae import BetaVAETransformer
    >>> from sklearn_betavae.inspection import latent_kl
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAETransformer(device="cpu", n_components=4, max_iter=5,
    ...                          random_state=0).fit(X[:200])
    >>> kl = latent_kl(vae, X[200:300])
    >>> kl.shape, bool((kl >= 0).all())
    ((4,), True)
    """
    vae, preceding = _split_pipeline(estimator)
    if preceding is not None:
        X = preceding.transform(X)
    X = vae._validate_X(X)
    return np.mean(vae._fitted_model().latent_kl(X), axis=0)


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
    >>> from sklearn_betavae.inspection import factor_correlations
    >>> factors = np.random.RandomState(0).uniform(size=(100, 2))
    >>> Z = np.column_stack([np.exp(factors[:, 1]), -factors[:, 0] ** 3])
    >>> factor_correlations(Z, factors).round(2)
    array([[0.08, 1.  ],
           [1.  , 0.08]])
    """
    Z, factors = _codes_and_factors(Z, factors)
    ranks = [_standardised_ranks(a) for a in (Z, factors)]
    return np.clip(np.abs(ranks[0].T @ ranks[1] / len(Z)), 0.0, 1.0)  # rounding can pass 1


@validate_params({"Z": ["array-like"], "factors": ["array-like"]}, prefer_skip_nested_validation=True)
def best_match_scores(Z, factors):
    """For each factor, its highest absolute rank correlation with any latent.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_latents)
    factors : array-like of shape (n_samples, n_factors)

    Returns
    -------
    scores : ndarray of shape (n_factors,)
        1 means some latent orders the samples exactly as the factor does.
        Several factors may share their best latent (a mixed code still
        scores well here; ``mutual_information_gap`` penalises it).
    """
    return factor_correlations(Z, factors).max(axis=0)


@validate_params(
    {"Z": ["array-like"], "factors": ["array-like"], "n_bins": [Interval(Integral, 2, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def mutual_information_gap(Z, factors, n_bins=20):
    """Mutual information gap (MIG; Chen et al., NeurIPS 2018).

    For each factor, the difference between the two largest mutual
    informations it has with single latents, divided by its entropy; the
    mean over factors. 1 means every factor is captured by one latent alone,
    0 that its two best latents know as much about it. Latents and factors
    are discretised into ``n_bins`` equal-width bins, as in
    ``disentanglement_lib``. These plug-in estimates are biased upwards with
    few samples per bin, so even a perfect code scores below 1 (0.85 with
    500 samples and 20 bins, below): compare methods on the same samples.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_latents)
        At least two latents.
    factors : array-like of shape (n_samples, n_factors)
    n_bins : int, default=20

    Returns
    -------
    mig : float
        In [0, 1]; factors with zero entropy (constant) are left out.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_betavae.inspection import mutual_information_gap
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
    if isinstance(n_bins, bool):
        raise ValueError(f"n_bins must be an integer of at least 2; got {n_bins!r}.")
    latents = [_bins(column, n_bins) for column in Z.T]
    gaps = []
    for column in factors.T:
        factor = _bins(column, n_bins)
        entropy = mutual_info_score(factor, factor)
        if entropy <= 0:
            continue
        information = sorted((mutual_info_score(latent, factor) for latent in latents), reverse=True)
        gaps.append((information[0] - information[1]) / entropy)
    return float(np.mean(gaps)) if gaps else 0.0


@validate_params(
    {"values": ["array-like"], "reference": ["array-like", None]},
    prefer_skip_nested_validation=True,
)
def latent_traversal(estimator, latent, values=np.linspace(-3.0, 3.0, 7), reference=None):
    """Decode codes that vary one latent and hold the others at a reference.

    Parameters
    ----------
    estimator : BetaVAETransformer or Pipeline ending in one
        Fitted. With a pipeline, the decoded rows go back through the
        earlier steps' ``inverse_transform``: after a ``NiftiMasker`` the
        result is a 4D NIfTI image, one volume per value.
    latent : int
        Index of the latent to vary, in ``[0, n)`` for the ``n`` latents the
        estimator was fitted with.
    values : array-like of shape (n_values,), default=np.linspace(-3, 3, 7)
        The values it takes, in prior standard deviations (the prior is
        N(0, 1)).
    reference : array-like of shape (n_components,) or None, default=None
        The other latents' values: None is the prior mean (zeros); the code
        of a subject (a row of ``transform``) gives that subject's traversal.

    Returns
    -------
    traversal : ndarray of shape (n_values, n_features_in_), or what the
        pipeline's first step returns from ``inverse_transform`` (a 4D image
        for a ``NiftiMasker``).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_betavae import BetaVAETransformer
    >>> from sklearn_betavae.inspection import latent_traversal
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAETransformer(device="cpu", n_components=4, max_iter=5,
    ...                          random_state=0).fit(X[:200])
    >>> latent_traversal(vae, latent=2, values=[-2, 0, 2]).shape
    (3, 64)
    """
    vae, preceding = _split_pipeline(estimator)
    n_components = vae._n_features_out  # the fitted count, whatever n_components says now
    if not isinstance(latent, Integral) or isinstance(latent, bool) or not 0 <= latent < n_components:
        raise ValueError(f"latent must be an integer in [0, {n_components}); got {latent!r}.")
    values = _check_values(values)
    code = np.zeros(n_components) if reference is None else np.asarray(reference, dtype=np.float64)
    if code.shape != (n_components,):
        raise ValueError(f"reference must have shape ({n_components},); got {code.shape}.")
    Z = np.tile(code, (len(values), 1))
    Z[:, latent] = values
    decoded = vae.inverse_transform(Z)
    return decoded if preceding is None else preceding.inverse_transform(decoded)


def _check_values(values):
    """Traversal values as a non-empty 1-D float64 array of finite numbers."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("values must hold at least one value to traverse; got none.")
    return check_array(values.reshape(-1, 1), input_name="values").ravel()


def _split_pipeline(estimator):
    """``(vae, preceding)``: the fitted BetaVAETransformer of ``estimator`` and
    the pipeline of the steps before it (None when there are none).

    Raises ``TypeError`` for anything else, and scikit-learn's
    ``NotFittedError`` when the estimator is not fitted.
    """
    vae = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    if not isinstance(vae, BetaVAETransformer):
        raise TypeError(
            "estimator must be a BetaVAETransformer or a Pipeline ending in one; got "
            f"{type(vae).__name__}."
        )
    check_is_fitted(vae)
    preceding = estimator[:-1] if isinstance(estimator, Pipeline) and len(estimator) > 1 else None
    return vae, preceding


def _codes_and_factors(Z, factors):
    Z = check_array(Z, input_name="Z")
    factors = check_array(factors, input_name="factors")
    check_consistent_length(Z, factors)
    if len(Z) < 2:
        raise ValueError("Scores need at least two samples.")
    return Z, factors


def _standardised_ranks(A):
    ranks = np.apply_along_axis(rankdata, 0, A)
    spread = ranks.std(axis=0)
    centred = ranks - ranks.mean(axis=0)
    # A constant column correlates with nothing: 0 rather than 0 / 0.
    return np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)


def _bins(column, n_bins):
    edges = np.histogram_bin_edges(column, bins=n_bins)
    return np.digitize(column, edges[1:-1])
