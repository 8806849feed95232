"""Inference speed and memory: the estimator against PCA and a plain PyTorch pass.

Usage:
    python benchmarks/bench_inference.py
    python benchmarks/bench_inference.py --features 8656 200000 --n-query 1000 --device cuda
    OMP_NUM_THREADS=1 python benchmarks/bench_inference.py --threads 1
    python benchmarks/bench_inference.py --features 200000 --calls score_samples --n-query 200 --repeats 1

For each width, fits ``BetaVAETransformer`` (default network, 10 latents,
``--epochs`` epochs on ``--n-train`` random low-rank rows: the weights'
values do not matter here, only their shapes) and PCA with as many
components, then times on ``--n-query`` new rows, in one process:

- ``transform`` against ``PCA.transform`` and against the floor, a plain
  float32 pass of the same encoder written here (standardize, encode, copy
  back);
- ``inverse_transform`` against ``PCA.inverse_transform`` and one plain
  decoder pass;
- ``score_samples`` against ``PCA.score_samples`` and a plain encoder pass
  plus 16 decoder passes (the 16 draws of the Monte Carlo ELBO).

Each call is timed ``--repeats`` times (the best is shown) after one warm-up
call, with a device synchronisation before each timer; "peak MB" is how far
the process's resident memory (sampled every millisecond; on a GPU, torch's
allocated memory) rises above its level before one call, so a copy of the
weights would show (8 MB of float32 at 8,656 features, 205 MB at 200,000;
a float64 copy twice that). Prints one table of seconds, peak MB and the
ratios to the plain pass.
"""

import argparse
import os
import threading
import time

import numpy as np
import torch
from sklearn.decomposition import PCA

from sklearn_betavae import BetaVAETransformer

# PCA.score_samples is skipped (nan) where its float64 precision matrix,
# n_features x n_features, would take more than this (20 GB at 50,000).
PCA_PRECISION_BYTES = 2**31


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _resident_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_growth_mb(fn, device):
    """How far memory rises above its level before ``fn()``: torch's peak
    allocation on a GPU, the resident set (sampled every millisecond) on
    the CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    before, peak, done = _resident_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _resident_mb())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(0.0, max(peak[0], _resident_mb()) - before)


def _timed(fn, device, repeats):
    fn()  # warm-up: first-call allocations and kernels
    peak = _peak_growth_mb(fn, device)
    seconds = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return min(seconds), peak


def _plain_passes(vae, inputs, device, encode, n_decoder_passes):
    """What a PyTorch user writes, in float32 on the whole input at once:
    standardize and encode (``encode``; else ``inputs`` are codes), then
    ``n_decoder_passes`` decoder passes, and back to NumPy."""
    module = vae.net_.module_.eval()
    mean = torch.as_tensor(vae.mean_, dtype=torch.float32, device=device)
    scale = torch.as_tensor(vae.scale_, dtype=torch.float32, device=device)
    with torch.inference_mode():
        out = torch.as_tensor(inputs, dtype=torch.float32, device=device)
        if encode:
            out, _ = module.encoder((out - mean) / scale)
        codes = out
        for _ in range(n_decoder_passes):
            out = module.decoder(codes) * scale + mean
        return out.cpu().numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, nargs="+", default=[8656, 200000])
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--n-query", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--calls", nargs="+", default=["transform", "inverse_transform", "score_samples"],
                        choices=["transform", "inverse_transform", "score_samples"])
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = np.random.RandomState(0)
    print(f"device={device}, torch {torch.__version__}, threads={torch.get_num_threads()}, "
          f"{args.n_query} query rows, default network (256, 128) -> 10 latents")
    print("| features | call | estimator s | peak MB | PCA s | plain torch s | estimator / plain |")
    print("|---|---|---|---|---|---|---|")
    for n_features in args.features:
        loadings = rng.normal(size=(5, n_features)).astype(np.float32)
        make = lambda n: (rng.normal(size=(n, 5)).astype(np.float32) @ loadings  # noqa: E731
                          + rng.normal(size=(n, n_features)).astype(np.float32))
        X_train, X_query = make(args.n_train), make(args.n_query)
        vae = BetaVAETransformer(device=device, n_components=10, max_iter=args.epochs,
                                 random_state=0).fit(X_train)
        pca = PCA(10, random_state=0).fit(X_train)
        Z = vae.transform(X_query)
        Z_pca = pca.transform(X_query)
        calls = [
            ("transform", lambda: vae.transform(X_query), lambda: pca.transform(X_query),
             (X_query, True, 0)),
            ("inverse_transform", lambda: vae.inverse_transform(Z),
             lambda: pca.inverse_transform(Z_pca), (Z, False, 1)),
            ("score_samples", lambda: vae.score_samples(X_query),
             lambda: pca.score_samples(X_query), (X_query, True, 16)),
        ]
        for name, estimator_call, pca_call, (inputs, encode, n_decoder) in calls:
            if name not in args.calls:
                continue
            seconds, peak = _timed(estimator_call, device, args.repeats)
            if name == "score_samples" and 8 * n_features**2 > PCA_PRECISION_BYTES:
                # PCA.score_samples builds the n_features x n_features precision matrix.
                pca_seconds = float("nan")
            else:
                pca_seconds, _ = _timed(pca_call, torch.device("cpu"), args.repeats)
            plain, _ = _timed(lambda: _plain_passes(vae, inputs, device, encode, n_decoder),
                              device, args.repeats)
            print(f"| {n_features:,} | {name} | {seconds:.3f} | {peak:.0f} | {pca_seconds:.3f} | "
                  f"{plain:.3f} | {seconds / plain:.2f} |", flush=True)


if __name__ == "__main__":
    main()
