"""The training logic that skorch's callback API is made for.

``KLWarmup`` schedules the KL term's weight in the manner of skorch's
``LRScheduler``; ``LastFiniteState`` keeps the last finite state of a
training run and rolls back to it, in the manner of
``EarlyStopping(load_best=True)`` (how a run ends is decided by
``_training.train``, which owns the run). Both are
default callbacks of ``BetaVAENet``, named ``"kl_warmup"`` and
``"last_finite_state"``, so they come before the user's callbacks: an epoch
whose ``on_epoch_end`` a user's callback (or early stopping) interrupts has
been kept.
"""

import torch
from skorch.callbacks import Callback


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
    that training can continue from there exactly. It also records where
    the run started (``run_start_``) and how many epochs of the history
    were completed (``epochs_completed_``), for ``_training.train`` to tell
    an interrupted run from a finished one.
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
    # Per device, because an optimizer's state need not be where the weights
    # are (Adam without fused=True keeps its step counts on the CPU next to
    # CUDA weights) and one reduction cannot span two devices. The max-norm is
    # finite exactly when every entry is (and, unlike the L2 norm, cannot
    # overflow on finite entries); one synchronising read per device.
    return all(
        bool(torch.isfinite(torch.stack([torch.linalg.vector_norm(t, float("inf")) for t in tensors])).all())
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
