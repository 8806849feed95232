"""_graphs: training steps replayed from a CUDA graph.

On the CPU a stand-in replays the step eagerly, so that everything around
the capture (the warm-up, the step's input and KL factor refilled for each
replay, the partial batches, the recorded terms, a failure) is tested
here; the capture itself is tested on a GPU.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, LRScheduler
from torch.optim.lr_scheduler import StepLR

from sklearn_betavae import BetaVAETransformer, _graphs
from tests.conftest import FAST_PARAMS, PoisonWeightsAt, requires_cuda

# Validation between epochs (the module in evaluation mode before a replay),
# a KL warm-up (the factor changing between replays), a partial last batch.
PARAMS = dict(FAST_PARAMS, max_iter=4, beta_warmup=0.5, early_stopping=True, n_iter_no_change=10)


class EagerStep:
    """Stands in for ``CapturedStep``: each replay runs the step itself and,
    as a graph does, writes its outputs into the same tensors every time."""

    made = []

    def __init__(self, step, net):
        self.step = step
        self.replays = 0
        self.outputs = None
        EagerStep.made.append(self)

    def replay(self):
        self.replays += 1
        terms, y_pred = self.step()
        with torch.no_grad():
            if self.outputs is None:
                self.outputs = ({key: value.detach().clone() for key, value in terms.items()},
                                tuple(out.detach().clone() for out in y_pred))
            else:
                for key, value in terms.items():
                    self.outputs[0][key].copy_(value)
                for kept, out in zip(self.outputs[1], y_pred, strict=True):
                    kept.copy_(out)
        return self.outputs


@pytest.fixture
def graphed(monkeypatch):
    """Fits through ``GraphedSteps``, the capture replaced by ``EagerStep``."""
    EagerStep.made = []
    monkeypatch.setattr(_graphs, "applies", lambda net: True)
    monkeypatch.setattr(_graphs.GraphedSteps, "capture_with", EagerStep)
    return EagerStep.made


def test_a_graphed_fit_computes_what_an_ordinary_fit_does(digits, graphed, monkeypatch):
    """Bit for bit on the CPU: the objective of a replayed step is the
    ordinary step's, at each KL weight, after validation passes."""
    with monkeypatch.context() as ordinary_steps:
        ordinary_steps.setattr(_graphs, "applies", lambda net: False)
        ordinary = BetaVAETransformer(**PARAMS).fit(digits)
    assert graphed == []
    through_graph = BetaVAETransformer(**PARAMS).fit(digits)
    (step,) = graphed
    # 216 training rows in batches of 32: 6 full, 1 partial, each epoch; 3
    # full ones were the warm-up's.
    assert step.replays == 4 * 6 - _graphs.WARMUP_STEPS
    for key in ("train_loss", "train_kl_loss", "valid_loss"):
        assert through_graph.net_.history[:, key] == ordinary.net_.history[:, key], key
    np.testing.assert_array_equal(through_graph.transform(digits), ordinary.transform(digits))


def test_the_graph_is_dropped_when_training_ends(digits, graphed):
    """Its memory is not kept with the fitted model (nor pickled)."""

    class SeeTheEnd(Callback):
        def on_train_end(self, net, **kwargs):  # after the net's own hook
            self.graph_left = getattr(net, "graphed_steps_", None)

    end = SeeTheEnd()
    model = BetaVAETransformer(**dict(PARAMS, callbacks=[end])).fit(digits)
    assert graphed and end.graph_left is None
    assert not hasattr(model.net_, "graphed_steps_")


def test_a_new_learning_rate_is_captured_anew(digits, graphed, monkeypatch):
    """A CUDA graph holds Adam's learning rate as a constant: a scheduler's
    new rate each epoch is a new capture, and the fit is the ordinary one."""
    schedule = dict(PARAMS, callbacks=[LRScheduler(StepLR, step_size=1, gamma=0.5)])
    with monkeypatch.context() as ordinary_steps:
        ordinary_steps.setattr(_graphs, "applies", lambda net: False)
        ordinary = BetaVAETransformer(**schedule).fit(digits)
    through_graph = BetaVAETransformer(**schedule).fit(digits)
    assert [step.replays for step in graphed] == [6 - _graphs.WARMUP_STEPS, 6, 6, 6]
    assert through_graph.net_.history[:, "train_loss"] == ordinary.net_.history[:, "train_loss"]


def test_callbacks_keep_each_batchs_outputs(digits, graphed):
    """A graph overwrites its outputs at each replay: the step hands
    callbacks copies (skorch's EpochScoring keeps every batch's)."""

    class KeepOutputs(Callback):
        def initialize(self):
            self.kept = []
            return self

        def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
            if training:
                self.kept.append((y_pred[1], y_pred[1].clone()))

    keep = KeepOutputs()
    BetaVAETransformer(**dict(PARAMS, max_iter=1, callbacks=[keep])).fit(digits)
    assert graphed[0].replays > 1
    assert all(torch.equal(kept, copy) for kept, copy in keep.kept)
    assert len({id(kept) for kept, _ in keep.kept}) == len(keep.kept)


def test_a_warm_start_captures_again(digits, graphed):
    model = BetaVAETransformer(**PARAMS).fit(digits)
    model.set_params(warm_start=True, max_iter=1)
    model.fit(digits)
    # Each run warms up and captures anew (its optimizer may have been made anew).
    assert [step.replays for step in graphed] == [4 * 6 - 3, 6 - 3]
    assert model.n_iter_ == 5


def test_a_non_finite_replayed_step_stops_the_fit_and_is_undone(digits, graphed):
    model = BetaVAETransformer(**dict(PARAMS, callbacks=[PoisonWeightsAt(2)]))
    stopped = r"epoch 2, batch 1; training stopped after that update \(undone\)"
    with pytest.raises(FloatingPointError, match=stopped):
        model.fit(digits)
    assert graphed and graphed[0].replays > 0
    assert all(torch.isfinite(p).all() for p in model.net_.module_.parameters())


def _net(**changes):
    settings = dict(
        accelerated=False, device="cuda", optimizer_=SimpleNamespace(param_groups=[{"fused": True}]),
        callbacks_=[("print_log", Callback())],
    )
    return SimpleNamespace(**{**settings, **changes})


def test_graphs_apply_only_where_they_can(monkeypatch):
    monkeypatch.setattr(_graphs, "ENABLED", True)
    assert _graphs.applies(_net()) == hasattr(torch.cuda.CUDAGraph, "register_generator_state")

    class ClipGradients(Callback):
        def on_grad_computed(self, net, named_parameters, **kwargs):
            pass

    cases = {
        "off CUDA": _net(device="cpu"),
        "accelerator": _net(accelerated=True),
        "user's encoder": _net(module__encoder=torch.nn.Identity()),
        "not fused": _net(optimizer_=SimpleNamespace(param_groups=[{"fused": True}, {"fused": None}])),
        "gradients": _net(callbacks_=[("clip", ClipGradients())]),
        "every batch": _net(callbacks_=[("lr", LRScheduler(StepLR, step_every="batch", step_size=10))]),
    }
    for reason, net in cases.items():
        assert not _graphs.applies(net)
        assert reason in _graphs.why_not(net)
    monkeypatch.setattr(_graphs, "ENABLED", False)
    assert _graphs.why_not(_net()) == "_graphs.ENABLED is False"


@requires_cuda
@pytest.mark.parametrize("schedule", [False, True])
def test_a_fit_through_a_cuda_graph_trains_as_the_eager_fit(digits, monkeypatch, schedule):
    """The same replays on the GPU: the run captures once (or once an epoch,
    with a new learning rate each), replays the full batches, and ends
    where the eager run ends (the same kernels, and the noise drawn from the
    same generator through the graph's offsets)."""
    params = dict(PARAMS, device="cuda")
    if schedule:
        params["callbacks"] = [LRScheduler(StepLR, step_size=1, gamma=0.5)]
    eager = BetaVAETransformer(**params).fit(digits)
    replays = []
    replay = _graphs.CapturedStep.replay
    monkeypatch.setattr(_graphs.CapturedStep, "replay", lambda self: replays.append(1) or replay(self))
    monkeypatch.setattr(_graphs, "ENABLED", True)
    graphed = BetaVAETransformer(**params).fit(digits)
    assert len(replays) == 4 * 6 - _graphs.WARMUP_STEPS
    np.testing.assert_allclose(graphed.net_.history[:, "train_loss"], eager.net_.history[:, "train_loss"],
                               rtol=1e-4)
    np.testing.assert_allclose(graphed.transform(digits), eager.transform(digits), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("extra", [
    {"covariates": True},  # a conditional model: the covariates ride in the batch
    {"input_lr_scale": 0.5},  # two parameter groups, two learning rates
], ids=["covariates", "input_lr_scale"])
def test_conditional_models_and_parameter_groups_replay_as_ordinary_steps(
        digits, graphed, monkeypatch, extra):
    rng = np.random.default_rng(0)
    params = dict(PARAMS, **{k: v for k, v in extra.items() if k != "covariates"})
    covariates = rng.normal(size=(len(digits), 2)) if "covariates" in extra else None
    with monkeypatch.context() as ordinary_steps:
        ordinary_steps.setattr(_graphs, "applies", lambda net: False)
        ordinary = BetaVAETransformer(**params).fit(digits, covariates=covariates)
    through_graph = BetaVAETransformer(**params).fit(digits, covariates=covariates)
    (step,) = graphed
    assert step.replays == 4 * 6 - _graphs.WARMUP_STEPS
    assert through_graph.net_.history[:, "train_loss"] == ordinary.net_.history[:, "train_loss"]
    np.testing.assert_array_equal(through_graph.transform(digits, covariates=covariates),
                                  ordinary.transform(digits, covariates=covariates))
