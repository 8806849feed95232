"""Adam's learning rate on wide inputs: loss spikes after the PCA start, and one lever against them.

Usage:
    OMP_NUM_THREADS=1 python -W ignore benchmarks/bench_wide_input_lr.py
    OMP_NUM_THREADS=1 python -W ignore benchmarks/bench_wide_input_lr.py --seeds 0 1 2 --epochs 30

Rank-10 data plus unit noise (``--n-train`` + 1,000 rows of ``--features``
float32 columns, as ``bench_training.py``'s ``lowrank`` set), fitted with the
``BetaVAETransformer`` with one learning rate for all weights
(``input_lr_scale=1``: PCA start, lr 1e-3) for ``--epochs`` epochs,
against the same with ``learning_rate_init=1e-4`` and with the learning
rate of the weights that read the input (the MLP's first layer and the
linear path, both n_features wide) multiplied by ``ref / n_features`` (the
maximal-update rule for Adam on a layer's fan-in; ``ref`` 64, which is
``input_lr_scale="auto"``, or 256). Prints, per lever and seed, the held-out MSE
(PCA's beside it), the training loss at the first epoch, its minimum, its
last value and its largest value after the first epoch (a spike shows as a
maximum far above the minimum).
"""

import argparse
import time

import numpy as np
import torch
from sklearn.decomposition import PCA

from sklearn_betavae import BetaVAETransformer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=4000)
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    print(f"{args.n_train} + 1000 rows x {args.features} features (rank 10 + unit noise), "
          f"{args.epochs} epochs, torch threads {torch.get_num_threads()}")
    print("| lever | seed | held-out MSE | PCA MSE | loss epoch 1 | min | last | max after epoch 1 | fit s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        rng = np.random.RandomState(seed)
        n, p = args.n_train + 1000, args.features
        X = rng.standard_normal((n, 10)).astype(np.float32) @ rng.standard_normal((10, p)).astype(np.float32)
        X += rng.standard_normal((n, p)).astype(np.float32)
        X_train, X_test = X[:args.n_train], X[args.n_train:]
        pca = PCA(10).fit(X_train)
        pca_mse = np.mean((pca.inverse_transform(pca.transform(X_test)) - X_test) ** 2)
        levers = {
            "one rate, lr 1e-3 (input_lr_scale=1)": dict(input_lr_scale=1.0),
            "one rate, lr 1e-4": dict(learning_rate_init=1e-4, input_lr_scale=1.0),
            "input lr x 64 / n_features (the default, auto)": {},
            "input lr x 256 / n_features": dict(input_lr_scale=min(1.0, 256 / p)),
        }
        for name, lever in levers.items():
            params = dict(device="cpu", n_components=10, max_iter=args.epochs, random_state=seed, **lever)
            start = time.perf_counter()
            vae = BetaVAETransformer(**params).fit(X_train)
            seconds = time.perf_counter() - start
            mse = np.mean((vae.inverse_transform(vae.transform(X_test)) - X_test) ** 2)
            losses = vae.net_.history[:, "train_loss"]
            print(f"| {name} | {seed} | {mse:.3f} | {pca_mse:.3f} | {losses[0]:.0f} | {min(losses):.0f} "
                  f"| {losses[-1]:.0f} | {max(losses[1:]):.0f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
