"""BetaVAENet: a skorch ``NeuralNet`` trained without targets on the beta-VAE loss.

Only skorch's documented hooks are overridden (``get_loss``,
``train_step_single``, ``validation_step``, ``initialize_module``,
``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end``,
``_default_callbacks``) and
``__init__`` gains ``warmup_epochs``; the
training loop, callbacks and history are skorch's own. The two step hooks
do not call ``super()``: skorch's versions need a target and compute one
loss, where these record three terms. ``n_processes``,
``finite_everywhere``, ``backward`` and ``vae_module`` are this class's own
hooks, for the distributed subclass in ``_distributed``.
"""

import math

import torch
from skorch import NeuralNet
from skorch.callbacks import EpochTimer, PassthroughScoring, PrintLog
from skorch.utils import to_tensor
from torch import nn

from ._loss import decoder_distribution, posterior_distribution

LOSS_TERMS = ("loss", "rec_loss", "kl_loss")


class BetaVAENet(NeuralNet):
    """skorch net for a VAE module returning ``(decoder_output, mu, logvar)``.

    The criterion is called as ``criterion(X, p, q)`` and must return a dict
    with ``"loss"``, ``"rec_loss"`` and ``"kl_loss"`` (as ``BetaVAELoss``
    does). The history holds ``train_loss``, ``train_rec_loss``,
    ``train_kl_loss`` per epoch and, with a validation split, the same with
    ``valid_``. A non-finite loss stops training with a ``FloatingPointError``
    naming the epoch and batch, before the optimizer takes that step.

    During a training run the net keeps a copy of its state (weights,
    Adam's state, the run's CPU random generator) as it was when the run
    began and at the end of each epoch, whenever it is all finite, so that
    ``restore_last_good_state`` can roll a failed or interrupted run back to
    the end of an epoch.

    Parameters
    ----------
    warmup_epochs : int, default=0
        KL annealing (Bowman et al., 2016): during the first ``warmup_epochs``
        epochs the gradient step weighs the KL term by ``epoch / warmup_epochs``
        times ``beta``, which keeps latents from collapsing early in training.
        The recorded losses always use the full ``beta``, so the history and
        early stopping see the objective itself.
    **kwargs
        Passed to ``skorch.NeuralNet``.
    """

    def __init__(self, *args, warmup_epochs=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.warmup_epochs = warmup_epochs

    def initialize_module(self):
        """skorch's, but with no draw from torch's global generator.

        The built-in layers are made on the meta device (no weights, no random
        draws), then allocated on the CPU and initialised as ``nn.Linear``
        initialises itself, from ``generator_`` (the fit's own CPU
        generator, or a fresh one when there is none, as on loading): fits
        in several threads then neither disturb each other nor the caller's
        random state. Your own ``encoder``/``decoder`` keep their weights.
        """
        with torch.device("meta"):
            super().initialize_module()
        generator = getattr(self, "generator_", None)
        generator = torch.Generator() if generator is None else generator
        for module in self.module_.modules():
            if any(param.is_meta for param in module.parameters(recurse=False)):
                module.to_empty(device="cpu", recurse=False)
                _reset_linear(module, generator)
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        # The reparameterisation noise draws from the fit's generator on the
        # training device (None: torch's global one); end_run takes it back.
        self.vae_module().noise_generator = getattr(self, "noise_generator_", None)

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        epoch = len(self.history)
        self.kl_weight_ = min(1.0, epoch / self.warmup_epochs) if self.warmup_epochs else 1.0
        if not hasattr(self, "run_start_"):
            # The first epoch of a training run. Here rather than in
            # on_train_begin, after which callbacks such as LoadInitState may
            # still replace the weights and the history.
            self.run_start_ = self.epochs_completed_ = epoch - 1
            self._keep_state_if_finite()

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_end(net, dataset_train, dataset_valid, **kwargs)
        self.epochs_completed_ = len(self.history)
        self._keep_state_if_finite()

    def _keep_state_if_finite(self):
        # The last step of an epoch can overflow the weights after its loss was
        # checked, so "finite loss" alone does not make the state usable.
        weights = self.module_.state_dict()
        optimizer = self.optimizer_.state_dict()
        if not _all_finite(weights, optimizer):
            return
        self.last_good_state_ = {
            "epochs": self.epochs_completed_,
            "weights": {name: value.detach().clone() for name, value in weights.items()},
            "optimizer": _clone_optimizer_state(optimizer),
            "rng": self._generator().get_state(),
        }

    def weights_are_finite(self):
        """Whether the module's weights are all finite now.

        The end of training checks it: the last update of the last epoch (or
        a callback) can overflow the weights after the last loss was checked.
        Adam's state is not checked here: its second moments can overflow to
        inf on a finite divergence while the weights stay finite and usable
        (such a state is only never kept for ``restore_last_good_state``).
        """
        return _all_finite(self.module_.state_dict(), {"state": {}})

    def restore_last_good_state(self):
        """Roll back to the end of the last epoch with a finite state.

        Weights, Adam's state, the CPU random generator and the history all
        go back to how they were when that epoch ended (or when the run
        began), so training can continue from there exactly. Returns the
        number of epochs in the history afterwards, or None (changing
        nothing) when no finite state was kept.
        """
        kept = getattr(self, "last_good_state_", None)
        if kept is None:
            return None
        self.module_.load_state_dict(kept["weights"])
        self.optimizer_.load_state_dict(kept["optimizer"])
        self._generator().set_state(kept["rng"])
        del self.history[kept["epochs"]:]
        self.epochs_completed_ = kept["epochs"]
        return kept["epochs"]

    def _generator(self):
        """The CPU generator of this run: the fit's own, else torch's global one."""
        generator = getattr(self, "generator_", None)
        return torch.random.default_generator if generator is None else generator

    def end_run(self):
        """Drop what was kept for ``restore_last_good_state`` during a run,
        and the run's noise generator (generators do not pickle)."""
        for name in ("last_good_state_", "run_start_", "epochs_completed_"):
            vars(self).pop(name, None)
        if getattr(self, "initialized_", False):
            vars(self.vae_module()).pop("noise_generator", None)

    @property
    def _default_callbacks(self):
        scorings = [
            (f"{prefix}_{term}", PassthroughScoring(name=f"{prefix}_{term}", on_train=prefix == "train"))
            for prefix in ("train", "valid")
            for term in LOSS_TERMS
        ]
        return [("epoch_timer", EpochTimer()), *scorings, ("print_log", PrintLog())]

    def loss_terms(self, y_pred, X):
        """All loss terms of a batch: the criterion's dict."""
        decoder_output, mu, logvar = y_pred
        X = to_tensor(X, device=self.device)
        p = decoder_distribution(decoder_output, self.criterion_.default_dist)
        return self.criterion_(X, p, posterior_distribution(mu, logvar))

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """The total beta-VAE loss of a batch; ``y_true`` is ignored."""
        return self.loss_terms(y_pred, X)["loss"]

    def _record_terms(self, terms, prefix):
        for term in LOSS_TERMS:
            value = terms[term].item()
            if term == "loss" and not self.finite_everywhere(terms[term]):
                if math.isfinite(value):
                    value = "non-finite in another process"
                epoch = len(self.history)
                # skorch has opened this batch's record; earlier ones of this
                # phase hold "<prefix>_loss".
                batches = self.history[-1]["batches"]
                # (With several processes, each step left a record per process.)
                done = sum(f"{prefix}_loss" in record for record in batches[:-1])
                batch = 1 + done // self.n_processes
                raise FloatingPointError(
                    f"The {prefix} loss became {value} at epoch {epoch}, batch {batch}; "
                    "training stopped before that update. Lower learning_rate_init, "
                    "or check the scale of the data."
                )
            if term != "loss":  # skorch records "<prefix>_loss" itself
                self.history.record_batch(f"{prefix}_{term}", value)

    def train_step_single(self, batch, **fit_params):
        if not self.module_.training:  # switching walks every submodule: once per phase
            self._set_training(True)
        Xi, _ = batch
        y_pred = self.infer(Xi, **fit_params)
        terms = self.loss_terms(y_pred, Xi)
        self._record_terms(terms, "train")
        objective = terms["loss"]
        if self.kl_weight_ < 1.0:
            beta = self.criterion_.beta
            objective = terms["rec_loss"] + self.kl_weight_ * beta * terms["kl_loss"]
        self.backward(objective)
        return {"loss": terms["loss"], "y_pred": y_pred}

    @property
    def n_processes(self):
        """How many processes train this net together."""
        return 1

    def finite_everywhere(self, loss):
        """Whether a batch's loss is finite (in every process, for a
        distributed net: all of them must stop together)."""
        return bool(torch.isfinite(loss))

    def backward(self, objective):
        """Back-propagate a batch's objective (a distributed net reduces
        the gradients here)."""
        objective.backward()

    def share_initial_state(self):
        """Make every process start from this process's weights (one
        process: nothing to do; the distributed net broadcasts them)."""

    def vae_module(self):
        """The VAE module itself, without any distributed wrapper."""
        return self.module_

    def validation_step(self, batch, **fit_params):
        if self.module_.training:
            self._set_training(False)
        Xi, _ = batch
        with torch.no_grad():
            y_pred = self.infer(Xi, **fit_params)
            terms = self.loss_terms(y_pred, Xi)
        self._record_terms(terms, "valid")
        return {"loss": terms["loss"], "y_pred": y_pred}


def _reset_linear(module, generator):
    """``nn.Linear.reset_parameters``, drawing from ``generator``."""
    if not isinstance(module, nn.Linear):
        raise TypeError(f"Cannot initialise a built-in {type(module).__name__} layer.")
    nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
    if module.bias is not None:
        fan_in = module.weight.shape[1]
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(module.bias, -bound, bound, generator=generator)


def _all_finite(weights, optimizer):
    """Whether every floating-point tensor of a module's and an optimizer's
    ``state_dict`` is finite."""
    tensors = [value for value in weights.values() if value.is_floating_point()]
    tensors += [value for state in optimizer["state"].values() for value in state.values()
                if isinstance(value, torch.Tensor) and value.is_floating_point()]
    # One fused reduction instead of a check per tensor: the max-norm is
    # finite exactly when every entry is (and, unlike the L2 norm, cannot
    # overflow on finite entries).
    return not tensors or bool(
        torch.isfinite(torch.stack(torch._foreach_norm(tensors, float("inf")))).all()
    )


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
