"""BetaVAENet: a skorch ``NeuralNet`` trained without targets on the beta-VAE loss.

Only skorch's documented hooks are overridden (``get_loss``,
``train_step``, ``train_step_single``, ``validation_step``,
``initialize_module``, ``on_train_begin``, ``on_train_end``,
``_default_callbacks``); the training loop, callbacks and history are
skorch's own, and the training logic around it (KL warm-up, roll-back to
the last finite state) is in the default callbacks of ``_callbacks``. The
two single-step hooks do not call ``super()``: skorch's versions need a
target and compute one loss, where these record three terms.
``train_step`` replays full batches from a CUDA graph where ``_graphs``
says it can (off by default) and is skorch's otherwise. ``n_processes``,
``finite_everywhere``, ``backward``, ``vae_module``, ``truncate_history``
and ``end_run`` are this class's own hooks, for the distributed subclass in
``_distributed``.
"""

import math

import torch
from skorch import NeuralNet
from skorch.callbacks import EpochTimer, PassthroughScoring, PrintLog
from skorch.utils import to_tensor
from torch import nn

from . import _graphs
from ._callbacks import KLWarmup, LastFiniteState
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

    Two default callbacks hold the training logic (see ``_callbacks``):
    ``"kl_warmup"`` (``KLWarmup``; set its length with
    ``callbacks__kl_warmup__epochs``) and ``"last_finite_state"``
    (``LastFiniteState``), which keeps the run's last finite state to roll
    a failed or interrupted run back to the end of an epoch.

    Parameters
    ----------
    **kwargs
        Passed to ``skorch.NeuralNet``.

    Examples
    --------
    >>> from functools import partial
    >>> import torch
    >>> from sklearn_betavae._modules import VAEModule
    >>> from sklearn_betavae._loss import BetaVAELoss
    >>> net = BetaVAENet(VAEModule, module__n_features=8, module__n_components=2,
    ...                  module__hidden_layer_sizes=(16,), module__default_dist="normal",
    ...                  criterion=partial(BetaVAELoss, beta=4.0), max_epochs=2,
    ...                  callbacks__kl_warmup__epochs=1, train_split=None, verbose=0)
    >>> net = net.fit(torch.randn(64, 8), None)
    >>> len(net.history), net.kl_weight_  # the KL weight reached 1 at epoch 1
    (2, 1.0)
    """

    #: Whether the net trains through an accelerator (``AcceleratedBetaVAENet``).
    accelerated = False

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
        self.graphed_steps_ = _graphs.GraphedSteps(self) if _graphs.applies(self) else None

    def on_train_end(self, net, X=None, y=None, **kwargs):
        super().on_train_end(net, X=X, y=y, **kwargs)
        vars(self).pop("graphed_steps_", None)  # the graph's memory, not kept with the model

    def truncate_history(self, n_epochs):
        """Drop the epochs after the first ``n_epochs`` (a roll-back)."""
        del self.history[n_epochs:]

    def end_run(self):
        """Drop the run's noise generator and graph (neither pickles)."""
        vars(self).pop("graphed_steps_", None)
        if getattr(self, "initialized_", False):
            vars(self.vae_module()).pop("noise_generator", None)

    def last_finite_state(self):
        """The ``LastFiniteState`` callback of this net (initialised)."""
        return dict(self.callbacks_)["last_finite_state"]

    @property
    def _default_callbacks(self):
        scorings = [
            (f"{prefix}_{term}", PassthroughScoring(name=f"{prefix}_{term}", on_train=prefix == "train"))
            for prefix in ("train", "valid")
            for term in LOSS_TERMS
        ]
        return [
            ("epoch_timer", EpochTimer()),
            ("kl_warmup", KLWarmup()),
            ("last_finite_state", LastFiniteState()),
            *scorings,
            ("print_log", PrintLog()),
        ]

    def loss_terms(self, y_pred, X):
        """All loss terms of a batch: the criterion's dict."""
        decoder_output, mu, logvar = y_pred
        # The data columns: covariates, if any, follow them (see VAEModule).
        X = to_tensor(X, device=self.device)[:, :decoder_output.shape[1]]
        p = decoder_distribution(decoder_output, self.criterion_.default_dist)
        return self.criterion_(X, p, posterior_distribution(mu, logvar))

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """The total beta-VAE loss of a batch; ``y_true`` is ignored."""
        return self.loss_terms(y_pred, X)["loss"]

    def _record_terms(self, terms, prefix, stopped="before that update"):
        # One transfer for the three terms: on a GPU each .item() waits for the device.
        values = torch.stack([terms[term].detach().double() for term in LOSS_TERMS]).tolist()
        for term, value in zip(LOSS_TERMS, values):
            if term == "loss" and not self.finite_everywhere(terms[term], value):
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
                    f"training stopped {stopped}. Lower learning_rate_init, "
                    "or check the scale of the data."
                )
            if term != "loss":  # skorch records "<prefix>_loss" itself
                self.history.record_batch(f"{prefix}_{term}", value)

    def train_step(self, batch, **fit_params):
        """skorch's step, or on a GPU, where ``_graphs.applies``, a full
        batch's step replayed from a CUDA graph (after ordinary warm-up steps)."""
        graphed = getattr(self, "graphed_steps_", None)
        if graphed is None or fit_params or not graphed.takes(batch):
            return super().train_step(batch, **fit_params)
        if not graphed.ready:
            with graphed.warming_up():
                return super().train_step(batch, **fit_params)
        return graphed.train_step(batch)

    def train_step_single(self, batch, **fit_params):
        if not self.module_.training:  # switching walks every submodule: once per phase
            self._set_training(True)
        Xi, _ = batch
        y_pred = self.infer(Xi, **fit_params)
        terms = self.loss_terms(y_pred, Xi)
        objective = terms["loss"]
        kl_weight = getattr(self, "kl_weight_", 1.0)  # set by the kl_warmup callback
        if kl_weight < 1.0:
            objective = terms["rec_loss"] + kl_weight * self.criterion_.beta * terms["kl_loss"]
        self.backward(objective)
        # Read after the backward pass is queued, so that a GPU runs the whole
        # step before the host waits for it; still before the optimizer's step,
        # which skorch takes once this returns.
        self._record_terms(terms, "train")
        return {"loss": terms["loss"], "y_pred": y_pred}

    @property
    def n_processes(self):
        """How many processes train this net together."""
        return 1

    def finite_everywhere(self, loss, value):
        """Whether a batch's loss (the tensor ``loss``, whose value on this
        process is ``value``) is finite in every process: a distributed net's
        processes must stop together."""
        return math.isfinite(value)

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
