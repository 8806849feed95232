"""Devices: the ``device`` parameter resolved, checked and kept usable, in one place."""

import re
import warnings

import torch

_DEVICE_GRAMMAR = '"auto", "cpu", "cuda", "cuda:N" (N a GPU index) or a torch.device'


def resolve_device(device):
    """Turn the ``device`` parameter into a ``torch.device``.

    ``"auto"`` is CUDA when available, else CPU. A CUDA device asked for on a
    machine without one is an error, not a silent fall-back.
    """
    if isinstance(device, str):
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if not re.fullmatch(r"cpu(:0)?|cuda(:\d+)?", device):
            raise ValueError(f"device must be {_DEVICE_GRAMMAR}; got {device!r}.")
        device = torch.device(device)
    if not isinstance(device, torch.device) or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be {_DEVICE_GRAMMAR}; got {device!r}.")
    if device.type == "cpu":
        return torch.device("cpu")  # one CPU device, whatever index was given
    if not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was asked for but CUDA is not available here; "
            'use device="cpu" or device="auto".'
        )
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device={str(device)!r}: there are only {torch.cuda.device_count()} "
            "CUDA device(s)."
        )
    return device


def usable_device_param(device):
    """``device``, or ``"cpu"`` when this machine lacks it (a GPU-fitted model
    loaded on a CPU-only machine), so that ``fit`` and ``clone`` work here."""
    try:
        resolve_device(device)
    except ValueError:
        return "cpu"
    return device


def with_index(device):
    # torch.device("cuda") != torch.device("cuda:0"), which tensors report.
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def same_device(first, second):
    """Whether two ``torch.device`` name one device (``cuda`` is ``cuda:0``
    when that is the current one)."""
    first, second = torch.device(first), torch.device(second)
    if first == second:
        return True
    return first.type == second.type == "cuda" and with_index(first) == with_index(second)


def training_device(device_param, accelerator):
    """The device a fit trains on: the ``device`` parameter's, or with an
    ``accelerator`` the accelerator's, checked against the parameter."""
    resolved = resolve_device(device_param)
    if accelerator is None:
        return resolved
    placed = torch.device(accelerator.device)
    if accelerator.num_processes > 1 and not getattr(accelerator, "even_batches", True):
        # Processes with different numbers of batches would wait for each
        # other's gradients forever.
        raise ValueError("Training on several processes needs Accelerator(even_batches=True).")
    if device_param != "auto" and not same_device(resolved, placed):
        raise ValueError(
            f"With an accelerator, the network trains on the accelerator's device, "
            f"{placed}; got device={device_param!r}. Leave device='auto'."
        )
    return placed


def saved_device(saved, path):
    """The device a saved model named goes to on loading: that device, or the
    CPU with a warning when this machine lacks it."""
    try:
        return resolve_device(saved)
    except ValueError:
        warnings.warn(
            f"{str(path)!r} holds a model fitted on {saved}, which this machine does not "
            'have; it is loaded on the CPU, with device="cpu".',
            UserWarning,
            stacklevel=6,  # the caller of BetaVAETransformer.load or load_pipeline
        )
        return torch.device("cpu")

