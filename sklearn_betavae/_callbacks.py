"""The training logic that skorch's callback API is made for.

``KLWarmup`` schedules the KL term's weight in the manner of skorch's
``LRScheduler``; ``LastFiniteState`` keeps the last finite state of a
training run and rolls back to it, in the manner of
``EarlyStopping(load_best=True)``, and warns when a run diverged. Both are
default callbacks of ``BetaVAENet``, named ``"kl_warmup"`` and
``"last_finite_state"``, so they come before the user's callbacks: an epoch
whose ``on_epoch_end`` a user's callback (or early stopping) interrupts has
been kept.
"""

import warnings

import torch
from sklearn.exceptions import ConvergenceWarning
from skorch.callbacks import Callback, EarlyStopping


class KLWarmup(Callback):
    """KL annealing (Bowman et al., 2016): the KL term's weight in the gradient step.

    At the start of epoch ``e`` of the net's history it sets
    ``net.kl_weight_`` to ``min(1, e / epochs)``, which ``BetaVAENet``'s
    training step multiplies ``beta`` by; 1 throughout when ``epochs`` is 0.
    The recorded losses always use the full ``beta``, so the history and
    early stopping see the objective itself. A warm start continues the
    schedule where the history is, so it is not repeated.

    Parameters
    ----------
    epochs : int, default=0
        Epochs over which the weight rises to 1.
    """

    def __init__(self, epochs=0):
        self.epochs = epochs

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history)
        net.kl_weight_ = min(1.0, epoch / self.epochs) if self.epochs else 1.0


class LastFiniteState(Callback):
    """Keeps a training run's last finite state, and ends the run from it when needed.

    At the start of a run (its first ``on_epoch_begin``, after which no
    callback such as ``LoadInitState`` replaces the weights any more) and at
    the end of each epoch, it keeps a copy of the weights, Adam's state and
    the run's CPU random generator, whenever they are all finite.
    ``roll_back`` returns the net to that copy, its history included, so
    that training can continue from there exactly.

    ``end_run`` then decides how the run ends. It is called by the training
    code after ``partial_fit`` returns, not from ``on_train_end``: skorch
    calls the callbacks' ``on_train_end`` in order, and the decision must
    see what all of them did (early stopping's load of its best epoch, a
    user's callback that changes the weights).
    """

    def initialize(self):
        self.forget()
        return self

    def on_epoch_begin(self, net, **kwargs):
        if self.run_start_ is None:
            self.run_start_ = self.epochs_completed_ = len(net.history) - 1
            self._keep_if_finite(net)

    def on_epoch_end(self, net, **kwargs):
        self.epochs_completed_ = len(net.history)
        self._keep_if_finite(net)

    def _keep_if_finite(self, net):
        # The last step of an epoch can overflow the weights after its loss was
        # checked, so "finite loss" alone does not make the state usable.
        weights = net.module_.state_dict()
        optimizer = net.optimizer_.state_dict()
        if not all_finite(weights, optimizer):
            return
        self.kept_ = {
            "epochs": self.epochs_completed_,
            "weights": {name: value.detach().clone() for name, value in weights.items()},
            "optimizer": _clone_optimizer_state(optimizer),
            "rng": _generator(net).get_state(),
        }

    def roll_back(self, net):
        """Return ``net`` to the last finite state kept.

        Weights, Adam's state, the CPU random generator and the history all
        go back to how they were when that epoch ended (or when the run
        began). Returns the number of epochs in the history afterwards, or
        None (changing nothing) when no finite state was kept.
        """
        if self.kept_ is None:
            return None
        net.module_.load_state_dict(self.kept_["weights"])
        net.optimizer_.load_state_dict(self.kept_["optimizer"])
        _generator(net).set_state(self.kept_["rng"])
        net.truncate_history(self.kept_["epochs"])
        self.epochs_completed_ = self.kept_["epochs"]
        return self.kept_["epochs"]

    def end_run(self, net, interrupted=False):
        """End a run that ``partial_fit`` returned from (``interrupted``: by a
        ``KeyboardInterrupt`` it let through).

        An interrupted run (skorch swallows a ``KeyboardInterrupt`` during
        the epochs) rolls back to the end of its last completed epoch with a
        warning, or raises ``KeyboardInterrupt`` when none completed. A run
        whose weights are not finite at the end rolls back and raises
        ``FloatingPointError``. A finite run whose training loss blew up
        warns with a ``ConvergenceWarning``.
        """
        start = len(net.history) if self.run_start_ is None else self.run_start_
        completed = len(net.history) if self.epochs_completed_ is None else self.epochs_completed_
        interrupted = interrupted or len(net.history) > completed or (
            completed - start < net.max_epochs and not _stopped_early(net)
        )
        if interrupted:
            restored = self.roll_back(net)
            completed = len(net.history) if restored is None else restored
            if not completed:
                raise KeyboardInterrupt("fit was interrupted before completing an epoch.")
            warnings.warn(
                f"Training was interrupted after {completed - start} of {net.max_epochs} "
                f"epochs; the model is the one at the end of epoch {completed}. Fit again "
                "with warm_start=True to continue.",
                UserWarning,
                stacklevel=5,
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
                f"learning_rate_init, or check the scale of the data. {self.kept(self.roll_back(net))}"
            )
        _warn_if_diverged(net, start)

    @staticmethod
    def kept(epochs):
        """What a roll-back to ``epochs`` kept, for an error message."""
        if epochs:
            return f"The network keeps its state from the end of epoch {epochs}, the last finite one."
        return "No epoch was completed, so no weights are kept."

    def forget(self):
        """Drop the run's kept state and counters (nothing of a run is pickled)."""
        self.kept_ = self.run_start_ = self.epochs_completed_ = None


def all_finite(weights, optimizer):
    """Whether every floating-point tensor of a module's and an optimizer's
    ``state_dict`` is finite, on whatever devices they are."""
    by_device = {}
    for value in [
        *weights.values(),
        *(value for state in optimizer["state"].values() for value in state.values()),
    ]:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            by_device.setdefault(value.device, []).append(value)
    # One fused reduction per device instead of a check per tensor: the
    # max-norm is finite exactly when every entry is (and, unlike the L2 norm,
    # cannot overflow on finite entries). Per device, because an optimizer's
    # state need not be where the weights are (Adam without fused=True keeps
    # its step counts on the CPU next to CUDA weights) and one reduction
    # cannot span two devices.
    return all(
        bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors, float("inf")))).all())
        for tensors in by_device.values()
    )


def _generator(net):
    """The CPU generator of this run: the fit's own, else torch's global one."""
    generator = getattr(net, "generator_", None)
    return torch.random.default_generator if generator is None else generator


def _clone_optimizer_state(state_dict):
    """A copy of an optimizer's ``state_dict`` that later steps cannot change.

    Cheaper than ``copy.deepcopy``, which walks every tensor in Python.
    """
    return {
        "state": {
            index: {key: value.clone() if isinstance(value, torch.Tensor) else value
                    for key, value in state.items()}
            for index, state in state_dict["state"].items()
        },
        "param_groups": [dict(group) for group in state_dict["param_groups"]],
    }


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
            stacklevel=5,
        )


def _stopped_early(net):
    # skorch's EarlyStopping stops a run with the KeyboardInterrupt a user's
    # Ctrl-C also raises; its count of misses tells them apart.
    return any(
        isinstance(callback, EarlyStopping) and callback.misses_ >= callback.patience
        for _, callback in net.callbacks_
    )
