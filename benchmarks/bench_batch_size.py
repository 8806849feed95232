"""Batch size: what it costs in time and buys in held-out quality.

Usage:
    python benchmarks/bench_batch_size.py                   # CPU
    python benchmarks/bench_batch_size.py --device cuda --batch-sizes 256 1024 4096

Fits ``BetaVAETransformer`` with its defaults but ``batch_size`` on
scikit-learn's digits (20% held out, ``max_iter`` epochs) and prints, per
batch size: seconds per epoch, total fit time, held-out reconstruction MSE
and held-out ELBO (``score``), each also as a ratio to the default batch
size. The default is chosen from this table (see ``benchmarks/README.md``).
"""

import argparse
import statistics
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklearn_betavae import BetaVAETransformer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--reference", type=int, default=128)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    X, _ = load_digits(return_X_y=True)
    print(f"digits, device={args.device}, max_iter={args.max_iter}, n_components=10, "
          f"beta=4, seeds {args.seeds}; ratios to batch_size={args.reference}")
    print("| batch | seed | s/epoch | fit s | held-out MSE | held-out ELBO | fit s ratio | MSE ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        X_train, X_test = train_test_split(X, test_size=0.2, random_state=seed)
        rows = {}
        for batch_size in args.batch_sizes:
            vae = BetaVAETransformer(device=args.device, batch_size=batch_size,
                                     max_iter=args.max_iter, random_state=seed)
            start = time.perf_counter()
            vae.fit(X_train)
            fit_seconds = time.perf_counter() - start
            mse = float(np.mean((vae.inverse_transform(vae.transform(X_test)) - X_test) ** 2))
            epoch = statistics.median(vae.net_.history[1:, "dur"])
            rows[batch_size] = (epoch, fit_seconds, mse, vae.score(X_test))
        ref = rows.get(args.reference)
        for batch_size, (epoch, fit_seconds, mse, elbo) in rows.items():
            ratios = (f"{fit_seconds / ref[1]:.2f} | {mse / ref[2]:.2f}" if ref else "- | -")
            print(f"| {batch_size} | {seed} | {epoch:.4f} | {fit_seconds:.1f} | {mse:.3f} | "
                  f"{elbo:.1f} | {ratios} |")


if __name__ == "__main__":
    main()
