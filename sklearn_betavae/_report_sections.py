"""The report's sections on covariates and on one subject's deviation.

``covariate_associations`` measures how much of each latent's code a
covariate explains (the R^2 of a least-squares regression on its
encoding), ``covariate_rows`` and ``one_subject`` check what
``reporting.generate_report`` is given, ``subject_deviation`` scores one
subject against the normative reference, and the ``*_figure`` and
``*_rows`` functions draw and tabulate them. matplotlib and nilearn are
imported when a figure is drawn.
"""

import math
import warnings

import numpy as np
from sklearn.utils import Bunch

from ._covariates import CONTINUOUS, CovariateEncoding
from ._figures import pyplot
from ._normative import mean_squared
from ._pipeline_steps import masker_index
from .inspection import deviation_maps

# A z-score beyond which a voxel or feature deviates: the threshold of the
# map, of the cluster table and of the lines on the per-feature plot.
Z_THRESHOLD = 3.0
# The smallest cluster the table lists, in mm^3 (a cube of 8 mm side):
# thresholded noise leaves scattered single voxels, and a volume keeps the
# same meaning whatever the voxel size.
MIN_CLUSTER_MM3 = 500.0
N_LISTED = 10


def covariate_associations(codes, covariates, encoding=None):
    """``(names, r2)``: how much of each latent the covariates explain, one by one.

    ``r2[j, c]`` is the R^2 of the least-squares regression (with an
    intercept) of ``codes[:, j]`` on covariate ``c``'s encoding: its values
    for a continuous covariate, its one-hot levels for a categorical one.
    ``encoding`` is the model's (a model fitted with covariates); None
    learns one from ``covariates`` (the dtypes say which are categorical).
    A latent that does not vary over the rows has R^2 0 for every
    covariate.
    """
    codes = np.asarray(codes, dtype=np.float64)
    n_rows = len(codes)
    if len(covariates) != n_rows:
        raise ValueError(
            f"generate_report: covariates must have one row per row of X ({n_rows}); got "
            f"{len(covariates)}."
        )
    if encoding is None:
        encoding = CovariateEncoding.fit(covariates, "from_dtype", n_rows)
    encoded = encoding.transform(covariates, n_rows, "generate_report")
    names = (list(encoding.names) if encoding.names is not None
             else [f"covariate {index}" for index in range(len(encoding.kinds))])
    centred = codes - codes.mean(axis=0)
    total = (centred**2).sum(axis=0)
    r2 = np.zeros((codes.shape[1], len(names)))
    start = 0
    for column, (kind, levels) in enumerate(zip(encoding.kinds, encoding.levels)):
        width = 1 if kind == CONTINUOUS else len(levels)
        design = encoded[:, start:start + width]
        start += width
        # Centring both sides is the intercept; lstsq takes the rank-deficient
        # one-hot columns (they sum to one) as they are.
        design = design - design.mean(axis=0)
        coefficients = np.linalg.lstsq(design, centred, rcond=None)[0]
        residual = ((centred - design @ coefficients) ** 2).sum(axis=0)
        r2[:, column] = np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), 0.0)
    return names, np.clip(r2, 0.0, 1.0)


def association_figure(r2, names):
    """Heat map of the latent x covariate R^2."""
    plt = pyplot()
    n_latents, n_covariates = r2.shape
    figure, ax = plt.subplots(figsize=(1.2 * n_covariates + 2.5, 0.45 * n_latents + 1.5),
                              constrained_layout=True)
    image = ax.imshow(r2, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(r2):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center",
                color="black" if value > 0.6 else "white")
    ax.set(xticks=range(n_covariates), xticklabels=names, yticks=range(n_latents),
           yticklabels=[f"latent {i}" for i in range(n_latents)])
    figure.colorbar(image, ax=ax, label="R²")
    return figure


def covariate_rows(covariates, n_rows, name):
    """``covariates`` as given, checked to be one row (a pandas Series, a row
    of a DataFrame, becomes a one-row DataFrame; a 1-D array one row)."""
    if covariates is None:
        return None
    if hasattr(covariates, "to_frame") and not hasattr(covariates, "columns"):  # a Series
        covariates = covariates.to_frame().T
    elif not hasattr(covariates, "shape") or len(getattr(covariates, "shape", ())) < 2:
        covariates = np.asarray(covariates)
        covariates = covariates.reshape(1, -1) if covariates.ndim == 1 else covariates
    if len(covariates) != n_rows:
        raise ValueError(
            f"generate_report: {name} must be the subject's one row of covariates; got "
            f"{len(covariates)} rows."
        )
    return covariates


def one_subject(subject, brain):
    """``subject`` as a list of one image (``brain``) or a one-row array."""
    if brain:
        import nibabel

        single = (isinstance(subject, (str, nibabel.spatialimages.SpatialImage))
                  or hasattr(subject, "__fspath__"))
        if not single and (not isinstance(subject, (list, tuple)) or len(subject) != 1):
            raise ValueError(
                "generate_report: subject must be one subject, one image (a Nifti1Image or a "
                f"path) for a brain pipeline; got {type(subject).__name__}"
                + (f" of {len(subject)}" if hasattr(subject, "__len__") else "") + "."
            )
        return [subject] if single else list(subject)
    if hasattr(subject, "shape") and len(subject.shape) == 2:
        rows = subject.shape[0]
    else:
        subject = np.asarray(subject)
        rows = 1 if subject.ndim == 1 else len(subject)
        subject = subject.reshape(1, -1) if subject.ndim == 1 else subject
    if rows != 1:
        raise ValueError(
            "generate_report: subject must be one subject, a row of features (or an array of "
            f"one row); got {rows} rows. Pick one: subject=X[i]."
        )
    return subject


def subject_deviation(estimator, vae, preceding, subject, covariates):
    """The subject's deviation: ``z`` (its z-scores per feature), ``image``
    (the z-map after a masker, else None), ``percentile`` and ``value`` (its
    mean squared z-score)."""
    result = deviation_maps(estimator, subject, covariates=covariates)
    image = None
    if hasattr(result.maps, "affine"):
        from nilearn.image import index_img

        image = index_img(result.maps, 0)
        mask = preceding.steps[masker_index(preceding)][1].mask_img_
        z = np.asarray(image.dataobj, dtype=np.float64)[np.asarray(mask.dataobj) != 0]
    else:
        z = np.asarray(result.maps, dtype=np.float64)[0]
    return Bunch(z=z, image=image, percentile=float(result.percentiles[0]),
                 value=float(mean_squared(z)), n_reference=len(vae.reference_deviations_))


def deviation_map_figure(image):
    """The z-map above ``Z_THRESHOLD`` in absolute value, on the MNI152
    template (nilearn's default background, as for the latent maps), cut
    through its largest absolute z."""
    from nilearn.plotting import plot_stat_map

    data = np.asarray(image.dataobj)
    peak = np.unravel_index(np.argmax(np.abs(data)), data.shape[:3])
    cut_coords = image.affine[:3, :3] @ np.array(peak) + image.affine[:3, 3]
    above = int(np.count_nonzero(np.abs(data) > Z_THRESHOLD))
    figure = pyplot().figure(figsize=(8, 2.8))
    plot_stat_map(image, figure=figure, threshold=Z_THRESHOLD, cmap="RdBu_r", draw_cross=False,
                  cut_coords=cut_coords.tolist(),
                  title=f"z-map, |z| > {Z_THRESHOLD:g} ({above} voxels)")
    return figure


def cluster_rows(image):
    """The ``N_LISTED`` largest clusters of |z| > ``Z_THRESHOLD`` (both
    signs), as ``(peak x, y, z in mm, peak z, size in mm^3, voxels)`` rows."""
    from nilearn.reporting import get_clusters_table

    voxel = float(abs(np.linalg.det(image.affine[:3, :3])))
    with warnings.catch_warnings():
        # nilearn warns for each sign without a cluster; the table says so once.
        warnings.filterwarnings("ignore", message="No clusters found", category=UserWarning)
        table = get_clusters_table(image, stat_threshold=Z_THRESHOLD, two_sided=True,
                                   cluster_threshold=math.ceil(MIN_CLUSTER_MM3 / voxel))
    # Sub-peaks ("1a") have no size of their own: one row per cluster.
    table = table[table["Cluster ID"].astype(str).str.isdigit()]
    rows = sorted(
        ((float(x), float(y), float(z), float(stat), float(size))
         for x, y, z, stat, size in zip(table["X"], table["Y"], table["Z"], table["Peak Stat"],
                                        table["Cluster Size (mm3)"])),
        key=lambda row: (-row[4], -abs(row[3])),
    )
    return [(f"{x:g}", f"{y:g}", f"{z:g}", f"{stat:+.2f}", f"{size:g}", int(round(size / voxel)))
            for x, y, z, stat, size in rows[:N_LISTED]]


def feature_deviation_figure(z):
    """The z-score of every feature, with the ±``Z_THRESHOLD`` lines."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(8, 2.8), constrained_layout=True)
    features = np.arange(len(z))
    if len(z) <= 100:
        ax.bar(features, z, color=np.where(z < 0, "#3465a4", "#cc0000"))
    else:  # bars would be thinner than a pixel
        ax.plot(features, z, color="#3465a4", linewidth=0.8)
    for sign in (-1, 1):
        ax.axhline(sign * Z_THRESHOLD, color="grey", linestyle="--", linewidth=1,
                   label=f"|z| = {Z_THRESHOLD:g}" if sign > 0 else None)
    ax.set(xlabel="feature", ylabel="z-score")
    ax.legend(loc="upper right", fontsize=8)
    return figure


def feature_rows(z, names=None):
    """The ``N_LISTED`` features of largest |z|, as ``(feature, z)`` rows."""
    order = np.argsort(-np.abs(z), kind="stable")[:N_LISTED]
    return [(str(names[j]) if names is not None else f"feature {j}", f"{z[j]:+.2f}") for j in order]


def reference_figure(reference, deviation):
    """Histogram of the reference subjects' mean squared z-scores, the
    subject's marked."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(6, 2.8), constrained_layout=True)
    ax.hist(reference, bins=min(30, max(5, len(reference) // 2)), color="#9db5d9",
            edgecolor="white", label=f"{len(reference)} reference controls")
    ax.axvline(deviation.value, color="#cc0000", linewidth=2,
               label=f"subject: {deviation.value:.3g} (percentile {deviation.percentile:.1f})")
    ax.set(xlabel="mean squared z-score", ylabel="reference controls")
    ax.legend(loc="upper right", fontsize=8)
    return figure
