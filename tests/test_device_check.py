"""benchmarks/device_check.py: its quick run on the CPU, its time limits, and its reading of the logs."""

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.py"


@pytest.fixture(scope="module")
def device_check():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(summary):
    """``{step: (status, key figure)}`` from summary.md."""
    rows = [line.strip("|").split("|") for line in summary.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): (cells[1].strip(), cells[3].strip()) for cells in rows[1:]}


@pytest.mark.slow
def test_quick_run_on_the_cpu_passes_every_step(tmp_path):
    """The GPU check's own code, at small sizes: every step passes (the gpu
    tests skip without CUDA) and writes its log and the summary. A budget
    well above --quick's 110 s, so that a loaded machine tests the code, not
    its speed (the speed is the script's own report, never a unit test's)."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--budget", "600",
         "--also", "train beyond", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = _table((tmp_path / "summary.md").read_text())
    expected = ["gpu tests", "smoke", "inference", "train b1024", "train b128", "fit set-up", "train beyond",
                "test suite"]
    assert list(table) == expected, table
    for step in expected:
        assert (tmp_path / (step.replace(" ", "_") + ".log")).is_file()
        assert table[step][0] == ("skip" if step == "gpu tests" and not torch.cuda.is_available() else "pass")
    assert table["smoke"][1] == "9 of 9 checks passed"
    assert "estimator" in table["train b128"][1] and "skorch default" in table["train b128"][1]
    assert "transform" in table["inference"][1]
    assert table["fit set-up"][1].startswith("2000x256: set-up ")
    assert all(method in table["train beyond"][1]
               for method in ("graphed loop", "plain loop bf16", "estimator graphed"))
    assert f"torch {torch.__version__}" in result.stdout


def test_a_hanging_step_is_killed_and_the_check_goes_on(device_check, monkeypatch, tmp_path):
    python = sys.executable
    pid_file = tmp_path / "grandchild.pid"
    # The hanging step's child sleeps in a process of its own: the whole group goes.
    grandchild = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    hang = [
        python,
        "-c",
        f"import subprocess, time; subprocess.Popen([{python!r}, '-c', {grandchild!r}]); "
        "print('started', flush=True); time.sleep(60)",
    ]
    fail = [
        python,
        "-c",
        "print('1 failed, 2 passed in 0.1s'); print('FAILED tests/t.py::test_x - E'); raise SystemExit(1)",
    ]
    ok = [python, "-c", "print('3 passed in 0.1s')"]
    monkeypatch.setattr(
        device_check,
        "steps",
        lambda args: [
            ("hang", hang, 2, device_check._summarise_pytest),
            ("failing", fail, 30, device_check._summarise_pytest),
            ("passing", ok, 30, device_check._summarise_pytest),
        ],
    )
    monkeypatch.setattr(sys, "argv", ["device_check.py", "--device", "cpu", "--out", str(tmp_path)])
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_:
        device_check.main()
    assert exit_.value.code == 1
    assert time.perf_counter() - start < 30
    table = _table((tmp_path / "summary.md").read_text())
    assert table["hang"] == ("fail", "timed out at 2 s")
    assert table["failing"] == ("fail", "1 failed, 2 passed; test_x")
    assert table["passing"] == ("pass", "3 passed")
    assert "started" in (tmp_path / "hang.log").read_text()
    assert "timed out" in (tmp_path / "hang.log").read_text()
    assert _gone(int(pid_file.read_text())), "the step's grandchild outlived its limit"

    # A budget spent: the steps after it are skipped, saying why.
    monkeypatch.setattr(sys, "argv", ["device_check.py", "--out", str(tmp_path), "--budget", "3"])
    with pytest.raises(SystemExit):
        device_check.main()
    table = _table((tmp_path / "summary.md").read_text())
    assert table["failing"] == ("skip", "no time left in the 3 s budget")


def test_steps_import_the_checkouts_package_where_it_is_not_installed(device_check, monkeypatch, tmp_path):
    """A GPU machine has the checkout but not the package installed, and the
    steps' scripts sit in benchmarks/: the step's path must name the
    checkout itself (first, so that it is this checkout that is checked),
    keeping what PYTHONPATH already held (the carried wheels)."""
    script = tmp_path / "where.py"
    script.write_text("import sys; print(sys.path[1:3])")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "wheels"))
    log = tmp_path / "where.log"
    code, _ = device_check.run_step([sys.executable, str(script)], 30, log, {})
    assert code == 0
    assert repr([str(ROOT), str(tmp_path / "wheels")]) in log.read_text()


def _gone(pid, wait=5.0):
    """Whether ``pid`` has exited (a zombie waiting for its reaper counts)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_benchmark_tables_give_the_key_figures(device_check):
    training = """| data | method | s/epoch | samples/s | peak MB | held-out MSE | time / plain loop |
|---|---|---|---|---|---|---|
| big 160000x4096 | plain loop | 0.600 | 266,667 | 9 | 1.07 | 1.00 |
| big 160000x4096 | estimator | 0.630 | 253,968 | 9 | 1.05 | 1.05 |
| big 160000x4096 | skorch default | 2.520 | 63,492 | 9 | 1.07 | 4.20 |
"""
    assert device_check._summarise_training(0, training) == (
        "pass",
        "plain loop 266,667 samples/s (held-out MSE 1.07); estimator 1.05x plain; "
        "skorch default 4.00x estimator",
    )
    cut_short = training.rsplit("| big", 1)[0]
    assert device_check._summarise_training(None, cut_short) == (
        "fail",
        "plain loop 266,667 samples/s (held-out MSE 1.07); estimator 1.05x plain",
    )
    beyond = training.split("| big 160000x4096 | estimator")[0] + (
        "| big 160000x4096 | graphed loop | 0.200 | 800,000 | 9 | 1.07 | 0.33 |\n"
        "| big 160000x4096 | plain loop bf16 | failed: RuntimeError: no bf16 / here | - | - | - | - |\n"
        "| big 160000x4096 | estimator graphed | 0.300 | 533,333 | 9 | 1.08 | 0.50 |\n")
    assert device_check._summarise_training(1, beyond, methods=device_check.BEYOND_METHODS) == (
        "fail",
        "plain loop 266,667 samples/s (held-out MSE 1.07); graphed loop 0.33x plain (held-out MSE 1.07); "
        "estimator graphed 0.50x plain (held-out MSE 1.08); "
        "plain loop bf16 failed: RuntimeError: no bf16 / here",
    )
    inference = """| features | call | estimator s | peak MB | PCA s | plain torch s | estimator / plain |
|---|---|---|---|---|---|---|
| 8,656 | transform | 0.034 | 1 | 0.005 | 0.004 | 8.60 |
| 200,000 | transform | 0.200 | 1 | 0.100 | 0.029 | 6.90 |
| 200,000 | score_samples | 0.200 | 1 | 0.100 | 0.148 | 1.35 |
"""
    assert device_check._summarise_inference(0, inference) == (
        "pass",
        "worst over widths, estimator / plain pass: transform 8.60x (8,656), score_samples 1.35x (200,000)",
    )
    setup = """bench_fit_setup: torch 2.11.0, 16 thread(s), cuda (NVIDIA H100), 10 components, best of 1
   rows x features   PCA s  set-up s  set-up / PCA
       160000x4096    4.10      1.20          0.29
"""
    assert device_check._summarise_setup(0, setup) == (
        "pass", "160000x4096: set-up 1.20 s, 0.29x a randomized PCA fit (4.10 s)")
    assert device_check._summarise_setup(None, setup.rsplit("\n", 2)[0]) == ("fail", "")
    sprites = (
        "| method | seed | beta-VAE score % (published) | FactorVAE score % | MIG | DCI D "
        "| held-out rec. (SSE / image) | fit s |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| beta-VAE | 0 | 91.5 (99.2) | 70.2 | 0.210 | 0.305 | 28.4 | 412.0 |\n"
    )
    assert device_check._summarise_sprites(0, sprites) == (
        "pass", "beta-VAE: beta-VAE score 91.5% (published 99.2), FactorVAE 70.2%, MIG 0.210, DCI D 0.305, "
        "rec. 28.4, fit 412.0 s")
    assert device_check._summarise_sprites(None, sprites.rsplit("| beta-VAE", 1)[0]) == ("fail", "")
    assert device_check._summarise_pytest(5, "no tests ran in 0.01s") == ("skip", "no test ran")
    assert device_check._summarise_pytest(0, "4 skipped, 300 deselected in 1.0s") == ("skip", "4 skipped")
    assert device_check._summarise_smoke(1, "FAIL fit: boom\nsmoke: 7 of 8 checks passed") == (
        "fail",
        "7 of 8 checks passed; failed: fit",
    )


def test_a_suite_cut_short_is_counted_from_its_progress_lines(device_check):
    progress = """tests/test_a.py::test_one PASSED                  [  1%]
tests/test_a.py::test_two FAILED                  [  2%]
[gw1] [  3%] PASSED tests/test_b.py::test_three
[gw0] [  4%] SKIPPED tests/test_b.py::test_four
"""
    assert device_check._summarise_pytest(None, progress) == (
        "fail",
        "2 passed, 1 failed, 1 skipped; test_two",
    )
