"""Training speed and memory: the estimator against what a user would write instead.

Usage:
    python benchmarks/bench_training.py                      # CPU, data sets digits and lowrank
    python benchmarks/bench_training.py --device cuda --datasets lowrank big
    python benchmarks/bench_training.py --epochs 5 --batch-size 1024
    python benchmarks/bench_training.py --device cuda --datasets big --data-on-device --size 20000 512

In ONE process, for each data set, trains the same architecture (the
estimator's MLP, ``hidden_layer_sizes`` and ``n_components`` below) with the
same batch size and epochs through

* ``estimator``: ``BetaVAETransformer.fit``;
* ``plain loop``: a hand-written PyTorch loop (data resident on the device,
  shuffled index slices, Adam, the beta-VAE loss inline), the yardstick;
* ``graphed loop``: the plain loop with its whole step (the batch's gather,
  forward, loss, backward and a capturable Adam's update) captured once in
  a CUDA graph and replayed for every full batch, the indices of each batch
  copied into a fixed index tensor (drawn outside the graph); an epoch's
  last, partial batch runs eagerly. Captured after 3 eager warm-up steps on
  a side stream (their updates then undone), before the first epoch. On the CPU, which has no graphs,
  the same steps run eagerly (so its code is tested there);
* ``estimator graphed``: the estimator with its full batches' steps
  replayed from a CUDA graph (``sklearn_betavae._graphs.ENABLED``, off by
  default until this row is measured); on the CPU, the estimator;
* ``plain loop bf16``: the plain loop with the forward pass under
  ``torch.autocast(dtype=torch.bfloat16)`` (the loss in float32); its
  held-out MSE says whether quality holds;
* ``accelerate``: the estimator with ``accelerator=Accelerator()`` in this
  one process (the overhead of the Accelerate path; needs the ``dist``
  extra);
* ``skorch default``: the same skorch net fed through skorch's default
  ``Dataset`` + ``DataLoader`` path (per-sample indexing and collation);

and fits ``PCA`` and ``FastICA`` with as many components. A method that
raises prints its error as its row, the others still run, and the exit code
is then 1. It prints one
table: seconds per epoch (median over epochs after the first), samples per
second, peak memory (CPU: growth of the process's resident memory; CUDA:
peak allocated device memory), held-out reconstruction MSE (in the data's
units; 20% held out), and each time as a ratio to the plain loop.

Data sets: ``digits`` (scikit-learn's 1,797 x 64), ``lowrank`` (20,000 x
4,000 float32, rank 10 plus noise), ``big`` (200,000 x 4,096 float32, for a
GPU), and ``brain`` (the simulated population, when
``sklearn_betavae.datasets`` exists). ``--size ROWS FEATURES`` changes the
shape of ``lowrank`` and ``big``; ``--data-on-device`` draws them with torch
on ``--device`` (seconds on a GPU, where NumPy takes a minute for ``big``)
before they are copied to the host, as a user's array would be. Rows print as
they are measured (once the plain loop's row is in, for the ratio), so a run
cut short keeps the rows it finished.
"""

import argparse
import contextlib
import gc
import statistics
import sys
import threading
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA, FastICA
from skorch.dataset import Dataset as SkorchDataset
from torch.utils.data import DataLoader

from sklearn_betavae import BetaVAETransformer, _graphs
from sklearn_betavae._data import standardization
from sklearn_betavae._loss import BetaVAELoss
from sklearn_betavae._modules import VAEModule
from sklearn_betavae._net import BetaVAENet


def make_data(name, seed, size=None, device=None):
    """``(X_train, X_test)``: 20% held out. ``size`` overrides the shape of
    ``lowrank`` and ``big``; ``device`` draws them there with torch."""
    rng = np.random.RandomState(seed)
    if name in ("lowrank", "big") and device is not None:
        n, p = size or ((20_000, 4_000) if name == "lowrank" else (200_000, 4_096))
        return _make_lowrank_with_torch(n, p, seed, device)
    if name == "digits":
        X = load_digits().data
    elif name in ("lowrank", "big"):
        n, p = size or ((20_000, 4_000) if name == "lowrank" else (200_000, 4_096))
        Z = rng.standard_normal((n, 10)).astype(np.float32)
        W = rng.standard_normal((10, p)).astype(np.float32)
        X = Z @ W
        X += rng.standard_normal((n, p)).astype(np.float32)
    elif name == "brain":
        from sklearn_betavae import datasets  # noqa: F401  (not there yet: skipped)

        raise NotImplementedError
    else:
        raise ValueError(name)
    order = rng.permutation(len(X))
    n_test = len(X) // 5
    return X[order[n_test:]], X[order[:n_test]]


def _make_lowrank_with_torch(n, p, seed, device):
    """The low-rank set drawn on ``device`` (rank 10 plus unit noise, as
    above, from torch's generator), split there and copied to the host."""
    generator = torch.Generator(device=device).manual_seed(seed)
    normal = lambda *shape: torch.randn(shape, generator=generator, device=device)  # noqa: E731
    X = normal(n, 10) @ normal(10, p)
    X += normal(n, p)
    n_test = n // 5
    order = torch.randperm(n, generator=generator, device=device)
    X_train, X_test = X[order[n_test:]].cpu().numpy(), X[order[:n_test]].cpu().numpy()
    del X, order
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return X_train, X_test


class PeakMemory:
    """Peak memory of a block: device memory on CUDA, resident-set growth on the CPU."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        self.base = self.peak = _rss()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, _rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        else:
            self.running = False
            self.thread.join()
            self.mb = (max(self.peak, _rss()) - self.base) / 2**20


def _rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def estimator_run(X, X_test, args, device, accelerator=None, keep=None):
    """``BetaVAETransformer.fit`` (appended to ``keep`` if given)."""
    vae = BetaVAETransformer(
        beta=args.beta, device="auto" if accelerator else str(device), n_components=args.n_components,
        hidden_layer_sizes=args.hidden, max_iter=args.epochs, batch_size=args.batch_size,
        random_state=0, accelerator=accelerator,
    )
    vae.fit(X)
    if keep is not None:
        keep.append(vae)
    times = list(vae.net_.history[:, "dur"])
    return times, vae.inverse_transform(vae.transform(X_test))


def estimator_graphed_run(X, X_test, args, device):
    """The estimator, its steps replayed from a CUDA graph where it can. On
    CUDA, a fit refused the graph path is an error naming why (else its row
    would time the ordinary step under this one's name)."""
    enabled, _graphs.ENABLED = _graphs.ENABLED, True
    try:
        fitted = []
        with counting_replays() as replays:
            times, reconstruction = estimator_run(X, X_test, args, device, keep=fitted)
        reason = _graphs.why_not(fitted[0].net_)
        if device.type == "cuda" and not replays and reason is not None:
            raise RuntimeError(f"no step was replayed from a graph: {reason}")
        return times, reconstruction
    finally:
        _graphs.ENABLED = enabled


@contextlib.contextmanager
def counting_replays():
    """A list that gets one item per training step replayed from a graph
    inside the block (``bench_sprites.py`` uses it too)."""
    replays = []
    train_step = _graphs.GraphedSteps.train_step
    _graphs.GraphedSteps.train_step = lambda steps, batch: replays.append(1) or train_step(steps, batch)
    try:
        yield replays
    finally:
        _graphs.GraphedSteps.train_step = train_step


def plain_loop_run(X, X_test, args, device, autocast_dtype=None):
    """What a PyTorch user writes: standardize, put the data on the device,
    loop (the forward pass under autocast to ``autocast_dtype`` if given)."""
    data, module, optimizer, mean, scale = _plain_setup(X, args, device)
    times = []
    for _ in range(args.epochs):
        _sync(device)
        start = time.perf_counter()
        order = torch.randperm(len(data), device=device)
        for first in range(0, len(data), args.batch_size):
            optimizer.zero_grad(set_to_none=True)
            _plain_step(module, optimizer, data[order[first : first + args.batch_size]], args.beta,
                        autocast_dtype)
        _sync(device)
        times.append(time.perf_counter() - start)
    return times, _plain_reconstruction(module, X_test, mean, scale, device)


def graphed_loop_run(X, X_test, args, device):
    """The plain loop, each full batch's step one replay of a CUDA graph."""
    data, module, optimizer, mean, scale = _plain_setup(X, args, device, capturable=device.type == "cuda")
    batch_size = min(args.batch_size, len(data))
    index = torch.zeros(batch_size, dtype=torch.long, device=device)  # the graph's fixed input

    def step(rows):
        _plain_step(module, optimizer, data[rows], args.beta)

    graph = _capture(step, index, optimizer, len(data), device) if device.type == "cuda" else None
    n_full = len(data) // batch_size * batch_size
    times = []
    for _ in range(args.epochs):
        _sync(device)
        start = time.perf_counter()
        order = torch.randperm(len(data), device=device)
        for first in range(0, n_full, batch_size):
            index.copy_(order[first : first + batch_size])
            if graph is None:
                optimizer.zero_grad(set_to_none=True)
                step(index)
            else:
                graph.replay()
        if n_full < len(data):
            # Eager: the graph's gradients stay in its own memory, so dropping
            # the parameters' references to them leaves the next replay intact.
            optimizer.zero_grad(set_to_none=True)
            step(order[n_full:])
        _sync(device)
        times.append(time.perf_counter() - start)
    return times, _plain_reconstruction(module, X_test, mean, scale, device)


def _capture(step, index, optimizer, n_rows, device, warmup_steps=3):
    """``step(index)`` with zeroed gradients, captured in a CUDA graph after
    ``warmup_steps`` eager steps on a side stream (as torch's documentation
    of whole-network capture does: the optimizer's state and the libraries'
    workspaces exist before the capture). The warm-up's updates are undone
    in place (the weights restored, Adam's state zeroed, the CUDA generator
    rewound), so that the graph trains from the plain loop's start, on its
    batches and noise, and takes as many steps.

    The estimator's own capture (``sklearn_betavae._graphs``) also
    registers its private noise generator with the graph
    (``graph.register_generator_state``; only the default CUDA generator is
    registered by itself); autocast inside a captured region would need
    ``cache_enabled=False``."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    start = [p.detach().clone() for p in params]
    with torch.cuda.device(device):  # the capture's stream is the current device's
        # Restored after the warm-up with the weights: the replays then draw
        # the plain loop's shuffles and noise.
        rng = torch.cuda.get_rng_state(device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup_steps):
                index.copy_(torch.randperm(n_rows, device=device)[: len(index)])
                optimizer.zero_grad(set_to_none=True)
                step(index)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for p, value in zip(params, start, strict=True):
                p.copy_(value)
            for state in optimizer.state.values():
                for value in state.values():
                    value.zero_()
        torch.cuda.set_rng_state(rng, device)
        graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            step(index)
    return graph


def _plain_setup(X, args, device, capturable=False):
    """The standardized rows resident on ``device``, the network (seed 0),
    Adam, and the standardization's mean and scale."""
    mean, scale = standardization(X, True)
    data = torch.as_tensor(_standardized(X, mean, scale), device=device)
    torch.manual_seed(0)
    module = VAEModule(X.shape[1], args.n_components, args.hidden, "normal").to(device).train()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3, capturable=capturable)
    return data, module, optimizer, mean, scale


def _plain_step(module, optimizer, batch, beta, autocast_dtype=None):
    """One update on ``batch`` (gradients zeroed by the caller): the
    beta-VAE loss of a normal decoder inline, in float32."""
    autocast = (contextlib.nullcontext() if autocast_dtype is None
                else torch.autocast(batch.device.type, dtype=autocast_dtype))
    with autocast:
        decoded, mu, logvar = module(batch)
    decoded, mu, logvar = decoded.float(), mu.float(), logvar.float()
    rec = (decoded - batch).square().sum() / len(batch)
    kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum() / len(batch)
    (rec + beta * kl).backward()
    optimizer.step()


def _plain_reconstruction(module, X_test, mean, scale, device):
    """The held-out rows' reconstruction from their posterior means, in the data's units."""
    module.eval()
    with torch.no_grad():
        test = torch.as_tensor(_standardized(X_test, mean, scale), device=device)
        decoded = module.decoder(module.encoder(test)[0]).double().cpu().numpy()
    return decoded * scale + mean


def _standardized(X, mean, scale):
    """``(X - mean) / scale`` as float32, computed in float32 in one copy:
    in float64, 160,000 x 4,096 rows made two 5 GB temporaries per method."""
    rows = np.array(X, dtype=np.float32)
    rows -= mean.astype(np.float32)
    rows /= scale.astype(np.float32)
    return rows


def skorch_default_run(X, X_test, args, device):
    """The same skorch net, fed through skorch's default Dataset and DataLoader."""
    mean, scale = standardization(X, True)
    data = _standardized(X, mean, scale)
    torch.manual_seed(0)
    net = BetaVAENet(
        module=VAEModule, module__n_features=X.shape[1], module__n_components=args.n_components,
        module__hidden_layer_sizes=args.hidden, module__default_dist="normal",
        criterion=lambda: BetaVAELoss(beta=args.beta), optimizer=torch.optim.Adam, lr=1e-3,
        max_epochs=args.epochs, batch_size=args.batch_size, dataset=SkorchDataset,
        iterator_train=DataLoader, iterator_train__shuffle=True,
        iterator_train__pin_memory=device.type == "cuda", train_split=None, device=str(device),
        verbose=0,
    )
    net.fit(data, None)
    return list(net.history[:, "dur"]), _plain_reconstruction(net.module_, X_test, mean, scale, device)


def linear_run(model_class, X, X_test, args):
    model = model_class(n_components=args.n_components, random_state=0)
    if model_class is FastICA:
        model.set_params(whiten="unit-variance", max_iter=400)
    start = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - start
    return [seconds], model.inverse_transform(model.transform(X_test))


def _accelerator(device):
    from accelerate import Accelerator

    return Accelerator(cpu=device.type == "cpu")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--datasets", nargs="+", default=["digits", "lowrank"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--beta", type=float, default=4.0)
    parser.add_argument("--size", type=int, nargs=2, metavar=("ROWS", "FEATURES"), default=None,
                        help="shape of the lowrank and big sets (default 20,000 x 4,000 and 200,000 x 4,096)")
    parser.add_argument("--data-on-device", action="store_true",
                        help="draw lowrank and big with torch on --device, then copy them to the host")
    parser.add_argument("--methods", nargs="+",
                        default=["estimator", "plain loop", "accelerate", "skorch default", "PCA",
                                 "FastICA"])
    args = parser.parse_args()
    args.hidden = tuple(args.hidden)
    device = torch.device(args.device)
    runs = {
        "estimator": lambda X, T: estimator_run(X, T, args, device),
        "plain loop": lambda X, T: plain_loop_run(X, T, args, device),
        "graphed loop": lambda X, T: graphed_loop_run(X, T, args, device),
        "estimator graphed": lambda X, T: estimator_graphed_run(X, T, args, device),
        "plain loop bf16": lambda X, T: plain_loop_run(X, T, args, device, torch.bfloat16),
        "accelerate": lambda X, T: estimator_run(X, T, args, device, _accelerator(device)),
        "skorch default": lambda X, T: skorch_default_run(X, T, args, device),
        "PCA": lambda X, T: linear_run(PCA, X, T, args),
        "FastICA": lambda X, T: linear_run(FastICA, X, T, args),
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device={device} ({name}), torch {torch.__version__}, threads={torch.get_num_threads()}, "
          f"batch={args.batch_size}, epochs={args.epochs}, MLP {args.hidden} -> {args.n_components}")
    print("| data | method | s/epoch | samples/s | peak MB | held-out MSE | time / plain loop |", flush=True)
    print("|---|---|---|---|---|---|---|", flush=True)
    failures = 0
    for dataset in args.datasets:
        try:
            X, X_test = make_data(dataset, seed=0, size=args.size,
                                  device=device if args.data_on_device else None)
        except (ImportError, NotImplementedError):
            print(f"| {dataset} | (not available yet) | | | | | |")
            continue
        rows, printed = {}, set()
        for method in args.methods:  # warm-up: first-call costs are not the method's
            rows[method] = _measured(runs[method], X[:256], X_test[:16], device)
        rows = {method: row for method, row in rows.items() if isinstance(row, Exception)}
        for method in args.methods:
            if method not in rows:
                rows[method] = _measured(runs[method], X, X_test, device)
            if "plain loop" in rows or "plain loop" not in args.methods:
                plain = rows.get("plain loop")
                plain = plain[0] if isinstance(plain, tuple) else None
                for done in [done for done in args.methods if done in rows and done not in printed]:
                    print(_row(f"{dataset} {X.shape[0]}x{X.shape[1]}", done, len(X), rows[done], plain),
                          flush=True)
                    printed.add(done)
                    failures += isinstance(rows[done], Exception)
    sys.exit(1 if failures else 0)


def _measured(run, X, X_test, device):
    """``(seconds per epoch, peak MB, held-out MSE)`` of one method's run,
    or the exception it raised."""
    try:
        with PeakMemory(device) as memory:
            times, reconstruction = run(X, X_test)
    except Exception as error:  # noqa: BLE001 (reported as the method's row; the others still run)
        # Its traceback holds the failed run's locals (on a GPU, its copy of
        # the data and its graph's memory): let them go before the next run.
        error.__traceback__ = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return error
    per_epoch = statistics.median(times[1:] or times)
    return per_epoch, memory.mb, float(np.mean((reconstruction - X_test) ** 2))


def _row(data, method, n_samples, measured, plain):
    if isinstance(measured, Exception):
        message = (str(measured).splitlines() or [""])[0][:200].replace("|", "/")
        return f"| {data} | {method} | failed: {type(measured).__name__}: {message} | - | - | - | - |"
    per_epoch, mb, mse = measured
    neural = method not in ("PCA", "FastICA")
    speed = f"{n_samples / per_epoch:,.0f}" if neural else "-"
    ratio = f"{per_epoch / plain:.2f}" if plain and neural else "-"
    unit = "s/epoch" if neural else "fit s"
    return (f"| {data} | {method} | {per_epoch:.3f}{'' if neural else ' (' + unit + ')'} | {speed} | "
            f"{mb:,.0f} | {mse:.4g} | {ratio} |")


if __name__ == "__main__":
    main()
