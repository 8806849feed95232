"""Factor recovery on simulated brain populations: beta-VAE levers against PCA and FastICA.

Usage:
    python benchmarks/bench_brain_factors.py
    python benchmarks/bench_brain_factors.py --kinds nonlinear --seeds 0 1 2 --levers defaults beta=1
    OMP_NUM_THREADS=1 python benchmarks/bench_brain_factors.py --threads 1 --levers "conv3d (8,16)"
    OMP_NUM_THREADS=1 python benchmarks/bench_brain_factors.py --threads 1 --seeds 0 1 2 3 4 \
        --model-seeds 3 --ica-on-codes --levers init=pca init=random \
        "init=pca + standardize=global" "init=random + standardize=global"
    OMP_NUM_THREADS=1 python benchmarks/bench_brain_factors.py --threads 1 --kinds nonlinear amplitude \
        --n-train 300 1000 3000 --n-test 200 --levers init=pca init=random

For each kind of population (``sklearn_betavae.datasets.make_brain_population``)
and each seed (a new population and new model seeds), masks the images with
nilearn's ``NiftiMasker``, fits PCA, FastICA and the beta-VAE with each lever
(one change from the defaults at a time) on ``--n-train`` subjects with the
same number of components, and scores the held-out subjects: mean best-match
rank correlation with the true factors, MIG, reconstruction MSE, and the
fit time. Prints one table, failures included. The lever "best of 5 seeds
by ELBO" also prints every candidate's inner-validation ELBO and test
best-match. ``--model-seeds`` fits each beta-VAE lever with that many
random_states per population (``seed + 1000 * i``); ``--ica-on-codes`` adds,
for every beta-VAE, a row for FastICA fitted on its training codes (the
pipeline a user can build); several ``--n-train`` values give a learning
curve on nested training sets of one population per seed (the held-out
subjects are the same for all). Results depend on the number of torch
threads (float rounding differs), so compare rows run with the same
``--threads``. "defaults" follows the estimator's defaults of the day
(``init="pca"`` since issue 15; random before); the ``init=...`` levers say
it explicitly.
"""

import argparse
import re
import time
import warnings

import numpy as np
import torch
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import ConvergenceWarning
from skorch.callbacks import LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.metrics import best_match_scores, mutual_information_gap

# One change from the defaults each; the name is what the table shows.
LEVERS = {
    "defaults": {},
    "beta=1": {"beta": 1.0},
    "beta=8": {"beta": 8.0},
    "beta_warmup=0": {"beta_warmup": 0.0},
    "max_iter=600": {"max_iter": 600},
    # Issue 32: a short budget for few, wide rows.
    "max_iter=10": {"max_iter": 10},
    "max_iter=20": {"max_iter": 20},
    "max_iter=200": {"max_iter": 200},
    "hidden=(512,256)": {"hidden_layer_sizes": (512, 256)},
    "hidden=(64,)": {"hidden_layer_sizes": (64,)},
    "standardize=False": {"standardize": False},
    "batch_size=32": {"batch_size": 32},
    "lr=3e-4": {"learning_rate_init": 3e-4},
    "hidden=() (linear)": {"hidden_layer_sizes": ()},
    "cosine lr": {"callbacks": [LRScheduler(policy=CosineAnnealingLR, T_max=200)]},
    "n_components=3": {"n_components": 3},
    "init=pca": {"init": "pca"},
    "init=random": {"init": "random"},
    "init=pca + standardize=global": {"init": "pca", "standardize": "global"},
    "init=random + standardize=global": {"init": "random", "standardize": "global"},
    "init=pca + beta_warmup=0": {"init": "pca", "beta_warmup": 0.0},
    "init=pca + beta=8": {"init": "pca", "beta": 8.0},
    "init=pca + beta=1": {"init": "pca", "beta": 1.0},
    "init=pca + cosine lr": {"init": "pca", "callbacks": [LRScheduler(policy=CosineAnnealingLR, T_max=200)]},
    # Issue 15: the input weights' learning rate (the default became "auto").
    "input_lr_scale=auto": {"input_lr_scale": "auto"},
    "input_lr_scale=1": {"input_lr_scale": 1.0},
    "input_lr_scale=auto + standardize=global": {"input_lr_scale": "auto", "standardize": "global"},
    "input_lr_scale=1 + standardize=global": {"input_lr_scale": 1.0, "standardize": "global"},
    "input_lr_scale=auto + max_iter=100": {"input_lr_scale": "auto", "max_iter": 100},
    "input_lr_scale=1 + max_iter=100": {"input_lr_scale": 1.0, "max_iter": 100},
    "input_lr_scale=auto + standardize=global + max_iter=100": {
        "input_lr_scale": "auto", "standardize": "global", "max_iter": 100},
    "input_lr_scale=0.1": {"input_lr_scale": 0.1},
    "early_stopping=True": {"early_stopping": True},
    # Centre each voxel but divide all by one number (the root mean voxel
    # variance), keeping the voxels' relative variances as PCA sees them.
    "global input scale": {"standardize": False},
    # A combination (two levers), after each was measured alone.
    "global input scale + hidden=(64,)": {"standardize": False, "hidden_layer_sizes": (64,)},
}
GLOBAL_SCALE = "global input scale"
# The defaults fitted with 5 random_states on the first 80% of the training
# subjects; the one with the best mean ELBO on the other 20% is kept.
BEST_OF_SEEDS = "best of 5 seeds by ELBO"
LEVERS[BEST_OF_SEEDS] = {}
# A 3D convolutional encoder and decoder (benchmarks/_conv3d.py, channels 8
# and 16, stride 2) instead of the MLPs; built per population from its mask.
CONV3D = "conv3d (8,16)"
LEVERS[CONV3D] = {}


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


class _BestOfSeedsByELBO:
    """The model, among several random_states, with the best held-out ELBO inside the training set.

    Each candidate is fitted on the first ``1 - validation_fraction`` of the
    rows of X and scored (``model.score``, mean ELBO per sample, higher is
    better) on the rest; the best is kept (``model``). ``candidates_`` holds
    ``(random_state, validation ELBO, fitted model)`` for every candidate.
    """

    def __init__(self, make_model, random_states, validation_fraction=0.2):
        self.make_model = make_model
        self.random_states = random_states
        self.validation_fraction = validation_fraction

    def fit(self, X):
        n_fit = int(round(len(X) * (1 - self.validation_fraction)))
        X_fit, X_valid = X[:n_fit], X[n_fit:]
        self.candidates_ = []
        for random_state in self.random_states:
            model = self.make_model(random_state).fit(X_fit)
            self.candidates_.append((random_state, model.score(X_valid), model))
        self.best_index_ = int(np.argmax([elbo for _, elbo, _ in self.candidates_]))
        self.model = self.candidates_[self.best_index_][2]
        return self

    def transform(self, X):
        return self.model.transform(X)

    def inverse_transform(self, Z):
        return self.model.inverse_transform(Z)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["amplitude", "overlapping", "nonlinear"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--levers", nargs="+", default=["defaults", "beta=1", "max_iter=600"])
    parser.add_argument("--n-train", type=int, nargs="+", default=[300])
    parser.add_argument("--model-seeds", type=int, default=1,
                        help="random_states per beta-VAE lever and population (seed + 1000 i)")
    parser.add_argument("--ica-on-codes", action="store_true",
                        help="also score FastICA fitted on each beta-VAE's training codes")
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--n-components", type=int, default=6)
    parser.add_argument("--resolution", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--conv-max-iter", type=int, default=None,
                        help=f"max_iter for the {CONV3D!r} lever only (default: the estimator's)")
    parser.add_argument("--summarize", metavar="FILE", default=None,
                        help="print only the summary of the rows in FILE (this script's output, "
                             "e.g. of a run stopped before its end) and exit")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads(n) before anything else (default: torch's own)")
    args = parser.parse_args()
    if args.summarize:
        _print_summary(_summary_of(args.summarize))
        return
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from nilearn.maskers import NiftiMasker

    from sklearn_betavae.datasets import make_brain_population

    k = args.n_components
    n_max = max(args.n_train)
    print(f"held-out {args.n_test} subjects, training on {' / '.join(map(str, args.n_train))}, "
          f"{args.resolution} mm, k={k}, device={args.device}, torch threads={torch.get_num_threads()}; "
          "best-match = mean over factors of the largest |Spearman|")
    print("| population | seed | n train | method | best-match | per factor | MIG | MSE | fit s |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary, candidates = {}, {}
    # Seeds outermost: a run stopped early still covers every kind.
    for seed in args.seeds:
        for kind in args.kinds:
            population = make_brain_population(
                n_max + args.n_test, kind=kind, resolution=args.resolution, random_state=seed
            )
            X = NiftiMasker(population.mask_img, standardize=None).fit_transform(population.images)
            # One training size keeps the layout of earlier runs (training subjects
            # first); a learning curve holds out the first subjects, so that every
            # training size is scored on the same ones.
            if len(args.n_train) == 1:
                train_rows, X_test = X[:n_max], X[n_max:]
                factors = population.factors[n_max:]
            else:
                train_rows, X_test = X[args.n_test:], X[:args.n_test]
                factors = population.factors[:args.n_test]
            for n_train in args.n_train:
                X_train = train_rows[:n_train]
                for name, model in _models(args, population, seed, k).items():
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        model.fit(X_train)
                    seconds = time.perf_counter() - start
                    Z = model.transform(X_test)
                    mse = float(np.mean((model.inverse_transform(Z) - X_test) ** 2))
                    _report(summary, kind, seed, n_train, name, Z, factors, mse, seconds)
                    if args.ica_on_codes and name.startswith("beta-VAE"):
                        start = time.perf_counter()
                        ica = _fastica(k, seed).fit(model.transform(X_train))
                        _report(summary, kind, seed, n_train, f"{name} + FastICA on codes",
                                ica.transform(Z), factors, mse, seconds + time.perf_counter() - start)
                    if isinstance(model, _BestOfSeedsByELBO):
                        candidates[(kind, seed)] = [
                            (random_state, elbo, best_match_scores(m.transform(X_test), factors).mean(),
                             i == model.best_index_)
                            for i, (random_state, elbo, m) in enumerate(model.candidates_)
                        ]
    _print_summary(summary)
    if candidates:
        _print_candidates(candidates)


def _fastica(k, seed):
    return FastICA(k, whiten="unit-variance", max_iter=2000, random_state=seed)


def _models(args, population, seed, k):
    """PCA, FastICA and every beta-VAE lever (times the model seeds), unfitted."""
    models = {"PCA": PCA(k, random_state=seed), "FastICA": _fastica(k, seed)}
    for lever in args.levers:
        for i in range(args.model_seeds):
            random_state = seed + 1000 * i
            params = dict(n_components=k, device=args.device, random_state=random_state)
            if lever == CONV3D:
                from _conv3d import conv3d_modules

                encoder, decoder = conv3d_modules(
                    population.mask_img.get_fdata() > 0, k, random_state=random_state
                )
                params.update(encoder=encoder, decoder=decoder)
                if args.conv_max_iter is not None:
                    params["max_iter"] = args.conv_max_iter
            # (n_components=3 is the number of true factors, or fewer.)
            model = BetaVAETransformer(**{**params, **LEVERS[lever]})
            if lever.startswith(GLOBAL_SCALE):
                model = _GloballyScaled(model)
            elif lever == BEST_OF_SEEDS:
                model = _BestOfSeedsByELBO(
                    lambda random_state, params=params: BetaVAETransformer(
                        **{**params, "random_state": random_state}
                    ),
                    [1000 * seed + i for i in range(5)],
                )
            suffix = f", max_iter={args.conv_max_iter}" if lever == CONV3D and args.conv_max_iter else ""
            suffix += f", random_state={random_state}" if args.model_seeds > 1 else ""
            models[f"beta-VAE {lever}{suffix}"] = model
    return models


def _report(summary, kind, seed, n_train, name, Z, factors, mse, seconds):
    scores = best_match_scores(Z, factors)
    # Model seeds pool into their lever's summary row.
    summary.setdefault((kind, n_train, _lever_of(name)), []).append((seed, scores.mean()))
    print(f"| {kind} | {seed} | {n_train} | {name} | {scores.mean():.3f} | "
          f"{' '.join(f'{s:.2f}' for s in scores)} | "
          f"{mutual_information_gap(Z, factors):.3f} | {mse:.2e} | {seconds:.1f} |", flush=True)


def _lever_of(name):
    """The summary row of a fit: its name without the model seed (which may stand mid-name)."""
    return re.sub(r", random_state=\d+", "", name)


def _summary_of(path):
    """The summary dict of the per-fit rows in a saved output of this script."""
    summary = {}
    with open(path) as lines:
        for line in lines:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) == 9 and cells[1].isdigit():
                kind, seed, n_train, name, match = cells[:5]
                key = (kind, int(n_train), _lever_of(name))
                summary.setdefault(key, []).append((int(seed), float(match)))
    return summary


def _print_summary(summary):
    """Mean (min-max) best match per method, and its difference with PCA's on the same population.

    ``summary`` maps (kind, n_train, method) to (population seed, best match)
    pairs, one per fit; the issue's targets are per population, so the
    difference pairs each fit with PCA's fit of its population.
    """
    print("\nBest-match over populations and model seeds: mean (min-max); minus PCA's on the same "
          "population: mean (min to max), and the fits at or above PCA's; the number of fits")
    print("| population | n train | method | best-match | minus PCA | fits >= PCA | fits |")
    print("|---|---|---|---|---|---|---|")
    for (kind, n_train, name), pairs in summary.items():
        values = [match for _, match in pairs]
        pca = dict(summary.get((kind, n_train, "PCA"), []))
        gaps = [match - pca[seed] for seed, match in pairs if seed in pca]
        gap_cells = (f"{np.mean(gaps):+.3f} ({min(gaps):+.3f} to {max(gaps):+.3f}) | "
                     f"{sum(gap >= 0 for gap in gaps)} of {len(gaps)}") if gaps and name != "PCA" else "- | -"
        print(f"| {kind} | {n_train} | {name} | {np.mean(values):.3f} "
              f"({min(values):.3f}-{max(values):.3f}) | {gap_cells} | {len(values)} |")


def _print_candidates(candidates):
    from scipy.stats import spearmanr

    print(f"\n{BEST_OF_SEEDS}: every candidate (fitted on the first 80% of the training subjects); "
          "ELBO on the other 20% of the training subjects, best-match on the test subjects")
    print("| population | seed | random_state | inner-validation ELBO | test best-match | chosen |")
    print("|---|---|---|---|---|---|")
    for (kind, seed), rows in candidates.items():
        for random_state, elbo, match, chosen in rows:
            mark = "yes" if chosen else ""
            print(f"| {kind} | {seed} | {random_state} | {elbo:.1f} | {match:.3f} | {mark} |")
    print("\nPer population and seed: Spearman(ELBO, test best-match) over the 5 candidates; "
          "test best-match of the chosen, the mean, the best (oracle) and the worst candidate")
    print("| population | seed | Spearman rho | chosen | mean of 5 | best of 5 | worst of 5 |")
    print("|---|---|---|---|---|---|---|")
    for (kind, seed), rows in candidates.items():
        elbos, matches = [r[1] for r in rows], [r[2] for r in rows]
        chosen = next(r[2] for r in rows if r[3])
        print(f"| {kind} | {seed} | {spearmanr(elbos, matches)[0]:+.2f} | {chosen:.3f} | "
              f"{np.mean(matches):.3f} | {max(matches):.3f} | {min(matches):.3f} |")


if __name__ == "__main__":
    main()
