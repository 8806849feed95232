"""The net built directly, as skorch's own tests build theirs, and its two
training callbacks: ``KLWarmup`` and ``LastFiniteState``."""

import math
import warnings
from functools import partial

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from skorch.callbacks import Callback, EarlyStopping

from sklearn_betavae import BetaVAELoss
from sklearn_betavae._callbacks import KLWarmup, LastFiniteState, all_finite
from sklearn_betavae._modules import VAEModule
from sklearn_betavae._net import BetaVAENet
from sklearn_betavae._training import DIVERGED_RATIO, _end_run, train

N_ROWS, N_FEATURES = 96, 12
BETA = 3.0


@pytest.fixture(scope="module")
def X():
    rows = np.random.RandomState(0).standard_normal((N_ROWS, N_FEATURES))
    return torch.as_tensor(rows, dtype=torch.float32)


def make_net(**kwargs):
    """A BetaVAENet as the estimator builds one, without the estimator."""
    torch.manual_seed(0)  # the initial weights and the shuffling
    params = dict(
        module__n_features=N_FEATURES, module__n_components=2, module__hidden_layer_sizes=(8,),
        module__default_dist="normal", criterion=partial(BetaVAELoss, beta=BETA),
        optimizer=torch.optim.Adam, max_epochs=4, batch_size=32, train_split=None, verbose=0,
    )
    return BetaVAENet(VAEModule, **{**params, **kwargs})


class Record(Callback):
    """Records ``net.kl_weight_`` at each epoch's start (after ``kl_warmup``)."""

    def initialize(self):
        self.weights_ = []
        return self

    def on_epoch_begin(self, net, **kwargs):
        self.weights_.append(net.kl_weight_)


class PoisonAt(Callback):
    """Writes NaN into the first weight before the first batch of ``epoch``."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_batch_begin(self, net, training=False, **kwargs):
        if training and len(net.history) == self.epoch:
            with torch.no_grad():
                next(net.module_.parameters()).view(-1)[0] = float("nan")


class InterruptAt(Callback):
    """A Ctrl-C at the end of ``epoch`` (skorch swallows it)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise KeyboardInterrupt


def test_the_net_trains_without_targets_and_records_three_terms(X):
    net = make_net().fit(X, None)
    assert len(net.history) == 4
    last = net.history[-1]
    assert last["train_loss"] == pytest.approx(last["train_rec_loss"] + BETA * last["train_kl_loss"],
                                               rel=1e-5)
    assert sum("train_loss" in batch for batch in last["batches"]) == math.ceil(N_ROWS / 32)
    with torch.no_grad():
        assert torch.isfinite(net.get_loss(net.infer(X), None, X=X))


def test_the_default_callbacks_come_before_the_users():
    names = [name for name, _ in make_net(callbacks=[("mine", Record())]).initialize().callbacks_]
    assert names.index("kl_warmup") < names.index("last_finite_state") < names.index("mine")


@pytest.mark.parametrize("epochs, expected", [(0, [1.0] * 4), (2, [0.5, 1.0, 1.0, 1.0]),
                                              (4, [0.25, 0.5, 0.75, 1.0])])
def test_kl_warmup_ramps_the_weight_over_its_epochs(X, epochs, expected):
    record = Record()
    make_net(callbacks=[record], callbacks__kl_warmup__epochs=epochs).fit(X, None)
    assert record.weights_ == expected


def test_kl_warmup_weighs_the_gradient_not_the_recorded_loss(X):
    ramped = make_net(callbacks__kl_warmup__epochs=4).fit(X, None)
    plain = make_net().fit(X, None)
    # The same first forward pass, recorded with the full beta either way...
    first = [net.history[0, "batches"][0] for net in (ramped, plain)]
    assert first[0]["train_loss"] == first[1]["train_loss"]
    # ...but the steps differ.
    assert ramped.history[-1, "train_loss"] != plain.history[-1, "train_loss"]


def test_kl_warmup_continues_where_the_history_is(X):
    net = make_net(max_epochs=2, callbacks__kl_warmup__epochs=4).fit(X, None)
    record = Record()
    net.callbacks = [record]
    net.initialize_callbacks()
    net.partial_fit(X, None)
    assert record.weights_ == [0.75, 1.0]


def test_roll_back_restores_the_last_finite_epoch_exactly(X):
    net = make_net(callbacks=[PoisonAt(3)]).initialize()
    guard = net.last_finite_state()
    with pytest.raises(FloatingPointError, match="epoch 3, batch 1"):
        net.partial_fit(X, None)
    assert guard.roll_back(net) == 2 and len(net.history) == 2
    two_epochs = make_net(max_epochs=2).fit(X, None)
    for kept, reference in zip(net.module_.state_dict().values(),
                               two_epochs.module_.state_dict().values()):
        torch.testing.assert_close(kept, reference, rtol=0, atol=0)
    # Adam's state is that epoch's too: the next epoch is the same epoch 3.
    net.callbacks = []
    net.initialize_callbacks()
    net.max_epochs = two_epochs.max_epochs = 1
    torch.manual_seed(1)
    net.partial_fit(X, None)
    torch.manual_seed(1)
    two_epochs.partial_fit(X, None)
    assert net.history[-1, "train_loss"] == two_epochs.history[-1, "train_loss"]


def test_nothing_kept_means_nothing_restored(X):
    net = make_net().initialize()
    with torch.no_grad():
        next(net.module_.parameters()).view(-1)[0] = float("inf")  # not finite from the start
    with pytest.raises(FloatingPointError, match="No epoch was completed"):
        train(net, X)
    assert net.last_finite_state().kept_ is None


def test_an_interrupt_rolls_back_to_the_last_completed_epoch_with_a_warning(X):
    net = make_net(callbacks=[InterruptAt(3)]).initialize()
    with pytest.warns(UserWarning, match="interrupted after 3 of 4 epochs.*end of epoch 3"):
        train(net, X)
    assert len(net.history) == 3
    guard = net.last_finite_state()
    assert guard.kept_ is guard.run_start_ is guard.epochs_completed_ is None


def test_an_interrupt_before_any_epoch_raises():
    guard = LastFiniteState().initialize()
    net = make_net().initialize()
    with pytest.raises(KeyboardInterrupt, match="before completing an epoch"):
        _end_run(net, guard, interrupted=True)


def test_early_stopping_is_not_an_interrupt(X):
    stop = EarlyStopping(monitor="train_loss", patience=1, threshold=1e9, load_best=False)
    net = make_net(max_epochs=20, callbacks=[stop]).initialize()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(net, X)
    assert len(net.history) == 2


def test_a_finite_blow_up_warns_that_training_diverged(X):
    class Inflate(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 4:  # the last epoch's loss far above the first's
                net.history.record("train_loss", 2 * DIVERGED_RATIO * net.history[0, "train_loss"])

    net = make_net(callbacks=[Inflate()]).initialize()
    with pytest.warns(ConvergenceWarning, match="Training diverged"):
        train(net, X)


def test_the_callbacks_pickle_without_run_state(X):
    import pickle

    net = make_net(callbacks__kl_warmup__epochs=2).initialize()
    train(net, X)
    copy = pickle.loads(pickle.dumps(net))
    assert isinstance(dict(copy.callbacks_)["kl_warmup"], KLWarmup)
    assert dict(copy.callbacks_)["kl_warmup"].epochs == 2
    assert copy.last_finite_state().kept_ is None


def second_device():
    """A device other than the CPU that a machine without a GPU has: torch's
    lazy tensors, which its TorchScript backend computes on the CPU."""
    try:
        torch.empty(0, device="lazy")
    except (NotImplementedError, RuntimeError):  # the backend is not initialised yet
        try:
            from torch._lazy import ts_backend

            ts_backend.init()
        except (ImportError, RuntimeError) as error:
            pytest.skip(f"torch's lazy-tensor backend is not available: {error}")
    return torch.device("lazy")


def test_all_finite_reads_state_kept_on_several_devices():
    """Adam without fused=True keeps its step counts on the CPU wherever the
    weights are; on CUDA this once crashed the check of every epoch."""
    device = second_device()
    module = torch.nn.Linear(4, 2).to(device)
    optimizer = torch.optim.Adam(module.parameters())
    module(torch.ones(3, 4, device=device)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    assert {value.device.type for value in state["state"][0].values()} == {"cpu", device.type}
    assert all_finite(module.state_dict(), state)
    state["state"][0]["step"].fill_(math.inf)  # the CPU's side
    assert not all_finite(module.state_dict(), state)
    state["state"][0]["step"].fill_(1.0)
    with torch.no_grad():
        module.weight[0, 0] = math.nan  # the other device's side
    assert not all_finite(module.state_dict(), state)
    assert all_finite({}, {"state": {}})
