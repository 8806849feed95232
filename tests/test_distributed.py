"""Scale-out: training through Accelerate (``_distributed``) and searches on Dask.

The multi-process tests start real processes on the loopback interface: two
``accelerate launch`` workers (gloo, CPU) and a two-worker Dask
``LocalCluster``. Each takes about 10-15 s.
"""

import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils._param_validation import InvalidParameterError
from skorch.history import History

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae._data import RowDataset
from sklearn_betavae._distributed import batch_loader
from sklearn_betavae._modules import VAEModule

from .conftest import FAST_PARAMS

accelerate = pytest.importorskip("accelerate")


@pytest.fixture
def accelerator():
    return accelerate.Accelerator(cpu=True)


# One process, in this one --------------------------------------------------


def test_batch_loader_fetches_whole_standardized_batches():
    X = np.arange(40, dtype=np.float32).reshape(10, 4)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    rows = [7, 2, 5, 0, 9]
    dataset = torch.utils.data.Subset(RowDataset(X, mean=mean, scale=scale), rows)
    batches = list(batch_loader(dataset, batch_size=2))
    assert [len(batch) for batch, _ in batches] == [2, 2, 1]
    assert all(y is None for _, y in batches)
    assert_allclose(torch.cat([batch for batch, _ in batches]).numpy(), (X[rows] - mean) / scale,
                    rtol=1e-6)



def test_accelerated_fit_is_an_ordinary_fitted_estimator(digits, accelerator, capsys, tmp_path):
    vae = BetaVAETransformer(**FAST_PARAMS, accelerator=accelerator).fit(digits)
    assert type(vae.net_).__name__ == "AcceleratedBetaVAENet"
    # Unwrapped after training: a plain module, optimizer and history.
    assert type(vae.net_.module_) is VAEModule
    assert type(vae.net_.optimizer_) is torch.optim.Adam
    assert type(vae.net_.history) is History
    assert vae.n_iter_ == len(vae.net_.history) == FAST_PARAMS["max_iter"]
    assert vae.device_ == torch.device("cpu")
    assert capsys.readouterr().out == ""  # verbose=0 is silent here too
    assert np.isfinite(vae.transform(digits)).all()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # skorch must not move the net anywhere
        copy = pickle.loads(pickle.dumps(vae))
    assert copy.device_ == vae.device_ and copy.net_.device is None
    assert_array_equal(copy.transform(digits), vae.transform(digits))
    vae.save(tmp_path / "model.safetensors")
    loaded = BetaVAETransformer.load(tmp_path / "model.safetensors")
    assert loaded.accelerator is None
    assert_array_equal(loaded.transform(digits), vae.transform(digits))


def test_accelerated_fit_trains_like_the_plain_one(digits, accelerator):
    # Same objective, batches drawn by a DataLoader instead of SliceLoader:
    # a different random stream, so close rather than identical.
    params = {**FAST_PARAMS, "max_iter": 15}
    plain = BetaVAETransformer(**params).fit(digits)
    accelerated = BetaVAETransformer(**params, accelerator=accelerator).fit(digits)
    assert accelerated.score(digits) == pytest.approx(plain.score(digits), rel=0.03)


def test_the_accelerator_lets_go_of_each_fit(digits, accelerator):
    # It keeps what it prepared; a search or warm starts sharing it must not
    # keep every network and training set alive (nor pickle them).
    vae = BetaVAETransformer(**FAST_PARAMS, accelerator=accelerator, warm_start=True)
    vae.fit(digits)
    size = len(pickle.dumps(vae))
    vae.fit(digits)
    assert accelerator._models == accelerator._optimizers == accelerator._dataloaders == []
    assert len(pickle.dumps(vae)) < size + 10_000  # the history grew; no second copy of X
    assert len(pickle.dumps(vae)) < digits.nbytes


def test_accelerated_verbose_prints_the_table(digits, accelerator, capsys):
    BetaVAETransformer(**FAST_PARAMS, accelerator=accelerator, verbose=1).fit(digits)
    out = capsys.readouterr().out
    assert "train_loss" in out and out.count("\n") >= FAST_PARAMS["max_iter"]


def test_accelerated_warm_start_continues(digits, accelerator):
    vae = BetaVAETransformer(**FAST_PARAMS, accelerator=accelerator, warm_start=True)
    vae.fit(digits)
    module = vae.net_.module_
    vae.fit(digits)
    assert vae.n_iter_ == len(vae.net_.history) == 2 * FAST_PARAMS["max_iter"]
    assert vae.net_.module_ is module  # the same network, trained further
    assert type(vae.net_.module_) is VAEModule


def test_warm_start_cannot_switch_the_accelerator(digits, accelerator):
    vae = BetaVAETransformer(**FAST_PARAMS, warm_start=True).fit(digits)
    with pytest.raises(ValueError, match="without an accelerator"):
        vae.set_params(accelerator=accelerator).fit(digits)
    assert vae.n_iter_ == FAST_PARAMS["max_iter"]


def test_accelerator_is_cloned_and_validated(accelerator, digits):
    vae = BetaVAETransformer(accelerator=accelerator)
    assert isinstance(clone(vae).accelerator, accelerate.Accelerator)
    with pytest.raises(InvalidParameterError, match="accelerator"):
        BetaVAETransformer(**FAST_PARAMS, accelerator="yes").fit(digits)


class _ElsewhereAccelerator:
    """Just enough of an accelerator to say it places models on another device."""

    device = torch.device("meta")
    num_processes = 1

    def prepare(self, *objects):
        raise AssertionError("fit must refuse before preparing anything")

    backward = unwrap_model = prepare


def test_several_processes_need_even_batches(digits, monkeypatch, accelerator):
    monkeypatch.setattr(type(accelerator), "num_processes", property(lambda self: 2))
    monkeypatch.setattr(accelerator, "even_batches", False, raising=False)
    with pytest.raises(ValueError, match="even_batches=True"):
        BetaVAETransformer(**FAST_PARAMS, accelerator=accelerator).fit(digits)


def test_accelerator_device_must_agree_with_device(digits):
    vae = BetaVAETransformer(**FAST_PARAMS, accelerator=_ElsewhereAccelerator())
    with pytest.raises(ValueError, match="accelerator's device, meta"):
        vae.fit(digits)
    assert not hasattr(vae, "net_")


# Two processes: accelerate launch ------------------------------------------

_WORKER = """
import json, sys
import numpy as np
import torch
from accelerate import Accelerator
from skorch.callbacks import Callback
from sklearn.datasets import load_digits
from sklearn_betavae import BetaVAETransformer

out, mode = sys.argv[1], sys.argv[2]
accelerator = Accelerator(cpu=True)
rank = accelerator.process_index


class BreakProcessOne(Callback):
    # The weights of process 1 only become NaN at the start of epoch 4.
    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if rank == 1 and training and len(net.history) == 4:
            with torch.no_grad():
                next(net.module_.parameters()).fill_(float("nan"))


X = load_digits().data.astype(np.float32)
vae = BetaVAETransformer(
    n_components=4, max_iter=20, batch_size=64, random_state=0, accelerator=accelerator,
    early_stopping=True, n_iter_no_change=100,
    callbacks=[BreakProcessOne()] if mode == "diverge" else None,
)
try:
    vae.fit(X[:1500])
    error = None
except FloatingPointError as caught:
    error = str(caught)
weights = {name: value.numpy() for name, value in vae.net_.module_.state_dict().items()}
np.savez(f"{out}/weights{rank}.npz", **weights)
with open(f"{out}/result{rank}.json", "w") as f:
    json.dump({"processes": accelerator.num_processes, "score": vae.score(X[1500:]),
               "history": vae.net_.history.to_list(), "n_iter": vae.n_iter_, "error": error}, f)
"""


def _launch_two_processes(tmp_path, mode):
    """Run the worker on two gloo CPU processes; its results and weights per rank."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER))
    # accelerate's CPU launcher runs several processes only through mpirun;
    # its torchrun launcher (--multi_gpu) with Accelerator(cpu=True) gives
    # the same gloo process group on the loopback interface, without MPI.
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
        "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
        "--main_process_port", str(_free_port()), str(script), str(tmp_path), mode,
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"result{rank}.json").read_text()) for rank in (0, 1)]
    weights = [np.load(tmp_path / f"weights{rank}.npz") for rank in (0, 1)]
    assert results[0]["processes"] == results[1]["processes"] == 2
    return results, weights


def _assert_same_weights(weights):
    assert sorted(weights[0]) == sorted(weights[1])
    for name in weights[0]:
        assert_array_equal(weights[0][name], weights[1][name])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_one_model(tmp_path):
    results, weights = _launch_two_processes(tmp_path, "train")
    # Every process ends with the same weights and the same history
    # (DistributedHistory: epoch losses over both processes' batches).
    _assert_same_weights(weights)
    # (Epoch durations are each process's own.)
    without_time = [[{key: value for key, value in epoch.items() if key != "dur"}
                     for epoch in result["history"]] for result in results]
    assert without_time[0] == without_time[1]
    assert results[0]["score"] == results[1]["score"]
    history = results[0]["history"]
    assert len(history) == 20
    # Every training row once per epoch; the last batch of each process may
    # be filled up with rows from the start (as DistributedSampler does).
    trained = sum(batch.get("train_batch_size", 0) for batch in history[0]["batches"])
    assert 1350 <= trained < 1350 + 2 * 64
    # Validation is not sharded: each process scores all 150 rows.
    validated = sum(batch.get("valid_batch_size", 0) for batch in history[0]["batches"])
    assert validated == 2 * 150

    # Against one process with the same batch per step (2 x 64): the held-out
    # ELBO within 2% (seen: -130.15 with two processes, -129.87 to -130.14
    # over three seeds with one).
    X = load_digits().data.astype(np.float32)
    single = BetaVAETransformer(
        n_components=4, max_iter=20, batch_size=128, random_state=0, device="cpu",
        early_stopping=True, n_iter_no_change=100,
    ).fit(X[:1500])
    assert results[0]["score"] == pytest.approx(single.score(X[1500:]), rel=0.02)


@pytest.mark.slow
def test_a_nan_in_one_process_stops_both(tmp_path):
    # Without a shared check the other process would wait forever in the
    # gradients' all-reduce (the launch would hit its timeout).
    results, weights = _launch_two_processes(tmp_path, "diverge")
    assert "became nan at epoch 4" in results[1]["error"]
    assert "non-finite in another process at epoch 4" in results[0]["error"]
    for result in results:
        assert "keeps its state from the end of epoch 3" in result["error"]
        assert result["n_iter"] == len(result["history"]) == 3
        assert np.isfinite(result["score"])
    _assert_same_weights(weights)


# A grid search on a Dask cluster -------------------------------------------


@contextmanager
def _torch_threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_grid_search_on_a_dask_cluster_matches_sequential():
    distributed = pytest.importorskip("distributed")
    import joblib

    X = load_digits().data[:400]
    pipe = Pipeline([
        ("scale", MinMaxScaler()),
        ("vae", BetaVAETransformer(device="cpu", hidden_layer_sizes=(32,), max_iter=3, random_state=0)),
    ])
    grid = {"vae__beta": [1.0, 4.0], "vae__n_components": [2, 3]}
    # Dask's workers run torch on one thread; so does the reference, because
    # the thread count changes the last bits of a float sum.
    with _torch_threads(1):
        sequential = GridSearchCV(pipe, grid, cv=2).fit(X)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster), joblib.parallel_backend("dask"):
        on_dask = GridSearchCV(pipe, grid, cv=2, n_jobs=-1).fit(X)
    for key in ("mean_test_score", "split0_test_score", "split1_test_score"):
        assert_array_equal(on_dask.cv_results_[key], sequential.cv_results_[key])
    assert on_dask.best_params_ == sequential.best_params_
    assert_allclose(on_dask.transform(X), sequential.transform(X), rtol=1e-5, atol=1e-6)
