"""The PCA start's passes over the rows: NumPy against torch, on the CPU.

Issue 36: on a GPU the start's passes run in torch where the rows are
resident (only each pass's sums come back to the host); on the CPU they
stay NumPy's. This script is why: on the same float32 rows it times
``_pca_start.fit_pca`` given the rows as NumPy chunks (the CPU path) and as
CPU tensor chunks (the device path run on the CPU, its randomized products
in float64 as on a GPU), and the float32 operations a
pass is made of, one chunk (``_data.CHUNK_VALUES`` values) at a time. It
prints one table, each torch time as a multiple of NumPy's (best of
``--repeats``).

Usage:
    python benchmarks/bench_pca_start_backends.py [--rows 40000] [--features 4096]
        [--threads 2] [--repeats 3]
"""

import argparse
import time

import numpy as np
import torch

from sklearn_betavae import _data
from sklearn_betavae._pca_start import fit_pca


def best_time(function, repeats):
    function()  # first-call costs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n, p = args.rows, args.features
    X = rng.standard_normal((n, 20), dtype=np.float32) @ rng.standard_normal((20, p), dtype=np.float32)
    X += rng.standard_normal((n, p), dtype=np.float32)
    step = max(1, _data.CHUNK_VALUES // p)
    rows = torch.from_numpy(X)
    chunk, tensor = X[:step], rows[:step]
    basis = rng.standard_normal((p, 20)).astype(np.float32)
    codes = chunk @ basis
    basis_t, codes_t = torch.from_numpy(basis), torch.from_numpy(codes)
    cases = [
        ("fit_pca, 10 components (whole start)",
         lambda: fit_pca(lambda: (X[i:i + step] for i in range(0, n, step)), n, p, 10, 0),
         lambda: fit_pca(lambda: (rows[i:i + step] for i in range(0, n, step)), n, p, 10, 0)),
        ("column sums in float64", lambda: chunk.sum(axis=0, dtype=np.float64),
         lambda: tensor.sum(0, dtype=torch.float64)),
        ("rows @ basis (float32)", lambda: chunk @ basis, lambda: tensor @ basis_t),
        ("rows.T @ codes (float32)", lambda: chunk.T @ codes, lambda: tensor.T @ codes_t),
        ("column sums of squares in float64", lambda: np.einsum("ij,ij->j", chunk, chunk, dtype=np.float64),
         lambda: tensor.double().square().sum(0)),
    ]
    print(f"bench_pca_start_backends: torch {torch.__version__}, numpy {np.__version__}, "
          f"{args.threads} torch thread(s), {n} x {p} float32 rows, chunks of {step} rows, "
          f"best of {args.repeats}")
    print("| what | NumPy s | torch s | torch / NumPy |")
    print("|---|---|---|---|")
    for name, with_numpy, with_torch in cases:
        numpy_s, torch_s = best_time(with_numpy, args.repeats), best_time(with_torch, args.repeats)
        print(f"| {name} | {numpy_s:.4f} | {torch_s:.4f} | {torch_s / numpy_s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
