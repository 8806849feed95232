"""Safe persistence of a whole brain pipeline: NiftiMasker + BetaVAETransformer, one file.

The file is a model file as ``_persistence`` writes them (one safetensors
file, JSON and tensors, checksum, atomic rename) whose document has
``"kind": "pipeline"``. The masker is kept as its fitted mask (the data of
``mask_img_`` with its dtype, its affine and ``affine_`` in float64, as
tensors) and its other parameters (JSON); the estimator as the state that
``BetaVAETransformer.save`` writes, its tensors under ``step.<name>.``.
Loading builds a new ``NiftiMasker`` on the mask and fits it, through
nilearn's public API, so that a file outlives nilearn's private attributes.
nilearn is imported only when a pipeline with a masker is saved or loaded.
"""

import inspect
import os
from functools import partial

import numpy as np
import torch

from ._estimator import BetaVAETransformer
from ._persistence import (
    _library_versions,
    estimator_from_state,
    estimator_state,
    from_json,
    read_model_file,
    to_json,
    write_model_file,
)
from ._training import outside_inference_mode

_MASKER = "nilearn.maskers.NiftiMasker"
_ESTIMATOR = "sklearn_betavae.BetaVAETransformer"
_STORABLE = (
    "save_pipeline stores a fitted sklearn.pipeline.Pipeline of zero or one fitted "
    "nilearn.maskers.NiftiMasker followed by a fitted BetaVAETransformer with the "
    "built-in encoder and decoder"
)
# Mask dtypes kept as they are; other integers as the signed type of their width.
_TORCH_DTYPES = {"bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"}


def save_pipeline(pipeline, path):
    """Save a fitted brain pipeline to one file, without pickle.

    The pipeline is ``Pipeline([(name, NiftiMasker(...)), (name,
    BetaVAETransformer(...))])``, fitted (the masker is optional). The file
    is a standard safetensors file, as ``BetaVAETransformer.save`` writes
    (written to a temporary file and renamed, with a checksum over all of
    it), holding the step names, the estimator's state as ``save`` stores it,
    and the masker: its fitted mask (the data of ``mask_img_`` with its
    dtype, its affine and ``affine_``) as tensors, and its other parameters
    (``get_params(deep=False)``) as JSON, arrays such as ``target_affine``
    as lists. So the file is enough: the mask file the masker was built
    from, if any, is not needed to load it.

    The masker's ``memory`` is stored as a location only (a ``joblib.Memory``
    as its ``location``, or None) and is not restored by ``load_pipeline``:
    it names a directory of the machine the pipeline was saved on, and a
    joblib cache holds pickles. The ``Pipeline``'s own ``memory`` is not
    stored either.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted; its last step a ``BetaVAETransformer`` with the built-in
        encoder and decoder, after zero or one ``nilearn.maskers.NiftiMasker``.
    path : str or path-like
        The file to write (conventionally ``*.safetensors``).

    Raises
    ------
    TypeError
        If ``pipeline`` is not a ``Pipeline`` (a ``BetaVAETransformer`` is
        saved with its own ``save``), or a step is of a kind that cannot be
        stored (another transformer, ``"passthrough"``, a second masker), or
        a masker parameter cannot be stored as JSON; the message names the
        step, by its name in the pipeline and its class.
    ValueError
        If a step is not fitted (``sklearn.exceptions.NotFittedError``), or
        the estimator has its own encoder or decoder.

    See Also
    --------
    load_pipeline : Load the pipeline back.
    BetaVAETransformer.save : Save the estimator alone.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from nilearn.maskers import NiftiMasker
    >>> from sklearn.pipeline import Pipeline
    >>> from sklearn_betavae import BetaVAETransformer, load_pipeline, save_pipeline
    >>> from sklearn_betavae.datasets import make_brain_population
    >>> population = make_brain_population(20, resolution=12, random_state=0)
    >>> pipe = Pipeline([
    ...     ("masker", NiftiMasker(population.mask_img, standardize=None)),
    ...     ("vae", BetaVAETransformer(device="cpu", n_components=2, max_iter=2,
    ...                                hidden_layer_sizes=(16,), random_state=0)),
    ... ]).fit(population.images)
    >>> path = os.path.join(tempfile.mkdtemp(), "brain.safetensors")
    >>> save_pipeline(pipe, path)
    >>> loaded = load_pipeline(path)
    >>> Z = loaded.transform(population.images)
    >>> bool((Z == pipe.transform(population.images)).all())
    True
    >>> images = loaded.inverse_transform(Z)
    >>> images.shape
    (18, 21, 17, 20)
    >>> bool((images.get_fdata() == pipe.inverse_transform(Z).get_fdata()).all())
    True
    """
    steps = _storable_steps(pipeline)
    document = {"kind": "pipeline", "versions": _library_versions(), "steps": [],
                "verbose": bool(pipeline.verbose)}
    tensors = {}
    for name, step in steps:
        if isinstance(step, BetaVAETransformer):
            entry = {"name": name, "class": _ESTIMATOR}
            entry["state"], step_tensors = estimator_state(step)
        else:
            entry, step_tensors = _masker_state(name, step)
            document["versions"].update(_neuro_versions())
        document["steps"].append(entry)
        tensors.update({f"step.{name}.{key}": value for key, value in step_tensors.items()})
    if len(steps) == 2:
        _check_sizes(steps[0][1], steps[1][1], "The pipeline")
    write_model_file(path, document, tensors)


@outside_inference_mode
def load_pipeline(path, device=None, *, memory=None):
    """Load a pipeline written by ``save_pipeline``.

    The masker is rebuilt as ``NiftiMasker(mask_img=<the saved mask>,
    **<the saved parameters>)`` and fitted (on the mask alone, without
    images); its fitted mask must then equal the saved one exactly. Nothing
    is unpickled, and nothing but nibabel, nilearn and this package is
    imported.

    Parameters
    ----------
    path : str or path-like
        A file written by ``save_pipeline``.
    device : str, torch.device or None, default=None
        Where to put the estimator's network, as in ``BetaVAETransformer.load``.
    memory : None, str, pathlib.Path or joblib.Memory, default=None
        The masker's cache here (its ``memory`` parameter): the location
        saved with it, on the machine it was saved on, is not used.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        Fitted, with the saved step names: ``transform`` takes images,
        ``inverse_transform`` returns images.

    Raises
    ------
    ValueError
        If the file is not one written by ``save_pipeline`` (one written by
        ``BetaVAETransformer.save`` is loaded with ``BetaVAETransformer.load``),
        is truncated, corrupted or edited (checksum), or its contents do not
        make the pipeline they describe.
    ImportError
        If the pipeline has a masker and nilearn is not installed.

    See Also
    --------
    save_pipeline : Write the file.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.pipeline import Pipeline
    >>> from sklearn_betavae import BetaVAETransformer, load_pipeline, save_pipeline
    >>> from sklearn.datasets import load_digits
    >>> X, _ = load_digits(return_X_y=True)
    >>> pipe = Pipeline([("vae", BetaVAETransformer(device="cpu", n_components=2, max_iter=2,
    ...                                             random_state=0))]).fit(X[:100])
    >>> path = os.path.join(tempfile.mkdtemp(), "digits.safetensors")
    >>> save_pipeline(pipe, path)
    >>> load_pipeline(path).transform(X[:3]).shape
    (3, 2)
    """
    document, tensors = read_model_file(path, writer="sklearn_betavae.save_pipeline")
    if not (isinstance(document, dict) and document.get("kind") == "pipeline"):
        if isinstance(document, dict) and "kind" not in document and "fitted" in document:
            raise ValueError(
                f"{str(path)!r} holds a single BetaVAETransformer, written by "
                "BetaVAETransformer.save, not a pipeline; load it with "
                "BetaVAETransformer.load(path)."
            )
        raise ValueError(f"{str(path)!r} is not a pipeline file written by save_pipeline.")
    try:
        return _rebuild_pipeline(path, document, tensors, device, memory)
    except (KeyError, TypeError, AttributeError, IndexError, RecursionError) as error:
        raise ValueError(
            f"{str(path)!r} does not have the structure of a saved pipeline "
            f"({type(error).__name__}: {error})."
        ) from error


# Saving ----------------------------------------------------------------------


def _storable_steps(pipeline):
    """The pipeline's ``(name, step)`` pairs, or an error naming what cannot be stored."""
    from sklearn.exceptions import NotFittedError
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted

    if isinstance(pipeline, BetaVAETransformer):
        raise TypeError(
            "save_pipeline saves a Pipeline; save a BetaVAETransformer on its own with "
            "its save method (estimator.save(path)) and load it with BetaVAETransformer.load."
        )
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"{_STORABLE}; got a {type(pipeline).__name__}.")
    steps = list(pipeline.steps)
    if not steps:
        raise TypeError(f"{_STORABLE}; got a Pipeline without steps.")
    if _nested_names([name for name, _ in steps]):
        raise ValueError(
            f"Cannot save a pipeline with the step names {[name for name, _ in steps]}: the "
            "tensors of a step are named step.<name>.*, so no name may be another followed "
            "by a dot; rename the steps."
        )
    masker_class = _nifti_masker_class()
    for index, (name, step) in enumerate(steps):
        last = index == len(steps) - 1
        if last and type(step) is not BetaVAETransformer:
            _refuse(name, step, "the last step must be a BetaVAETransformer")
        if not last and (masker_class is None or type(step) is not masker_class):
            _refuse(name, step, "only a NiftiMasker can come before the BetaVAETransformer")
        if not last and index > 0:
            _refuse(name, step, "there can be only one NiftiMasker")
        try:
            check_is_fitted(step)
        except NotFittedError:
            _refuse(name, step, "it is not fitted", NotFittedError)
        if last and (step.encoder is not None or step.decoder is not None):
            _refuse(
                name, step,
                "its encoder or decoder is your own module, whose code a file does not hold "
                "(save the estimator alone with BetaVAETransformer.save and load it with "
                "BetaVAETransformer.load(path, encoder=..., decoder=...))",
                ValueError,
            )
    return steps


def _refuse(name, step, why, error=TypeError):
    kind = repr(step) if isinstance(step, str) or step is None else type(step).__name__
    raise error(f"Cannot save step {name!r} ({kind}) of the pipeline: {why}. {_STORABLE}.")


def _nested_names(names):
    """Whether a step's tensor names ``step.<name>.*`` could be another step's."""
    return len(set(names)) != len(names) or any(
        other.startswith(name + ".") for name in names for other in names)


def _nifti_masker_class():
    try:
        from nilearn.maskers import NiftiMasker
    except ImportError:  # then no step is a NiftiMasker
        return None
    return NiftiMasker


def _masker_state(name, masker):
    """``(entry, tensors)`` for a fitted NiftiMasker (see ``save_pipeline``)."""
    params = masker.get_params(deep=False)
    params.pop("mask_img")
    params["memory"] = _memory_location(name, params["memory"])
    defaults = {key: parameter.default for key, parameter
                in inspect.signature(type(masker).__init__).parameters.items()}
    entry = {
        "name": name,
        "class": _MASKER,
        "params": {key: to_json(value, partial(_refuse_parameter, name, key))
                   for key, value in params.items()},
        # Parameters a newer nilearn added may be dropped by an older one when
        # they were left at their default.
        "defaults": sorted(key for key, value in params.items()
                           if key in defaults and _same(value, defaults[key])),
        "output_config": getattr(masker, "_sklearn_output_config", {}),
    }
    data = np.asarray(masker.mask_img_.dataobj)
    data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("="))
    if data.dtype.name not in _TORCH_DTYPES and data.dtype.kind in "ui":
        stored = data.view(f"int{8 * data.dtype.itemsize}")
    elif data.dtype.name in _TORCH_DTYPES:
        stored = data
    else:
        raise TypeError(
            f"Cannot save step {name!r} (NiftiMasker) of the pipeline: its mask_img_ holds "
            f"{data.dtype} values; a mask of integers, booleans or floats can be stored."
        )
    entry["mask_dtype"], entry["mask_shape"] = data.dtype.name, list(data.shape)
    tensors = {
        "mask_img_.data": torch.from_numpy(stored.copy()),
        "mask_img_.affine": torch.from_numpy(np.array(masker.mask_img_.affine, dtype=np.float64)),
        "affine_": torch.from_numpy(np.array(masker.affine_, dtype=np.float64)),
    }
    # What load_pipeline will do, done now: a pipeline that saves also loads.
    _rebuild_masker("the pipeline", entry, tensors, memory=None)
    return entry, tensors


def _memory_location(name, memory):
    from joblib import Memory

    if isinstance(memory, Memory):
        memory = memory.location
    if memory is None or isinstance(memory, str):
        return memory
    if isinstance(memory, os.PathLike):
        return os.fspath(memory)
    raise TypeError(
        f"Cannot save step {name!r} (NiftiMasker) of the pipeline: its parameter 'memory' "
        f"is a {type(memory).__name__}; a location (str or path), a joblib.Memory or None "
        "can be stored."
    )


def _refuse_parameter(name, key, value):
    raise TypeError(
        f"Cannot save step {name!r} (NiftiMasker) of the pipeline: its parameter {key!r} "
        f"holds a {type(value).__name__} ({value!r}), which cannot be stored as JSON "
        "(None, booleans, numbers, strings, lists, tuples, dicts with string keys, "
        "numeric arrays and numpy dtypes can)."
    )


def _same(value, default):
    if value is default:
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):
        return False


def _neuro_versions():
    import nibabel
    import nilearn

    return {"nilearn": nilearn.__version__, "nibabel": nibabel.__version__}


# Loading ---------------------------------------------------------------------


def _rebuild_pipeline(path, document, tensors, device, memory):
    from sklearn.pipeline import Pipeline

    steps = []
    entries = document["steps"]
    classes = [entry["class"] for entry in entries]
    if not (1 <= len(entries) <= 2 and classes[-1] == _ESTIMATOR
            and all(c == _MASKER for c in classes[:-1])):
        raise ValueError(
            f"{str(path)!r} holds a pipeline of {classes}; save_pipeline writes an optional "
            f"{_MASKER} followed by a {_ESTIMATOR}."
        )
    names = [entry["name"] for entry in entries]
    if not all(isinstance(name, str) for name in names) or _nested_names(names):
        raise ValueError(f"{str(path)!r} holds invalid step names {names}.")
    for entry in entries:
        prefix = f"step.{entry['name']}."
        own = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        name = entry["name"]
        if entry["class"] == _MASKER:
            step = _rebuild_masker(repr(str(path)), entry, own, memory)
        else:
            step = estimator_from_state(BetaVAETransformer, path, entry["state"], own, device)
        steps.append((name, step))
    if len(steps) == 2:
        _check_sizes(steps[0][1], steps[1][1], repr(str(path)))
    return Pipeline(steps, verbose=bool(document["verbose"]))


def _rebuild_masker(where, entry, tensors, memory):
    """A NiftiMasker fitted on the saved mask; ``where``: the file, for the messages."""
    try:
        import nibabel
        import nilearn
        from nilearn.maskers import NiftiMasker
    except ImportError as error:
        raise ImportError(
            f"{where} has a NiftiMasker step, which needs nilearn: install the neuro extra "
            "(pip install 'sklearn_betavae[neuro]')."
        ) from error

    name = entry["name"]
    params = {key: from_json(value) for key, value in entry["params"].items()}
    accepted = set(inspect.signature(NiftiMasker.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if set(unknown) - set(entry["defaults"]) or "mask_img" in params:
        raise ValueError(
            f"{where}'s step {name!r} has NiftiMasker parameters "
            f"{sorted(set(unknown) - set(entry['defaults'])) or ['mask_img']} that this nilearn "
            f"({nilearn.__version__}) does not take; the step was saved with another nilearn."
        )
    for key in unknown:  # left at the default of a newer nilearn
        del params[key]
    params["memory"] = memory
    data, affine, affine_ = (tensors["mask_img_.data"], tensors["mask_img_.affine"], tensors["affine_"])
    shape, dtype = tuple(entry["mask_shape"]), np.dtype(entry["mask_dtype"])
    if (len(shape) != 3 or tuple(data.shape) != shape or data.is_floating_point() != (dtype.kind == "f")
            or data.element_size() != dtype.itemsize or affine.dtype != torch.float64
            or tuple(affine.shape) != (4, 4) or affine_.dtype != torch.float64
            or tuple(affine_.shape) not in ((3, 3), (4, 4))):
        raise ValueError(f"{where}'s step {name!r} holds a mask of the wrong shape or dtype.")
    mask = data.numpy().view(dtype)
    masker = NiftiMasker(mask_img=nibabel.Nifti1Image(mask, affine.numpy(), dtype=dtype), **params)
    masker.fit()
    refit = np.asarray(masker.mask_img_.dataobj)
    if not (refit.dtype == dtype and np.array_equal(refit, mask)
            and np.array_equal(masker.mask_img_.affine, affine.numpy())
            and np.array_equal(masker.affine_, affine_.numpy())):
        raise ValueError(
            f"{where}'s step {name!r}: the NiftiMasker fitted on the saved mask has another "
            "mask or affine than the one saved."
        )
    if entry["output_config"]:
        masker.set_output(**entry["output_config"])
    return masker


def _check_sizes(masker, estimator, where):
    n_voxels = getattr(masker, "n_elements_", None)
    if n_voxels is not None and n_voxels != estimator.n_features_in_:
        raise ValueError(
            f"{where} has a mask of {n_voxels} voxels but a BetaVAETransformer fitted on "
            f"{estimator.n_features_in_} features."
        )
