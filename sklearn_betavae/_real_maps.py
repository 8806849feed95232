"""Real activation maps that ship with the package: n-back and flanker studies.

The peak coordinates of 717 published fMRI analyses are stored in
``data/nback_flanker_peaks.csv.gz`` (about 60 kB, derived from NiMARE's
bundled studyset by ``benchmarks/derive_nback_flanker_peaks.py``); the maps
are computed from them when loaded, on nilearn's bundled grey-matter mask.
Nothing is downloaded.
"""

import gzip
from importlib import resources
from numbers import Integral, Real

import numpy as np
from sklearn.utils import Bunch
from sklearn.utils._param_validation import validate_params

from ._validation import NumberInterval

_PEAKS_FILE = "nback_flanker_peaks.csv.gz"
_TASKS = ("n-back", "flanker")

# FWHM to the standard deviation of a Gaussian: 2 sqrt(2 ln 2).
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))

_DESCR = """\
n-back and flanker activation maps
==================================

{n_maps} modelled-activation maps of {n_studies} published fMRI studies, each
map one analysis (contrast) of a study, labelled by the task it reports:
n-back (working memory, {n_nback} maps) or flanker (cognitive control,
{n_flanker} maps). Each map is computed from the analysis' reported peak
coordinates ({n_peaks} peaks in all, MNI space) as coordinate-based
meta-analysis models activation: every peak is a Gaussian blob of FWHM
{fwhm:g} mm and height 1, and a voxel takes the largest value over the
analysis' peaks (the ALE modelled-activation convention, so that nearby
peaks of one analysis do not add up). Values lie in [0, 1]. The maps are
sampled on nilearn's bundled MNI152 grey-matter mask at {resolution} mm
({n_voxels} voxels).

Analyses of one study share subjects and often peaks, so they are not
independent: keep a study's maps together when splitting (``groups`` with
``GroupKFold`` or ``GroupShuffleSplit``).

Provenance: the peaks, study ids and task labels come from NiMARE 0.22.1's
bundled studyset ``resources/nback_vs_flanker_studyset_2026-07`` ("n-back vs
flanker task analysis examples", a balanced subset of the NeuroStore 2026-07
release: up to 500 coordinate analyses matched by task name for each task),
keeping the 717 of its 906 analyses whose peaks are in MNI space. The
studyset is distributed under NiMARE's MIT licence, whose notice ships with
this package (``sklearn_betavae/data/NIMARE_LICENSE.txt``).
"""


@validate_params(
    {
        "resolution": [NumberInterval(Integral, 1, None, closed="left")],
        "fwhm": [NumberInterval(Real, 0, None, closed="neither")],
        "return_images": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def load_nback_flanker(resolution=6, *, fwhm=10.0, return_images=True):
    """Load 717 real activation maps of n-back and flanker fMRI studies.

    Modelled-activation maps built from the peak coordinates that 268
    published studies reported (406 n-back analyses, 311 flanker), as
    coordinate-based meta-analysis builds them: each peak a Gaussian blob of
    height 1, the map the largest blob value at each voxel. Real,
    heterogeneous and sparse (at 6 mm and the default FWHM about 1.5% of the
    voxels of a map exceed 0.1). Nothing is downloaded: the peaks ship with
    the package, and the maps are computed in a few seconds. Needs the
    ``neuro`` extra (nilearn) for the grey-matter mask.

    Parameters
    ----------
    resolution : int, default=6
        Voxel size in mm of nilearn's bundled MNI152 grey-matter mask: 6 gives
        8,656 voxels, 4 gives 28,144.
    fwhm : float, default=10.0
        Full width at half maximum of each peak's Gaussian blob, in mm.
        10 mm is close to the kernels ALE gives studies of 15-20 subjects.
    return_images : bool, default=True
        Also build ``images``, a 4D image of all the maps (128 MB in float32
        at 6 mm, 400 MB at 4 mm). With False, ``images`` is None and only
        the masked array ``data`` is made.

    Returns
    -------
    dataset : sklearn.utils.Bunch
        ``data``: float32 ndarray of shape (717, n_voxels), the maps inside
        the mask (what ``NiftiMasker(mask_img).fit_transform(images)``
        gives); ``images``: a 4D ``nibabel.Nifti1Image`` of the maps, the
        mask's shape and affine, or None; ``target``: ndarray of str, each
        map's task, ``"n-back"`` or ``"flanker"``; ``target_names``:
        ``["n-back", "flanker"]``; ``groups``: ndarray of str, each map's
        study id, for grouped cross-validation; ``analysis_ids``: ndarray of
        str; ``peaks``: dict of arrays with one entry per peak
        (``"analysis_index"``, the row of ``data`` it belongs to, and
        ``"xyz"``, MNI millimetres); ``mask_img``: the grey-matter mask to
        give ``NiftiMasker``; ``DESCR``: the description, with provenance
        and licence.

    See Also
    --------
    make_brain_population : Simulated grey-matter maps with known factors.

    Examples
    --------
    >>> from sklearn_betavae.datasets import load_nback_flanker
    >>> maps = load_nback_flanker(return_images=False)
    >>> maps.data.shape, maps.target_names
    ((717, 8656), ['n-back', 'flanker'])
    >>> len(set(maps.groups)), int((maps.target == "n-back").sum())
    (268, 406)
    """
    from nilearn.datasets import load_mni152_gm_mask

    if isinstance(resolution, bool):
        raise ValueError(f"resolution must be a positive integer (mm); got {resolution!r}.")
    peaks = _read_peaks()
    mask_img = load_mni152_gm_mask(resolution=resolution)
    inside = np.asarray(mask_img.dataobj) > 0
    voxel_xyz = (np.argwhere(inside) @ mask_img.affine[:3, :3].T + mask_img.affine[:3, 3]).astype(np.float64)
    data = _modelled_activation(voxel_xyz, peaks["xyz"], peaks["analysis_index"],
                                len(peaks["analysis_ids"]), fwhm / _FWHM_PER_SIGMA)
    images = None
    if return_images:
        import nibabel

        volumes = np.zeros(inside.shape + (len(data),), dtype=np.float32)
        volumes[inside] = data.T
        images = nibabel.Nifti1Image(volumes, mask_img.affine)
    target = peaks["tasks"]
    descr = _DESCR.format(
        n_maps=len(data), n_studies=len(set(peaks["study_ids"])), n_peaks=len(peaks["xyz"]),
        n_nback=int(np.sum(target == "n-back")), n_flanker=int(np.sum(target == "flanker")),
        fwhm=fwhm, resolution=resolution, n_voxels=data.shape[1],
    )
    return Bunch(
        data=data, images=images, target=target, target_names=list(_TASKS),
        groups=peaks["study_ids"], analysis_ids=peaks["analysis_ids"],
        peaks={"analysis_index": peaks["analysis_index"], "xyz": peaks["xyz"]},
        mask_img=mask_img, DESCR=descr,
    )


def _read_peaks():
    """The shipped table as arrays: one entry per analysis, and the peaks."""
    raw = resources.files("sklearn_betavae").joinpath("data", _PEAKS_FILE).read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").splitlines()
    if lines[0] != "analysis_id,study_id,task,x,y,z":
        raise ValueError(f"{_PEAKS_FILE} has an unexpected header: {lines[0]!r}.")
    fields = [line.split(",") for line in lines[1:]]
    analysis = np.array([row[0] for row in fields])
    # Peaks are stored grouped by analysis, in the studyset's order.
    analysis_ids, first, analysis_index = np.unique(analysis, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return {
        "analysis_ids": analysis_ids[order],
        "study_ids": np.array([fields[i][1] for i in first[order]]),
        "tasks": np.array([fields[i][2] for i in first[order]]),
        "analysis_index": rank[analysis_index],
        "xyz": np.array([row[3:6] for row in fields], dtype=np.float64),
    }


def _modelled_activation(voxel_xyz, peak_xyz, peak_analysis, n_analyses, sigma):
    """(n_analyses, n_voxels) float32: each voxel's largest Gaussian value over
    its analysis' peaks. One analysis at a time, so memory is one
    (peaks of an analysis, voxels) block."""
    maps = np.zeros((n_analyses, len(voxel_xyz)), dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", voxel_xyz, voxel_xyz)
    order = np.argsort(peak_analysis, kind="stable")
    bounds = np.searchsorted(peak_analysis[order], np.arange(n_analyses + 1))
    for a in range(n_analyses):
        xyz = peak_xyz[order[bounds[a]:bounds[a + 1]]]
        squared = squared_norms[None, :] - 2.0 * xyz @ voxel_xyz.T + np.einsum("ij,ij->i", xyz, xyz)[:, None]
        nearest = np.maximum(squared.min(axis=0), 0.0)
        maps[a] = np.exp(-nearest / (2.0 * sigma**2))
    return maps
