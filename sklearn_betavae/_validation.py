"""Checks that scikit-learn's validators do not cover: data domains, user modules."""

import copy
from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from torch import nn


class NumberInterval(Interval):
    """scikit-learn's ``Interval``, refusing booleans.

    ``True`` is an ``Integral`` in Python, so ``Interval(Real, 0, None)``
    takes ``beta=True``; a number parameter set to a boolean is a mistake
    (a flag passed in the wrong place), better refused by the parameter
    validation than read as 1 or failing deep inside ``fit``.
    """

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)

    def __str__(self):
        return super().__str__().replace(" in the range", " (not a bool) in the range", 1)


def check_numbers(X):
    """X's values as numbers the network can use, or a clear error.

    Dates and durations are not numbers to train on (numpy would subtract a
    mean from them in ``fit`` and pass them through ``transform``), and
    long doubles beyond float64's range would become inf.
    """
    if X.dtype.kind in "mM":
        raise TypeError(
            f"X has dtype {X.dtype}; BetaVAETransformer needs numbers (bool, int or "
            "float). Convert dates or durations to numbers first, e.g. "
            "X.astype('int64') or (X - X.min()) / np.timedelta64(1, 'D')."
        )
    if X.dtype.kind == "f" and X.dtype.itemsize > 8:  # longdouble: may exceed float64
        largest = np.abs(X).max()
        # Infinity is not "beyond range": it gets scikit-learn's error, also
        # where it is found later (on a GPU, as each chunk is standardized).
        if np.isfinite(largest) and largest > np.finfo(np.float64).max:
            raise ValueError(
                "X has values beyond float64's range (largest magnitude "
                f"{np.format_float_scientific(largest, precision=2)}), the precision the "
                "network computes in; rescale X."
            )
    return X


def check_unit_interval(X, default_dist):
    """Bernoulli data must be probabilities: every value in [0, 1]."""
    low, high = np.min(X), np.max(X)
    if low < 0 or high > 1:
        raise ValueError(
            f'default_dist={default_dist!r} needs data in [0, 1]; X ranges over '
            f"[{low:g}, {high:g}]. Scale X to [0, 1] (e.g. MinMaxScaler) or use "
            'default_dist="normal" or "laplace".'
        )


def check_user_module(module, name):
    """A private copy of a user's encoder or decoder, so theirs is never trained.

    Its floating-point weights must be float32, the dtype of the batches:
    a float64 module passed the output check (which probes it in its own
    dtype) and then failed in training on torch's bare dtype error.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"{name} must be None or a torch.nn.Module; got {type(module).__name__}.")
    dtypes = sorted({str(tensor.dtype).removeprefix("torch.")
                     for tensor in [*module.parameters(), *module.buffers()]
                     if tensor.is_floating_point() and tensor.dtype != torch.float32})
    if dtypes:
        why = ""
        if torch.get_default_dtype() != torch.float32:
            why = (f" (torch's default dtype is {torch.get_default_dtype()} here, set by "
                   "torch.set_default_dtype, so modules built now take it)")
        raise ValueError(
            f"{name} has {', '.join(dtypes)} weights{why}; BetaVAETransformer trains in float32, "
            f"the dtype of its batches, so its modules must be float32: pass {name}=module.float()."
        )
    return copy.deepcopy(module)


def check_module_outputs(module, n_features, n_components, default_dist, n_covariates=0):
    """Run one tiny batch through the VAE and explain any shape or range mismatch."""
    probe = torch.zeros(2, n_features + n_covariates, dtype=next(module.parameters()).dtype,
                        device=next(module.parameters()).device)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            encoded = _call(module.encoder, probe, "encoder", n_features, n_covariates)
            if not (isinstance(encoded, (tuple, list)) and len(encoded) == 2):
                raise ValueError(
                    "encoder must return a pair (mu, logvar); got "
                    f"{type(encoded).__name__}."
                )
            for part, tensor in zip(("mu", "logvar"), encoded):
                if tuple(tensor.shape) != (2, n_components):
                    raise ValueError(
                        f"encoder's {part} must have shape (batch_size, n_components) = "
                        f"(2, {n_components}) on a batch of 2; got {tuple(tensor.shape)}."
                    )
            decoded = _call(module.decoder, module.decoder_input(encoded[0], probe), "decoder",
                            n_components, n_covariates)
            if tuple(decoded.shape) != (2, n_features):
                raise ValueError(
                    f"decoder must return shape (batch_size, n_features) = (2, {n_features}) "
                    f"on a batch of 2; got {tuple(decoded.shape)}."
                )
            if default_dist == "bernoulli" and not ((decoded >= 0) & (decoded <= 1)).all():
                raise ValueError(
                    'With default_dist="bernoulli" the decoder must return probabilities '
                    "in [0, 1] (end it with a sigmoid); it returned values in "
                    f"[{decoded.min().item():g}, {decoded.max().item():g}]."
                )
    finally:
        module.train(was_training)


def _call(part, batch, name, width, n_covariates):
    """``part(batch)``; with covariates, a failure explains what the part reads."""
    if not n_covariates:
        return part(batch)
    try:
        return part(batch)
    except (RuntimeError, ValueError, IndexError) as error:
        reads = "X's" if name == "encoder" else "the code's"
        raise ValueError(
            f"With covariates the {name} reads rows of {width} + {n_covariates} columns: "
            f"{reads} {width} followed by the {n_covariates} encoded covariate columns (see "
            f"BetaVAETransformer's covariates). Your own {name} failed on a batch of that "
            f"width ({type(error).__name__}: {error}); make it take {width + n_covariates} "
            "input columns."
        ) from error


def check_hidden_layer_sizes(hidden_layer_sizes):
    """``hidden_layer_sizes`` as a tuple of positive ints (an int is one layer)."""
    sizes = hidden_layer_sizes
    sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
    if not all(isinstance(s, Integral) and s >= 1 for s in sizes):
        raise ValueError(
            "hidden_layer_sizes must be a tuple of positive integers; "
            f"got {hidden_layer_sizes!r}."
        )
    return tuple(int(s) for s in sizes)


def check_standardize(standardize, default_dist):
    """How to standardize: True (per feature), "global" or False. "auto" is
    "global" for the normal and laplace decoders (the PCA start is then PCA
    of the data as they are, in every width: issue 32 measured per-feature
    z-scoring of 64 digit pixels 0.073 behind PCA's held-out R^2, as a
    near-constant pixel's rare value is raised a hundredfold) and False for
    Bernoulli data, which must stay in [0, 1]."""
    if standardize == "auto":
        return False if default_dist == "bernoulli" else "global"
    if standardize and default_dist == "bernoulli":
        raise ValueError(
            f'standardize={standardize!r} cannot be used with default_dist="bernoulli": the '
            'data must stay in [0, 1]. Use standardize="auto" or False.'
        )
    return "global" if standardize == "global" else bool(standardize)


def check_init(init, default_dist, encoder, decoder):
    """The start of a new network, "pca" or "random"; "auto" is "pca" for
    the built-in normal decoder and "random" otherwise."""
    builtin = encoder is None and decoder is None
    if init == "auto":
        return "pca" if builtin and default_dist == "normal" else "random"
    if init == "pca" and not builtin:
        raise ValueError(
            'init="pca" starts the built-in encoder and decoder at probabilistic PCA; '
            'with your own encoder or decoder use init="random" (or "auto"), and '
            "initialise your modules as you wish."
        )
    if init == "pca" and default_dist != "normal":
        raise ValueError(
            'init="pca" is the optimum of the loss with default_dist="normal" only (squared '
            f'error); got default_dist={default_dist!r}. Use init="random" (or "auto").'
        )
    return init


# "auto" keeps Adam's learning rate for inputs up to this width and scales it
# by width / n_features beyond (benchmarks/README.md, issue 15).
INPUT_LR_REFERENCE_WIDTH = 64


def check_input_lr_scale(input_lr_scale, encoder):
    """A float ``input_lr_scale`` other than 1 needs the built-in encoder."""
    if encoder is not None and input_lr_scale not in ("auto", 1):
        raise ValueError(
            "input_lr_scale scales the learning rate of the built-in encoder's input "
            f"weights; with your own encoder it must be 'auto' or 1, got {input_lr_scale!r} "
            "(one learning rate, learning_rate_init, for all weights)."
        )


def input_lr_factor(input_lr_scale, n_features, encoder):
    """The factor on ``learning_rate_init`` for the built-in encoder's input
    weights: ``"auto"`` is ``min(1, 64 / n_features)``, and 1 with your own
    encoder, whose weights are not known."""
    if input_lr_scale != "auto":
        return float(input_lr_scale)
    return 1.0 if encoder is not None else min(1.0, INPUT_LR_REFERENCE_WIDTH / n_features)


# max_iter="auto" (issue 32; benchmarks/README.md, "Issue 32: real maps, and
# a training budget for few, wide rows"): with fewer rows than features the
# MLP path begins to memorise the training rows after 10-30 epochs (held-out
# R^2 falls below PCA's on real activation maps and every simulated
# population of 300 to 1,000 subjects), and 10 epochs kept every such set
# within 0.004 of PCA's held-out R^2 or ahead; with more rows than features
# (digits) 200 epochs are needed to get back to PCA from per-feature scaling.
AUTO_MAX_ITER = 200
AUTO_MAX_ITER_WIDE = 10


def resolve_max_iter(max_iter, n_samples, n_features):
    """The number of epochs: ``max_iter``, or for ``"auto"`` 200, and 10
    when the rows are fewer than the features."""
    if max_iter != "auto":
        return max_iter
    return AUTO_MAX_ITER_WIDE if n_samples < n_features else AUTO_MAX_ITER


def check_validation_split(validation_fraction, n_samples):
    """Early stopping needs at least one sample on each side of the split."""
    n_valid = int(np.ceil(validation_fraction * n_samples))
    if n_valid < 1 or n_samples - n_valid < 1:
        raise ValueError(
            f"early_stopping=True holds out validation_fraction={validation_fraction} "
            f"of the {n_samples} samples ({n_valid}), which leaves "
            f"{n_samples - n_valid} to train on; both need at least one sample. "
            "Pass more samples, change validation_fraction, or set early_stopping=False."
        )
