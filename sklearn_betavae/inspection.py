"""Inspecting a fitted beta-VAE: which latents it uses, what each one does.

``latent_kl`` says which latents carry information, ``latent_traversal``
decodes codes that vary one latent, ``latent_maps`` gives every latent's
pattern in input space (a brain map after a ``NiftiMasker``), and
``deviation_maps`` each subject's z-map against a normative model. The scores of
how well codes recover known factors are in ``sklearn_betavae.metrics``.
Core dependencies only.
"""

from numbers import Integral

import numpy as np
from sklearn.utils import Bunch
from sklearn.utils._param_validation import validate_params

from ._pipeline_steps import (
    check_same_space,
    check_traversal_values,
    compute_latent_maps,
    feature_maps,
    repeat_row,
    split_pipeline,
)

__all__ = [
    "deviation_maps",
    "latent_kl",
    "latent_maps",
    "latent_traversal",
]


@validate_params({"X": ["array-like"], "covariates": "no_validation"},
                 prefer_skip_nested_validation=True)
def latent_kl(estimator, X, *, covariates=None):
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
    covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
        The covariates of X's rows, for a model fitted with covariates
        (see ``BetaVAETransformer.fit``).

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
    vae, preceding = split_pipeline(estimator)
    if preceding is not None:
        X = preceding.transform(X)
    X = vae._validate_X(X)
    return np.mean(vae._fitted_model(covariates, len(X), "latent_kl").latent_kl(X), axis=0)


@validate_params(
    {"values": ["array-like"], "reference": ["array-like", None], "covariates": "no_validation"},
    prefer_skip_nested_validation=True,
)
def latent_traversal(estimator, latent, values=np.linspace(-3.0, 3.0, 7), reference=None, *,
                     covariates=None):
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
    covariates : array-like or DataFrame of shape (1, n_covariates) or None, default=None
        For a model fitted with covariates, the one row of covariates every
        decoded code is conditioned on (a subject's: its age, sex, site).

    Returns
    -------
    traversal : ndarray of shape (n_values, n_features_in_) or image
        The decoded rows, or what the pipeline's first step returns from
        ``inverse_transform`` of them (a 4D image
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
    vae, preceding = split_pipeline(estimator)
    n_components = vae._n_features_out  # the fitted count, whatever n_components says now
    if not isinstance(latent, Integral) or isinstance(latent, bool) or not 0 <= latent < n_components:
        raise ValueError(f"latent must be an integer in [0, {n_components}); got {latent!r}.")
    values = check_traversal_values(values)
    code = np.zeros(n_components) if reference is None else np.asarray(reference, dtype=np.float64)
    if code.shape != (n_components,):
        raise ValueError(f"reference must have shape ({n_components},); got {code.shape}.")
    Z = np.tile(code, (len(values), 1))
    Z[:, latent] = values
    decoded = vae.inverse_transform(Z, covariates=repeat_row(covariates, len(Z)))
    return decoded if preceding is None else preceding.inverse_transform(decoded)


@validate_params({"X": "no_validation", "covariates": "no_validation"},
                 prefer_skip_nested_validation=True)
def latent_maps(estimator, X=None, *, covariates=None):
    """The pattern of every latent in input space: a brain map per latent.

    Each map is the change in the reconstruction per unit of one latent at
    the prior mean: the column of the decoder's Jacobian at ``z = 0``, in
    the input's units. For a linear decoder it is exactly that latent's
    loading, so the maps compare with PCA's ``components_`` (up to sign and
    scale) and with the ``components_img_`` of nilearn's ``CanICA``. After
    a ``NiftiMasker`` the maps come back as one 4D image, one volume per
    latent, in the masker's space.

    Parameters
    ----------
    estimator : BetaVAETransformer or Pipeline ending in one
        Fitted. A pipeline's earlier steps turn the maps back with their
        ``inverse_transform``, as the difference between the map's and that
        of zero, so that an offset (a ``StandardScaler``'s mean) cancels:
        exact for steps that are linear up to an offset, such as a scaler
        or a ``NiftiMasker``.
    X : array-like, list of images or None, default=None
        Data in the estimator's input space (images for a brain pipeline).
        Given, the latents are ordered by their mean KL from the prior on
        X, most informative first (see ``latent_kl``); None keeps them in
        index order.
    covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
        For a model fitted with covariates (whose decoder, and so whose
        maps, depend on them): the covariates of X's rows, or without X of
        any rows (a population). The maps are then the decoder's Jacobian
        at the prior mean averaged over these rows' covariates (for a
        linear decoder the same for every row).

    Returns
    -------
    result : sklearn.utils.Bunch
        ``maps``: ndarray of shape (n_components, n_features_in_), or what
        the pipeline's earlier steps return from ``inverse_transform`` (a 4D
        ``Nifti1Image`` for a ``NiftiMasker``); ``latents``: ndarray of
        shape (n_components,), the latent index of each map; ``kl``: the
        mean KL on X of each map's latent, in nats, or None without X.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_betavae import BetaVAETransformer
    >>> from sklearn_betavae.inspection import latent_maps
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAETransformer(device="cpu", n_components=4, max_iter=5,
    ...                          random_state=0).fit(X[:200])
    >>> result = latent_maps(vae, X[200:300])
    >>> result.maps.shape, sorted(result.latents.tolist())
    ((4, 64), [0, 1, 2, 3])
    >>> bool((result.kl[:-1] >= result.kl[1:]).all())
    True
    """
    vae, preceding = split_pipeline(estimator)
    kl = None if X is None else latent_kl(estimator, X, covariates=covariates)
    return compute_latent_maps(vae, preceding, kl, covariates)


@validate_params({"X": "no_validation", "covariates": "no_validation"},
                 prefer_skip_nested_validation=True)
def deviation_maps(estimator, X, *, covariates=None):
    """Each subject's deviation map against a normative model, in brain space.

    ``BetaVAETransformer.deviation_scores`` of every subject (per-feature
    z-scores against the model's expectation, scaled by the spread among
    the reference controls held out in ``fit``) and its
    ``deviation_percentiles``, in one pass. After a ``NiftiMasker`` the
    z-maps come back as one 4D image, one volume per subject, in the
    masker's space (zero outside the mask).

    Parameters
    ----------
    estimator : BetaVAETransformer or Pipeline ending in one
        Fitted with ``reference_fraction > 0``. A pipeline's steps before it
        transform X; the z-maps go back through its masker's
        ``inverse_transform`` (a z-score is already in units of the spread,
        so steps after the masker that keep its features one to one, such
        as a scaler, leave it as it is).
    X : array-like or list of images
        New subjects, in the estimator's input space (images for a brain
        pipeline: each must have the mask's shape and affine).
    covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
        Their covariates, as passed to ``fit``.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``maps``: the z-maps, an ndarray of shape (n_samples,
        n_features_in_) or, after a masker, a 4D ``Nifti1Image``;
        ``percentiles``: ndarray of shape (n_samples,), each subject's
        ``deviation_percentiles``.

    Raises
    ------
    ValueError
        For a model without a reference, and for images whose shape or
        affine differ from the masker's mask (resample them first, with
        ``nilearn.image.resample_to_img``).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_betavae import BetaVAETransformer
    >>> from sklearn_betavae.inspection import deviation_maps
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAETransformer(n_components=4, max_iter=5, reference_fraction=0.2,
    ...                          random_state=0).fit(X[:500])
    >>> result = deviation_maps(vae, X[500:503])
    >>> result.maps.shape, result.percentiles.shape
    ((3, 64), (3,))
    """
    vae, preceding = split_pipeline(estimator)
    if preceding is not None:
        check_same_space(preceding, X)
        X = preceding.transform(X)
    z = vae.deviation_scores(X, covariates=covariates)
    percentiles = vae._reference_.percentiles(z)
    return Bunch(maps=z if preceding is None else feature_maps(preceding, z),
                 percentiles=percentiles)
