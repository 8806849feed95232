"""Data sets: simulated data with known factors, and real activation maps.

``make_sprites`` (dSprites-like sprites) needs only the core dependencies.
``make_brain_population`` (simulated brain populations) and
``load_nback_flanker`` (717 real activation maps from published n-back and
flanker studies) need the ``neuro`` extra (nilearn), imported when they are
called: ``import sklearn_betavae.datasets`` itself needs only the core
dependencies. Nothing is downloaded: the sprites are drawn procedurally, the
anatomy is nilearn's bundled MNI152 grey-matter template, and the real maps
are computed from peak coordinates that ship with the package.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_array

from ._real_maps import load_nback_flanker

__all__ = ["load_nback_flanker", "make_brain_cohort", "make_brain_population", "make_sprites"]

# Fixed regions, in MNI millimetres, chosen where the 6 mm grey-matter mask
# has 16-21 voxels within 10 mm.
_LEFT_HIPPOCAMPUS = (-25.0, -20.0, -15.0)
_RIGHT_FRONTAL = (40.0, 20.0, 30.0)
_PRECUNEUS = [(-10.0, -55.0, 35.0), (0.0, -45.0, 35.0), (10.0, -55.0, 35.0)]
_LESION_PATH = ((-50.0, -60.0, 10.0), (-50.0, 20.0, 10.0))
# Between the lateral ventricles, the centre of their expansion.
_VENTRICLES = (0.0, -5.0, 15.0)
# make_brain_cohort's covariate regions, away from the factors' regions.
_AGE_CENTRES = ((25.0, -20.0, -15.0), (-40.0, 20.0, 30.0))
_SEX_CENTRE = (0.0, -85.0, 5.0)

_CENTRES = {
    "amplitude": {"hippocampal_atrophy": _LEFT_HIPPOCAMPUS, "frontal_atrophy": _RIGHT_FRONTAL},
    "overlapping": dict(zip(("precuneus_left", "precuneus_centre", "precuneus_right"), _PRECUNEUS)),
    "nonlinear": {},
    "deformation": {"ventricular_expansion": _VENTRICLES},
}

# Float32 volumes: a noise standard deviation of 1e38 would overflow them to
# inf; 1e36 stays 100 standard deviations below float32's largest value.
_MAX_NOISE = 1e36

_KINDS = {
    "amplitude": ("global_scale", "hippocampal_atrophy", "frontal_atrophy"),
    "overlapping": ("precuneus_left", "precuneus_centre", "precuneus_right"),
    "nonlinear": ("lesion_position", "lesion_extent"),
    "deformation": ("ventricular_expansion", "brain_length"),
}


@validate_params(
    {
        "n_subjects": [Interval(Integral, 1, None, closed="left")],
        "kind": [StrOptions(set(_KINDS))],
        "resolution": [Interval(Integral, 1, None, closed="left")],
        "noise": [Interval(Real, 0, _MAX_NOISE, closed="both")],
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
    factors, drawn uniformly in [0, 1], then gets Gaussian noise. Four
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
        linear function of the voxel values, though 10 principal components
        of noise-free maps leave less than 1% of the noise's variance (at the
        default ``noise``) unexplained.
    ``"deformation"``
        Brains that differ in shape, as ageing and imperfect registration
        leave them: ``ventricular_expansion`` pushes the grey matter away
        from the lateral ventricles (by up to 17 mm, 30 mm from their
        centre; nothing folds) and ``brain_length`` makes the brain up to
        10% shorter (0) or longer (1) front to back. Far from linear: 10
        principal components of noise-free maps leave about 40% of the
        noise's variance unexplained, and more than 10% of it in most
        voxels.

    Parameters
    ----------
    n_subjects : int, default=300
        Number of simulated subjects (images).
    kind : {"amplitude", "overlapping", "nonlinear", "deformation"}, default="amplitude"
    resolution : int, default=6
        Voxel size in mm of the template (nilearn resamples it): 6 gives
        8,656 grey-matter voxels, 4 gives 28,144.
    noise : float, default=0.02
        Standard deviation of the i.i.d. Gaussian noise added to every voxel,
        in [0, 1e36] (the images are float32).
    random_state : int, RandomState instance or None, default=None
        Draws the factors and the noise.

    Returns
    -------
    population : sklearn.utils.Bunch
        ``images``: list of ``n_subjects`` 3D ``nibabel.Nifti1Image`` (float32);
        ``factors``: ndarray of shape (n_subjects, n_factors), each column
        uniform in [0, 1]; ``factor_names``: list of str; ``mask_img``: the
        grey-matter mask (a ``Nifti1Image``) to give ``NiftiMasker``;
        ``template_img``; ``render``: a function from a factor array of shape
        (n, n_factors), values in [0, 1], to an (n, x, y, z) array of
        noise-free volumes, to see what each factor does;
        ``factor_centres``: a dict from the name of each factor that acts at
        a fixed place (the atrophies, the ventricles' expansion) to its
        centre, in MNI millimetres.

    Examples
    --------
    >>> from sklearn_betavae.datasets import make_brain_population
    >>> population = make_brain_population(20, kind="nonlinear", random_state=0)
    >>> len(population.images), population.images[0].shape
    (20, (34, 40, 33))
    >>> population.factor_names, population.factors.shape
    (['lesion_position', 'lesion_extent'], (20, 2))
    """
    _refuse_booleans(n_subjects=n_subjects, resolution=resolution)
    rng = check_random_state(random_state)
    template_img, mask_img, template, millimetres = _anatomy(resolution)

    names = list(_KINDS[kind])
    factors = rng.uniform(size=(n_subjects, len(names)))

    def render(factors):
        factors = _check_factors(factors, names)
        return np.stack([_render_one(kind, template, millimetres, f) for f in factors])

    images = _noisy_images(render(factors), noise, rng, template_img.affine)
    return Bunch(
        images=images, factors=factors, factor_names=names, mask_img=mask_img,
        template_img=template_img, render=render, factor_centres=dict(_CENTRES[kind]),
    )


@validate_params(
    {
        "n_subjects": [Interval(Integral, 1, None, closed="left")],
        "kind": [StrOptions(set(_KINDS))],
        "n_sites": [Interval(Integral, 1, None, closed="left")],
        "n_patients": [Interval(Integral, 0, None, closed="left")],
        "resolution": [Interval(Integral, 1, None, closed="left")],
        "noise": [Interval(Real, 0, _MAX_NOISE, closed="both")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_brain_cohort(
    n_subjects=300, kind="amplitude", *, n_sites=3, n_patients=0, resolution=6, noise=0.02,
    random_state=None,
):
    """Simulated subjects with an age, a sex and a scanner site, and known factors.

    The subjects of :func:`make_brain_population` (the same kinds of
    independent factors, drawn uniformly in [0, 1]), each also given the
    covariates a normative study records, and changed by them as real
    brains and scanners change images:

    ``age``
        Uniform in [20, 80] years. A loss that grows with the square of age
        (none at 20, depth 0.35 at 80: nonlinear in age) in two regions of
        8 mm width, the right hippocampus and the left middle frontal gyrus.
    ``sex``
        ``"F"`` or ``"M"``, with probability 1/2: ``"M"`` maps are 10% higher
        in an occipital region of 12 mm width.
    ``site``
        ``"site_1"`` to ``"site_{n_sites}"``, with probability ``1/n_sites``:
        each site multiplies the whole map by its own scale (uniform in
        [0.9, 1.1]) and adds its own smooth offset map (three Gaussians of
        20 mm width at random grey-matter places, amplitudes uniform in
        [-0.06, 0.06]), as scanners differ.

    The factors, age, sex and site are drawn independently of each other.
    Gaussian noise is added last.

    ``n_patients`` further subjects, drawn the same way, each carry one focal
    atrophy, independent of their covariates: a Gaussian loss centred at a
    random grey-matter voxel, of width (standard deviation) uniform in
    [6, 12] mm and depth uniform in [0.1, 0.4] (the share of the value lost
    at its centre), applied before the site's scale and offset. Their true
    abnormality mask is where the loss is at least half its depth. The
    patients come after the controls, which are the same as with
    ``n_patients=0``.

    Parameters
    ----------
    n_subjects : int, default=300
        Number of simulated subjects (images).
    kind : {"amplitude", "overlapping", "nonlinear", "deformation"}, default="amplitude"
        The factors, as in :func:`make_brain_population`.
    n_sites : int, default=3
        Number of scanner sites. The sites' scales and offsets are drawn
        first, so the sites of one ``random_state`` are the same whatever
        ``n_subjects``.
    n_patients : int, default=0
        Number of patients, after the ``n_subjects`` controls.
    resolution : int, default=6
        Voxel size in mm of the template: 6 gives 8,656 grey-matter voxels,
        4 gives 28,144.
    noise : float, default=0.02
        Standard deviation of the i.i.d. Gaussian noise added to every voxel,
        in [0, 1e36] (the images are float32).
    random_state : int, RandomState instance or None, default=None
        Draws the sites, the factors, the covariates and the noise.

    Returns
    -------
    cohort : sklearn.utils.Bunch
        ``images``: list of ``n_subjects`` 3D ``nibabel.Nifti1Image``
        (float32); ``covariates``: a pandas DataFrame with the columns
        ``age`` (float), ``sex`` and ``site`` (categorical), one row per
        subject, ready for ``BetaVAETransformer(...).fit(X, covariates=...)``;
        ``factors``, ``factor_names``, ``factor_centres``, ``mask_img`` and
        ``template_img`` as in :func:`make_brain_population`;
        ``covariate_centres``: a dict from ``"age"`` and ``"sex"`` to the
        centres, in MNI millimetres, of the regions they change;
        ``site_scales``: ndarray of shape (n_sites,); ``site_offsets``:
        ndarray of shape (n_sites, x, y, z); ``diagnosis``: ndarray of str,
        ``"control"`` or ``"patient"`` per subject; ``abnormalities``:
        ndarray of shape (n_patients, x, y, z), float32, each patient's
        loss (the share of the value lost); ``abnormality_masks``: the same
        shape, bool, where the loss is at least half its depth;
        ``abnormality_centres`` (n_patients, 3) in MNI millimetres,
        ``abnormality_widths`` and ``abnormality_depths`` (n_patients,);
        ``render``: a function from factors of shape (n, n_factors), values
        in [0, 1], a covariates DataFrame of n rows (the columns above) and
        optionally losses of shape (n, x, y, z) in [0, 1) to the
        (n, x, y, z) noise-free volumes.

    See Also
    --------
    make_brain_population : The same factors, without covariates.

    Examples
    --------
    >>> from sklearn_betavae.datasets import make_brain_cohort
    >>> cohort = make_brain_cohort(30, n_sites=3, random_state=0)
    >>> len(cohort.images), list(cohort.covariates.columns)
    (30, ['age', 'sex', 'site'])
    >>> sorted(cohort.covariates["site"].cat.categories)
    ['site_1', 'site_2', 'site_3']
    """
    import pandas as pd

    _refuse_booleans(n_subjects=n_subjects, n_sites=n_sites, n_patients=n_patients,
                     resolution=resolution)
    rng = check_random_state(random_state)
    template_img, mask_img, template, millimetres = _anatomy(resolution)
    in_mask = millimetres[np.asarray(mask_img.dataobj) > 0]

    site_scales = rng.uniform(0.9, 1.1, size=n_sites).astype(np.float32)
    site_offsets = np.stack([
        sum(
            amplitude * _blob(millimetres, in_mask[place], 20.0)
            for amplitude, place in zip(
                rng.uniform(-0.06, 0.06, size=3), rng.choice(len(in_mask), size=3)
            )
        )
        for _ in range(n_sites)
    ]).astype(np.float32)
    age_pattern = sum(_blob(millimetres, centre, 8.0) for centre in _AGE_CENTRES)
    sex_pattern = _blob(millimetres, _SEX_CENTRE, 12.0)
    site_names = [f"site_{k + 1}" for k in range(n_sites)]
    names = list(_KINDS[kind])

    def render(factors, covariates, losses=None):
        factors = _check_factors(factors, names)
        age, male, site = _check_cohort_covariates(covariates, len(factors), site_names)
        volumes = np.stack([_render_one(kind, template, millimetres, f) for f in factors])
        ageing = ((age - 20.0) / 60.0) ** 2
        volumes *= 1.0 - 0.35 * ageing[:, None, None, None] * age_pattern
        volumes *= 1.0 + 0.1 * male[:, None, None, None] * sex_pattern
        if losses is not None:
            volumes *= 1.0 - _check_losses(losses, volumes.shape)
        volumes *= site_scales[site][:, None, None, None]
        volumes += site_offsets[site]
        return volumes.astype(np.float32)

    def subjects(n, rng):
        factors = rng.uniform(size=(n, len(names)))
        covariates = pd.DataFrame({
            "age": rng.uniform(20.0, 80.0, size=n),
            "sex": pd.Categorical(rng.choice(["F", "M"], size=n), categories=["F", "M"]),
            "site": pd.Categorical(
                np.asarray(site_names)[rng.randint(n_sites, size=n)], categories=site_names
            ),
        })
        return factors, covariates

    factors, covariates = subjects(n_subjects, rng)
    images = _noisy_images(render(factors, covariates), noise, rng, template_img.affine)
    # The patients draw from a generator of their own, so that the controls
    # are the same whatever n_patients.
    patient_rng = np.random.RandomState(rng.randint(np.iinfo(np.int32).max))
    patient_factors, patient_covariates = subjects(n_patients, patient_rng)
    centres = in_mask[patient_rng.randint(len(in_mask), size=n_patients)]
    widths = patient_rng.uniform(6.0, 12.0, size=n_patients)
    depths = patient_rng.uniform(0.1, 0.4, size=n_patients)
    abnormalities = np.stack(
        [depth * _blob(millimetres, centre, width)
         for centre, width, depth in zip(centres, widths, depths)]
    ) if n_patients else np.zeros((0, *template.shape), dtype=np.float32)
    if n_patients:
        images += _noisy_images(render(patient_factors, patient_covariates, abnormalities),
                                noise, patient_rng, template_img.affine)
    return Bunch(
        images=images,
        covariates=pd.concat([covariates, patient_covariates], ignore_index=True),
        factors=np.concatenate([factors, patient_factors]),
        factor_names=names, factor_centres=dict(_CENTRES[kind]), mask_img=mask_img,
        template_img=template_img,
        covariate_centres={"age": list(_AGE_CENTRES), "sex": [_SEX_CENTRE]},
        site_scales=site_scales, site_offsets=site_offsets,
        diagnosis=np.asarray(["control"] * n_subjects + ["patient"] * n_patients),
        abnormalities=abnormalities.astype(np.float32),
        abnormality_masks=abnormalities >= 0.5 * depths[:, None, None, None],
        abnormality_centres=centres, abnormality_widths=widths, abnormality_depths=depths,
        render=render,
    )


def _check_losses(losses, shape):
    losses = np.asarray(losses, dtype=np.float32)
    if losses.shape != shape:
        raise ValueError(f"render expects losses of shape {shape}, one volume per subject; "
                         f"got shape {losses.shape}.")
    if not (np.isfinite(losses).all() and losses.min() >= 0 and losses.max() < 1):
        raise ValueError("render expects losses in [0, 1), the share of the value lost.")
    return losses


def _refuse_booleans(**counts):
    for name, value in counts.items():
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def _anatomy(resolution):
    from nilearn.datasets import load_mni152_gm_mask, load_mni152_gm_template

    template_img = load_mni152_gm_template(resolution=resolution)
    mask_img = load_mni152_gm_mask(resolution=resolution)
    template = np.asarray(template_img.dataobj, dtype=np.float32)
    return template_img, mask_img, template, _voxel_millimetres(template.shape, template_img.affine)


def _noisy_images(volumes, noise, rng, affine):
    import nibabel

    volumes += rng.normal(scale=noise, size=volumes.shape).astype(np.float32)
    return [nibabel.Nifti1Image(volume, affine) for volume in volumes]


def _check_cohort_covariates(covariates, n_rows, site_names):
    columns = ["age", "sex", "site"]
    if not hasattr(covariates, "columns") or list(covariates.columns) != columns:
        raise ValueError(
            f"render expects covariates as a DataFrame with the columns {columns}, like "
            "the cohort's; got "
            + (f"the columns {list(covariates.columns)}." if hasattr(covariates, "columns")
               else f"a {type(covariates).__name__}.")
        )
    if len(covariates) != n_rows:
        raise ValueError(
            f"render expects one row of covariates per row of factors ({n_rows}); "
            f"got {len(covariates)}."
        )
    age = check_array(
        np.asarray(covariates["age"], dtype=np.float64).reshape(-1, 1), input_name="age"
    ).ravel()
    for column, known in (("sex", ["F", "M"]), ("site", site_names)):
        unknown = sorted(set(map(str, covariates[column])) - set(known))
        if unknown:
            raise ValueError(f"render knows the {column} levels {known}; got {unknown}.")
    male = (np.asarray(covariates["sex"], dtype=object) == "M").astype(np.float32)
    site = np.asarray([site_names.index(str(s)) for s in covariates["site"]])
    return age.astype(np.float32), male, site


def _check_factors(factors, names):
    factors = np.atleast_2d(np.asarray(factors, dtype=np.float64))
    if factors.ndim != 2 or factors.shape[1] != len(names):
        raise ValueError(
            f"render expects factors of shape (n, {len(names)}), one column per factor "
            f"({', '.join(names)}); got shape {factors.shape}."
        )
    factors = check_array(factors, input_name="factors")
    if ((factors < 0) | (factors > 1)).any():
        raise ValueError(
            "render expects factor values in [0, 1], the range the factors are drawn "
            f"from; got values from {factors.min():.3g} to {factors.max():.3g}."
        )
    return factors


def _voxel_millimetres(shape, affine):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).astype(np.float32)


def _warp(volume, millimetres, displacement):
    """The volume moved by a displacement field in mm (linear interpolation, zero outside)."""
    from scipy.ndimage import map_coordinates

    origin = millimetres[0, 0, 0]
    steps = np.stack([millimetres[1, 0, 0], millimetres[0, 1, 0], millimetres[0, 0, 1]]) - origin
    # Each voxel takes the value that was at its position minus the displacement.
    sources = (millimetres - displacement - origin) @ np.linalg.inv(steps)
    return map_coordinates(volume, np.moveaxis(sources, -1, 0), order=1, cval=0.0)


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
    elif kind == "deformation":
        expansion, length = factors
        offset = millimetres - np.asarray(_VENTRICLES, dtype=np.float32)
        radial = np.exp(-np.sum(offset**2, axis=-1, keepdims=True) / (2.0 * 30.0**2))
        # Grey matter pushed away from the ventricles, up to 17 mm at 30 mm
        # from their centre (the field's slope stays below 1, so nothing
        # folds), and the brain up to 10% shorter or longer front to back.
        displacement = 28.0 * expansion * offset / 30.0 * radial
        displacement[..., 1] += (0.2 * length - 0.1) * millimetres[..., 1]
        volume = _warp(template, millimetres, displacement)
    else:
        position, extent = factors
        start, end = (np.asarray(point) for point in _LESION_PATH)
        centre = start + position * (end - start)
        volume *= 1.0 - 0.6 * _blob(millimetres, centre, 5.0 + 7.0 * extent)
    return volume


# dSprites (Matthey et al. 2017): the published factor grid, shape codes 1-3.
_SHAPES = ("square", "ellipse", "heart")
_SPRITE_FACTORS = ("shape", "scale", "orientation", "pos_x", "pos_y")
_IMAGE_SIZE = 64
_PATCH = 32  # side of the square patch each sprite is drawn in, centred
_N_POSITIONS = 32  # pos_x and pos_y: one pixel per step, centres 16 to 47


def _sprite_grid(shapes):
    codes = np.array([_SHAPES.index(shape) + 1.0 for shape in shapes])
    return [
        codes,
        np.linspace(0.5, 1.0, 6),
        np.linspace(0.0, 2.0 * np.pi, 40),
        np.linspace(0.0, 1.0, _N_POSITIONS),
        np.linspace(0.0, 1.0, _N_POSITIONS),
    ]


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left"), None],
        "shapes": [tuple, list],
        "random_state": ["random_state"],
        "dtype": "no_validation",  # checked below, with a clearer message
    },
    prefer_skip_nested_validation=True,
)
def make_sprites(n_samples=None, *, shapes=_SHAPES, random_state=None, dtype=np.float32):
    """DSprites-like binary 64 x 64 images of 2D shapes, with their five factors.

    The factor grid of dSprites (Matthey et al., 2017), drawn procedurally
    here (nothing is downloaded), in dSprites' canonical order, the last
    factor varying fastest:

    ``shape``
        square, ellipse, heart (values 1, 2, 3, as in dSprites).
    ``scale``
        6 values linearly from 0.5 to 1.
    ``orientation``
        40 values, ``np.linspace(0, 2 * pi, 40)`` radians, as dSprites
        publishes them: 0 and 2 pi draw the same image, and the square's
        and ellipse's symmetries repeat images within a turn, as in dSprites.
        The rotation is counterclockwise on screen.
    ``pos_x``, ``pos_y``
        32 values each from 0 to 1, moving the sprite's centre one pixel per
        step, from column (row) 16 to 47; ``pos_y`` moves it down.

    3 x 6 x 40 x 32 x 32 = 737,280 images. A pixel is 1 when its centre lies
    in the shape. At scale 1 the square's side is 18 pixels, the ellipse's
    axes 24 and 12 pixels, the heart about 20 pixels wide. The sizes and
    the drawing differ from the dSprites files in detail; the grid is the
    same.

    Parameters
    ----------
    n_samples : int or None, default=None
        None gives the full grid (of the chosen shapes) in canonical order;
        an int draws that many distinct images of the grid at random
        (without replacement), in random order.
    shapes : tuple of str, default=("square", "ellipse", "heart")
        The shapes to draw, distinct names among these three; the ``shape``
        factor's classes follow this order.
    random_state : int, RandomState instance or None, default=None
        Draws the subset when ``n_samples`` is an int.
    dtype : {np.float32, np.float64, np.uint8}, default=np.float32
        Of ``images`` (0 or 1 in every dtype). The full grid takes 12 GB in
        float32 and 3 GB in uint8.

    Returns
    -------
    sprites : sklearn.utils.Bunch
        ``images``: ndarray of shape (n_samples, 4096), rows of the 64 x 64
        images (C order, rows of pixels first), values 0 or 1;
        ``factors``: ndarray of shape (n_samples, 5), the factor values;
        ``factor_classes``: int ndarray of shape (n_samples, 5), the index of
        each value in its factor's grid; ``factor_names``: list of str;
        ``factor_sizes``: tuple of int, the number of values of each factor;
        ``factor_values``: list of 5 ndarrays, each factor's grid;
        ``image_shape``: ``(64, 64)``; ``render``: a function from factor
        classes, an int array of shape (n, 5), to images of shape (n, 4096)
        in ``dtype``, to draw the images of chosen factor values
        (``beta_vae_score`` and ``factor_vae_score`` of
        :mod:`sklearn_betavae.metrics` use it).

    Examples
    --------
    >>> from sklearn_betavae.datasets import make_sprites
    >>> sprites = make_sprites(100, random_state=0)
    >>> sprites.images.shape, sprites.images.dtype, sprites.factor_sizes
    ((100, 4096), dtype('float32'), (3, 6, 40, 32, 32))
    >>> sprites.factor_names
    ['shape', 'scale', 'orientation', 'pos_x', 'pos_y']
    >>> heart = sprites.render([[2, 5, 0, 0, 31]]).reshape(64, 64)  # big, bottom left
    >>> int(heart.sum()), int(heart[:32].sum()), int(heart[:, 32:].sum())
    (292, 0, 0)
    """
    if isinstance(n_samples, bool):
        raise ValueError(f"n_samples must be a positive integer or None; got {n_samples!r}.")
    shapes = tuple(shapes)
    if (not shapes or len(set(shapes)) != len(shapes)
            or not all(isinstance(shape, str) and shape in _SHAPES for shape in shapes)):
        raise ValueError(
            f"shapes must be distinct names among {_SHAPES}, at least one; got {shapes!r}."
        )
    if dtype is None or not _is_image_dtype(dtype):  # np.dtype(None) would be float64
        raise ValueError(f"dtype must be np.float32, np.float64 or np.uint8; got {dtype!r}.")
    dtype = np.dtype(dtype)
    values = _sprite_grid(shapes)
    sizes = tuple(len(v) for v in values)
    n_total = int(np.prod(sizes))
    if n_samples is None:
        index = np.arange(n_total)
    elif n_samples > n_total:
        raise ValueError(
            f"n_samples must be at most the {n_total} images of the grid (without "
            f"replacement); got {n_samples}."
        )
    else:
        index = check_random_state(random_state).choice(n_total, n_samples, replace=False)
    classes = np.stack(np.unravel_index(index, sizes), axis=1).astype(np.int64)
    masks = _sprite_masks(shapes, values[1], values[2]).astype(dtype)

    def render(factor_classes):
        return _place_sprites(_check_factor_classes(factor_classes, sizes), masks, sizes, dtype)

    factors = np.column_stack([v[c] for v, c in zip(values, classes.T)])
    return Bunch(
        images=render(classes), factors=factors, factor_classes=classes,
        factor_names=list(_SPRITE_FACTORS), factor_sizes=sizes, factor_values=values,
        image_shape=(_IMAGE_SIZE, _IMAGE_SIZE), render=render,
    )


def _is_image_dtype(dtype):
    try:
        return np.dtype(dtype) in (np.float32, np.float64, np.uint8)
    except TypeError:
        return False


def _check_factor_classes(factor_classes, sizes):
    classes = np.asarray(factor_classes)
    if classes.ndim != 2 or classes.shape[1] != len(sizes) or classes.shape[0] == 0:
        raise ValueError(
            f"render expects factor classes of shape (n, {len(sizes)}) with n >= 1, one "
            f"column per factor ({', '.join(_SPRITE_FACTORS)}); got shape {classes.shape}."
        )
    if classes.dtype.kind not in "iu":
        if classes.dtype.kind != "f" or not np.all(np.isfinite(classes)) or np.any(classes % 1):
            raise ValueError("render expects integer factor classes (indices into each factor's grid).")
    # Checked before any cast, which would wrap a large value round.
    bad = (classes < 0) | (classes >= np.asarray(sizes))
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        raise ValueError(
            f"render: classes of factor {_SPRITE_FACTORS[j]!r} must be in [0, {sizes[j]}); got "
            f"{classes[bad[:, j], j][0]}."
        )
    return classes.astype(np.int64, copy=False)


def _sprite_masks(shapes, scales, orientations):
    """Boolean (n_shapes * n_scales * n_orientations, 32, 32) patches, sprite centred."""
    centres = np.arange(_PATCH) + 0.5 - _PATCH / 2
    x = centres[np.newaxis, :]  # right
    y = -centres[:, np.newaxis]  # up
    masks = []
    for shape in shapes:
        for scale in scales:
            for angle in orientations:
                # Coordinates in the sprite's own frame (rotated by -angle), in pixels / scale.
                u = (np.cos(angle) * x + np.sin(angle) * y) / scale
                v = (-np.sin(angle) * x + np.cos(angle) * y) / scale
                masks.append(_inside(shape, u, v))
    return np.stack(masks)


def _inside(shape, u, v):
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 9.0
    if shape == "ellipse":
        return (u / 12.0) ** 2 + (v / 6.0) ** 2 <= 1.0
    # The heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, 9 pixels per unit, centred.
    a, b = u / 9.0, v / 9.0 + 0.1
    return (a**2 + b**2 - 1.0) ** 3 <= a**2 * b**3


def _place_sprites(classes, masks, sizes, dtype):
    """Images (n, 4096): each sprite's patch copied at its position, one
    vectorised copy per position present (at most 32 x 32 of them)."""
    n = len(classes)
    images = np.zeros((n, _IMAGE_SIZE, _IMAGE_SIZE), dtype=dtype)
    sprite = np.ravel_multi_index(tuple(classes[:, :3].T), sizes[:3])
    position = classes[:, 3] * _N_POSITIONS + classes[:, 4]
    order = np.argsort(position, kind="stable")
    starts = np.flatnonzero(np.diff(position[order])) + 1
    for group in np.split(order, starts):
        column, row = divmod(int(position[group[0]]), _N_POSITIONS)
        images[group, row:row + _PATCH, column:column + _PATCH] = masks[sprite[group]]
    return images.reshape(n, _IMAGE_SIZE * _IMAGE_SIZE)

