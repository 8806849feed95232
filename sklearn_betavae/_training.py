"""Building the skorch net behind the estimator, and running its training.

Training runs with random generators of its own (torch's global ones are
never used, so the caller's RNG state is the same afterwards, and fits in
threads at once are each reproducible). An error during training (a non-finite
loss above all) rolls the network back to the end of the last epoch with a
finite state before it is raised, and a ``KeyboardInterrupt`` (which skorch
swallows) rolls back to the end of the last completed epoch, with a warning.
"""

from contextlib import contextmanager
from functools import partial, wraps

import torch
from skorch.dataset import ValidSplit

from ._data import RowDataset, SliceLoader
from ._loss import BetaVAELoss
from ._modules import MLPEncoder, VAEModule
from ._net import BetaVAENet
from ._validation import check_user_module


def outside_inference_mode(function):
    """Run ``function`` with ``torch.inference_mode`` off, whatever the caller's mode.

    Inside ``torch.inference_mode()`` no tensor made can ever take part in
    autograd, unlike ``torch.no_grad()``, which skorch's training step
    overrides: ``fit`` died on "element 0 of tensors does not require grad",
    and the tensors it had made (Adam's state, the weights of a model loaded
    there) broke every later warm start ("Inplace update to inference tensor
    outside InferenceMode"). Training and loading therefore switch the mode
    off for their duration, and restore the caller's after.
    """

    @wraps(function)
    def wrapper(*args, **kwargs):
        with torch.inference_mode(False):
            return function(*args, **kwargs)

    return wrapper


def without_inference_tensors(net):
    """Replace the inference tensors of a fitted net (its weights, buffers
    and Adam's state) by ordinary copies, in place; returns ``net``.

    A model unpickled inside ``torch.inference_mode()`` holds them (torch
    makes every tensor there one), and no later training could update them
    ("Inplace update to inference tensor outside InferenceMode"). New
    parameters replace such ones in the module and in the optimizer.
    """
    replaced = {}
    with torch.inference_mode(False):
        for module in net.module_.modules():
            for name, tensor in list(module._parameters.items()):
                if tensor is not None and tensor.is_inference():
                    replaced[tensor] = module._parameters[name] = torch.nn.Parameter(
                        tensor.detach().clone(), requires_grad=tensor.requires_grad)
            for name, tensor in list(module._buffers.items()):
                if tensor is not None and tensor.is_inference():
                    module._buffers[name] = tensor.clone()
        optimizer = net.optimizer_
        for group in optimizer.param_groups:
            group["params"] = [replaced.get(param, param) for param in group["params"]]
        states = list(optimizer.state.items())
        optimizer.state.clear()
        for param, state in states:
            optimizer.state[replaced.get(param, param)] = {
                key: value.clone() if isinstance(value, torch.Tensor) and value.is_inference() else value
                for key, value in state.items()
            }
    return net


def fused_adam(params, **kwargs):
    """``torch.optim.Adam`` with its fused kernels where this torch has them.

    One kernel per step for all parameters instead of a few per tensor: on a
    2-core CPU it cut the epoch time by 16-20% (``benchmarks/README.md``),
    and it removes kernel launches on a GPU. Falls back to the default
    implementation where fused Adam is not available for these tensors.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, **kwargs)


def build_net(architecture, *, n_features, encoder, decoder, warmup_epochs, device, training,
              accelerator=None, input_groups=True):
    """An uninitialised ``BetaVAENet`` for this architecture.

    ``architecture`` holds ``n_components``, ``hidden_layer_sizes``,
    ``default_dist`` and ``linear_path``; ``encoder`` and ``decoder`` are the user's modules
    (deep-copied here, never trained in place) or None. ``training`` holds
    the settings that may change between fits of one network (see
    ``configure_training``). With an ``accelerator`` the net is an
    ``AcceleratedBetaVAENet``, which the accelerator places on its device.

    The built-in encoder's input weights get optimizer parameter groups of
    their own (skorch's ``optimizer__param_groups``, marked
    ``reads_input``), whose learning rate is ``training["input_lr_scale"]``
    times the others'; ``input_groups=False`` gives one group for all, as
    models saved before the scale existed have.
    """
    groups = []
    if encoder is None and input_groups:
        input_lr = training["lr"] * training["input_lr_scale"]
        names = MLPEncoder.input_weight_names(architecture["hidden_layer_sizes"],
                                              architecture["linear_path"])
        groups = [(f"encoder.{name}", {"lr": input_lr, "reads_input": True}) for name in names]
    if accelerator is None:
        net_class, loader, placement = BetaVAENet, SliceLoader, {"device": str(device)}
    else:
        from ._distributed import AcceleratedBetaVAENet, batch_loader

        net_class, loader = AcceleratedBetaVAENet, batch_loader
        placement = {"device": None, "accelerator": accelerator}
    net = net_class(
        module=VAEModule,
        module__n_features=n_features,
        module__n_components=architecture["n_components"],
        module__hidden_layer_sizes=architecture["hidden_layer_sizes"],
        module__default_dist=architecture["default_dist"],
        module__linear_path=architecture["linear_path"],
        module__encoder=None if encoder is None else check_user_module(encoder, "encoder"),
        module__decoder=None if decoder is None else check_user_module(decoder, "decoder"),
        criterion=None,
        optimizer=fused_adam,
        optimizer__param_groups=groups,
        callbacks__kl_warmup__epochs=warmup_epochs,
        dataset=RowDataset,
        iterator_train=loader,
        iterator_train__shuffle=True,
        iterator_valid=loader,
        **placement,
    )
    configure_training(net, **training)
    return net


def configure_training(
    net,
    *,
    beta,
    default_dist,
    lr,
    input_lr_scale,
    max_epochs,
    batch_size,
    validation_fraction,
    split_seed,
    callbacks,
    verbose,
):
    """Set what a (possibly already trained) net's next training run uses.

    Assigned directly rather than through ``set_params``: that would
    re-initialise the optimizer and lose Adam's state on a warm start.
    ``input_lr_scale`` multiplies ``lr`` in the groups that read the input.
    """
    # skorch accepts criterion__* arguments only for nn.Module criteria.
    net.criterion = partial(BetaVAELoss, beta=beta, default_dist=default_dist)
    net.lr = lr
    net.max_epochs = max_epochs
    net.batch_size = batch_size
    net.train_split = (
        None if validation_fraction is None
        else ValidSplit(validation_fraction, random_state=split_seed)
    )
    net.callbacks = callbacks
    net.verbose = verbose
    if net.initialized_:
        net.initialize_criterion()
        net.initialize_callbacks()
        for group in net.optimizer_.param_groups:
            group["lr"] = lr * input_lr_scale if group.get("reads_input") else lr


def reads_input_separately(param_groups):
    """Whether an optimizer's ``param_groups`` (of a live optimizer or a
    saved ``state_dict``) have the input-weight groups (optimizers saved or
    pickled before they existed have one group)."""
    return any(group.get("reads_input") for group in param_groups)


@contextmanager
def private_rng(net, cpu_state, device):
    """Run the block with the fit's own random generators, never torch's global ones.

    A CPU ``torch.Generator`` in state ``cpu_state`` draws the initial
    weights, the shuffling and (on the CPU) the reparameterisation noise, in
    that order, as torch's global generator did before; on a GPU the noise
    comes from a generator on that device seeded from it. The net finds them
    as ``generator_``, ``noise_generator_`` and ``iterator_train__generator``
    for the block's duration (generators do not pickle). Fits in several
    threads at once are therefore each reproducible, and the caller's RNG
    states are never touched.

    Yields a callable giving the CPU generator's current state (as a NumPy
    array, which pickles without torch), so that a later run can continue the
    same random stream (a warm start).
    """
    generator = torch.Generator()
    generator.set_state(torch.as_tensor(cpu_state, dtype=torch.uint8))
    noise = generator
    if device.type == "cuda":
        noise = torch.Generator(device=device)
        noise.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
    names = ("generator_", "noise_generator_", "iterator_train__generator")
    for name, value in zip(names, (generator, noise, generator)):
        setattr(net, name, value)
    try:
        yield lambda: generator.get_state().numpy()
    finally:
        for name in names:
            vars(net).pop(name, None)


def seed_state(seed):
    """The CPU generator state that ``torch.manual_seed(seed)`` gives."""
    return torch.Generator().manual_seed(seed).get_state()


def train(net, X_train):
    """``net.partial_fit(X_train)``, with failures and interrupts handled by
    the net's ``LastFiniteState`` callback.

    Raises
    ------
    FloatingPointError
        When the loss stops being finite, with a message saying which epoch's
        state the net was rolled back to (or that there was none).
    Exception
        Any other error during training, after the same roll-back.
    KeyboardInterrupt
        When interrupted before any epoch was completed (also from a
        callback's ``on_train_begin`` or ``on_train_end``, which skorch does
        not catch); later, the run ends with a warning, rolled back to the
        end of its last completed epoch.
    """
    guard = net.last_finite_state()
    try:
        try:
            net.partial_fit(X_train, None)
        except KeyboardInterrupt:
            # From a callback's on_train_begin or on_train_end, which skorch
            # does not catch: the same interrupt all the same.
            guard.end_run(net, interrupted=True)
        except Exception as error:
            # Keep the epochs that finished (hours of work on a large study);
            # never the weights of a half-done or diverged one.
            epochs = guard.roll_back(net)
            if isinstance(error, FloatingPointError):
                raise FloatingPointError(f"{error} {guard.kept(epochs)}") from error
            raise
        else:
            guard.end_run(net)
    finally:
        guard.forget()
        net.end_run()
