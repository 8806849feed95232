"""benchmarks/bench_training.py: the loops beyond the plain one (issue 36, part 4), on the CPU."""

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import requires_cuda

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_training():
    spec = importlib.util.spec_from_file_location("bench_training", ROOT / "benchmarks" / "bench_training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X = (rng.normal(size=(230, 3)) @ rng.normal(size=(3, 20)) + rng.normal(size=(230, 20))).astype(np.float32)
    return X[:200], X[200:]


def _args(batch_size, epochs=2):
    return argparse.Namespace(epochs=epochs, batch_size=batch_size, n_components=3, hidden=(16,), beta=4.0)


@pytest.mark.parametrize("batch_size", [32, 50])
def test_the_graphed_loop_takes_the_plain_loops_steps(bench_training, data, batch_size):
    """Without CUDA the graphed loop runs its steps eagerly: full batches
    through the fixed index tensor, the partial one (200 rows in batches of
    32) on its own. They are the plain loop's steps, so the result is the same."""
    device = torch.device("cpu")
    plain_times, plain = bench_training.plain_loop_run(*data, _args(batch_size), device)
    graphed_times, graphed = bench_training.graphed_loop_run(*data, _args(batch_size), device)
    assert len(plain_times) == len(graphed_times) == 2
    np.testing.assert_array_equal(graphed, plain)


def test_bf16_autocast_trains_and_is_reported_beside_the_plain_loop(bench_training, data):
    _, plain = bench_training.plain_loop_run(*data, _args(32), torch.device("cpu"))
    _, bf16 = bench_training.plain_loop_run(*data, _args(32), torch.device("cpu"), torch.bfloat16)
    assert np.isfinite(bf16).all() and not np.array_equal(bf16, plain)
    mse = [np.mean((reconstruction - data[1]) ** 2) for reconstruction in (plain, bf16)]
    assert mse[1] < 1.5 * mse[0], mse


def test_a_failing_method_is_a_row_and_the_others_still_run(bench_training, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise RuntimeError("CUDA graph capture failed | here")

    monkeypatch.setattr(bench_training, "graphed_loop_run", fail)
    monkeypatch.setattr(sys, "argv", ["bench_training.py", "--datasets", "digits", "--epochs", "2",
                                      "--methods", "plain loop", "graphed loop", "PCA"])
    with pytest.raises(SystemExit) as exit_:
        bench_training.main()
    assert exit_.value.code == 1
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| digits")]
    assert [row.split("|")[2].strip() for row in rows] == ["plain loop", "graphed loop", "PCA"]
    assert "failed: RuntimeError: CUDA graph capture failed / here" in rows[1]


@requires_cuda
def test_on_a_gpu_the_graphed_loop_trains_as_the_plain_loop_does(bench_training, data):
    """The captured step's replays update the weights (200 rows in batches
    of 32: 6 replays and an eager partial batch an epoch), from the plain
    loop's start: the held-out error falls as the plain loop's does (on the
    CPU, 6.5 untrained and 3.9 after 20 epochs) and ends near it (the
    noise's draws differ)."""
    device = torch.device("cuda")
    untrained, plain, graphed = (
        np.mean((run(*data, _args(32, epochs), device)[1] - data[1]) ** 2)
        for run, epochs in [(bench_training.plain_loop_run, 0), (bench_training.plain_loop_run, 20),
                            (bench_training.graphed_loop_run, 20)]
    )
    assert plain < 0.8 * untrained, (untrained, plain)
    assert abs(graphed - plain) < 0.05 * plain, (plain, graphed)
