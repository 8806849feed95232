"""Fingerprint a few CPU fits, to check that a refactoring changes no bits.

Fits BetaVAETransformer in several configurations (each fit path: the PCA
start, the random start, each decoder, early stopping, a warm start, your
own modules, per-feature and global standardization, float32 input) with a
fixed ``random_state`` on the CPU, and stores the codes, reconstructions,
ELBOs and training losses. Run it with ``--save DIR`` before a change and
with ``--compare DIR`` after: every array must be equal, bit for bit.

    OMP_NUM_THREADS=1 python benchmarks/same_bits.py --save /tmp/before
    OMP_NUM_THREADS=1 python benchmarks/same_bits.py --compare /tmp/before
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from sklearn_betavae import BetaVAETransformer


def _wide(n_rows=120, n_features=1500, seed=0):
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((n_rows, 4))
    loadings = rng.standard_normal((4, n_features))
    return factors @ loadings + 0.5 * rng.standard_normal((n_rows, n_features))


class _Encoder(torch.nn.Module):
    def __init__(self, n_features, n_components):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(n_features, 2 * n_components)

    def forward(self, x):
        mu, logvar = self.layer(x).chunk(2, dim=-1)
        return mu, logvar


def fits():
    """``(name, fitted estimator, X)`` for each configuration."""
    digits = load_digits().data[:400]
    wide = _wide()
    common = dict(device="cpu", random_state=0, max_iter=4, hidden_layer_sizes=(32, 16),
                  n_components=4)
    yield "digits_pca", BetaVAETransformer(**common).fit(digits), digits
    yield "digits_random_laplace", BetaVAETransformer(
        default_dist="laplace", **common).fit(digits), digits
    yield "digits_bernoulli", BetaVAETransformer(
        default_dist="bernoulli", **common).fit(digits / 16), digits / 16
    yield "digits_early_stopping", BetaVAETransformer(
        early_stopping=True, **{**common, "max_iter": 6}).fit(digits), digits
    warm = BetaVAETransformer(warm_start=True, beta_warmup=0.5, **common).fit(digits)
    warm.set_params(max_iter=3, beta=2.0, batch_size=64).fit(digits)
    yield "digits_warm_start", warm, digits
    yield "digits_own_encoder", BetaVAETransformer(
        encoder=_Encoder(64, 4), **common).fit(digits), digits
    yield "wide_defaults", BetaVAETransformer(device="cpu", random_state=0).fit(wide), wide
    wide32 = wide.astype(np.float32)
    yield "wide_float32_linear", BetaVAETransformer(
        standardize=True, **{**common, "hidden_layer_sizes": ()}).fit(wide32), wide32
    from accelerate import Accelerator

    yield "digits_accelerate", BetaVAETransformer(
        accelerator=Accelerator(cpu=True), **{**common, "device": "auto"}).fit(digits), digits


def fingerprint(estimator, X):
    Z = estimator.transform(X)
    history = estimator.net_.history
    return {
        "codes": Z,
        "reconstruction": estimator.inverse_transform(Z),
        "elbo": estimator.score_samples(X),
        "train_loss": np.array(history[:, "train_loss"]),
        "n_iter": np.array(estimator.n_iter_),
        "sample": estimator.sample(3, random_state=0),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--save", type=Path)
    what.add_argument("--compare", type=Path)
    args = parser.parse_args()
    different = 0
    for name, estimator, X in fits():
        arrays = fingerprint(estimator, X)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            np.savez(args.save / f"{name}.npz", **arrays)
            print(f"saved {name}")
            continue
        before = np.load(args.compare / f"{name}.npz")
        for key, value in arrays.items():
            same = np.array_equal(before[key], value)
            different += not same
            gap = np.max(np.abs(before[key] - value)) if before[key].shape == value.shape else "shape"
            print(f"{name:24s} {key:15s} {'same bits' if same else f'DIFFERENT (max gap {gap})'}")
    if different:
        sys.exit(f"{different} arrays differ")


if __name__ == "__main__":
    main()
