"""The fitted beta-VAE in an estimator and the pipeline steps before it.

Shared by ``inspection``, ``plotting`` and ``reporting``: ``split_pipeline``
finds the fitted ``BetaVAETransformer`` of an estimator or pipeline and the
steps before it, ``compute_latent_maps`` takes every latent's map back
through those steps, ``masker_index`` finds the masker among them,
``feature_maps`` takes per-feature values (z-scores)
back through a masker, ``check_same_space`` refuses images a masker would
resample, and ``check_traversal_values`` checks the values a latent
traversal takes.
"""

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch
from sklearn.utils.validation import check_array, check_is_fitted

from ._estimator import BetaVAETransformer


def compute_latent_maps(vae, preceding, kl, covariates=None):
    """What ``inspection.latent_maps`` returns for a fitted ``vae`` after the
    ``preceding`` steps (or None), ordered by ``kl``, the KL per latent (None:
    index order); for a model with covariates, averaged over the rows of
    ``covariates``."""
    n_components = vae._n_features_out
    n_rows = 1 if covariates is None else len(covariates)
    model = vae._fitted_model(covariates, n_rows, "latent_maps")
    origin = torch.zeros(n_rows, n_components, dtype=model.dtype, device=vae.device_)
    rows = model.with_covariates(origin, 0)  # the codes, with their covariates after them
    columns = []
    for latent in range(n_components):
        direction = torch.zeros_like(rows)
        direction[:, latent] = 1.0
        # Forward mode: one pass per latent, whatever the number of features.
        _, column = torch.func.jvp(model.module.decoder, (rows,), (direction,))
        columns.append(column.detach().double().mean(dim=0).cpu().numpy())
    maps = np.stack(columns) * vae.scale_
    if not np.isfinite(maps).all():
        raise ValueError("The decoder's Jacobian at the prior mean is not finite; the maps are undefined.")
    latents = np.arange(n_components) if kl is None else np.argsort(-kl, kind="stable")
    kl = None if kl is None else kl[latents]
    maps = maps[latents]
    if preceding is not None:
        maps = _through_steps(preceding, maps)
    return Bunch(maps=maps, latents=latents, kl=kl)


def repeat_row(covariates, n):
    """One row of covariates (a DataFrame's or an array's), ``n`` times;
    None stays None."""
    if covariates is None:
        return None
    if len(covariates) != 1:
        raise ValueError(
            f"covariates must be one row, the covariates every code is decoded with; got {len(covariates)}."
        )
    if hasattr(covariates, "iloc"):  # pandas
        return covariates.iloc[np.zeros(n, dtype=int)]
    return np.repeat(np.asarray(covariates), n, axis=0)


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


def check_traversal_values(values):
    """Traversal values as a non-empty 1-D float64 array of finite numbers."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("values must hold at least one value to traverse; got none.")
    return check_array(values.reshape(-1, 1), input_name="values").ravel()


def split_pipeline(estimator):
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



def masker_index(preceding):
    """The index of the last step that turns images into features (a nilearn
    masker: it has ``mask_img_``), or None."""
    found = [i for i, (_, step) in enumerate(preceding.steps) if hasattr(step, "mask_img_")]
    return found[-1] if found else None


def feature_maps(preceding, values):
    """Per-feature ``values`` (n_rows, n_features), such as z-scores, placed
    back in space by the ``preceding`` steps' masker, unscaled: the steps
    after the masker must keep its features one to one. Without a masker,
    ``values`` as they are."""
    index = masker_index(preceding)
    if index is None:
        return values
    masker = preceding.steps[index][1]
    n_voxels = int(np.count_nonzero(np.asarray(masker.mask_img_.dataobj)))
    if values.shape[1] != n_voxels:
        raise ValueError(
            f"The steps between the masker and the beta-VAE change the number of features "
            f"({n_voxels} voxels, {values.shape[1]} features), so per-feature maps cannot be "
            "placed back in the mask."
        )
    return masker.inverse_transform(values)


def check_same_space(preceding, images):
    """Refuse images whose shape or affine differ from the masker's mask:
    the masker would resample them silently, and a deviation map of a
    resampled image is not the subject's."""
    index = masker_index(preceding)
    if index is None:
        return
    import nibabel

    mask = preceding.steps[index][1].mask_img_
    single = isinstance(images, (str, nibabel.spatialimages.SpatialImage)) or hasattr(images, "__fspath__")
    for position, image in enumerate([images] if single else images):
        image = nibabel.load(image) if isinstance(image, str) or hasattr(image, "__fspath__") else image
        if not hasattr(image, "affine"):
            return  # not images: the masker says what is wrong
        if tuple(image.shape[:3]) != tuple(mask.shape[:3]) or not np.allclose(image.affine, mask.affine):
            raise ValueError(
                f"Image {position} has shape {tuple(image.shape[:3])} and affine\n{image.affine}\n"
                f"but the masker's mask has shape {tuple(mask.shape[:3])} and affine\n"
                f"{mask.affine}\nA deviation map compares voxels with the reference's: "
                "resample the image to the mask first (nilearn.image.resample_to_img(image, "
                "mask_img)) and check the registration."
            )
