"""Building the skorch net behind the estimator, and running its training.

Training runs with random generators of its own (torch's global ones are
never used, so the caller's RNG state is the same afterwards, and fits in
threads at once are each reproducible). An error during training (a non-finite
loss above all) rolls the network back to the end of the last epoch with a
finite state before it is raised, and a ``KeyboardInterrupt`` (which skorch
swallows) rolls back to the end of the last completed epoch, with a warning.
"""

from contextlib import contextmanager
from dataclasses import asdict, dataclass
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


@dataclass(frozen=True)
class Architecture:
    """What the network is, fixed for the model's life (a warm start keeps it).

    Built once by ``BetaVAETransformer.fit`` from its parameters and the
    data's width; saved in the model file as ``to_json()``.

    Parameters
    ----------
    n_components : int
    hidden_layer_sizes : tuple of int
        The encoder's widths (the built-in decoder mirrors them).
    default_dist : {"normal", "laplace", "bernoulli"}
    standardize : bool or "global"
        The scaling ``fit`` resolved ("auto" made concrete).
    """

    n_components: int
    hidden_layer_sizes: tuple
    default_dist: str
    standardize: object

    @classmethod
    def from_json(cls, document):
        """The inverse of ``to_json``; ``document`` must have been checked."""
        return cls(**{**document, "hidden_layer_sizes": tuple(document["hidden_layer_sizes"])})

    def to_json(self):
        return {**asdict(self), "hidden_layer_sizes": list(self.hidden_layer_sizes)}


@dataclass(frozen=True)
class TrainingSettings:
    """What one training run of a net uses: what may change between the
    fits of one network. Built by ``BetaVAETransformer`` for each ``fit``
    from its parameters and the data's shape; ``configure_training`` sets
    them on the net."""

    beta: float
    lr: float
    input_lr_scale: float
    max_epochs: int
    batch_size: int
    validation_fraction: object  # None: no validation split
    split_seed: int
    callbacks: list
    verbose: int


def build_net(architecture, *, n_features, encoder, decoder, warmup_epochs, device,
              accelerator=None):
    """An uninitialised ``BetaVAENet`` for ``architecture`` (an ``Architecture``),
    for a new fit and for loading a saved model alike.

    ``encoder`` and ``decoder`` are the user's modules (deep-copied here,
    never trained in place) or None. With an ``accelerator`` the net is an
    ``AcceleratedBetaVAENet``, which the accelerator places on its device.
    The built-in encoder's input weights get optimizer parameter groups of
    their own (skorch's ``optimizer__param_groups``, marked
    ``reads_input``), whose learning rate ``configure_training`` sets.
    What a training run uses is set by ``configure_training``: before it,
    the net only holds a model (a loaded one gets its learning rates from
    the optimizer's saved state).
    """
    groups = []
    if encoder is None:
        names = MLPEncoder.input_weight_names(architecture.hidden_layer_sizes)
        groups = [(f"encoder.{name}", {"reads_input": True}) for name in names]
    if accelerator is None:
        net_class, loader, placement = BetaVAENet, SliceLoader, {"device": str(device)}
    else:
        from ._distributed import AcceleratedBetaVAENet, batch_loader

        net_class, loader = AcceleratedBetaVAENet, batch_loader
        placement = {"device": None, "accelerator": accelerator}
    return net_class(
        module=VAEModule,
        module__n_features=n_features,
        module__n_components=architecture.n_components,
        module__hidden_layer_sizes=architecture.hidden_layer_sizes,
        module__default_dist=architecture.default_dist,
        module__encoder=None if encoder is None else check_user_module(encoder, "encoder"),
        module__decoder=None if decoder is None else check_user_module(decoder, "decoder"),
        # skorch accepts criterion__* arguments only for nn.Module criteria.
        criterion=partial(BetaVAELoss, default_dist=architecture.default_dist),
        optimizer=fused_adam,
        optimizer__param_groups=groups,
        callbacks__kl_warmup__epochs=warmup_epochs,
        dataset=RowDataset,
        iterator_train=loader,
        iterator_train__shuffle=True,
        iterator_valid=loader,
        **placement,
    )


def configure_training(net, settings):
    """Set what a (new or already trained) net's next training run uses.

    Assigned directly rather than through ``set_params``: that would
    re-initialise the optimizer and lose Adam's state on a warm start.
    ``settings.input_lr_scale`` multiplies the learning rate in the groups
    that read the input.
    """
    net.criterion = partial(net.criterion.func, **{**net.criterion.keywords, "beta": settings.beta})
    net.lr = settings.lr
    net.max_epochs = settings.max_epochs
    net.batch_size = settings.batch_size
    net.train_split = (
        None if settings.validation_fraction is None
        else ValidSplit(settings.validation_fraction, random_state=settings.split_seed)
    )
    net.callbacks = settings.callbacks
    net.verbose = settings.verbose
    input_lr = settings.lr * settings.input_lr_scale
    if not net.initialized_:
        net.optimizer__param_groups = [
            (names, {**options, "lr": input_lr}) for names, options in net.optimizer__param_groups
        ]
        return
    net.initialize_criterion()
    net.initialize_callbacks()
    for group in net.optimizer_.param_groups:
        group["lr"] = input_lr if group.get("reads_input") else settings.lr


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
