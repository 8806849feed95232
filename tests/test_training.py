"""Training runs: divergence roll-back, interrupts, warm starts, skorch checkpoints."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from skorch.callbacks import Callback, Checkpoint, LoadInitState

from sklearn_betavae import BetaVAETransformer
from tests.conftest import FAST_PARAMS, PoisonWeightsAt, requires_cuda

# No KL warm-up: its schedule depends on max_iter, so only without it is
# fit(2 + 3 epochs) the same computation as fit(5 epochs).
EXACT = dict(FAST_PARAMS, beta_warmup=0.0)


class ScaleWeightsAt(Callback):
    """Multiply every weight by ``factor`` when epoch ``epoch`` begins."""

    def __init__(self, epoch, factor):
        self.epoch, self.factor = epoch, factor

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            with torch.no_grad():
                for weight in net.module_.parameters():
                    weight.mul_(self.factor)


class RaiseAt(Callback):
    """Raise ``error`` after batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch, batch=2, error=KeyboardInterrupt):
        self.epoch, self.batch, self.error = epoch, batch, error

    def on_batch_end(self, net, training=False, **kwargs):
        batches = net.history[-1]["batches"]
        if training and len(net.history) == self.epoch and len(batches) == self.batch:
            raise self.error()


def test_divergence_keeps_the_last_finite_epoch(digits):
    vae = BetaVAETransformer(**dict(EXACT, max_iter=5), callbacks=[PoisonWeightsAt(3)])
    with pytest.raises(
        FloatingPointError,
        match=r"became nan at epoch 3, batch 1.*state from the end of epoch 2",
    ):
        vae.fit(digits)
    assert vae.n_iter_ == 2 and len(vae.net_.history) == 2
    two_epochs = BetaVAETransformer(**dict(EXACT, max_iter=2)).fit(digits)
    np.testing.assert_array_equal(vae.transform(digits), two_epochs.transform(digits))
    assert vae.net_.last_finite_state().kept_ is None  # no stale copy kept or pickled


def test_divergence_in_a_warm_start_leaves_the_model_as_it_was(digits):
    vae = BetaVAETransformer(**EXACT).fit(digits)
    vae.set_params(warm_start=True, callbacks=[PoisonWeightsAt(4)])
    with pytest.raises(FloatingPointError, match="epoch 4, batch 1.*end of epoch 3"):
        vae.fit(digits)
    assert vae.n_iter_ == 3
    # Weights, Adam's state and the random stream are as they were, so
    # training goes on exactly as if the failed run had never happened.
    vae.set_params(callbacks=None).fit(digits)
    whole = BetaVAETransformer(**dict(EXACT, max_iter=6)).fit(digits)
    np.testing.assert_array_equal(vae.transform(digits), whole.transform(digits))


def test_other_training_errors_keep_the_completed_epochs(digits):
    vae = BetaVAETransformer(**dict(EXACT, max_iter=5), callbacks=[RaiseAt(4, error=MemoryError)])
    with pytest.raises(MemoryError):
        vae.fit(digits)
    assert vae.n_iter_ == 3
    three_epochs = BetaVAETransformer(**EXACT).fit(digits)
    np.testing.assert_array_equal(vae.transform(digits), three_epochs.transform(digits))


def test_keyboard_interrupt_keeps_the_epochs_done_with_a_warning(digits):
    vae = BetaVAETransformer(**dict(EXACT, max_iter=5), callbacks=[RaiseAt(3)])
    with pytest.warns(UserWarning, match="interrupted after 2 of 5 epochs.*end of epoch 2"):
        vae.fit(digits)
    assert vae.n_iter_ == 2 and len(vae.net_.history) == 2
    assert "train_loss" in vae.net_.history[-1]  # the partial epoch is not recorded
    two = BetaVAETransformer(**dict(EXACT, max_iter=2)).fit(digits)
    np.testing.assert_array_equal(vae.transform(digits), two.transform(digits))
    # Continuing gives exactly the uninterrupted run.
    vae.set_params(warm_start=True, callbacks=None, max_iter=3).fit(digits)
    five = BetaVAETransformer(**dict(EXACT, max_iter=5)).fit(digits)
    np.testing.assert_array_equal(vae.transform(digits), five.transform(digits))


def test_keyboard_interrupt_in_the_first_epoch_aborts_fit(digits):
    vae = BetaVAETransformer(**FAST_PARAMS, callbacks=[RaiseAt(1)])
    with pytest.raises(KeyboardInterrupt):
        vae.fit(digits)
    with pytest.raises(NotFittedError):
        vae.transform(digits)


def test_early_stopping_is_not_reported_as_an_interrupt(digits):
    vae = BetaVAETransformer(
        **dict(FAST_PARAMS, max_iter=200), early_stopping=True, n_iter_no_change=2, tol=0.5
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vae.fit(digits)
    assert vae.n_iter_ < 200


def test_warm_start_continues_exactly(digits):
    whole = BetaVAETransformer(**dict(EXACT, max_iter=5)).fit(digits)
    parts = BetaVAETransformer(**dict(EXACT, max_iter=2)).fit(digits)
    parts.set_params(warm_start=True, max_iter=3).fit(digits)
    assert parts.n_iter_ == 5
    np.testing.assert_array_equal(parts.transform(digits), whole.transform(digits))
    np.testing.assert_array_equal(
        parts.net_.history[:, "train_loss"], whole.net_.history[:, "train_loss"]
    )


def test_warm_start_with_the_defaults_follows_the_same_trajectory(digits):
    """fit(10) against fit(5) + fit(5), KL warm-up included."""
    # From a random start, where the loss falls far enough to compare shapes.
    params = dict(FAST_PARAMS, max_iter=10, init="random")
    whole = BetaVAETransformer(**params).fit(digits)
    parts = BetaVAETransformer(**dict(params, max_iter=5)).fit(digits)
    parts.set_params(warm_start=True).fit(digits)
    whole_losses = np.array(whole.net_.history[:, "train_loss"])
    part_losses = np.array(parts.net_.history[:, "train_loss"])
    assert len(part_losses) == 10
    # Same shape: both fall, epoch by epoch, to within a few percent.
    np.testing.assert_allclose(part_losses, whole_losses, rtol=0.05)
    assert part_losses[-1] < 0.95 * part_losses[0]
    np.testing.assert_allclose(parts.score(digits), whole.score(digits), rtol=0.02)


def test_warm_start_refuses_a_different_network(digits):
    vae = BetaVAETransformer(**FAST_PARAMS, warm_start=True).fit(digits)
    before, params = vae.transform(digits), vae.get_params()
    for change in ({"n_components": 4}, {"hidden_layer_sizes": (8,)}, {"standardize": False}):
        with pytest.raises(ValueError, match="warm_start=True continues training"):
            vae.set_params(**change).fit(digits)
        vae.set_params(**params)
    with pytest.raises(ValueError, match="64 features"):
        vae.fit(digits[:, :10])
    np.testing.assert_array_equal(vae.transform(digits), before)
    assert vae.n_iter_ == 3


def test_warm_start_stays_on_the_fitted_device(digits, monkeypatch):
    vae = BetaVAETransformer(**FAST_PARAMS, warm_start=True).fit(digits)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="continues training on the fitted device, cpu.*load"):
        vae.set_params(device="cuda").fit(digits)
    assert vae.n_iter_ == 3


def test_warm_start_keeps_the_validation_split(digits):
    vae = BetaVAETransformer(
        **dict(FAST_PARAMS, random_state=None), early_stopping=True, warm_start=True
    ).fit(digits)
    first = vae.net_.train_split.random_state
    vae.fit(digits)
    assert vae.net_.train_split.random_state == first


def test_warm_start_applies_new_training_settings(digits):
    vae = BetaVAETransformer(**FAST_PARAMS).fit(digits)
    vae.set_params(warm_start=True, beta=0.5, learning_rate_init=1e-4, max_iter=2).fit(digits)
    assert vae.net_.criterion_.beta == 0.5
    assert {group["lr"] for group in vae.net_.optimizer_.param_groups} == {1e-4}
    assert vae.n_iter_ == 5


def test_warm_start_on_an_unfitted_estimator_is_a_plain_fit(digits):
    warm = BetaVAETransformer(**FAST_PARAMS, warm_start=True).fit(digits)
    cold = BetaVAETransformer(**FAST_PARAMS).fit(digits)
    np.testing.assert_array_equal(warm.transform(digits), cold.transform(digits))


def _checkpointing(tmp_path):
    def callbacks(*extra):
        checkpoint = Checkpoint(
            dirname=tmp_path, monitor=None, f_params="params.safetensors",
            f_optimizer=None, f_criterion=None, f_history="history.json", use_safetensors=True,
        )
        return [checkpoint, LoadInitState(checkpoint, use_safetensors=True), *extra]

    return callbacks


def test_skorch_checkpoint_and_load_init_state_resume_after_a_crash(digits, tmp_path):
    callbacks = _checkpointing(tmp_path)
    params = dict(EXACT, max_iter=5)
    crashed = BetaVAETransformer(**params, callbacks=callbacks(RaiseAt(4, error=RuntimeError)))
    with pytest.raises(RuntimeError):
        crashed.fit(digits)
    assert (tmp_path / "params.safetensors").exists()
    # A new process: same parameters, the checkpoint of epoch 3 loaded at the
    # start of training, two more epochs.
    resumed = BetaVAETransformer(**dict(params, max_iter=2), callbacks=callbacks()).fit(digits)
    assert resumed.n_iter_ == 5
    whole = BetaVAETransformer(**params).fit(digits)
    np.testing.assert_allclose(resumed.score(digits), whole.score(digits), rtol=0.02)


@pytest.mark.parametrize("resumed_epoch, expected_epochs", [(4, 3), (5, 4)])
def test_interrupting_a_run_resumed_from_a_checkpoint(digits, tmp_path, resumed_epoch, expected_epochs):
    callbacks = _checkpointing(tmp_path)
    BetaVAETransformer(**EXACT, callbacks=callbacks()).fit(digits)  # checkpoint of epoch 3
    resumed = BetaVAETransformer(**EXACT, callbacks=callbacks(RaiseAt(resumed_epoch)))
    with pytest.warns(UserWarning, match=f"end of epoch {expected_epochs}"):
        resumed.fit(digits)
    assert resumed.n_iter_ == expected_epochs
    assert all("train_loss" in row for row in resumed.net_.history)


def test_a_finite_divergence_is_reported(digits):
    # Weights blown up by 1e3 (finite) near the end, as an unstable step
    # would: the loss climbs by orders of magnitude without ever becoming
    # non-finite (as a 4 mm brain fit did), and a few small steps cannot
    # bring it back.
    params = {**FAST_PARAMS, "max_iter": 12}
    with pytest.warns(ConvergenceWarning, match=r"rose from .* \(epoch \d+\) to .* \(epoch 12\)"):
        BetaVAETransformer(**params, callbacks=[ScaleWeightsAt(10, 1e3)]).fit(digits)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        BetaVAETransformer(**params).fit(digits)
        # Early stopping keeps the best epoch: nothing to report.
        BetaVAETransformer(**params, callbacks=[ScaleWeightsAt(10, 1e3)], early_stopping=True,
                           n_iter_no_change=100).fit(digits)


class PoisonWeightsAtEnd(Callback):
    """Set the first weight matrix to NaN when epoch ``epoch`` ends."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            with torch.no_grad():
                next(net.module_.parameters()).view(-1)[0] = float("nan")


def test_non_finite_weights_after_the_last_epoch_roll_back(digits):
    vae = BetaVAETransformer(**dict(EXACT, max_iter=3), callbacks=[PoisonWeightsAtEnd(3)])
    with pytest.raises(FloatingPointError, match=r"weights became non-finite at epoch 3"):
        vae.fit(digits)
    assert vae.n_iter_ == len(vae.net_.history)
    assert all(torch.isfinite(w).all() for w in vae.net_.module_.parameters())
    assert np.isfinite(vae.transform(digits)).all()


def test_an_overflowing_last_step_is_refused(digits):
    # One batch per epoch: the only step of the only epoch overflows the
    # weights after its (finite) loss was checked.
    vae = BetaVAETransformer(**dict(FAST_PARAMS, max_iter=1, batch_size=512),
                             learning_rate_init=1e38)
    with pytest.raises(FloatingPointError, match=r"epoch 1.*No epoch was completed"):
        vae.fit(digits)
    with pytest.raises(NotFittedError):
        vae.transform(digits)


def test_an_overflowing_last_step_of_a_warm_start_keeps_the_model(digits):
    vae = BetaVAETransformer(**dict(EXACT, batch_size=512)).fit(digits)
    before = vae.transform(digits)
    vae.set_params(warm_start=True, max_iter=1, learning_rate_init=1e300)
    with pytest.raises(FloatingPointError, match=r"epoch 4.*end of epoch 3"):
        vae.fit(digits)
    assert vae.n_iter_ == 3
    np.testing.assert_array_equal(vae.transform(digits), before)


# The input weights' learning rate (input_lr_scale) ------------------------------

WIDE = np.random.RandomState(3).normal(size=(60, 256))


def _lr_of_each_parameter(net):
    return {id(param): group["lr"] for group in net.optimizer_.param_groups for param in group["params"]}


@pytest.mark.parametrize("hidden_layer_sizes", [(16,), ()])
@pytest.mark.parametrize("input_lr_scale, factor", [("auto", 64 / 256), (1.0, 1.0), (0.5, 0.5)])
def test_only_the_weights_that_read_the_input_get_the_scaled_rate(hidden_layer_sizes, input_lr_scale, factor):
    vae = BetaVAETransformer(**dict(FAST_PARAMS, hidden_layer_sizes=hidden_layer_sizes, max_iter=1),
                             learning_rate_init=1e-2, input_lr_scale=input_lr_scale).fit(WIDE)
    lrs = _lr_of_each_parameter(vae.net_)
    encoder = vae.net_.module_.encoder
    reading = {id(p) for p in encoder.parameters() if p.ndim == 2 and p.shape[1] == WIDE.shape[1]}
    assert len(reading) == (2 if hidden_layer_sizes else 1)
    assert len(lrs) == len(list(vae.net_.module_.parameters()))
    for name, param in vae.net_.module_.named_parameters():
        expected = 1e-2 * factor if id(param) in reading else 1e-2
        assert lrs[id(param)] == pytest.approx(expected), name


def test_auto_leaves_narrow_inputs_as_they_were(digits):
    """64 features: "auto" is a factor of 1, the same fit bit for bit."""
    auto = BetaVAETransformer(**FAST_PARAMS, input_lr_scale="auto").fit(digits)
    one = BetaVAETransformer(**FAST_PARAMS, input_lr_scale=1.0).fit(digits)
    np.testing.assert_array_equal(auto.transform(digits), one.transform(digits))


def test_a_smaller_input_rate_moves_the_input_weights_less():
    def input_weight_change(scale):
        vae = BetaVAETransformer(**dict(FAST_PARAMS, max_iter=1), init="random", warm_start=True,
                                 input_lr_scale=scale).fit(WIDE)
        before = vae.net_.module_.encoder.body[0][0].weight.detach().clone()
        vae.set_params(max_iter=2).fit(WIDE)
        return (vae.net_.module_.encoder.body[0][0].weight.detach() - before).abs().max().item()

    # Adam's steps are about lr each: the largest change follows the scale.
    assert input_weight_change(0.01) < 0.05 * input_weight_change(1.0)


def test_warm_start_applies_a_new_input_scale():
    vae = BetaVAETransformer(**FAST_PARAMS).fit(WIDE)
    vae.set_params(warm_start=True, input_lr_scale=0.5, learning_rate_init=1e-2, max_iter=1).fit(WIDE)
    assert sorted(group["lr"] for group in vae.net_.optimizer_.param_groups) == pytest.approx(
        [5e-3, 5e-3, 1e-2])


def test_a_scale_other_than_one_with_your_own_encoder_is_an_error_that_keeps_the_fit():
    from tests.conftest import LinearEncoder

    vae = BetaVAETransformer(**FAST_PARAMS, encoder=LinearEncoder(256, 3),
                             input_lr_scale="auto").fit(WIDE)
    assert len(vae.net_.optimizer_.param_groups) == 1  # one rate for all
    Z = vae.transform(WIDE)
    with pytest.raises(ValueError, match="with your own encoder it must be 'auto' or 1"):
        vae.set_params(input_lr_scale=0.5).fit(WIDE)
    np.testing.assert_array_equal(vae.transform(WIDE), Z)


def test_saved_models_keep_their_input_groups(tmp_path):
    vae = BetaVAETransformer(**FAST_PARAMS).fit(WIDE)
    vae.save(tmp_path / "m.safetensors")
    loaded = BetaVAETransformer.load(tmp_path / "m.safetensors")
    assert [g["lr"] for g in loaded.net_.optimizer_.param_groups] == [
        g["lr"] for g in vae.net_.optimizer_.param_groups]
    assert sum(bool(g.get("reads_input")) for g in loaded.net_.optimizer_.param_groups) == 2


def test_the_default_input_rate_keeps_wide_low_rank_fits_at_pcas_error():
    """1,500 rows of 2,000 features (rank 5 plus unit noise), 10 epochs: on
    seeds 0-2 and on 3,000 x 4,000 the default ended at 1.004-1.006 times
    PCA's held-out error, one rate for all weights at 1.012-1.025."""
    from sklearn.decomposition import PCA

    rng = np.random.RandomState(0)
    X = rng.standard_normal((1800, 5)) @ rng.standard_normal((5, 2000)) + rng.standard_normal((1800, 2000))
    X_train, X_test = X[:1500].astype(np.float32), X[1500:].astype(np.float32)
    pca = PCA(5).fit(X_train)
    pca_error = np.mean((pca.inverse_transform(pca.transform(X_test)) - X_test) ** 2)
    errors = {}
    for scale in ("auto", 1.0):
        vae = BetaVAETransformer(device="cpu", n_components=5, hidden_layer_sizes=(64,), max_iter=10,
                                 random_state=0, input_lr_scale=scale).fit(X_train)
        errors[scale] = np.mean((vae.inverse_transform(vae.transform(X_test)) - X_test) ** 2) / pca_error
        losses = vae.net_.history[:, "train_loss"]
        if scale == "auto":
            assert max(losses[1:]) < 1.02 * min(losses)  # no spike
    assert errors["auto"] < 1.01
    assert errors["auto"] < errors[1.0]


def test_fit_and_load_work_inside_inference_mode(digits, tmp_path):
    # fit died on "element 0 of tensors does not require grad", and left a
    # warm-started model (or one loaded there) unable to train ever after.
    expected = BetaVAETransformer(**FAST_PARAMS).fit(digits)
    with torch.inference_mode():
        vae = BetaVAETransformer(**FAST_PARAMS).fit(digits)
        assert torch.is_inference_mode_enabled()  # the caller's mode is restored
    np.testing.assert_array_equal(vae.transform(digits), expected.transform(digits))
    with torch.inference_mode():
        vae.set_params(warm_start=True, max_iter=1).fit(digits)
    vae.fit(digits)
    assert vae.n_iter_ == 5
    expected.save(tmp_path / "vae.safetensors")
    with torch.inference_mode():
        loaded = BetaVAETransformer.load(tmp_path / "vae.safetensors")
    loaded.set_params(warm_start=True, max_iter=2).fit(digits)
    assert loaded.n_iter_ == 5
    np.testing.assert_array_equal(loaded.transform(digits), vae.transform(digits))


def test_a_model_unpickled_inside_inference_mode_trains_on(digits):
    # Its tensors were inference tensors: every later warm start failed on
    # "Inplace update to inference tensor outside InferenceMode".
    import pickle

    vae = BetaVAETransformer(**FAST_PARAMS).fit(digits)
    data = pickle.dumps(vae)
    with torch.inference_mode():
        revived = pickle.loads(data)
    vae.set_params(warm_start=True, max_iter=2).fit(digits)
    revived.set_params(warm_start=True, max_iter=2).fit(digits)
    np.testing.assert_array_equal(revived.transform(digits), vae.transform(digits))


def test_a_gpu_fit_draws_the_weights_and_shuffles_of_a_cpu_fit(monkeypatch):
    """On a GPU the noise has a generator of its own, seeded from the fit's
    CPU generator without advancing it: the same seed then starts both
    fits from the same weights and shuffles. (A CPU generator stands in
    for the CUDA one.)"""
    from types import SimpleNamespace

    from sklearn_betavae._training import private_rng, seed_state

    cpu_generator = torch.Generator
    monkeypatch.setattr(torch, "Generator", lambda device="cpu": cpu_generator())
    draws, noises = {}, {}
    for device in ("cpu", "cuda"):
        net = SimpleNamespace()
        with private_rng(net, seed_state(0), torch.device(device)):
            noises[device] = net.noise_generator_ is not net.generator_
            draws[device] = torch.rand(6, generator=net.generator_)
    assert noises == {"cpu": False, "cuda": True}
    assert torch.equal(draws["cpu"], draws["cuda"])


@requires_cuda
def test_a_warm_start_continues_on_the_same_gpu_however_named(digits):
    model = BetaVAETransformer(**dict(FAST_PARAMS, device="cuda:0")).fit(digits)
    epochs = model.n_iter_
    model.set_params(warm_start=True, device="cuda", max_iter=1)
    assert model.fit(digits).n_iter_ == epochs + 1
