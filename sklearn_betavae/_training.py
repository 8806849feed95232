"""Building the skorch net behind the estimator, and running its training.

Training runs with random generators of its own (torch's global ones are
never used, so the caller's RNG state is the same afterwards, and fits in
threads at once are each reproducible). An error during training (a non-finite
loss above all) rolls the network back to the end of the last epoch with a
finite state before it is raised, and a ``KeyboardInterrupt`` (which skorch
swallows) rolls back to the end of the last completed epoch, with a warning.
"""

import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial, wraps

import torch
from sklearn.exceptions import ConvergenceWarning
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit

from ._callbacks import all_finite
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
    n_covariates : int, default=0
        The number of encoded covariate columns the network reads beside
        the data and the code (0: not conditioned).
    """

    n_components: int
    hidden_layer_sizes: tuple
    default_dist: str
    standardize: object
    n_covariates: int = 0

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
        module__n_covariates=architecture.n_covariates,
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
    comes from a generator on that device seeded from its state (without
    advancing it, so that the weights and the shuffling are the CPU's). The
    net finds them as ``generator_``, ``noise_generator_`` and
    ``iterator_train__generator`` for the block's duration (generators do not pickle). Fits in several
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
        # Seeded from a copy: the weights and the shuffling then draw what
        # they draw on the CPU, so a seed starts a GPU fit where it starts a
        # CPU fit.
        seeder = torch.Generator()
        seeder.set_state(generator.get_state())
        noise = torch.Generator(device=device)
        noise.manual_seed(int(torch.randint(2**62, (1,), generator=seeder)))
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


def run_training(net, X_train, rng_state, device, *, start, record):
    """One training run of ``net`` on ``X_train``, from the random state
    ``rng_state``: the one place that owns a run.

    Inside the run's own random generators (``private_rng``), ``start()``
    first prepares a net that is not initialised yet (initialisation, the
    PCA start), then ``train`` trains it, rolling back on failure or
    interrupt. Whatever happens, ``record(rng_state=..., n_iter=...)`` is
    then called with the generator's state to continue from (None when the
    run never got its generators) and the number of epochs in the history
    (0 when the net has none), before any error propagates.
    """
    current = None
    try:
        with private_rng(net, rng_state, device) as current_rng_state:
            try:
                if not net.initialized_:
                    start()
                train(net, X_train)
            finally:
                current = current_rng_state()
    finally:
        # No history yet when the net failed to initialise (a callback's
        # initialize() raised, say): 0 epochs, and the user's error is the
        # one raised.
        history = getattr(net, "history", None)
        record(rng_state=current, n_iter=0 if history is None else len(history))


def train(net, X_train):
    """``net.partial_fit(X_train)``, ended the way the run deserves.

    The net's ``LastFiniteState`` callback keeps the last finite state; how
    the run ends is decided here, after ``partial_fit`` returns rather than
    in ``on_train_end``: skorch calls the callbacks' ``on_train_end`` in
    order, and the decision must see what all of them did (early stopping's
    load of its best epoch, a user's callback that changes the weights).

    Raises
    ------
    FloatingPointError
        When the loss stops being finite, with a message saying which epoch's
        state the net was rolled back to (or that there was none); or when
        the weights are not finite at the end of the run (an update that
        overflowed after its loss was checked), after the same roll-back.
    Exception
        Any other error during training, after the same roll-back.
    KeyboardInterrupt
        When interrupted before any epoch was completed (also from a
        callback's ``on_train_begin`` or ``on_train_end``, which skorch does
        not catch); later, the run ends with a warning, rolled back to the
        end of its last completed epoch.

    Warns
    -----
    ConvergenceWarning
        When a finite run's training loss blew up (see ``DIVERGED_RATIO``).
    """
    guard = net.last_finite_state()
    try:
        try:
            net.partial_fit(X_train, None)
        except KeyboardInterrupt:
            # From a callback's on_train_begin or on_train_end, which skorch
            # does not catch: the same interrupt all the same.
            _end_run(net, guard, interrupted=True)
        except Exception as error:
            # Keep the epochs that finished (hours of work on a large study);
            # never the weights of a half-done or diverged one.
            epochs = guard.roll_back(net)
            if isinstance(error, FloatingPointError):
                raise FloatingPointError(f"{error} {_kept(epochs)}") from error
            raise
        else:
            _end_run(net, guard)
    finally:
        guard.forget()
        net.end_run()


def _end_run(net, guard, interrupted=False):
    """End a run that ``partial_fit`` returned from (``interrupted``: by a
    ``KeyboardInterrupt`` it let through).

    An interrupted run (skorch swallows a ``KeyboardInterrupt`` during the
    epochs) rolls back to the end of its last completed epoch with a
    warning, or raises ``KeyboardInterrupt`` when none completed. A run
    whose weights are not finite at the end rolls back and raises
    ``FloatingPointError``. A finite run whose training loss blew up warns
    with a ``ConvergenceWarning``.
    """
    start = len(net.history) if guard.run_start_ is None else guard.run_start_
    completed = len(net.history) if guard.epochs_completed_ is None else guard.epochs_completed_
    interrupted = interrupted or len(net.history) > completed or (
        completed - start < net.max_epochs and not _stopped_early(net)
    )
    if interrupted:
        restored = guard.roll_back(net)
        completed = len(net.history) if restored is None else restored
        if not completed:
            raise KeyboardInterrupt("fit was interrupted before completing an epoch.")
        warnings.warn(
            f"Training was interrupted after {completed - start} of {net.max_epochs} "
            f"epochs; the model is the one at the end of epoch {completed}. Fit again "
            "with warm_start=True to continue.",
            UserWarning,
            stacklevel=6,
        )
        return
    if not all_finite(net.module_.state_dict(), {"state": {}}):
        # Every loss was finite, but the last update (or a callback after
        # it) left non-finite weights: never end a fit holding them. Adam's
        # state is not checked: its second moments can overflow to inf on a
        # finite divergence while the weights stay usable.
        epoch = len(net.history)
        raise FloatingPointError(
            f"The weights became non-finite at epoch {epoch}, after its last loss was "
            "checked (an update that overflowed, or a callback). Lower "
            f"learning_rate_init, or check the scale of the data. {_kept(guard.roll_back(net))}"
        )
    _warn_if_diverged(net, start)


def _kept(epochs):
    """What a roll-back to ``epochs`` kept, for an error message."""
    if epochs:
        return f"The network keeps its state from the end of epoch {epochs}, the last finite one."
    return "No epoch was completed, so no weights are kept."


# A finite run whose last training loss is this many times its lowest one
# has diverged (the loss is a sum of non-negative terms).
DIVERGED_RATIO = 10.0


def _warn_if_diverged(net, start):
    """Warn when this run's training loss blew up while staying finite.

    Not when early stopping restored its best epoch: the model is then not
    the last epoch's.
    """
    if any(isinstance(callback, EarlyStopping) and callback.load_best for _, callback in net.callbacks_):
        return
    losses = list(net.history[start:, "train_loss"])
    if not losses:
        return
    lowest = min(losses)
    if lowest > 0 and losses[-1] > DIVERGED_RATIO * lowest:
        warnings.warn(
            f"Training diverged: the training loss rose from {lowest:.4g} (epoch "
            f"{start + 1 + losses.index(lowest)}) to {losses[-1]:.4g} (epoch {len(net.history)}), "
            "though it stayed finite; the model is the last epoch's. Lower "
            "learning_rate_init, or set early_stopping=True to keep the best epoch.",
            ConvergenceWarning,
            stacklevel=6,
        )


def _stopped_early(net):
    # skorch's EarlyStopping stops a run with the KeyboardInterrupt a user's
    # Ctrl-C also raises; its count of misses tells them apart.
    return any(
        isinstance(callback, EarlyStopping) and callback.misses_ >= callback.patience
        for _, callback in net.callbacks_
    )
