"""Fault injection: errors, interrupts and non-finite weights at every point of training.

A skorch callback raises an error or a ``KeyboardInterrupt`` from every hook
(at the first, a middle and the last epoch; at the first and the last batch),
or writes NaN or inf into one weight (or one gradient) at every point of an
epoch. After each fault the estimator is what ``fit`` documents: fitted with
the epochs completed before the fault (finite weights and Adam state, bit
for bit those of a fit that ran that many epochs, ``n_iter_`` and the
history agreeing, no state of the failed run left behind) or unfitted, and
``save``/``load`` and pickle round-trip whatever it holds.
"""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback

from sklearn_betavae import BetaVAETransformer
from tests.conftest import FAST_PARAMS

# No KL warm-up (its schedule depends on max_iter), so that a run cut back to
# k epochs is bit for bit a fit of k epochs, and a warm start of m more a fit
# of k + m. 240 digits in batches of 32: 8 training batches per epoch.
EXACT = dict(FAST_PARAMS, beta_warmup=0.0)
N_EPOCHS = EXACT["max_iter"]
N_BATCHES = 8

BATCH_HOOKS = ("on_batch_begin", "on_grad_computed", "on_batch_end")
EPOCH_HOOKS = ("on_epoch_begin", "on_epoch_end")
# (hook, epoch of the run, training batch of the epoch): every hook, at the
# first, a middle and the last epoch, batch hooks at the first and last batch.
POINTS = (
    [("on_train_begin", None, None)]
    + [(hook, epoch, None) for hook in EPOCH_HOOKS for epoch in (1, 2, N_EPOCHS)]
    + [(hook, epoch, batch) for hook in BATCH_HOOKS for epoch in (1, 2, N_EPOCHS)
       for batch in ("first", "last")]
    + [("on_train_end", None, None)]
)


def _cases(points):
    """``(hook, epoch, batch, warm)`` for every point of a new fit and, for
    the points of a run's first epoch and the train hooks (where the run has
    completed nothing, or everything), of a warm start."""
    return [(*point, False) for point in points] + [
        (*point, True) for point in points if point[1] in (None, 1)]


def _case_id(case):
    *point, warm = case
    return _point_id(point) + ("-warm-start" if warm else "")


def _point_id(point):
    return "-".join(str(part) for part in point if part is not None)


class InjectedError(Exception):
    """The error the fault callbacks raise (nothing else in training raises it)."""


class Fault(Callback):
    """Calls ``act(net)`` at one point of training.

    ``hook`` is a skorch callback hook; ``epoch`` counts the epochs of the
    history (those of earlier fits included), None for the train hooks;
    ``batch`` is ``"first"``, ``"middle"`` or ``"last"``, the training batch
    of the epoch, for the batch hooks. Subclasses define ``act``; they are
    module-level classes, so that the estimator holding them pickles.
    """

    def __init__(self, hook, epoch=None, batch=None):
        self.hook, self.epoch, self.batch = hook, epoch, batch

    def _at(self, hook, net, training=True):
        if hook != self.hook or not training:
            return
        if self.epoch is not None and len(net.history) != self.epoch:
            return
        if self.batch is not None:
            wanted = {"first": 1, "middle": self.n_batches_ // 2, "last": self.n_batches_}
            if self.batch_ != wanted[self.batch]:
                return
        self.act(net)

    def on_train_begin(self, net, **kwargs):
        self._at("on_train_begin", net)

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        self.n_batches_ = math.ceil(len(dataset_train) / net.batch_size)
        self.batch_ = 0
        self._at("on_epoch_begin", net)

    def on_batch_begin(self, net, training=False, **kwargs):
        self.batch_ += training
        self._at("on_batch_begin", net, training)

    def on_grad_computed(self, net, named_parameters, training=False, **kwargs):
        self._at("on_grad_computed", net, training)

    def on_batch_end(self, net, training=False, **kwargs):
        self._at("on_batch_end", net, training)

    def on_epoch_end(self, net, **kwargs):
        self._at("on_epoch_end", net)

    def on_train_end(self, net, **kwargs):
        self._at("on_train_end", net)


class RaiseFrom(Fault):
    def __init__(self, hook, epoch=None, batch=None, error=InjectedError):
        super().__init__(hook, epoch, batch)
        self.error = error

    def act(self, net):
        raise self.error(f"injected from {self.hook}")


class WriteInto(Fault):
    """Writes ``value`` into the first weight, or into its gradient from
    ``on_grad_computed`` (before the optimizer's step)."""

    def __init__(self, hook, epoch=None, batch=None, value=float("nan")):
        super().__init__(hook, epoch, batch)
        self.value = value

    def act(self, net):
        weight = next(net.module_.parameters())
        with torch.no_grad():
            target = weight.grad if self.hook == "on_grad_computed" else weight
            target.view(-1)[0] = self.value


@pytest.fixture(scope="module")
def reference(digits):
    """``reference(k)``: ``transform(digits)`` of a plain fit of k epochs."""
    cache = {}

    def transform(epochs):
        if epochs not in cache:
            vae = BetaVAETransformer(**dict(EXACT, max_iter=epochs)).fit(digits)
            cache[epochs] = vae.transform(digits)
        return cache[epochs]

    return transform


@pytest.fixture(scope="module")
def fitted_bytes(digits):
    """A pickle of a plain fit of N_EPOCHS epochs, to warm-start copies of."""
    return pickle.dumps(BetaVAETransformer(**EXACT).fit(digits))


def _estimator(fitted_bytes, warm, fault):
    """A new estimator, or one fitted for N_EPOCHS and warm-started, with ``fault``
    (built for the epochs of this run) as its callback; returns it and the
    number of epochs it had before this run."""
    if not warm:
        return BetaVAETransformer(**EXACT, callbacks=[fault]), 0
    vae = pickle.loads(fitted_bytes)
    if fault.epoch is not None:
        fault.epoch += vae.n_iter_
    return vae.set_params(warm_start=True, callbacks=[fault]), vae.n_iter_


def _completed(hook, epoch):
    """Epochs of the run completed when a fault at ``hook`` of ``epoch`` strikes.

    The net's ``last_finite_state`` callback comes before the user's, so an epoch
    whose ``on_epoch_end`` a callback interrupts has completed.
    """
    if hook == "on_train_begin":
        return 0
    if hook == "on_train_end":
        return N_EPOCHS
    return epoch if hook == "on_epoch_end" else epoch - 1


def _assert_holds(vae, digits, reference, epochs, tmp_path):
    """``vae`` holds exactly the model of ``epochs`` epochs (unfitted for 0),
    with nothing of the failed run left over, and it round-trips.

    ``reference`` None (early stopping, whose final load of the best epoch
    makes a k-epoch fit differ from a run cut back to k epochs): the model
    is not compared with a plain fit.
    """
    if epochs == 0:
        with pytest.raises(NotFittedError):
            check_is_fitted(vae)
        with pytest.raises(NotFittedError):
            vae.save(tmp_path / "vae.safetensors")
        copy = pickle.loads(pickle.dumps(vae))
        assert sorted(copy.get_params()) == sorted(vae.get_params())
        assert not [name for name in vars(copy) if name.endswith("_")]
        return
    net = vae.net_
    assert vae.n_iter_ == len(net.history) == epochs
    assert [row["epoch"] for row in net.history] == list(range(1, epochs + 1))
    n_batches = math.ceil(len(digits) * (0.9 if vae.early_stopping else 1.0) / vae.batch_size)
    phases = ("train", "valid") if vae.early_stopping else ("train",)
    for row in net.history:
        for prefix in phases:
            terms = (f"{prefix}_loss", f"{prefix}_rec_loss", f"{prefix}_kl_loss")
            assert all(np.isfinite(row[key]) for key in terms)
        assert sum("train_loss" in record for record in row["batches"]) == n_batches
    weights = list(net.module_.state_dict().values())
    moments = [value for state in net.optimizer_.state.values() for value in state.values()]
    assert all(torch.isfinite(value).all() for value in weights + moments)
    # Nothing of the failed run: no kept copy of the state, no run counters,
    # no generator of the run on the module.
    guard = net.last_finite_state()
    assert guard.kept_ is guard.run_start_ is guard.epochs_completed_ is None
    assert "noise_generator" not in vars(net.vae_module())
    if reference is not None:
        np.testing.assert_array_equal(vae.transform(digits), reference(epochs))

    path = tmp_path / "vae.safetensors"
    vae.save(path)
    for copy in (BetaVAETransformer.load(path), pickle.loads(pickle.dumps(vae))):
        Z = vae.transform(digits)
        np.testing.assert_array_equal(copy.transform(digits), Z)
        np.testing.assert_array_equal(copy.inverse_transform(Z[:9]), vae.inverse_transform(Z[:9]))
        np.testing.assert_array_equal(copy.score_samples(digits), vae.score_samples(digits))
        assert copy.net_.history.to_list() == net.history.to_list()
        assert copy.n_iter_ == epochs
    loaded = BetaVAETransformer.load(path)
    assert loaded.get_params() == dict(vae.get_params(), callbacks=None)  # callbacks are not saved

    # Training goes on from there exactly as from a plain fit of that length.
    vae.set_params(callbacks=None, warm_start=True, max_iter=1).fit(digits)
    assert vae.n_iter_ == epochs + 1
    if reference is not None:
        np.testing.assert_array_equal(vae.transform(digits), reference(epochs + 1))


@pytest.mark.parametrize("hook, epoch, batch, warm", _cases(POINTS), ids=map(_case_id, _cases(POINTS)))
def test_an_error_from_any_hook_keeps_the_completed_epochs(
    digits, fitted_bytes, reference, tmp_path, hook, epoch, batch, warm
):
    """The error propagates; the estimator keeps the epochs completed before
    it (unfitted, or as it was when warm-started, when there are none)."""
    vae, start = _estimator(fitted_bytes, warm, RaiseFrom(hook, epoch, batch))
    with pytest.raises(InjectedError, match=f"injected from {hook}"):
        vae.fit(digits)
    _assert_holds(vae, digits, reference, start + _completed(hook, epoch), tmp_path)


@pytest.mark.parametrize("hook, epoch, batch, warm", _cases(POINTS), ids=map(_case_id, _cases(POINTS)))
def test_an_interrupt_from_any_hook_keeps_the_completed_epochs_with_a_warning(
    digits, fitted_bytes, reference, tmp_path, hook, epoch, batch, warm
):
    """Ctrl-C before any epoch of a new fit completes: ``KeyboardInterrupt``
    and an unfitted estimator. Later: the epochs done, with a warning,
    unless the interrupt only cut the last epoch's callbacks short (training
    was complete)."""
    vae, start = _estimator(fitted_bytes, warm, RaiseFrom(hook, epoch, batch, error=KeyboardInterrupt))
    completed = start + _completed(hook, epoch)
    if completed == 0:
        with pytest.raises(KeyboardInterrupt):
            vae.fit(digits)
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vae.fit(digits)
        messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        if hook == "on_epoch_end" and epoch == N_EPOCHS:
            assert not messages
        else:
            assert len(messages) == 1, messages
            assert (f"interrupted after {completed - start} of {N_EPOCHS} epochs; the model is "
                    f"the one at the end of epoch {completed}") in messages[0]
    _assert_holds(vae, digits, reference, completed, tmp_path)


# Where a non-finite value is written: (hook, batch), epochs as for errors.
WRITES = (
    [("on_batch_end", batch) for batch in ("first", "middle", "last")]
    + [("on_grad_computed", "middle"), ("on_epoch_end", None)]
)
WRITE_POINTS = (
    [(hook, epoch, batch) for hook, batch in WRITES for epoch in (1, 2, N_EPOCHS)]
    + [("on_train_end", None, None)]
)


def _detected(hook, epoch, batch):
    """``(epoch, batch)`` whose loss sees a value written at this point
    (batch None: the weights' check at the end of training)."""
    if hook == "on_train_end":
        return N_EPOCHS, None
    if hook == "on_epoch_end" or batch == "last":
        return (epoch + 1, 1) if epoch < N_EPOCHS else (N_EPOCHS, None)
    return epoch, {"first": 1, "middle": N_BATCHES // 2}[batch] + 1


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("hook, epoch, batch, warm", _cases(WRITE_POINTS),
                         ids=map(_case_id, _cases(WRITE_POINTS)))
def test_a_non_finite_weight_anywhere_stops_fit_and_keeps_the_last_finite_epoch(
    digits, fitted_bytes, reference, tmp_path, hook, epoch, batch, value, warm
):
    """``FloatingPointError`` naming the epoch (and the batch) where the value
    is seen, and the estimator holds the last epoch that ended with finite
    weights (unfitted, or as it was when warm-started, when there is none)."""
    vae, start = _estimator(fitted_bytes, warm, WriteInto(hook, epoch, batch, value))
    seen_epoch, seen_batch = _detected(hook, epoch, batch)
    # The net keeps the state of each epoch it ends (before any callback's
    # on_epoch_end) when it is finite: the last one before the write.
    kept = start + _completed(hook, epoch)
    if seen_batch is None:
        where = f"weights became non-finite at epoch {start + seen_epoch},"
    else:
        where = f"loss became (nan|inf) at epoch {start + seen_epoch}, batch {seen_batch};"
    kept_message = f"end of epoch {kept}, the last finite one" if kept else "No epoch was completed"
    with pytest.raises(FloatingPointError, match=f"{where}.*{kept_message}"):
        vae.fit(digits)
    _assert_holds(vae, digits, reference, kept, tmp_path)


@pytest.mark.parametrize(
    "hook, epoch, batch", [(hook, 2, batch) for hook, batch in WRITES] + [("on_train_end", None, None)],
    ids=lambda part: str(part),
)
def test_a_non_finite_weight_with_early_stopping(digits, tmp_path, hook, epoch, batch):
    """With a validation split the value is seen by the next loss, training
    or validation; the error names its epoch, and the estimator holds the
    last epoch that ended with finite weights, never the early-stopping
    callback's copy of the written ones."""
    fault = WriteInto(hook, epoch, batch)
    vae = BetaVAETransformer(**EXACT, early_stopping=True, n_iter_no_change=100, callbacks=[fault])
    # The last training batch's update is seen by the same epoch's validation.
    seen_epoch = N_EPOCHS if hook == "on_train_end" else epoch + (hook == "on_epoch_end")
    where = ("weights became non-finite" if hook == "on_train_end" else
             f"valid loss became nan at epoch {seen_epoch}, batch 1" if batch == "last" else
             f"train loss became nan at epoch {seen_epoch}, batch")
    with pytest.raises(FloatingPointError, match=f"{where}.*epoch {_completed(hook, epoch)}"):
        vae.fit(digits)
    _assert_holds(vae, digits, None, _completed(hook, epoch), tmp_path)
