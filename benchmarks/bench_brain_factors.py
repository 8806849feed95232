"""Factor recovery on simulated brain populations: beta-VAE levers against PCA and FastICA.

Usage:
    python benchmarks/bench_brain_factors.py
    python benchmarks/bench_brain_factors.py --kinds nonlinear --seeds 0 1 2 --levers defaults beta=1

For each kind of population (``sklearn_betavae.datasets.make_brain_population``)
and each seed (a new population and new model seeds), masks the images with
nilearn's ``NiftiMasker``, fits PCA, FastICA and the beta-VAE with each lever
(one change from the defaults at a time) on ``--n-train`` subjects with the
same number of components, and scores the held-out subjects: mean best-match
rank correlation with the true factors, MIG, reconstruction MSE, and the
fit time. Prints one table, failures included.
"""

import argparse
import time
import warnings

import numpy as np
from skorch.callbacks import LRScheduler
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import ConvergenceWarning
from torch.optim.lr_scheduler import CosineAnnealingLR

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.inspection import best_match_scores, mutual_information_gap

# One change from the defaults each; the name is what the table shows.
LEVERS = {
    "defaults": {},
    "beta=1": {"beta": 1.0},
    "beta=8": {"beta": 8.0},
    "beta_warmup=0": {"beta_warmup": 0.0},
    "max_iter=600": {"max_iter": 600},
    "hidden=(512,256)": {"hidden_layer_sizes": (512, 256)},
    "hidden=(64,)": {"hidden_layer_sizes": (64,)},
    "standardize=False": {"standardize": False},
    "batch_size=32": {"batch_size": 32},
    "lr=3e-4": {"learning_rate_init": 3e-4},
    "hidden=() (linear)": {"hidden_layer_sizes": ()},
    "cosine lr": {"callbacks": [LRScheduler(policy=CosineAnnealingLR, T_max=200)]},
    "n_components=3": {"n_components": 3},
    # Centre each voxel but divide all by one number (the root mean voxel
    # variance), keeping the voxels' relative variances as PCA sees them.
    "global input scale": {"standardize": False},
    # A combination (two levers), after each was measured alone.
    "global input scale + hidden=(64,)": {"standardize": False, "hidden_layer_sizes": (64,)},
}
GLOBAL_SCALE = "global input scale"


class _GloballyScaled:
    """A model fitted on X centred per voxel and divided by one global scale."""

    def __init__(self, model):
        self.model = model

    def fit(self, X):
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.sqrt(np.mean(X.var(axis=0)))
        self.model.fit((X - self.mean_) / self.scale_)
        return self

    def transform(self, X):
        return self.model.transform((X - self.mean_) / self.scale_)

    def inverse_transform(self, Z):
        return self.model.inverse_transform(Z) * self.scale_ + self.mean_


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["amplitude", "overlapping", "nonlinear"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--levers", nargs="+", default=["defaults", "beta=1", "max_iter=600"])
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--n-components", type=int, default=6)
    parser.add_argument("--resolution", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from nilearn.maskers import NiftiMasker

    from sklearn_betavae.datasets import make_brain_population

    k = args.n_components
    print(f"held-out {args.n_test} of {args.n_train + args.n_test} subjects, {args.resolution} mm, "
          f"k={k}, device={args.device}; best-match = mean over factors of the largest |Spearman|")
    print("| population | seed | method | best-match | per factor | MIG | MSE | fit s |")
    print("|---|---|---|---|---|---|---|---|")
    summary = {}
    for kind in args.kinds:
        for seed in args.seeds:
            population = make_brain_population(
                args.n_train + args.n_test, kind=kind, resolution=args.resolution, random_state=seed
            )
            X = NiftiMasker(population.mask_img, standardize=None).fit_transform(population.images)
            X_train, X_test = X[: args.n_train], X[args.n_train :]
            factors = population.factors[args.n_train :]
            models = {
                "PCA": PCA(k, random_state=seed),
                "FastICA": FastICA(k, whiten="unit-variance", max_iter=2000, random_state=seed),
            }
            for lever in args.levers:
                params = dict(n_components=k, device=args.device, random_state=seed)
                # (n_components=3 is the number of true factors, or fewer.)
                model = BetaVAETransformer(**{**params, **LEVERS[lever]})
                models[f"beta-VAE {lever}"] = _GloballyScaled(model) if lever.startswith(GLOBAL_SCALE) else model
            for name, model in models.items():
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(X_train)
                seconds = time.perf_counter() - start
                Z = model.transform(X_test)
                scores = best_match_scores(Z, factors)
                mse = float(np.mean((model.inverse_transform(Z) - X_test) ** 2))
                summary.setdefault((kind, name), []).append(scores.mean())
                print(f"| {kind} | {seed} | {name} | {scores.mean():.3f} | "
                      f"{' '.join(f'{s:.2f}' for s in scores)} | "
                      f"{mutual_information_gap(Z, factors):.3f} | {mse:.2e} | {seconds:.1f} |",
                      flush=True)
    _print_summary(summary)


def _print_summary(summary):
    print("\nBest-match over seeds: mean (min-max)")
    print("| population | method | best-match |")
    print("|---|---|---|")
    for (kind, name), values in summary.items():
        print(f"| {kind} | {name} | {np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f}) |")


if __name__ == "__main__":
    main()
