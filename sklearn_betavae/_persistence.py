"""Safe persistence: one safetensors file, with JSON for everything that is not a tensor.

A pickle runs code when it is loaded; a file written here holds only tensors
and text, so reading one never imports or executes anything from it. The
file is a standard safetensors file whose metadata carries, under
``sklearn_betavae.*`` keys, the format version, a JSON document (the
hyper-parameters, the fitted attributes, the per-epoch training history,
the library versions; the history's batch records are tensors, see
``split_history``) and a SHA-256 digest of the JSON and every tensor, checked on
loading so that a truncated, corrupted or edited file is refused.
"""

import hashlib
import json
import numbers
import os
import re
import stat
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import sklearn
import skorch
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from skorch.history import History

from ._device import resolve_device, saved_device, usable_device_param
from ._file_checks import (
    check_architecture,
    check_arrays,
    check_covariates,
    check_device_name,
    check_fitted_fields,
    check_output_config,
    check_reference,
)
from ._training import Architecture, build_net
from ._validation import check_module_outputs
from ._version import __version__

# The version of the model file's layout, and of a pickled estimator's state
# (``BetaVAETransformer.__getstate__``). Files and pickles of the package's
# pre-releases, before version 1, are refused with a request to refit.
FORMAT_VERSION = 1
_PREFIX = "sklearn_betavae."
_VERSION_KEY = _PREFIX + "format_version"
# Where pre-release files kept their format number (1 or 2).
_PRE_RELEASE_KEY = _PREFIX + "format"


def write_model_file(path, document, tensors):
    """Write ``document`` (JSON-able) and ``tensors`` (name -> tensor) to ``path``.

    The file appears whole or not at all: it is written next to ``path``
    and then renamed over it. Saving over an existing file keeps its mode
    (a private 0600 model stays private); a new file gets the mode any new
    file gets here. A symbolic link is written through: its target is
    replaced (or created) and the link stays.
    """
    path = link_target(path)
    text = json.dumps(document, sort_keys=True, default=_json_default)
    tensors = {name: value.detach().cpu().contiguous().clone() for name, value in tensors.items()}
    metadata = {
        _VERSION_KEY: str(FORMAT_VERSION),
        _PREFIX + "document": text,
        _PREFIX + "sha256": _digest(str(FORMAT_VERSION), text, tensors),
    }
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata=metadata)
        replace_keeping_mode(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def link_target(path):
    """Where writing ``path`` puts the file: ``realpath`` follows every
    symbolic link, also a dangling one, so that a link is written through
    (its target replaced or created) and stays a link."""
    return Path(os.path.realpath(path))


def replace_keeping_mode(temporary, path):
    """Rename the finished ``temporary`` file (from ``mkstemp``, next to
    ``path``) over ``path``, with the permissions ``path`` has, or those any
    new file gets here (the umask's).

    ``mkstemp`` makes files private (0600); model files and study memmaps
    are meant to be shared, and saving over one must not change who can read
    it. ``path`` should come from ``link_target``.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def read_model_file(path, writer="BetaVAETransformer.save"):
    """Read ``(document, tensors)`` back; ValueError for anything but an intact
    file (``writer``: what writes the files expected, for the messages)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {str(path)!r}.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(
            f"{str(path)!r} is not a readable model file (truncated, corrupted, or not "
            f"written by {writer}): {error}"
        ) from error
    if _VERSION_KEY not in metadata:
        if _PRE_RELEASE_KEY in metadata:
            raise ValueError(
                f"{str(path)!r} was written by a pre-release sklearn_betavae (its model format "
                f"{metadata[_PRE_RELEASE_KEY]!r} came before format {FORMAT_VERSION}, that of "
                "0.1.0), which this version cannot load. Refit the model with this version "
                "and save it again."
            )
        raise ValueError(
            f"{str(path)!r} is a safetensors file but not one written by "
            f"{writer} (it has no sklearn_betavae metadata)."
        )
    version = metadata[_VERSION_KEY]
    # ASCII digits only: "²" is a digit to str.isdigit, not to int().
    if not re.fullmatch(r"[0-9]+", version) or int(version) > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has model format version {version!r}, newer than the "
            f"version {FORMAT_VERSION} this sklearn_betavae reads; upgrade sklearn_betavae."
        )
    text = metadata.get(_PREFIX + "document", "")
    if metadata.get(_PREFIX + "sha256") != _digest(version, text, tensors):
        raise ValueError(
            f"The contents of {str(path)!r} do not match their checksum: the file is "
            "corrupted or was modified after it was saved."
        )
    try:
        return json.loads(text), tensors
    except (ValueError, RecursionError) as error:  # not JSON, or nested past Python's stack
        raise ValueError(
            f"{str(path)!r} holds a document that is not valid JSON, or too deeply nested "
            f"({type(error).__name__}): it was not written by {writer}."
        ) from None


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _digest(version, text, tensors):
    digest = hashlib.sha256(f"{version}|{text}".encode())
    for name in sorted(tensors):
        value = tensors[name].contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _json_default(value):
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()  # numpy and torch scalars
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(
        f"Cannot save a value of type {type(value).__name__} ({value!r}) as JSON; "
        "the model file holds only tensors and JSON."
    )


def _not_storable(name, value):
    raise TypeError(
        f"Cannot save the parameter {name!r}: it holds a {type(value).__name__} ({value!r}), "
        "which a model file cannot hold (it holds only tensors and JSON)."
    )


def flatten_optimizer_state(state_dict):
    """Split an optimizer ``state_dict`` into JSON and tensors named ``optimizer.*``."""
    tensors, scalars = {}, {}
    for index, state in state_dict["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return {"param_groups": state_dict["param_groups"], "scalars": scalars}, tensors


def unflatten_optimizer_state(document, tensors):
    """Inverse of ``flatten_optimizer_state``."""
    state = {}
    entries = [(name[len("optimizer."):], value) for name, value in tensors.items()
               if name.startswith("optimizer.")]
    for key, value in [*entries, *document["scalars"].items()]:
        index, field = key.split(".", 1)
        state.setdefault(int(index), {})[field] = value
    return {"state": state, "param_groups": document["param_groups"]}


# The history: epochs in JSON, batch records in tensors ------------------------

_BATCHES = "history.n_batches"


def split_history(epochs):
    """Split ``History.to_list()`` into JSON-able epochs and tensors.

    A long fit has millions of batch records, too many for the JSON, which
    safetensors caps at 100 MB. Every batch-record key whose values are all
    ints (or all floats) becomes a column, ``history.batch.<key>`` (int64 or
    float64, exact) with a mask ``history.batch_mask.<key>`` of the records
    that have it; ``history.n_batches`` holds each epoch's number of records
    (-1: no ``"batches"`` entry). Anything else a callback recorded stays in
    the JSON, in the epoch's ``"batches"`` list.
    """
    json_epochs, records, counts = [], [], []
    for epoch in epochs:
        epoch = dict(epoch)
        batches = epoch.pop("batches", None)
        counts.append(-1 if batches is None else len(batches))
        records.extend(batches or [])
        json_epochs.append(epoch)
    kinds = {}
    for record in records:
        for key, value in record.items():
            kind = type(value) if type(value) in (int, float) else None
            kinds[key] = kind if kinds.get(key, kind) is kind else None
    columns = [key for key, kind in kinds.items() if kind is not None]
    tensors = {_BATCHES: torch.tensor(counts, dtype=torch.int64)}
    for key in columns:
        dtype = torch.int64 if kinds[key] is int else torch.float64
        tensors[f"history.batch.{key}"] = torch.tensor([r.get(key, 0) for r in records], dtype=dtype)
        tensors[f"history.batch_mask.{key}"] = torch.tensor([key in r for r in records], dtype=torch.bool)
    start = 0
    for epoch, count in zip(json_epochs, counts):
        rest = [{k: v for k, v in record.items() if k not in kinds or kinds[k] is None}
                for record in records[start:start + max(count, 0)]]
        start += max(count, 0)
        if any(rest):
            epoch["batches"] = rest
    return json_epochs, tensors


def join_history(path, epochs, tensors):
    """Inverse of ``split_history``."""
    def refuse(why):
        raise ValueError(f"{str(path)!r} holds a history whose batch records {why}.")

    if _BATCHES not in tensors:
        refuse(f"are missing ({_BATCHES})")
    counts = tensors[_BATCHES]
    if counts.dtype != torch.int64 or tuple(counts.shape) != (len(epochs),) or (counts < -1).any():
        refuse(f"do not match its {len(epochs)} epochs ({_BATCHES})")
    counts = counts.tolist()
    n_records = sum(max(count, 0) for count in counts)
    records = [{} for _ in range(n_records)]
    for name, values in tensors.items():
        if not name.startswith("history.batch."):
            continue
        key = name[len("history.batch."):]
        mask = tensors.get(f"history.batch_mask.{key}")
        if (values.dtype not in (torch.int64, torch.float64) or mask is None
                or mask.dtype != torch.bool or not tuple(values.shape) == tuple(mask.shape) == (n_records,)):
            refuse(f"do not fit its {n_records} records ({name})")
        for record, value, present in zip(records, values.tolist(), mask.tolist()):
            if present:
                record[key] = value
    joined, start = [], 0
    for epoch, count in zip(epochs, counts):
        epoch = dict(epoch)
        rest = epoch.pop("batches", None)
        batches = records[start:start + max(count, 0)]
        start += max(count, 0)
        if rest is not None:
            if count < 0 or len(rest) != count:
                refuse(f"do not match the records kept in its JSON (epoch {len(joined) + 1})")
            batches = [{**record, **more} for record, more in zip(batches, rest)]
        if count >= 0:
            epoch["batches"] = batches
        joined.append(epoch)
    return joined


# The estimator's state <-> a model file ------------------------------------


def save_estimator(estimator, path):
    """Write a fitted ``BetaVAETransformer`` to ``path`` (see its ``save``)."""
    write_model_file(path, *estimator_state(estimator))


def estimator_state(estimator):
    """The ``(document, tensors)`` of a fitted ``BetaVAETransformer``, for
    ``write_model_file`` or for one step of a pipeline file."""
    net = estimator.net_
    params = estimator.get_params(deep=False)
    params["callbacks"] = None  # arbitrary objects: not saved
    params["accelerator"] = None  # a handle on this run's processes
    random_state = params["random_state"]
    params["random_state"] = int(random_state) if isinstance(random_state, numbers.Integral) else None
    for name in ("encoder", "decoder"):
        module = params[name]
        if module is not None:
            params[name] = {"custom": f"{type(module).__module__}.{type(module).__qualname__}"}
    state = estimator._get_fitted_state()
    names = state["feature_names_in"]
    fitted = {
        "n_features_in_": state["n_features_in"],
        "feature_names_in_": None if names is None else list(names),
        "n_iter_": state["n_iter"],
        "default_dist_": estimator.default_dist_,
        "device_": str(estimator.device_),
        "architecture_": state["architecture"].to_json(),
        "split_seed_": state["split_seed"],
        "warmup_epochs": dict(net.callbacks_)["kl_warmup"].epochs,
        "covariates_": None if state["covariates"] is None else state["covariates"].to_json(),
        "reference_": None if state["reference"] is None else state["reference"].to_json(),
    }
    arrays = {"mean": state["mean"], "scale": state["scale"], "rng_state": state["rng_state"]}
    if state["reference"] is not None:
        arrays.update({f"reference.{name}": array
                       for name, array in state["reference"].tensors().items()})
    optimizer_document, optimizer_tensors = flatten_optimizer_state(net.optimizer_.state_dict())
    document = {
        "versions": _library_versions(),
        "params": {name: to_json(value, partial(_not_storable, name))
                   for name, value in params.items()},
        "output_config": getattr(estimator, "_sklearn_output_config", {}),
        "fitted": fitted,
        "optimizer": optimizer_document,
    }
    document["history"], history_tensors = split_history(net.history.to_list())
    tensors = {f"module.{name}": value for name, value in net.module_.state_dict().items()}
    tensors.update(history_tensors)
    tensors.update(optimizer_tensors)
    tensors.update({name: torch.from_numpy(array) for name, array in arrays.items()})
    return document, tensors


def load_estimator(cls, path, device=None, encoder=None, decoder=None):
    """A fitted ``cls`` from a file written by ``save_estimator`` (see ``load``)."""
    document, tensors = read_model_file(path)
    if isinstance(document, dict) and document.get("kind") == "pipeline":
        raise ValueError(
            f"{str(path)!r} holds a whole pipeline, written by sklearn_betavae.save_pipeline, "
            "not a single BetaVAETransformer; load it with sklearn_betavae.load_pipeline(path)."
        )
    return estimator_from_state(cls, path, document, tensors, device, encoder, decoder)


def estimator_from_state(cls, path, document, tensors, device=None, encoder=None, decoder=None):
    """A fitted ``cls`` from the ``(document, tensors)`` of ``estimator_state``;
    ``path`` names the file they were read from, in error messages."""
    try:
        return _rebuild(cls, path, document, tensors, device, encoder, decoder)
    except ValueError as error:
        if str(path) in str(error):
            raise
        # From a check that does not know the file (a parameter's validation):
        # every malformed file is a ValueError naming it.
        raise ValueError(f"{str(path)!r} holds an invalid saved model: {error}") from error
    except (KeyError, TypeError, AttributeError, IndexError, RecursionError) as error:
        # The checksum guards against accidents, not against a file written
        # to look valid: its structure is checked all the same.
        raise ValueError(
            f"{str(path)!r} does not have the structure of a saved BetaVAETransformer "
            f"({type(error).__name__}: {error})."
        ) from error


def _rebuild(cls, path, document, tensors, device, encoder, decoder):
    params = {name: from_json(value) for name, value in document["params"].items()}
    if set(params) != set(cls._get_param_names()):
        raise ValueError(
            f"{str(path)!r} does not have the structure of a saved {cls.__name__}: it holds "
            f"the parameters {sorted(params)}, where one has {sorted(cls._get_param_names())}."
        )
    fitted = document["fitted"]
    for name, given in (("encoder", encoder), ("decoder", decoder)):
        saved = params[name]
        if saved is not None and given is None:
            raise ValueError(
                f"{str(path)!r} was saved with a custom {name} ({saved['custom']}); pass an "
                f"instance with the same architecture: load(path, {name}=...)."
            )
        if saved is None and given is not None:
            raise ValueError(f"{str(path)!r} was saved with the built-in {name}; do not pass one.")
        params[name] = given
    if device is not None:
        params["device"] = device
        target = resolve_device(device)
    else:
        check_device_name(path, fitted["device_"])
        target = saved_device(fitted["device_"], path)
        params["device"] = usable_device_param(params["device"])
    estimator = cls(**params)
    estimator._validate_params()
    check_architecture(path, fitted["architecture_"], fitted["default_dist_"])
    architecture = Architecture.from_json(fitted["architecture_"])
    n_features = fitted["n_features_in_"]
    check_fitted_fields(path, fitted)
    covariates = check_covariates(path, fitted["covariates_"], architecture.n_covariates)
    reference = check_reference(path, fitted.get("reference_"), tensors, n_features)

    net = build_net(architecture, n_features=n_features, encoder=encoder, decoder=decoder,
                    warmup_epochs=fitted["warmup_epochs"], device=target)
    net.initialize()  # draws from a generator of its own; the weights are overwritten below
    weights = {name[len("module."):]: value for name, value in tensors.items() if name.startswith("module.")}
    try:
        net.module_.load_state_dict(weights)
        net.optimizer_.load_state_dict(unflatten_optimizer_state(document["optimizer"], tensors))
    except (RuntimeError, ValueError, KeyError) as error:
        raise ValueError(
            f"The weights in {str(path)!r} do not fit the network its parameters describe: {error}"
        ) from error
    check_arrays(path, tensors, net, n_features)
    check_module_outputs(net.module_, n_features, architecture.n_components, architecture.default_dist,
                         architecture.n_covariates)
    history = History(join_history(path, document["history"], tensors))
    feature_names = fitted["feature_names_in_"]
    problems = [
        "weights that are not finite" * (not all(torch.isfinite(w).all() for w in weights.values())),
        "a history whose length is not n_iter_" * (len(history) != fitted["n_iter_"]),
        "feature names of the wrong number"
        * (feature_names is not None and len(feature_names) != n_features),
    ]
    if any(problems):
        raise ValueError(f"{str(path)!r} holds {', '.join(filter(None, problems))}.")
    net.history = history

    estimator._set_fitted_state(
        net=net, device=target, architecture=architecture, mean=tensors["mean"].numpy(),
        scale=tensors["scale"].numpy(), split_seed=fitted["split_seed_"],
        rng_state=tensors["rng_state"].numpy(), n_iter=fitted["n_iter_"], covariates=covariates,
        reference=reference,
        n_features_in=n_features, feature_names_in=feature_names,
    )
    check_output_config(path, document["output_config"])
    estimator.set_output(**document["output_config"])
    return estimator


def to_json(value, refuse):
    """JSON for a parameter value (of the estimator or of a masker), the one
    codec of model and pipeline files: every JSON object is a tag, so tuples,
    dicts, numeric arrays, numpy dtypes and torch devices come back as they
    were. ``refuse(value)`` raises for anything else."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, list):
        return [to_json(item, refuse) for item in value]
    if isinstance(value, tuple):
        return {"tuple": [to_json(item, refuse) for item in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"dict": {key: to_json(item, refuse) for key, item in value.items()}}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return {"array": value.tolist(), "dtype": value.dtype.name}
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return {"dtype": np.dtype(value).name, "type": isinstance(value, type)}
    if isinstance(value, torch.device):
        return {"torch.device": str(value)}
    refuse(value)


def from_json(value):
    """The inverse of ``to_json``; TypeError for an object that is no tag."""
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"tuple"}:
        return tuple(from_json(item) for item in value["tuple"])
    if set(value) == {"dict"}:
        return {key: from_json(item) for key, item in value["dict"].items()}
    if set(value) == {"array", "dtype"}:
        return np.asarray(value["array"], dtype=np.dtype(value["dtype"]))
    if set(value) == {"dtype", "type"}:
        dtype = np.dtype(value["dtype"])
        return dtype.type if value["type"] else dtype
    if set(value) == {"torch.device"}:
        return torch.device(value["torch.device"])
    raise TypeError(f"unknown tagged value {value!r}")


def _library_versions():
    return {
        "sklearn_betavae": __version__,
        "torch": torch.__version__,
        "skorch": skorch.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
    }
