"""Simulated brain populations with known factors, on real bundled anatomy.

Needs the ``neuro`` extra (nilearn), imported when a function is called:
``import sklearn_betavae.datasets`` itself needs only the core dependencies.
Nothing is downloaded: the anatomy is nilearn's bundled MNI152 grey-matter
template.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_array

__all__ = ["make_brain_population"]

# Fixed regions, in MNI millimetres, chosen where the 6 mm grey-matter mask
# has 16-21 voxels within 10 mm.
_LEFT_HIPPOCAMPUS = (-25.0, -20.0, -15.0)
_RIGHT_FRONTAL = (40.0, 20.0, 30.0)
_PRECUNEUS = [(-10.0, -55.0, 35.0), (0.0, -45.0, 35.0), (10.0, -55.0, 35.0)]
_LESION_PATH = ((-50.0, -60.0, 10.0), (-50.0, 20.0, 10.0))

_KINDS = {
    "amplitude": ("global_scale", "hippocampal_atrophy", "frontal_atrophy"),
    "overlapping": ("precuneus_left", "precuneus_centre", "precuneus_right"),
    "nonlinear": ("lesion_position", "lesion_extent"),
}


@validate_params(
    {
        "n_subjects": [Interval(Integral, 1, None, closed="left")],
        "kind": [StrOptions(set(_KINDS))],
        "resolution": [Interval(Integral, 1, None, closed="left")],
        "noise": [Interval(Real, 0, np.inf, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_brain_population(
    n_subjects=300, kind="amplitude", *, resolution=6, noise=0.02, random_state=None
):
    """Grey-matter maps of simulated subjects, driven by known independent factors.

    Every subject starts from nilearn's bundled MNI152 grey-matter template
    (values in [0, 1]) and is changed by its own values of independent
    factors, drawn uniformly in [0, 1], then gets Gaussian noise. Three
    kinds of population, because methods behave differently on each:

    ``"amplitude"``
        Factors of distinct strength that scale fixed patterns:
        ``global_scale`` (the whole map times 0.85 to 1.15),
        ``hippocampal_atrophy`` and ``frontal_atrophy`` (depth, up to 0.5, of
        a Gaussian loss of 8 mm width in two separate fixed regions).
    ``"overlapping"``
        Three atrophies of equal strength (depth up to 0.4, width 8 mm) in
        neighbouring regions of the precuneus, 14-20 mm apart, so their
        patterns overlap.
    ``"nonlinear"``
        One lesion (depth 0.6) that moves: ``lesion_position`` places it
        along an 80 mm path (left lateral cortex, back to front) and
        ``lesion_extent`` sets its width from 5 to 12 mm. Neither factor is a
        linear function of the voxel values.

    Parameters
    ----------
    n_subjects : int, default=300
    kind : {"amplitude", "overlapping", "nonlinear"}, default="amplitude"
    resolution : int, default=6
        Voxel size in mm of the template (nilearn resamples it): 6 gives
        8,656 grey-matter voxels, 4 gives 28,144.
    noise : float, default=0.02
        Standard deviation of the i.i.d. Gaussian noise added to every voxel
        (finite, non-negative).
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    population : sklearn.utils.Bunch
        ``images``: list of ``n_subjects`` 3D ``nibabel.Nifti1Image`` (float32);
        ``factors``: ndarray of shape (n_subjects, n_factors), each column
        uniform in [0, 1]; ``factor_names``: list of str; ``mask_img``: the
        grey-matter mask (a ``Nifti1Image``) to give ``NiftiMasker``;
        ``template_img``; ``render``: a function from a factor array of shape
        (n, n_factors) to an (n, x, y, z) array of noise-free volumes, to see
        what each factor does.

    Examples
    --------
    >>> from sklearn_betavae.datasets import make_brain_population
    >>> population = make_brain_population(20, kind="nonlinear", random_state=0)
    >>> len(population.images), population.images[0].shape
    (20, (34, 40, 33))
    >>> population.factor_names, population.factors.shape
    (['lesion_position', 'lesion_extent'], (20, 2))
    """
    import nibabel
    from nilearn.datasets import load_mni152_gm_mask, load_mni152_gm_template

    if isinstance(n_subjects, bool):
        raise ValueError(f"n_subjects must be a positive integer; got {n_subjects!r}.")
    rng = check_random_state(random_state)
    template_img = load_mni152_gm_template(resolution=resolution)
    mask_img = load_mni152_gm_mask(resolution=resolution)
    template = np.asarray(template_img.dataobj, dtype=np.float32)
    millimetres = _voxel_millimetres(template.shape, template_img.affine)

    names = list(_KINDS[kind])
    factors = rng.uniform(size=(n_subjects, len(names)))

    def render(factors):
        factors = np.atleast_2d(np.asarray(factors, dtype=np.float64))
        if factors.ndim != 2 or factors.shape[1] != len(names):
            raise ValueError(
                f"render expects factors of shape (n, {len(names)}), one column per factor "
                f"({', '.join(names)}); got shape {factors.shape}."
            )
        factors = check_array(factors, input_name="factors")
        return np.stack([_render_one(kind, template, millimetres, f) for f in factors])

    volumes = render(factors)
    volumes += rng.normal(scale=noise, size=volumes.shape).astype(np.float32)
    images = [nibabel.Nifti1Image(volume, template_img.affine) for volume in volumes]
    return Bunch(
        images=images, factors=factors, factor_names=names, mask_img=mask_img,
        template_img=template_img, render=render,
    )


def _voxel_millimetres(shape, affine):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).astype(np.float32)


def _blob(millimetres, centre, width):
    squared = np.sum((millimetres - np.asarray(centre, dtype=np.float32)) ** 2, axis=-1)
    return np.exp(-squared / (2.0 * width**2)).astype(np.float32)


def _render_one(kind, template, millimetres, factors):
    volume = template.copy()
    if kind == "amplitude":
        scale, hippocampus, frontal = factors
        volume *= 0.85 + 0.3 * scale
        volume *= 1.0 - 0.5 * hippocampus * _blob(millimetres, _LEFT_HIPPOCAMPUS, 8.0)
        volume *= 1.0 - 0.5 * frontal * _blob(millimetres, _RIGHT_FRONTAL, 8.0)
    elif kind == "overlapping":
        for depth, centre in zip(factors, _PRECUNEUS):
            volume *= 1.0 - 0.4 * depth * _blob(millimetres, centre, 8.0)
    else:
        position, extent = factors
        start, end = (np.asarray(point) for point in _LESION_PATH)
        centre = start + position * (end - start)
        volume *= 1.0 - 0.6 * _blob(millimetres, centre, 5.0 + 7.0 * extent)
    return volume
