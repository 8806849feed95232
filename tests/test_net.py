import numpy as np
import pytest
import torch

from sklearn_betavae import BetaVAETransformer
from tests.conftest import FAST_PARAMS

TERMS = ("loss", "rec_loss", "kl_loss")


def test_history_records_every_loss_term_per_epoch(digits):
    vae = BetaVAETransformer(**FAST_PARAMS).fit(digits)
    history = vae.net_.history
    assert len(history) == FAST_PARAMS["max_iter"] == vae.n_iter_
    for term in TERMS:
        values = history[:, f"train_{term}"]
        assert len(values) == 3 and np.all(np.isfinite(values))
    # The epoch loss is the batch-size-weighted mean of rec + beta * kl.
    last = history[-1]
    assert last["train_loss"] == pytest.approx(
        last["train_rec_loss"] + vae.beta * last["train_kl_loss"], rel=1e-5
    )
    assert "valid_loss" not in last


def test_validation_split_records_valid_terms(digits):
    params = {**FAST_PARAMS, "early_stopping": True, "validation_fraction": 0.25}
    vae = BetaVAETransformer(**params).fit(digits)
    last = vae.net_.history[-1]
    for term in TERMS:
        assert np.isfinite(last[f"valid_{term}"])
    assert sum(b["valid_batch_size"] for b in last["batches"] if "valid_batch_size" in b) == 60


def test_early_stopping_stops_before_max_iter(digits):
    params = {**FAST_PARAMS, "max_iter": 200, "early_stopping": True, "n_iter_no_change": 2,
              "tol": 0.5}
    vae = BetaVAETransformer(**params).fit(digits)
    assert vae.n_iter_ < 200


def test_training_reduces_the_loss(digits):
    # A random start, far from the optimum (the PCA start is near it).
    vae = BetaVAETransformer(**{**FAST_PARAMS, "max_iter": 30, "init": "random"}).fit(digits)
    losses = vae.net_.history[:, "train_loss"]
    reconstruction = vae.net_.history[:, "train_rec_loss"]
    assert losses[-1] < losses[0]
    assert reconstruction[-1] < 0.9 * reconstruction[0]


def test_kl_warmup_ramps_the_gradient_weight_only(digits):
    vae = BetaVAETransformer(**{**FAST_PARAMS, "max_iter": 4, "beta_warmup": 0.5}).fit(digits)
    assert dict(vae.net_.callbacks_)["kl_warmup"].epochs == 2 and vae.net_.kl_weight_ == 1.0
    # Recorded losses use the full beta even while the weight ramps up.
    first = vae.net_.history[0]
    assert first["train_loss"] == pytest.approx(
        first["train_rec_loss"] + vae.beta * first["train_kl_loss"], rel=1e-5)
    no_warmup = BetaVAETransformer(**{**FAST_PARAMS, "max_iter": 4, "beta_warmup": 0.0})
    assert not np.array_equal(no_warmup.fit(digits).transform(digits), vae.transform(digits))


def test_criterion_is_the_beta_vae_loss(digits):
    from sklearn_betavae import BetaVAELoss

    vae = BetaVAETransformer(beta=2.5, default_dist="laplace", **FAST_PARAMS).fit(digits)
    assert isinstance(vae.net_.criterion_, BetaVAELoss)
    assert vae.net_.criterion_.beta == 2.5
    assert vae.net_.criterion_.default_dist == "laplace"


def test_get_loss_ignores_targets(digits):
    vae = BetaVAETransformer(**FAST_PARAMS).fit(digits)
    net = vae.net_
    X = torch.as_tensor(((digits - vae.mean_) / vae.scale_).astype(np.float32))
    with torch.no_grad():
        y_pred = net.infer(X)
        loss = net.get_loss(y_pred, None, X=X)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_verbose_prints_an_epoch_table(digits, capsys):
    BetaVAETransformer(**{**FAST_PARAMS, "verbose": 1}).fit(digits)
    out = capsys.readouterr().out
    assert "train_rec_loss" in out and "train_kl_loss" in out
    assert "Re-initializing" not in out
    BetaVAETransformer(**FAST_PARAMS).fit(digits)
    assert capsys.readouterr().out == ""


def test_verbose_2_adds_a_progress_bar_once(digits, capsys):
    from skorch.callbacks import ProgressBar

    BetaVAETransformer(**{**FAST_PARAMS, "verbose": 1}).fit(digits)
    assert "it/s" not in capsys.readouterr().err  # verbose=1: the table only
    vae = BetaVAETransformer(**{**FAST_PARAMS, "verbose": 2}).fit(digits)
    captured = capsys.readouterr()
    assert "train_rec_loss" in captured.out
    assert "it/s" in captured.err or "s/it" in captured.err  # tqdm's bar, on stderr
    assert [name for name, _ in vae.net_.callbacks_].count("progress_bar") == 1
    own = BetaVAETransformer(**{**FAST_PARAMS, "verbose": 2, "callbacks": [ProgressBar()]}).fit(digits)
    assert sum(isinstance(cb, ProgressBar) for _, cb in own.net_.callbacks_) == 1


def test_user_callbacks_are_the_instances_given(digits):
    """As in skorch: what a callback records lands on the user's instance."""
    from skorch.callbacks import Callback

    class CountEpochs(Callback):
        def initialize(self):
            self.epochs_ = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs_ += 1

    callback = CountEpochs()
    callbacks = [("count", callback)]
    vae = BetaVAETransformer(**FAST_PARAMS, callbacks=callbacks).fit(digits)
    assert callback.epochs_ == FAST_PARAMS["max_iter"]
    assert dict(vae.net_.callbacks_)["count"] is callback
    assert vae.callbacks == [("count", callback)]  # the list itself is not changed
    # A second fit re-initialises it, as skorch does.
    vae.set_params(early_stopping=True).fit(digits)
    assert callback.epochs_ <= FAST_PARAMS["max_iter"] and callbacks == [("count", callback)]


def test_a_callback_holding_an_open_file_works(digits, tmp_path):
    from skorch.callbacks import Callback

    class LogLosses(Callback):
        def __init__(self, file):
            self.file = file

        def on_epoch_end(self, net, **kwargs):
            self.file.write(f"{net.history[-1, 'train_loss']}\n")

    with open(tmp_path / "log.txt", "w") as file:
        vae = BetaVAETransformer(**FAST_PARAMS, callbacks=[LogLosses(file)]).fit(digits)
        vae.set_params(warm_start=True).fit(digits)
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert len(lines) == 2 * FAST_PARAMS["max_iter"]
    assert [float(line) for line in lines] == list(vae.net_.history[:, "train_loss"])


def test_large_finite_weights_are_still_kept_for_roll_back(digits):
    """The finiteness check must not overflow: 1e19 in every entry is finite,
    though an L2 norm of it is not."""
    net = BetaVAETransformer(**FAST_PARAMS).fit(digits).net_
    with torch.no_grad():
        next(net.module_.parameters()).fill_(1e19)
    guard = net.last_finite_state()
    guard.epochs_completed_ = 3
    guard._keep_if_finite(net)
    assert guard.kept_["epochs"] == 3
    with torch.no_grad():
        next(net.module_.parameters())[0, 0] = float("inf")
    guard.forget()
    guard._keep_if_finite(net)
    assert guard.kept_ is None
