"""Studies larger than memory: images masked in chunks of subjects into a memmap on disk.

``NiftiMasker.transform`` on a list of images loads them all and returns one
array: 40,000 subjects x 200,000 voxels is 32 GB in float32, more than most
machines hold. ``mask_to_memmap`` masks a few subjects at a time with the
user's fitted masker and writes the rows into a ``.npy`` file opened as a
memmap, which ``BetaVAETransformer.fit`` and ``transform`` read in chunks
without loading it whole. Only the chunk in hand and the mask are ever in
memory. nilearn is used through the masker given (and imported for a 4D
image only).
"""

import os
import tempfile
import time
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.utils._param_validation import validate_params

from ._persistence import link_target, replace_keeping_mode
from ._validation import NumberInterval

# Masker settings that treat the images as one series: cleaning chunk by
# chunk would give other values than cleaning all of them at once.
_ACROSS_IMAGES = ("standardize", "detrend", "low_pass", "high_pass")


@validate_params(
    {
        "imgs": "no_validation",
        "masker": [object],
        "path": [str, os.PathLike],
        "batch_size": [NumberInterval(Integral, 1, None, closed="left")],
        "dtype": "no_validation",
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=True,
)
def mask_to_memmap(imgs, masker, path, *, batch_size=64, dtype=np.float32, verbose=0):
    """Mask images a few subjects at a time into a memmap on disk.

    For studies too large for memory: the result is an ``(n_subjects,
    n_voxels)`` array stored in a ``.npy`` file and opened read-only as a
    ``numpy.memmap``, which ``BetaVAETransformer`` fits and transforms in
    chunks, never loading it whole. Only ``batch_size`` images and their
    masked rows are in memory at a time.

    Parameters
    ----------
    imgs : list of Niimg-like or 4D Niimg-like
        The subjects' 3D images (file paths or images), in order, or one 4D
        image (or its file) with one volume per subject. Files are read only
        when their chunk is masked.
    masker : nilearn.maskers.NiftiMasker
        Fitted (``masker.fit()`` with ``mask_img`` set, for instance); it is
        used as it is and not modified. Its settings that treat the images as
        one series (``standardize``, ``detrend``, ``low_pass``,
        ``high_pass``) must be off: chunk by chunk
        they would give other values than for all the images at once.
    path : str or path-like
        The ``.npy`` file to write (``np.load(path, mmap_mode="r")`` opens
        it again later). It is written to a temporary file next to it and
        renamed when complete, so an interrupted run leaves no partial file.
        An existing file keeps its permissions and a new one gets those the
        umask gives; a symbolic link is written through (its target is
        replaced and the link kept), as ``BetaVAETransformer.save`` does.
    batch_size : int, default=64
        Subjects masked at a time.
    dtype : numpy dtype, default=np.float32
        Of the stored rows: float32 is what the network trains in.
    verbose : int, default=0
        Above 0, prints the subjects done after every chunk, with the time.

    Returns
    -------
    X : numpy.memmap of shape (n_subjects, n_voxels)
        Read-only, backed by ``path``.

    Examples
    --------
    >>> import os, tempfile
    >>> from nilearn.maskers import NiftiMasker
    >>> from sklearn_betavae import BetaVAETransformer, mask_to_memmap
    >>> from sklearn_betavae.datasets import make_brain_population
    >>> population = make_brain_population(30, resolution=12, random_state=0)
    >>> masker = NiftiMasker(population.mask_img, standardize=None).fit()
    >>> path = os.path.join(tempfile.mkdtemp(), "study.npy")
    >>> X = mask_to_memmap(population.images, masker, path, batch_size=8)
    >>> X.shape == (30, masker.n_elements_), type(X).__name__
    (True, 'memmap')
    >>> vae = BetaVAETransformer(device="cpu", n_components=2, max_iter=2).fit(X)
    """
    _check_masker(masker)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating-point type; got {dtype}.")
    chunks, n_subjects = _image_chunks(imgs, batch_size)
    path = link_target(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npy")
    os.close(handle)
    started, done, out = time.perf_counter(), 0, None
    try:
        for chunk, count in chunks:
            rows = np.asarray(masker.transform(chunk))
            if rows.ndim != 2 or len(rows) != count:
                raise ValueError(
                    f"The masker gave an array of shape {rows.shape} for {count} images "
                    f"(subjects {done} to {done + count - 1}); each image must be one 3D volume."
                )
            if out is None:
                out = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype,
                                                shape=(n_subjects, rows.shape[1]))
            out[done:done + len(rows)] = rows
            done += len(rows)
            if verbose:
                print(f"[mask_to_memmap] {done}/{n_subjects} subjects masked "
                      f"({time.perf_counter() - started:.1f} s)")
        out.flush()
        del out
        replace_keeping_mode(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return np.load(path, mmap_mode="r")


def _check_masker(masker):
    if not callable(getattr(masker, "transform", None)) or not hasattr(masker, "get_params"):
        raise TypeError(f"masker must be a fitted nilearn NiftiMasker; got {type(masker).__name__}.")
    if not hasattr(masker, "mask_img_"):
        raise ValueError(
            "masker must be fitted first: masker.fit() when it has a mask_img, or fit it on a few "
            "images (mask_to_memmap does not fit it, so that every chunk uses one mask)."
        )
    params = masker.get_params(deep=False)
    on = [name for name in _ACROSS_IMAGES if params.get(name) not in (None, False)]
    if on:
        raise ValueError(
            f"The masker's {', '.join(f'{name}={params[name]!r}' for name in on)} treats the images "
            "as one series, so masking in chunks would change the values; turn it off (None or "
            "False) and let BetaVAETransformer's standardize scale the voxels."
        )


def _image_chunks(imgs, batch_size):
    """``(chunks, n)``: an iterator of ``(images, count)`` with at most
    ``batch_size`` images each (a list, or a 4D image), and their number."""
    if isinstance(imgs, (str, os.PathLike)) or hasattr(imgs, "affine"):
        import nibabel
        from nilearn.image import index_img

        image = nibabel.load(imgs) if isinstance(imgs, (str, os.PathLike)) else imgs
        if len(image.shape) != 4:
            raise ValueError(
                f"imgs must be a list of 3D images or one 4D image; got one image of shape {image.shape}."
            )
        n = image.shape[3]

        chunks = ((index_img(image, slice(start, min(start + batch_size, n))),
                   min(batch_size, n - start)) for start in range(0, n, batch_size))
        return chunks, n
    if isinstance(imgs, np.ndarray) or not hasattr(imgs, "__len__"):
        raise TypeError(
            "imgs must be a list of 3D images (or their files) or one 4D image; got "
            f"{type(imgs).__name__}."
        )
    imgs = list(imgs)
    if not imgs:
        raise ValueError("imgs holds no images.")
    chunks = ((imgs[start:start + batch_size], len(imgs[start:start + batch_size]))
              for start in range(0, len(imgs), batch_size))
    return chunks, len(imgs)
