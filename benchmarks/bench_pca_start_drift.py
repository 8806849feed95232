"""How far training moves the beta-VAE away from its PCA start, lever by lever.

Usage:
    python benchmarks/bench_pca_start_drift.py [--n-train 120] [--resolution 8] [--max-iter 20]
        [--seeds 0 1 2] [--levers default no-warmup lr-1e-4 ...] [--threads 1]

The PCA start (issue 15) puts the network at the optimum of the loss for a
linear model; the question is which part of training then pulls it away (at
3,000 subjects two default fits ended far behind PCA). On an "amplitude"
population (``make_brain_population``), for each lever alone: the training
loss at the first epoch and its largest jump over that (ratio), the held-out
reconstruction MSE as a ratio to PCA's, and the mean held-out best match of
the codes to the factors, against PCA's. Every run is printed, failures
included. CPU; ``--device`` for a GPU.
"""

import argparse

import numpy as np
import torch
from sklearn.decomposition import PCA

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.datasets import make_brain_population
from sklearn_betavae.metrics import best_match_scores

LEVERS = {
    "default": {},
    "no-warmup": {"beta_warmup": 0.0},
    "lr-1e-4": {"learning_rate_init": 1e-4},
    "lr-3e-4": {"learning_rate_init": 3e-4},
    "global": {"standardize": "global"},
    "no-warmup+global": {"beta_warmup": 0.0, "standardize": "global"},
    "linear": {"hidden_layer_sizes": ()},
    "linear+no-warmup": {"hidden_layer_sizes": (), "beta_warmup": 0.0},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=120)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=8)
    parser.add_argument("--n-components", type=int, default=6)
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from nilearn.maskers import NiftiMasker

    print(f"amplitude populations, {args.n_train} + {args.n_test} subjects, {args.resolution} mm, "
          f"k={args.n_components}, max_iter={args.max_iter}\n")
    print("| lever | seed | first-epoch loss | worst jump (x first) | last loss | MSE / PCA | match "
          "| PCA match |")
    print("|---|---|---|---|---|---|---|---|")
    summary = {}
    for seed in args.seeds:
        population = make_brain_population(args.n_train + args.n_test, resolution=args.resolution,
                                           random_state=seed)
        X = NiftiMasker(population.mask_img, standardize=None).fit_transform(population.images)
        X = X.astype(np.float32)
        train, test = X[:args.n_train], X[args.n_train:]
        factors = population.factors[args.n_train:]
        pca = PCA(args.n_components, random_state=seed).fit(train)
        pca_mse = np.mean((pca.inverse_transform(pca.transform(test)) - test) ** 2)
        pca_match = best_match_scores(pca.transform(test), factors).mean()
        for lever in args.levers:
            params = dict(n_components=args.n_components, max_iter=args.max_iter, device=args.device,
                          random_state=seed, **LEVERS[lever])
            try:
                vae = BetaVAETransformer(**params).fit(train)
            except (FloatingPointError, ValueError) as error:
                print(f"| {lever} | {seed} | failed: {error} |")
                continue
            losses = np.array(vae.net_.history[:, "train_loss"])
            mse = np.mean((vae.inverse_transform(vae.transform(test)) - test) ** 2) / pca_mse
            match = best_match_scores(vae.transform(test), factors).mean()
            jump = losses.max() / losses[0]
            summary.setdefault(lever, []).append((jump, mse, match - pca_match))
            print(f"| {lever} | {seed} | {losses[0]:.4g} | {jump:.2f} | {losses[-1]:.4g} | {mse:.3f} | "
                  f"{match:.3f} | {pca_match:.3f} |", flush=True)
    print("\n| lever | worst jump (median) | MSE / PCA (median) | match - PCA match (mean) |")
    print("|---|---|---|---|")
    for lever, rows in summary.items():
        rows = np.array(rows)
        print(f"| {lever} | {np.median(rows[:, 0]):.2f} | {np.median(rows[:, 1]):.3f} | "
              f"{rows[:, 2].mean():+.3f} |")


if __name__ == "__main__":
    main()
