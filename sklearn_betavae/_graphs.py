"""Training steps replayed from a CUDA graph (issue 36, part 4).

On a GPU the training step of a network of this package's size is bound by
kernel launches, not by arithmetic: on an H100 a hand-written step of a
4096-512-256-10 VAE took about 3.6 ms at every batch size up to 4,096,
hundreds of launches of 11-14 us each. A CUDA graph launches the whole
step (forward pass, loss, backward pass, Adam) in one call.

``ENABLED`` is False until a GPU has measured this path against the eager
step (``benchmarks/bench_training.py``'s ``estimator graphed``, which sets
it); the package then trains as before.

How a run uses it (``BetaVAENet.train_step``): batches of the run's first
batch's shape go through ``GraphedSteps``. The first ``WARMUP_STEPS`` of
them are ordinary steps run on a side stream (CUDA's rule before a
capture: the optimizer's state and the libraries' workspaces then exist);
the next one is captured, and it and every later one is one replay. Any
other batch (the last, partial one of an epoch) takes the ordinary step.
"""

import contextlib
import threading

import torch

#: Whether a fit on a CUDA device trains through graphs where it can.
ENABLED = False
#: Ordinary steps before the capture.
WARMUP_STEPS = 3
_ONE_CAPTURE = threading.Lock()


def applies(net):
    """Whether ``net``'s run trains through a graph (``why_not`` says why not)."""
    return why_not(net) is None


def why_not(net):
    """Why ``net``'s run cannot train through a graph, or None when it can.

    It needs ``ENABLED``, a CUDA device, no accelerator, the built-in
    encoder and decoder (a user's module could sync with the host, which a
    capture cannot hold), fused Adam (whose step counts live on the device),
    no callback that reads or changes the gradients (they never leave the
    graph), no learning-rate schedule stepped at every batch (each new rate
    is a new capture), and a torch that can register a private generator
    with a graph.
    """
    if not ENABLED:
        return "_graphs.ENABLED is False"
    if net.accelerated or torch.device(net.device).type != "cuda":
        return "the net trains on an accelerator or off CUDA"
    if getattr(net, "module__encoder", None) is not None or getattr(net, "module__decoder", None) is not None:
        return "a user's encoder or decoder"
    if not all(group.get("fused") for group in net.optimizer_.param_groups):
        return "the optimizer is not fused Adam"
    if any(_reads_gradients(callback) for _, callback in net.callbacks_):
        return "a callback reads the gradients (on_grad_computed)"
    if any(getattr(callback, "step_every", None) == "batch" for _, callback in net.callbacks_):
        return "a learning-rate schedule steps at every batch"
    if not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
        return f"torch {torch.__version__} cannot register a generator with a graph"
    return None


def _reads_gradients(callback):
    from skorch.callbacks import Callback

    return type(callback).on_grad_computed is not Callback.on_grad_computed


class GraphedSteps:
    """The full batches' training steps of one run, as replays of one graph.

    Parameters
    ----------
    net : BetaVAENet
        The net being trained; its ``kl_weight_`` and criterion's ``beta``
        are read at every step.
    """

    #: What captures the step: ``CapturedStep``, or a stand-in in tests.
    capture_with = None  # set below

    def __init__(self, net):
        self.net = net
        self.shape = None
        self.warmed_up = 0
        self.step = None
        self.settings = None  # the optimizer's settings the step was captured with
        self.batch = None  # the captured step's input, refilled for every replay
        self.kl_scale = None  # the KL term's factor in the objective, likewise

    def takes(self, batch):
        """Whether ``batch`` (skorch's ``(X, y)``) is a full batch of this run."""
        Xi = batch[0]
        if not isinstance(Xi, torch.Tensor):
            return False
        if self.shape is None:
            self.shape = Xi.shape  # the first batch of a run is a full one
        return Xi.shape == self.shape

    @property
    def ready(self):
        """Whether the warm-up is over (the next full batch is replayed)."""
        return self.warmed_up >= WARMUP_STEPS

    @contextlib.contextmanager
    def warming_up(self):
        """Run an ordinary step as one of the warm-up's, on a side stream."""
        device = torch.device(self.net.device)
        if device.type != "cuda":
            self.warmed_up += 1
            yield
            return
        with torch.cuda.device(device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            try:
                with torch.cuda.stream(side):
                    yield
            finally:
                torch.cuda.current_stream().wait_stream(side)
        self.warmed_up += 1

    def train_step(self, batch):
        """One step on a full ``batch`` after the warm-up: skorch's step dict."""
        net = self.net
        Xi = batch[0]
        if not net.module_.training:  # a validation pass came between; the graph replays training
            net._set_training(True)
        settings = _optimizer_settings(net.optimizer_)
        if settings != self.settings:
            # Adam's settings are constants of the captured kernels: a new
            # learning rate (a scheduler's) is captured anew.
            if self.batch is None:
                self.batch = torch.empty_like(Xi)
                self.kl_scale = torch.zeros((), dtype=Xi.dtype, device=Xi.device)
            self.step, self.settings = None, settings
            self.step = self.capture_with(self._objective_step, net)
        self.batch.copy_(Xi)
        # As the ordinary step's objective: the recorded loss when the weight
        # is 1, else rec_loss + (kl_weight * beta) * kl_loss.
        self.kl_scale.fill_(getattr(net, "kl_weight_", 1.0) * net.criterion_.beta)
        terms, y_pred = self.step.replay()
        net._record_terms(terms, "train", stopped="after that update (undone)")
        # Copies: the next replay overwrites the graph's outputs, and a
        # callback may keep a batch's (skorch's EpochScoring caches them).
        return {"loss": terms["loss"].clone(), "y_pred": tuple(out.clone() for out in y_pred)}

    def _objective_step(self):
        net = self.net
        # Captured, this only drops the references: the backward pass then
        # allocates the gradients in the graph's memory, and every replay
        # writes them anew rather than adding to them.
        net.optimizer_.zero_grad(set_to_none=True)
        y_pred = net.infer(self.batch)
        terms = net.loss_terms(y_pred, self.batch)
        net.backward(terms["rec_loss"] + self.kl_scale * terms["kl_loss"])
        net.optimizer_.step()
        return terms, y_pred


class CapturedStep:
    """``step()`` captured in a CUDA graph on ``net``'s device; ``replay()``
    runs it again and returns its outputs (the same tensors every time).

    The net's private noise generator is registered with the graph, so that
    each replay draws new noise from it; Adam is told it is being captured
    only for the capture (fused Adam computes the same either way).
    """

    def __init__(self, step, net):
        self.graph = torch.cuda.CUDAGraph()
        noise = getattr(net.vae_module(), "noise_generator", None)
        if noise is not None:
            self.graph.register_generator_state(noise)
        groups = net.optimizer_.param_groups
        with torch.cuda.device(torch.device(net.device)), _capturable(groups):
            # One capture at a time in a process (torch's graphs share a
            # capture stream); thread_local lets fits in other threads go on
            # allocating meanwhile.
            with _ONE_CAPTURE, torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.outputs = step()

    def replay(self):
        self.graph.replay()
        return self.outputs


GraphedSteps.capture_with = CapturedStep


def _optimizer_settings(optimizer):
    groups = optimizer.param_groups
    return [{key: value for key, value in group.items() if key != "params"} for group in groups]


@contextlib.contextmanager
def _capturable(groups):
    before = [group.get("capturable", False) for group in groups]
    for group in groups:
        group["capturable"] = True
    try:
        yield
    finally:
        for group, value in zip(groups, before):
            group["capturable"] = value
