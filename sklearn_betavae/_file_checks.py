"""Checks of a model file's contents against what a fit can produce.

The checksum of a model file guards against accidents, not against a file
written to look valid: every field is checked all the same, and anything
that no fit produces is a ``ValueError`` naming the file and the field.
"""

import re

import numpy as np
import torch

from ._covariates import CovariateEncoding
from ._loss import DISTRIBUTIONS
from ._normative import NormativeReference

# What fit stores as architecture_ (``Architecture.to_json()``).
_ARCHITECTURE_KEYS = {"n_components", "hidden_layer_sizes", "default_dist", "standardize", "n_covariates"}
# Seeds are drawn below this (numpy's int32 maximum).
_MAX_SEED = 2**31 - 1


def check_fitted_fields(path, fitted):
    """The JSON's fitted scalars have the types and ranges a fit gives them."""
    for name, low, high in (("n_features_in_", 1, None), ("n_iter_", 0, None),
                            ("warmup_epochs", 0, None), ("split_seed_", 0, _MAX_SEED)):
        if not _integer(fitted[name], low, high):
            bounds = f"at least {low}" if high is None else f"from {low} to {high}"
            raise ValueError(
                f"{str(path)!r} holds {name} = {fitted[name]!r}; a saved model has an "
                f"integer {bounds}."
            )
    names = fitted["feature_names_in_"]
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ValueError(f"{str(path)!r} holds feature_names_in_ that are not a list of strings.")


def check_arrays(path, tensors, net, n_features):
    """Refuse arrays that no fit produces, naming the field: the checksum
    guards against accidents, not against a file written to look valid.

    The module's weights are checked for dtype here, for shape by
    ``load_state_dict`` and for finiteness after it. Adam's state may hold
    inf (its second moments overflow on a finite divergence, with finite
    weights) but never NaN.
    """
    def check(field, value, shape, dtype):
        if value.dtype != dtype:
            raise ValueError(
                f"{str(path)!r} holds {field} of dtype {value.dtype}; a saved model has {dtype}."
            )
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"{str(path)!r} holds {field} of shape {tuple(value.shape)}; a saved model "
                f"has shape {tuple(shape)}."
            )

    for name, field in (("mean", "mean_"), ("scale", "scale_")):
        check(field, tensors[name], (n_features,), torch.float64)
    if not torch.isfinite(tensors["mean"]).all():
        raise ValueError(f"{str(path)!r} holds a mean_ that is not finite.")
    if not ((tensors["scale"] > 0) & torch.isfinite(tensors["scale"])).all():
        raise ValueError(
            f"{str(path)!r} holds a scale_ that is not positive and finite everywhere "
            f"(min {tensors['scale'].min().item():g}, max {tensors['scale'].max().item():g})."
        )
    check("rng_state", tensors["rng_state"], torch.random.get_rng_state().shape, torch.uint8)
    module_state = net.module_.state_dict()
    params = [param for group in net.optimizer_.param_groups for param in group["params"]]
    for name, value in tensors.items():
        if name.startswith("module.") and name[len("module."):] in module_state:
            check(name, value, None, module_state[name[len("module."):]].dtype)
        elif name.startswith("optimizer."):
            index, _, key = name[len("optimizer."):].partition(".")
            if not (index.isdigit() and int(index) < len(params)):
                raise ValueError(
                    f"{str(path)!r} holds {name}, optimizer state for a parameter the "
                    f"network does not have (it has {len(params)})."
                )
            param = params[int(index)]
            if key == "step":
                check(name, value, (), value.dtype if value.is_floating_point() else torch.float32)
                if not (torch.isfinite(value) and value >= 0):
                    raise ValueError(f"{str(path)!r} holds {name} = {value.item()}, not a step count.")
            else:
                check(name, value, param.shape, param.dtype)
                if torch.isnan(value).any():
                    raise ValueError(f"{str(path)!r} holds {name} with NaN values.")


def check_architecture(path, architecture, default_dist):
    """``architecture_`` (as read, a dict) and ``default_dist_`` are what a fit
    stores: an edited file said "poisson", or "laplace" on a network
    described as normal (then ``score`` used the Laplace likelihood), or
    ``standardize="bogus"``, and loaded."""
    def refuse(field, value, expected):
        raise ValueError(f"{str(path)!r} holds {field} = {value!r}; a saved model has {expected}.")

    if not isinstance(architecture, dict) or set(architecture) != _ARCHITECTURE_KEYS:
        refuse("architecture_", architecture, f"a mapping of {sorted(_ARCHITECTURE_KEYS)}")
    n_components, sizes = architecture["n_components"], architecture["hidden_layer_sizes"]
    if not _integer(n_components, 1):
        refuse("architecture_['n_components']", n_components, "an integer of at least 1")
    if not (isinstance(sizes, list) and all(_integer(size, 1) for size in sizes)):
        refuse("architecture_['hidden_layer_sizes']", sizes, "a list of positive integers")
    if not _integer(architecture["n_covariates"], 0):
        refuse("architecture_['n_covariates']", architecture["n_covariates"], "an integer of at least 0")
    dist = architecture["default_dist"]
    if dist not in DISTRIBUTIONS:
        refuse("architecture_['default_dist']", dist, f"one of {list(DISTRIBUTIONS)}")
    if default_dist != dist:
        refuse("default_dist_", default_dist, f"the network's, {dist!r}")
    standardize = architecture["standardize"]
    allowed = [False] if dist == "bernoulli" else [True, False, "global"]
    if not any(standardize is value or (isinstance(value, str) and standardize == value)
               for value in allowed):
        refuse("architecture_['standardize']", standardize,
               " or ".join(map(repr, allowed)) + f" with default_dist {dist!r}")


def check_covariates(path, document, n_covariates):
    """The ``CovariateEncoding`` of ``covariates_`` (None for a model without),
    whose width is the network's ``n_covariates``."""
    if document is None:
        encoding = None
    else:
        try:
            encoding = CovariateEncoding.from_json(document)
        except ValueError as error:
            raise ValueError(f"{str(path)!r} holds covariates_ that are {error}.") from None
    width = 0 if encoding is None else encoding.width
    if width != n_covariates:
        raise ValueError(
            f"{str(path)!r} holds covariates_ encoded in {width} column(s) for a network that "
            f"reads {n_covariates} (architecture_['n_covariates'])."
        )
    return encoding


def check_reference(path, document, tensors, n_features):
    """The ``NormativeReference`` of ``reference_`` and its ``reference.*``
    arrays (None for a model without one), as a fit measures them."""
    if document is None:
        return None
    arrays = {name[len("reference."):]: value.numpy() for name, value in tensors.items()
              if name.startswith("reference.")}
    fraction = document.get("fraction") if isinstance(document, dict) else None
    measured = {"residual_mean", "residual_scale", "deviations"} & set(arrays)
    problems = [
        "a fraction outside (0, 1)" * (not (isinstance(fraction, float) and 0 < fraction < 1)),
        "no reference rows" * ("indices" not in arrays or arrays["indices"].ndim != 1),
        "some of its measurements without the others" * (0 < len(measured) < 3),
        f"spreads not of shape ({n_features},) and positive" * (len(measured) == 3 and not (
            arrays["residual_mean"].shape == arrays["residual_scale"].shape == (n_features,)
            and np.all(arrays["residual_scale"] > 0) and np.all(np.isfinite(arrays["residual_mean"]))
        )),
    ]
    if any(problems):
        raise ValueError(f"{str(path)!r} holds a reference_ with {', '.join(filter(None, problems))}.")
    try:
        return NormativeReference.from_json(document, arrays)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{str(path)!r} holds a reference_ that is not as fit saves it: {error}") from None


def check_device_name(path, device):
    """``device_`` is a device a fit can have trained on."""
    if not (isinstance(device, str) and re.fullmatch(r"cpu|cuda(:\d+)?", device)):
        raise ValueError(
            f"{str(path)!r} holds device_ = {device!r}; a saved model has 'cpu', 'cuda' or 'cuda:N'."
        )


def _integer(value, low, high=None):
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def check_output_config(path, config):
    """``output_config`` is one that ``set_output`` takes (it checks the value
    only when ``transform`` runs)."""
    if not (isinstance(config, dict) and set(config) <= {"transform"}
            and all(value in ("default", "pandas", "polars") for value in config.values())):
        raise ValueError(
            f"{str(path)!r} holds output_config = {config!r}; a saved model has "
            "{} or {'transform': 'default', 'pandas' or 'polars'}."
        )
