"""Which defaults give useful latents on raw digits? One lever at a time.

Fits ``BetaVAETransformer`` on scikit-learn's digits exactly as
``load_digits`` returns them (pixel values 0-16), 75/25 split, and compares
with PCA at the same number of components. Each row is one lever against the
defaults (standardize="auto", beta_warmup=0.25), over several seeds, so the
table shows failures too.

Columns: held-out mean squared error in pixel units (and its ratio to PCA's),
latents whose mean KL exceeds 0.1 nats, held-out mean ELBO (``score``), fit
seconds.

"defaults" are the estimator's defaults of the day (``init="pca"`` since
issue 15; a random start before, now the ``init=random`` row).

Usage:
    python benchmarks/bench_digits_defaults.py [--seeds 0 1 2] [--n-components 8]
        [--device cpu] [--levers defaults init=random "cosine lr"] [--threads 1]
"""

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from skorch.callbacks import LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.inspection import latent_kl

LEVERS = {
    "defaults": {},
    "beta_warmup=0": {"beta_warmup": 0.0},
    "standardize=False": {"standardize": False},
    "standardize=True": {"standardize": True},
    # The same digits in [0, 1] units: standardization makes the defaults
    # independent of the units, which raw training is not.
    "X/16, standardize=False": {"standardize": False, "unit_scale": 16.0},
    "init=random": {"init": "random"},
    "cosine lr": {"callbacks": [LRScheduler(policy=CosineAnnealingLR, T_max=200)]},
    "init=random + cosine lr": {"init": "random",
                                "callbacks": [LRScheduler(policy=CosineAnnealingLR, T_max=200)]},
    "standardize=global": {"standardize": "global"},
    "init=random + standardize=global": {"init": "random", "standardize": "global"},
    "max_iter=100": {"max_iter": 100},
    "max_iter=400": {"max_iter": 400},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-components", type=int, default=8)
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--levers", nargs="+", default=list(LEVERS)[:4], choices=list(LEVERS))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads(n) first (default: torch's own)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    X, _ = load_digits(return_X_y=True)
    k = args.n_components
    rows = []
    for seed in args.seeds:
        X_train, X_test = train_test_split(X, test_size=0.25, random_state=seed)
        pca = PCA(k).fit(X_train)
        pca_mse = np.mean((pca.inverse_transform(pca.transform(X_test)) - X_test) ** 2)
        for beta in args.betas:
            for lever in args.levers:
                params = dict(LEVERS[lever])
                unit = params.pop("unit_scale", 1.0)
                start = time.perf_counter()
                vae = BetaVAETransformer(beta, device=args.device, n_components=k,
                                         random_state=seed, **params).fit(X_train / unit)
                seconds = time.perf_counter() - start
                decoded = vae.inverse_transform(vae.transform(X_test / unit)) * unit
                mse = np.mean((decoded - X_test) ** 2)  # always in pixel units (0-16)
                # The ELBO is a log-density, so it is reported in pixel units
                # for every lever: log p(X) = log p(X / 16) - n_features * log 16.
                elbo = vae.score(X_test / unit) - X.shape[1] * np.log(unit)
                rows.append((lever, beta, seed, mse, pca_mse,
                             int(np.sum(latent_kl(vae, X_test / unit) > 0.1)), elbo, seconds))
                print(f"# {lever} beta={beta} seed={seed}: mse {mse:.3f} (PCA {pca_mse:.3f})",
                      flush=True)

    print(f"\nDigits, n_components={k}, held-out 25%, device={args.device}, "
          f"torch threads={torch.get_num_threads()}")
    header = (f"| {'lever':<32} | beta | seed | VAE MSE | PCA MSE | VAE/PCA | active/{k} "
              "| held-out ELBO | fit s |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for lever, beta, seed, mse, pca_mse, active, elbo, seconds in rows:
        print(f"| {lever:<32} | {beta:>4g} | {seed:>4} | {mse:>7.3f} | {pca_mse:>7.3f} "
              f"| {mse / pca_mse:>7.2f} | {active:>8} | {elbo:>13.1f} | {seconds:>5.1f} |")


if __name__ == "__main__":
    main()
