"""The work ``fit`` does before its first epoch, against a randomized PCA fit.

Issue 36: on 8,000 x 4,000 float32 rows ``fit``'s work outside its epochs
(validation, the standardization's statistics, the PCA start) took 7.1
times what scikit-learn's ``PCA(n_components=10, svd_solver="randomized")``
takes on the same rows. This script times, on low-rank float32 rows of each
size (drawn once, on the host):

- ``PCA``: ``PCA(n_components, svd_solver="randomized", random_state=0).fit``;
- ``fit set-up``: ``BetaVAETransformer(n_components, max_iter=1).fit`` minus
  its one epoch (the duration skorch records), that is the validation, the
  statistics, building the network and the PCA start;

each ``--repeats`` times, alternating, and prints the best time of each
and their ratio. Fit times depend on the machine and on ``--threads``.
With ``--device cuda`` the estimator fits there (its rows resident on the
GPU, where its statistics and PCA start then run); the PCA is still
scikit-learn's on the host, the alternative a user would pick.

Usage:
    python benchmarks/bench_fit_setup.py [--sizes 8000x4000 160000x4096]
        [--threads 2] [--repeats 3] [--device cpu] [--out benchmarks/results/fit_setup.txt]
"""

import argparse
import time

import numpy as np
import torch
from sklearn.decomposition import PCA

from sklearn_betavae import BetaVAETransformer


def low_rank_rows(n_rows, n_features, rank=20, seed=0):
    """float32 rows of a rank-``rank`` signal plus unit noise, made in blocks."""
    rng = np.random.default_rng(seed)
    loadings = rng.standard_normal((rank, n_features)).astype(np.float32)
    X = np.empty((n_rows, n_features), dtype=np.float32)
    for start in range(0, n_rows, 10_000):
        stop = min(start + 10_000, n_rows)
        X[start:stop] = rng.standard_normal((stop - start, rank), dtype=np.float32) @ loadings
        X[start:stop] += rng.standard_normal((stop - start, n_features), dtype=np.float32)
    return X


def time_pca(X, k):
    start = time.perf_counter()
    PCA(k, svd_solver="randomized", random_state=0).fit(X)
    return time.perf_counter() - start


def time_setup(X, k, device):
    start = time.perf_counter()
    vae = BetaVAETransformer(device=device, n_components=k, max_iter=1, random_state=0).fit(X)
    return time.perf_counter() - start - vae.net_.history[-1, "dur"]


def _device_name(device):
    if torch.device(device).type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["8000x4000", "160000x4096"])
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = [f"bench_fit_setup: torch {torch.__version__}, {args.threads} thread(s), "
             f"{_device_name(args.device)}, {args.n_components} components, best of {args.repeats}",
             f"{'rows x features':>18} {'PCA s':>7} {'set-up s':>9} {'set-up / PCA':>13}"]
    print(*lines, sep="\n", flush=True)
    for size in args.sizes:
        n_rows, n_features = map(int, size.split("x"))
        X = low_rank_rows(n_rows, n_features)
        time_setup(X[:500], args.n_components, args.device)  # torch's one-time start-up
        pca, setup = [], []
        for _ in range(args.repeats):
            pca.append(time_pca(X, args.n_components))
            setup.append(time_setup(X, args.n_components, args.device))
        line = f"{size:>18} {min(pca):>7.2f} {min(setup):>9.2f} {min(setup) / min(pca):>13.2f}"
        print(line, flush=True)
        lines.append(line)
        del X
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
