"""One prepared check of the CUDA path: the tests, a smoke of the public methods, and the benchmarks.

Usage:
    python benchmarks/device_check.py --out results/device_check            # one GPU: at most 6 minutes
    python benchmarks/device_check.py --device cpu --quick --out /tmp/check # the CPU: under 2 minutes
    python benchmarks/device_check.py --also "train beyond" --out DIR       # and part 4's step: 7.5 minutes

Runs, each step in its own process with its own time limit (a step that
hangs is killed with its children, and the check goes on to the next one):

* ``gpu tests``: ``pytest -m gpu tests`` (they skip without CUDA);
* ``smoke``: fit, transform, inverse_transform, score, sample, the same seed
  twice, a save/load round trip (on the device and onto the CPU), a
  conditional model with a reference and its deviation scores (on the
  device and onto the CPU) and ``device="auto"``, on ``--device`` (this
  script, ``--smoke``);
* ``inference``: ``bench_inference.py`` (8,656 and 200,000 features, 1,000
  query rows);
* ``train b1024`` and ``train b128``: ``bench_training.py`` with the plain
  loop, the estimator and skorch's default path on 200,000 x 4,096 rows drawn
  on the device (``--data-on-device``), 2 epochs (the second is timed);
* ``fit set-up``: ``bench_fit_setup.py``, ``fit``'s work before its first
  epoch on the device (validation, the statistics and the PCA start, the
  rows resident there) against scikit-learn's randomized PCA on the host, at
  160,000 x 4,096;
* ``train beyond`` (only when named in ``--steps`` or ``--also``: issue
  36's part 4): ``bench_training.py`` at batch 128, 3 epochs,
  with the plain loop, the plain loop captured in a CUDA graph, the
  plain loop under bf16 autocast and the estimator with its steps replayed
  from a CUDA graph;
* ``sprites budget`` (only when named in ``--steps`` or ``--also``: issue
  36's part 5, once ``train beyond`` shows the graphed estimator fast
  enough): ``bench_sprites.py`` at the papers' budget (the full
  grid, Higgins et al.'s 1200-1200 network, 299,520 steps of batch 64) with
  the estimator's CUDA graphs, one seed, the beta-VAE and PCA, scored as
  the CPU rows of ``benchmarks/README.md``, in a device session of its own
  (8 minutes);
* ``test suite``: ``pytest -m "not slow and not gpu"`` (doctests included)
  with CUDA visible; last, as it takes the time left. With pytest-xdist
  installed it runs on ``--workers`` processes of one torch thread each
  (``OMP_NUM_THREADS=1``), else serially.

It prints one table (step, status, seconds, key figure) under a header
naming the GPU, torch, CUDA and the libraries, and writes it to
``DIR/summary.md`` beside each step's log (``DIR/<step>.log``). A step passes
when it ran to its end without an error: a benchmark's targets are in its
key figure (the estimator's time as a multiple of the plain loop's, skorch's
default path against the estimator; inference: the estimator against a
plain float32 pass), not in its status. The exit code is 1 when a step
failed. Each step's limit is capped by what is left of ``--budget`` (330 s:
with the wheels' install, 6 minutes on one H100; ``--also`` adds the limits
of the steps it names, and with ``--steps`` it is the sum of their limits);
a step that runs past its
limit fails, the rows it printed kept in its log and its key figure.

``--quick`` runs the same steps at small sizes (a few tests, 2,000 x 256
rows, 500 features) in under 2 minutes; ``tests/test_device_check.py`` runs
``--device cpu --quick``. The script itself imports only the standard
library and torch (the steps import the package, skorch, and nilearn and
nibabel where a test needs them; the checkout is put first on each step's
``PYTHONPATH``). On a machine that lacks them, ``device_prepare.sh`` fetches
their wheels and rehearses the run on the CPU, and ``device_run.sh`` installs
them there and runs this script.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
# A few fast CPU tests for --quick: two that the GPU first failed (issue 36),
# the outputs' types and shapes, and the exact save/load round trip.
QUICK_TESTS = [
    "tests/test_estimator.py",
    "tests/test_persistence.py",
    "-k",
    "score_samples_is_a_monte_carlo_elbo or batching_changes_results_only "
    "or methods_return_cpu_numpy or round_trip_is_exact",
]
# Steps run only when --steps or --also names them.
OPTIONAL_STEPS = {"train beyond", "sprites budget"}
TRAINING_METHODS = ("plain loop", "estimator", "skorch default")
BEYOND_METHODS = ("plain loop", "graphed loop", "plain loop bf16", "estimator graphed")
PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")


def steps(args):
    """``(name, command, limit in seconds, summarise)`` for each step, in order."""
    python, quick, device = sys.executable, args.quick, args.device
    pytest = [python, "-m", "pytest", "-v", "-rfE"]
    train = [
        python,
        str(BENCHMARKS / "bench_training.py"),
        "--device",
        device,
        "--datasets",
        "big",
        "--data-on-device",
        "--epochs",
        "2",
        "--methods",
        "plain loop",
        "estimator",
        "skorch default",
    ]
    if quick:
        train += ["--size", "2000", "256"]
    inference = [python, str(BENCHMARKS / "bench_inference.py"), "--device", device]
    if quick:
        inference += ["--features", "500", "--n-train", "100", "--n-query", "200", "--repeats", "5"]
    beyond = [*train[: train.index("--epochs")], "--epochs", "3", "--batch-size", "128",
              "--methods", *BEYOND_METHODS]
    if quick:
        beyond += ["--size", "2000", "256"]
    setup = [python, str(BENCHMARKS / "bench_fit_setup.py"), "--device", device, "--repeats", "1",
             "--threads", str(os.cpu_count() or 1), "--sizes", "2000x256" if quick else "160000x4096"]
    # Issue 36, part 5: the papers' budget (Higgins et al.'s 1200-1200 network,
    # 26 epochs of the 737,280 sprites in batches of 64: 299,520 steps), one
    # seed, scored as benchmarks/README.md's CPU rows are.
    sprites = [python, str(BENCHMARKS / "bench_sprites.py"), "--device", device, "--seeds", "0",
               "--methods", "beta-VAE", "PCA", "--cuda-graphs", "--verbose", "--batch-size", "64"]
    if quick:
        sprites += ["--n-train", "500", "--n-test", "200", "--epochs", "1", "--hidden", "32",
                    "--n-votes", "50", "--n-codes", "300", "--dci-estimators", "5"]
    else:
        sprites += ["--full", "--epochs", "26", "--hidden", "1200", "1200",
                    "--n-votes", "2000", "--n-codes", "2000", "--dci-estimators", "20"]
    suite = [*pytest, "-m", "not slow and not gpu", *(QUICK_TESTS if quick else [])]
    workers = args.workers if args.workers is not None else (0 if quick else min(8, os.cpu_count() or 1))
    if workers > 1 and _has_xdist():
        suite += ["-n", str(workers)]
    return [
        ("gpu tests", [*pytest, "-m", "gpu", "tests"], 60, _summarise_pytest),
        ("smoke", [python, __file__, "--smoke", "--device", device], 40, _summarise_smoke),
        ("inference", inference, 70, _summarise_inference),
        ("train b1024", [*train, "--batch-size", "1024"], 75, _summarise_training),
        ("train b128", [*train, "--batch-size", "128"], 90, _summarise_training),
        ("fit set-up", setup, 45, _summarise_setup),
        ("train beyond", beyond, 120, partial(_summarise_training, methods=BEYOND_METHODS)),
        ("sprites budget", sprites, 480, _summarise_sprites),
        ("test suite", suite, 180, _summarise_pytest),
    ]


def _has_xdist():
    try:
        metadata.version("pytest-xdist")
    except metadata.PackageNotFoundError:
        return False
    return True


def run_step(command, limit, log_path, extra_env):
    """Run ``command`` (environment: this one plus ``extra_env``) with its
    output in ``log_path``; kill its whole process group after ``limit``
    seconds. Returns ``(return code or None on a timeout, seconds)``."""
    start = time.perf_counter()
    # The checkout's package first on the path: a GPU machine has it nowhere
    # else (the steps' scripts sit in benchmarks/, so their own folder does
    # not find it), and where it is installed, it is this checkout that is
    # being checked.
    path = os.pathsep.join(part for part in (str(ROOT), os.environ.get("PYTHONPATH")) if part)
    with open(log_path, "w") as log:
        settings = " ".join(f"{key}={value}" for key, value in extra_env.items())
        log.write("$ " + (settings + " " if settings else "") + " ".join(_quote(part) for part in command))
        log.write(f"\n# limit {limit:.0f} s\n\n")
        log.flush()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path, **extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
    seconds = time.perf_counter() - start
    with open(log_path, "a") as log:
        log.write(f"\n# {'timed out' if code is None else f'exit code {code}'} after {seconds:.1f} s\n")
    return code, seconds


def _quote(part):
    return part if re.fullmatch(r"[\w./:=-]+", part) else repr(part)


# Key figures, read from each step's log -------------------------------------


def _summarise_pytest(code, text):
    counts = {}
    for line in text.splitlines():  # the closing line
        found = PYTEST_COUNT.findall(line)
        if found and (" in " in line or line.startswith("=")):
            counts = {("error" if kind.startswith("error") else kind): int(n) for n, kind in found}
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.MULTILINE)
    if not counts:  # cut short: count the verbose progress lines instead
        counts, failed = _progress(text)
    figure = ", ".join(f"{n} {kind}" for kind, n in counts.items() if kind != "deselected")
    if failed:
        names = [name.rsplit("::", 1)[-1] for name in failed]
        figure += "; " + ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    if code in (0, 5) and not counts.get("passed"):
        return "skip", figure or "no test ran"
    return ("pass" if code == 0 else "fail"), figure


def _progress(text):
    """Outcome counts and failed tests from ``pytest -v``'s lines (with or
    without pytest-xdist's ``[gw0]`` prefix)."""
    counts, failed = {}, []
    for line in text.splitlines():
        outcome = re.search(r"\b(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", line)
        if "::" not in line or outcome is None or line.startswith(("FAILED", "ERROR")):
            continue
        kind = {"XFAIL": "xfailed", "XPASS": "xpassed"}.get(outcome[1], outcome[1].lower())
        counts[kind] = counts.get(kind, 0) + 1
        if kind in ("failed", "error"):
            failed += re.findall(r"\S+::\S+", line)
    return counts, failed


def _summarise_smoke(code, text):
    found = re.findall(r"^smoke: .*$", text, flags=re.MULTILINE)
    failed = re.findall(r"^FAIL (\w+)", text, flags=re.MULTILINE)
    figure = found[-1].removeprefix("smoke: ") if found else ""
    if failed:
        figure += "; failed: " + ", ".join(failed)
    return ("pass" if code == 0 else "fail"), figure


def _table_rows(text):
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| data") and not line.startswith("| features")
    ]


def _summarise_training(code, text, methods=TRAINING_METHODS):
    rows = {row[1]: row for row in _table_rows(text) if len(row) == 7}
    failed = {method: row[2] for method, row in rows.items() if row[2].startswith("failed")}
    rows = {method: row for method, row in rows.items() if method not in failed}
    parts = []
    plain, estimator = rows.get("plain loop"), rows.get("estimator")
    if plain:
        parts.append(f"plain loop {plain[3]} samples/s (held-out MSE {plain[5]})")
    if estimator:
        parts.append(f"estimator {estimator[6]}x plain")
    skorch = rows.get("skorch default")
    if skorch and estimator:
        parts.append(f"skorch default {float(skorch[2]) / float(estimator[2]):.2f}x estimator")
    for method, row in rows.items():
        if method not in TRAINING_METHODS:
            parts.append(f"{method} {row[6]}x plain (held-out MSE {row[5]})")
    parts += [f"{method} {error}" for method, error in failed.items()]
    missing = [method for method in methods if method not in rows and method not in failed]
    if missing and code is not None:
        parts.append("no row for " + ", ".join(missing))
    ok = code == 0 and not missing and not failed
    return ("pass" if ok else "fail"), "; ".join(parts)


def _summarise_inference(code, text):
    worst = {}
    for row in _table_rows(text):
        if len(row) == 7:
            call, ratio = row[1], float(row[6])
            if ratio > worst.get(call, (0, ""))[0]:
                worst[call] = (ratio, row[0])
    figure = ", ".join(f"{call} {ratio:.2f}x ({width})" for call, (ratio, width) in worst.items())
    if figure:
        figure = "worst over widths, estimator / plain pass: " + figure
    return ("pass" if code == 0 and worst else "fail"), figure


def _summarise_setup(code, text):
    """``bench_fit_setup.py``'s lines ``ROWSxFEATURES PCA-s SET-UP-s RATIO``."""
    found = re.findall(r"^\s*(\d+x\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", text, flags=re.MULTILINE)
    figure = "; ".join(f"{size}: set-up {setup} s, {ratio}x a randomized PCA fit ({pca} s)"
                       for size, pca, setup, ratio in found)
    return ("pass" if code == 0 and found else "fail"), figure


def _summarise_sprites(code, text):
    """``bench_sprites.py``'s rows of one seed: each method's scores and fit time."""
    found = re.findall(r"^\| ([^|]+?) \| \d+ \| ([\d.]+) \(([\d.]+)\) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) "
                       r"\| ([\d.]+) \| ([\d.]+) \|$", text, flags=re.MULTILINE)
    figure = "; ".join(f"{method}: beta-VAE score {score}% (published {published}), FactorVAE {factor}%, "
                       f"MIG {mig}, DCI D {dci}, rec. {rec}, fit {fit} s"
                       for method, score, published, factor, mig, dci, rec, fit in found)
    return ("pass" if code == 0 and found else "fail"), figure


# The smoke check, run in its own process ------------------------------------


def smoke(device):
    """The public methods on ``device``, each check reported on its own line."""
    import tempfile

    import numpy as np
    import torch

    from sklearn_betavae import BetaVAETransformer

    rng = np.random.RandomState(0)
    X = (rng.normal(size=(600, 4)) @ rng.normal(size=(4, 50)) + rng.normal(size=(600, 50))).astype(np.float32)
    params = dict(n_components=4, hidden_layer_sizes=(64,), max_iter=3, batch_size=64, random_state=0)
    results = []
    state = {}

    def check(name, test):
        try:
            detail = test()
        except Exception as error:  # noqa: BLE001 (every failure is reported, the others still run)
            results.append(False)
            print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)
        else:
            results.append(True)
            print(f"ok   {name}" + (f": {detail}" if detail else ""), flush=True)

    def fit():
        start = time.perf_counter()
        state["vae"] = vae = BetaVAETransformer(device=device, **params).fit(X)
        on = next(vae.net_.module_.parameters()).device
        assert on.type == torch.device(device).type, f"network on {on}, asked for {device}"
        assert vae.n_iter_ == 3, vae.n_iter_
        return f"{vae.n_iter_} epochs on {on} in {time.perf_counter() - start:.2f} s"

    def transform():
        state["Z"] = Z = state["vae"].transform(X)
        _assert_numpy(Z, (600, 4))

    def inverse_transform():
        _assert_numpy(state["vae"].inverse_transform(state["Z"]), (600, 50))

    def score():
        value = state["vae"].score(X)
        assert np.isfinite(value), value
        return f"mean ELBO {value:.2f}"

    def sample():
        drawn = state["vae"].sample(5, random_state=0)
        _assert_numpy(drawn, (5, 50))
        assert np.array_equal(drawn, state["vae"].sample(5, random_state=0)), "same random_state, new draws"

    def same_seed():
        again = BetaVAETransformer(device=device, **params).fit(X).transform(X)
        assert np.array_equal(again, state["Z"]), f"max difference {np.abs(again - state['Z']).max():.3g}"

    def save_load():
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "vae.safetensors")
            state["vae"].save(path)
            here = BetaVAETransformer.load(path, device=device).transform(X)
            on_cpu = BetaVAETransformer.load(path, device="cpu").transform(X)
        assert np.array_equal(here, state["Z"]), "loaded on the same device, other codes"
        difference = np.abs(on_cpu - state["Z"]).max()
        assert difference <= 1e-5 * np.abs(state["Z"]).max(), f"CPU codes differ by {difference:.3g}"
        return f"on the CPU within {difference:.2g}"

    def covariates_and_deviations():
        # Issues 34 and 35: a conditional model with a reference, on the device.
        covariates = np.column_stack([rng.uniform(20, 80, len(X)), rng.randint(3, size=len(X))])
        vae = BetaVAETransformer(device=device, reference_fraction=0.2, categorical_covariates=[1],
                                 **params).fit(X, covariates=covariates)
        z = vae.deviation_scores(X[:50], covariates=covariates[:50])
        _assert_numpy(z, (50, 50))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "conditional.safetensors")
            vae.save(path)
            on_cpu = BetaVAETransformer.load(path, device="cpu")
            z_cpu = on_cpu.deviation_scores(X[:50], covariates=covariates[:50])
        difference = np.abs(z_cpu - z).max()
        assert difference <= 1e-3 * np.abs(z).max(), f"CPU z-scores differ by {difference:.3g}"
        return f"z-scores on the CPU within {difference:.2g}"

    def auto():
        vae = BetaVAETransformer(device="auto", **dict(params, max_iter=1)).fit(X)
        expected = "cuda" if torch.cuda.is_available() else "cpu"
        assert vae.device_.type == expected, f"device_={vae.device_}, expected {expected}"
        return f"device_={vae.device_}"

    check("fit", fit)
    for name, test in [
        ("transform", transform),
        ("inverse_transform", inverse_transform),
        ("score", score),
        ("sample", sample),
        ("same_seed", same_seed),
        ("save_load", save_load),
        ("covariates_and_deviations", covariates_and_deviations),
    ]:
        check(name, test if "vae" in state else _no_model)
    check("device_auto", auto)
    print(f"smoke: {sum(results)} of {len(results)} checks passed", flush=True)
    return 0 if all(results) else 1


def _no_model():
    raise RuntimeError("no fitted model: fit failed")


def _assert_numpy(array, shape):
    import numpy as np

    assert isinstance(array, np.ndarray), type(array)
    assert array.shape == shape, array.shape
    assert np.isfinite(array).all(), "non-finite values"


# Header and main --------------------------------------------------------------


def header(device):
    import torch

    if torch.cuda.is_available():
        gpu = f"{torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)"
    else:
        gpu = "none (CUDA not available)"
    versions = []
    for package in ("numpy", "scikit-learn", "skorch", "pytest-xdist"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} missing")
    lines = [
        f"GPU: {gpu}; driver {_driver() or 'unknown'}",
        f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}, cuDNN "
        f"{torch.backends.cudnn.version() if torch.cuda.is_available() else 'none'}; "
        f"Python {sys.version.split()[0]}; " + ", ".join(versions),
        f"--device {device}; {os.cpu_count()} CPU cores; commit {_commit() or 'unknown'}; "
        + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    ]
    return lines


def _driver():
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        found = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip().splitlines()[0] if found.returncode == 0 and found.stdout.strip() else None


def _commit():
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() if found.returncode == 0 else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/device_check", help="folder for the logs and summary.md")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes and a few tests: under 2 minutes")
    parser.add_argument(
        "--budget", type=float, default=None,
        help="seconds for all steps together (default 330, --quick 110, plus --also's limits; "
             "with --steps, the sum of their limits)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="pytest-xdist workers for the suite (default min(8, cores); --quick 0: serial)",
    )
    parser.add_argument("--steps", nargs="+", default=None, help="only these steps (as the table names them)")
    parser.add_argument(
        "--also", nargs="+", default=[], choices=sorted(OPTIONAL_STEPS),
        help="the default steps and these (their limits added to the default budget)",
    )
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        sys.exit(smoke(args.device))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    every = steps(args)
    budget = args.budget
    if budget is None and args.steps:
        budget = sum(limit for name, _, limit, _ in every if name in args.steps)
    elif budget is None:
        also = sum(limit for name, _, limit, _ in every if name in args.also)
        budget = (110.0 if args.quick else 330.0) + also
    lines = header(args.device)  # imports torch and starts CUDA: not in the steps' budget
    print("\n".join(lines), flush=True)
    deadline = time.monotonic() + budget
    table = []
    for name, command, limit, summarise in every:
        wanted = name in args.steps if args.steps else name not in OPTIONAL_STEPS or name in args.also
        if not wanted:
            continue
        log_path = out / (name.replace(" ", "_") + ".log")
        extra_env = {} if "pytest" in command else {"PYTHONWARNINGS": "ignore"}
        if "-n" in command:  # pytest-xdist workers: one torch thread each
            extra_env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        left = deadline - time.monotonic()
        if left < 5:
            table.append((name, "skip", 0.0, f"no time left in the {budget:.0f} s budget"))
            continue
        limit = min(limit, left)
        print(f"[{name}] limit {limit:.0f} s, log {log_path}", flush=True)
        code, seconds = run_step(command, limit, log_path, extra_env)
        status, figure = summarise(code, log_path.read_text(errors="replace"))
        if code is None:
            status = "fail"
            figure = f"timed out at {limit:.0f} s" + (f"; {figure}" if figure else "")
        elif status == "fail" and not figure:
            figure = f"exit code {code}; see {log_path.name}"
        table.append((name, status, seconds, figure))
    lines += ["", "| step | status | seconds | key figure |", "|---|---|---|---|"]
    lines += [f"| {name} | {status} | {seconds:.1f} | {figure} |" for name, status, seconds, figure in table]
    total = sum(seconds for _, _, seconds, _ in table)
    lines += ["", f"{total:.0f} s in all; logs in {out}"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    for name, status, _, _ in table:  # what a failed step printed last, where only stdout comes back
        if status == "fail":
            tail = (out / (name.replace(" ", "_") + ".log")).read_text(errors="replace").splitlines()[-12:]
            print(f"\n--- {name}: the end of its log ---\n" + "\n".join(tail), flush=True)
    print("\n" + "\n".join(lines), flush=True)
    sys.exit(1 if any(status == "fail" for _, status, _, _ in table) else 0)


if __name__ == "__main__":
    main()
