"""How long should a default fit train? Held-out R^2 against epochs, per data set.

Issue 32: on 717 real activation maps the default 200 epochs memorise the
training maps (held-out R^2 below the training mean), while on digits 400
epochs beat 200. This script measures, in one fit per data set, the held-out
and train R^2 after chosen epochs of one run of the estimator (the defaults,
or the defaults plus ``--params``), beside PCA's at the same number of
components, so that a budget rule can be read off every data set at once:

- ``maps6`` / ``maps4``: ``load_nback_flanker`` at 6 / 4 mm, split ``s`` of
  ``GroupShuffleSplit(5, test_size=0.25, random_state=0)`` by study (as
  ``bench_real_maps.py``), k latents (``--k-maps``, default 10);
- ``digits``: ``load_digits`` as it comes, 75/25 split with seed ``s``, 8
  latents (as ``bench_digits_defaults.py``);
- ``wine`` / ``cancer``: ``load_wine`` (13 features) / ``load_breast_cancer``
  (30 features) as they come, tabular rows whose features have their own
  units, 75/25 split with seed ``s``, 4 / 6 latents;
- ``amplitude`` / ``overlapping`` / ``nonlinear``: ``make_brain_population``
  population ``s``, ``--n-train`` subjects (300 or 3,000) and 200 held out,
  masked at 6 mm, 6 latents (as ``bench_brain_factors.py``).

R^2 is 1 - SSE / SS about the training mean, on the held-out rows (and the
training rows), of ``inverse_transform(transform(X))``. The beta warm-up
lasts ``beta_warmup * max_iter`` epochs, so the R^2 after epoch e of a
200-epoch run is not that of a fit with ``max_iter=e``: read the curve for
where the fit leaves PCA, then check a rule with real fits
(``bench_real_maps.py --levers``).

Usage:
    python benchmarks/bench_training_budget.py --sets maps6:0 digits:0 amplitude:0
        [--n-train 300] [--max-iter 200] [--params max_iter=20 beta=1]
        [--threads 1] [--out benchmarks/results/budget.txt]
"""

import argparse
import ast
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.decomposition import PCA
from sklearn.model_selection import GroupShuffleSplit, train_test_split
from skorch.callbacks import Callback

from sklearn_betavae import BetaVAETransformer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real_maps import NonlinearDecay  # noqa: E402


class StartDecay(NonlinearDecay):
    """Decoupled weight decay toward the weights the fit started from (the
    PCA start) of every weight, the linear path included: a Gaussian prior
    centred on probabilistic PCA."""

    def on_train_begin(self, net, **kwargs):
        self.params_ = [(p, p.detach().clone()) for p in net.module_.parameters()]


CHECKPOINTS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 150, 200, 300, 400)


def r2(model, X, mean):
    """1 - SSE / SS about the training mean (PCA and the estimator alike)."""
    reconstruction = model.inverse_transform(model.transform(X))
    return 1.0 - np.sum((reconstruction - X) ** 2) / np.sum((X - mean) ** 2)


class R2Curve(Callback):
    """Held-out and train R^2 of the estimator being fitted, after the
    epochs in ``CHECKPOINTS`` (and the last one)."""

    def __init__(self, estimator, X_train, X_test, max_epochs):
        self.estimator = estimator
        self.X_train = X_train
        self.X_test = X_test
        self.max_epochs = max_epochs

    def on_train_begin(self, net, **kwargs):
        self.curve_ = {}
        self.mean_ = self.X_train.mean(axis=0)

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        if epoch in CHECKPOINTS or epoch == self.max_epochs:
            self.curve_[epoch] = (
                r2(self.estimator, self.X_test, self.mean_),
                r2(self.estimator, self.X_train, self.mean_),
            )


TABULAR = {"wine": (load_wine, 4), "cancer": (load_breast_cancer, 6)}


def load_set(name, seed, args):
    """(X_train, X_test, n_components, description) of one data set."""
    if name in ("maps6", "maps4"):
        from sklearn_betavae.datasets import load_nback_flanker

        maps = load_nback_flanker(int(name[-1]), return_images=False)
        splits = GroupShuffleSplit(5, test_size=0.25, random_state=0)
        train, test = list(splits.split(maps.data, groups=maps.groups))[seed]
        return maps.data[train], maps.data[test], args.k_maps, f"{len(train)}x{maps.data.shape[1]}"
    if name == "digits":
        X, _ = load_digits(return_X_y=True)
        X_train, X_test = train_test_split(X, test_size=0.25, random_state=seed)
        return X_train, X_test, 8, f"{len(X_train)}x64"
    if name in TABULAR:
        load, k = TABULAR[name]
        X, _ = load(return_X_y=True)
        X_train, X_test = train_test_split(X, test_size=0.25, random_state=seed)
        return X_train, X_test, k, f"{len(X_train)}x{X.shape[1]}"
    from nilearn.maskers import NiftiMasker

    from sklearn_betavae.datasets import make_brain_population

    population = make_brain_population(args.n_train + 200, kind=name, resolution=6, random_state=seed)
    X = NiftiMasker(population.mask_img, standardize=None).fit_transform(population.images)
    return X[: args.n_train], X[args.n_train :], 6, f"{args.n_train}x{X.shape[1]}"


def parse_params(items):
    params = {}
    for item in items:
        key, value = item.split("=", 1)
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sets",
        nargs="+",
        default=["maps6:0", "digits:0", "amplitude:0"],
        help="NAME:SEED, NAME one of maps6 maps4 digits wine cancer amplitude overlapping nonlinear",
    )
    parser.add_argument(
        "--n-train", type=int, default=300, help="training subjects of the simulated populations"
    )
    parser.add_argument("--k-maps", type=int, default=10)
    parser.add_argument(
        "--params", nargs="*", default=[], help="estimator parameters besides the defaults, KEY=VALUE"
    )
    parser.add_argument(
        "--decay",
        default=None,
        help="PART:RATE:TOWARD, decoupled weight decay after every step (as AdamW), PART "
        "nonlinear (the MLP path) or all, TOWARD zero or start; e.g. all:10:start",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = {"max_iter": 200, **parse_params(args.params)}
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    emit(f"bench_training_budget: {' '.join(sys.argv[1:])}")
    emit(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), cpu; "
        f"estimator defaults plus {params}" + (f", decay {args.decay}" if args.decay else "")
    )
    emit("R2 test - PCA's R2 test after each epoch (train R2 after the last checkpoint)")
    epochs = [e for e in CHECKPOINTS if e <= params["max_iter"]]
    if params["max_iter"] not in epochs:
        epochs.append(params["max_iter"])
    header = (
        f"{'set':<14} {'rows x cols':>12} {'k':>3} {'PCA test':>8} {'PCA trn':>8} "
        + " ".join(f"{e:>6}" for e in epochs)
        + f" {'trn end':>8} {'fit s':>6}"
    )
    emit(header)
    for item in args.sets:
        name, seed = item.split(":")
        X_train, X_test, k, shape = load_set(name, int(seed), args)
        mean = X_train.mean(axis=0)
        pca = PCA(k, random_state=0).fit(X_train)
        pca_test, pca_train = r2(pca, X_test, mean), r2(pca, X_train, mean)
        vae = BetaVAETransformer(n_components=k, device="cpu", random_state=int(seed), **params)
        curve = R2Curve(vae, X_train, X_test, params["max_iter"])
        extra = [curve]
        if args.decay:
            part, rate, toward = args.decay.split(":")
            decay = StartDecay(float(rate)) if part == "all" else NonlinearDecay(float(rate), toward)
            extra.insert(0, decay)
        vae.set_params(callbacks=[*(vae.callbacks or []), *extra])
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vae.fit(X_train)
        seconds = time.perf_counter() - start
        gaps = [curve.curve_[e][0] - pca_test if e in curve.curve_ else np.nan for e in epochs]
        last = curve.curve_[max(curve.curve_)]
        emit(
            f"{item:<14} {shape:>12} {k:>3} {pca_test:8.4f} {pca_train:8.4f} "
            + " ".join(f"{g:+6.3f}" for g in gaps)
            + f" {last[1]:8.4f} {seconds:6.1f}"
        )
    if args.out:
        with open(args.out, "w") as file:
            file.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
