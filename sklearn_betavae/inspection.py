"""Inspecting a fitted beta-VAE: which latents it uses, what each one does.

``latent_kl`` says which latents carry information, ``latent_traversal``
decodes codes that vary one latent, ``latent_maps`` gives every latent's
pattern in input space (a brain map after a ``NiftiMasker``). The scores of
how well codes recover known factors (``factor_correlations``,
``best_match_scores``, ``mutual_information_gap``, ``dci``, ``sap_score``,
``beta_vae_score``, ``factor_vae_score``) live in ``_metrics.py`` and are
public here. Core dependencies only (scipy comes with scikit-learn).
"""

from numbers import Integral

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch
from sklearn.utils._param_validation import validate_params
from sklearn.utils.validation import check_array, check_is_fitted

from ._estimator import BetaVAETransformer
from ._metrics import (
    best_match_scores,
    beta_vae_score,
    dci,
    factor_correlations,
    factor_vae_score,
    mutual_information_gap,
    sap_score,
)

__all__ = [
    "best_match_scores",
    "beta_vae_score",
    "dci",
    "factor_correlations",
    "factor_vae_score",
    "latent_kl",
    "latent_maps",
    "latent_traversal",
    "mutual_information_gap",
    "sap_score",
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


@validate_params({"X": "no_validation"}, prefer_skip_nested_validation=True)
def latent_maps(estimator, X=None):
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
    vae, preceding = _split_pipeline(estimator)
    return _latent_maps(vae, preceding, None if X is None else latent_kl(estimator, X))


def _latent_maps(vae, preceding, kl):
    """``latent_maps`` of a fitted ``vae`` after the ``preceding`` steps (or
    None), ordered by ``kl``, the KL per latent (None: index order)."""
    model = vae._fitted_model()
    n_components = vae._n_features_out
    origin = torch.zeros(1, n_components, dtype=model.dtype, device=vae.device_)
    columns = []
    for latent in range(n_components):
        direction = torch.zeros_like(origin)
        direction[0, latent] = 1.0
        # Forward mode: one pass per latent, whatever the number of features.
        _, column = torch.func.jvp(model.module.decoder, (origin,), (direction,))
        columns.append(column[0].detach().double().cpu().numpy())
    maps = np.stack(columns) * vae.scale_
    if not np.isfinite(maps).all():
        raise ValueError("The decoder's Jacobian at the prior mean is not finite; the maps are undefined.")
    latents = np.arange(n_components) if kl is None else np.argsort(-kl, kind="stable")
    kl = None if kl is None else kl[latents]
    maps = maps[latents]
    if preceding is not None:
        maps = _through_steps(preceding, maps)
    return Bunch(maps=maps, latents=latents, kl=kl)


def _through_steps(preceding, maps):
    """``maps`` taken back through the ``preceding`` steps, as differences
    ``inverse_transform(map) - inverse_transform(0)``.

    A map is a change, not a point: a step with an offset (a
    ``StandardScaler`` adds its ``mean_``) would add it to every map, which
    then looked like the mean image. The offset cancels in the difference,
    which is exact for steps that are linear up to an offset, such as a
    scaler or a ``NiftiMasker`` (whose ``inverse_transform(0)`` is 0, so its
    maps are bit for bit its ``inverse_transform`` of them). An image result
    (after a masker) is differenced volume by volume.
    """
    out = preceding.inverse_transform(np.vstack([np.zeros((1, maps.shape[1])), maps]))
    if hasattr(out, "get_fdata") and hasattr(out, "affine"):  # a nibabel image
        data = out.get_fdata()
        return type(out)(data[..., 1:] - data[..., :1], out.affine, out.header)
    out = np.asarray(out)
    return out[1:] - out[:1]


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

