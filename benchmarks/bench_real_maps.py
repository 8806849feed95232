"""Real activation maps (n-back and flanker studies): the beta-VAE against PCA, FastICA, DictionaryLearning.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_real_maps.py
    OMP_NUM_THREADS=1 python benchmarks/bench_real_maps.py --resolutions 6 4 --n-components 10 20 \
        --methods PCA FastICA DictionaryLearning --levers defaults early_stopping=True
    OMP_NUM_THREADS=1 python benchmarks/bench_real_maps.py --methods PCA --levers defaults \
        "nonlinear decay=1" --splits 0 1 2 --out benchmarks/results/real_maps_decay.txt

Loads ``sklearn_betavae.datasets.load_nback_flanker`` (717 maps of 268
published studies) and, for each of ``--n-splits`` grouped splits
(``GroupShuffleSplit(test_size=0.25, random_state=0)``: a study's maps stay
together), fits each method on the training studies with the same number of
components and scores:

- ``R2 test`` / ``R2 train``: ``1 - SSE / SS`` about the training mean, of the
  reconstruction ``inverse_transform(transform(X))`` (DictionaryLearning:
  codes times the dictionary) on the held-out and the training maps;
- ``loglik``: held-out log-likelihood per map, where the method has one
  (``PCA.score``, the beta-VAE's ``score``, an ELBO: a lower bound);
- ``decode``: balanced accuracy of the task (n-back or flanker) predicted from
  the codes of all 717 maps by a logistic regression, 5-fold ``GroupKFold``
  by study (chance 0.5);
- ``fit s``: the fit's wall time, and its ratio to PCA's on the same split.

Beta-VAE rows are the estimator's defaults changed by one lever each
(``LEVERS``), plus ``grid search``: ``beta`` and ``n_components`` chosen by
``GridSearchCV`` with ``GroupKFold(3)`` on the training studies, by the
estimator's default score (the ELBO). Prints every row (failures included,
as "failed: ...") and a summary: the mean over splits of each column and, for
R2 test, the difference to PCA on each split. ``--out`` also writes the
output to a file (``benchmarks/results/``). Torch runs on ``--threads``
threads (fit times depend on it).
"""

import argparse
import sys
import time
import traceback
import warnings

import numpy as np
import torch
from sklearn.decomposition import PCA, DictionaryLearning, FastICA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, GroupShuffleSplit, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.datasets import load_nback_flanker


class NonlinearDecay(Callback):
    """Decoupled weight decay (as AdamW) of the built-in MLPs' nonlinear part
    only, after every step: ``w -= lr * decay * (w - w0)`` with ``w0`` zero,
    or the weights the fit started from (``toward="start"``). The linear
    path, which starts at probabilistic PCA, is left free."""

    def __init__(self, decay, toward="zero"):
        self.decay = decay
        self.toward = toward

    def on_train_begin(self, net, **kwargs):
        self.params_ = [
            (p, p.detach().clone() if self.toward == "start" else None)
            for name, p in net.module_.named_parameters()
            if ".linear." not in name
        ]

    def on_batch_end(self, net, training=False, **kwargs):
        if not training:
            return
        step = net.lr * self.decay
        with torch.no_grad():
            for p, start in self.params_:
                if start is None:
                    p.mul_(1.0 - step)
                else:
                    p.sub_(step * (p - start))


# One change from the defaults each; the name is what the table shows.
LEVERS = {
    "defaults": lambda: {},
    "early_stopping=True": lambda: {"early_stopping": True},
    "hidden=() (linear)": lambda: {"hidden_layer_sizes": ()},
    "max_iter=50": lambda: {"max_iter": 50},
    "max_iter=20": lambda: {"max_iter": 20},
    "max_iter=200 (the default before auto)": lambda: {"max_iter": 200},
    "beta=1": lambda: {"beta": 1.0},
    "beta=16": lambda: {"beta": 16.0},
    "input_lr_scale=1": lambda: {"input_lr_scale": 1.0},
    "standardize=True": lambda: {"standardize": True},
    "standardize=False": lambda: {"standardize": False},
    "default_dist=laplace": lambda: {"default_dist": "laplace"},
    "batch_size=32": lambda: {"batch_size": 32},
    "batch_size=512": lambda: {"batch_size": 512},
    "hidden=(64,)": lambda: {"hidden_layer_sizes": (64,)},
    "hidden=(32,)": lambda: {"hidden_layer_sizes": (32,)},
    "lr=1e-4": lambda: {"learning_rate_init": 1e-4},
    "nonlinear decay=0.1": lambda: {"callbacks": [NonlinearDecay(0.1)]},
    "nonlinear decay=1": lambda: {"callbacks": [NonlinearDecay(1.0)]},
    "nonlinear decay=10": lambda: {"callbacks": [NonlinearDecay(10.0)]},
    "nonlinear decay=100": lambda: {"callbacks": [NonlinearDecay(100.0)]},
    "nonlinear decay=1 toward start": lambda: {"callbacks": [NonlinearDecay(1.0, "start")]},
    "nonlinear decay=10 toward start": lambda: {"callbacks": [NonlinearDecay(10.0, "start")]},
}
BASELINES = ("PCA", "FastICA", "DictionaryLearning")
GRID = {"beta": [1.0, 4.0, 16.0], "n_components": None}  # n_components: k/2, k, 2k


def baseline(name, k, seed):
    if name == "PCA":
        return PCA(k)
    if name == "FastICA":
        return FastICA(k, random_state=seed, max_iter=1000)
    return DictionaryLearning(k, random_state=seed)


def reconstruct(model, X):
    codes = model.transform(X)
    if isinstance(model, DictionaryLearning):
        return codes, codes @ model.components_
    return codes, model.inverse_transform(codes)


def pca_loglik(pca, X):
    """``PCA.score``'s mean log-likelihood, in the low-rank form: scikit-learn
    builds the n_features x n_features precision matrix (6 GB at 4 mm),
    which this avoids. With ``C = s2 I + U diag(lambda - s2) U^T``,
    ``log |C| = (d - k) log s2 + sum(log lambda)`` and
    ``r^T C^-1 r = (|r|^2 - sum((lambda - s2) / lambda (U^T r)^2)) / s2``."""
    n_features = X.shape[1]
    noise, variances = pca.noise_variance_, pca.explained_variance_
    residual = X - pca.mean_
    projected = residual @ pca.components_.T
    quadratic = (np.sum(residual**2, axis=1)
                 - np.sum((variances - noise) / variances * projected**2, axis=1)) / noise
    log_det = (n_features - len(variances)) * np.log(noise) + np.sum(np.log(variances))
    return float(np.mean(-0.5 * (quadratic + log_det + n_features * np.log(2 * np.pi))))


def held_out_loglik(model, X):
    """The held-out log-likelihood per map where the method has one."""
    if isinstance(model, PCA):
        return pca_loglik(model, X)
    return model.score(X) if hasattr(model, "score") else np.nan


def r2(X, X_hat, mean):
    return 1.0 - np.sum((X - X_hat) ** 2) / np.sum((X - mean) ** 2)


def decoding(codes, target, groups):
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_score(classifier, codes, target, groups=groups, cv=GroupKFold(5),
                           scoring="balanced_accuracy").mean()


def fit_method(method, k, seed, X_train, groups_train, device):
    if method in BASELINES:
        model = baseline(method, k, seed)
    else:
        vae = BetaVAETransformer(device=device, n_components=k, random_state=seed)
        if method == "grid search":
            grid = dict(GRID, n_components=sorted({max(1, k // 2), k, 2 * k}))
            model = GridSearchCV(vae, grid, cv=GroupKFold(3))
            start = time.perf_counter()
            model.fit(X_train, groups=groups_train)
            return model.best_estimator_, time.perf_counter() - start, model.best_params_
        model = vae.set_params(**LEVERS[method]())
    start = time.perf_counter()
    model.fit(X_train)
    return model, time.perf_counter() - start, None


def run(args, out):
    torch.set_num_threads(args.threads)
    methods = list(args.methods) + list(args.levers) + (["grid search"] if args.grid_search else [])
    rows = []
    header = (f"{'mm':>3} {'k':>3} {'split':>5} {'method':<34} {'R2 test':>8} {'R2 train':>8} "
              f"{'loglik':>10} {'decode':>6} {'fit s':>7} {'xPCA':>6}  notes")
    for resolution in args.resolutions:
        maps = load_nback_flanker(resolution, return_images=False)
        X = maps.data.astype(np.float64)
        splits = list(GroupShuffleSplit(args.n_splits, test_size=0.25, random_state=0).split(
            X, groups=maps.groups))
        out(f"\n{resolution} mm: {X.shape[0]} maps x {X.shape[1]} voxels, {len(set(maps.groups))} studies")
        out(header)
        for k in args.n_components:
            for s in args.splits if args.splits is not None else range(args.n_splits):
                train, test = splits[s]
                mean = X[train].mean(axis=0)
                pca_time = None
                for method in methods:
                    seed = s
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", (ConvergenceWarning, RuntimeWarning, UserWarning,
                                                             FutureWarning))
                            model, seconds, chosen = fit_method(method, k, seed, X[train],
                                                                maps.groups[train], args.device)
                            _, rec_train = reconstruct(model, X[train])
                            _, rec_test = reconstruct(model, X[test])
                            codes = model.transform(X)
                        loglik = held_out_loglik(model, X[test])
                        row = dict(mm=resolution, k=k, split=s, method=method,
                                   r2_test=r2(X[test], rec_test, mean),
                                   r2_train=r2(X[train], rec_train, mean),
                                   loglik=loglik, decode=decoding(codes, maps.target, maps.groups),
                                   seconds=seconds, notes="" if chosen is None else str(chosen))
                    except Exception as error:  # every row, failures included
                        traceback.print_exc(file=sys.stderr)
                        row = dict(mm=resolution, k=k, split=s, method=method, r2_test=np.nan,
                                   r2_train=np.nan, loglik=np.nan, decode=np.nan, seconds=np.nan,
                                   notes=f"failed: {type(error).__name__}: {error}"[:120])
                    if method == "PCA":
                        pca_time = row["seconds"]
                    row["x_pca"] = row["seconds"] / pca_time if pca_time else np.nan
                    rows.append(row)
                    out(f"{resolution:>3} {k:>3} {s:>5} {method:<34} {row['r2_test']:>8.4f} "
                        f"{row['r2_train']:>8.4f} {row['loglik']:>10.1f} {row['decode']:>6.3f} "
                        f"{row['seconds']:>7.1f} {row['x_pca']:>6.0f}  {row['notes']}")
    summarise(rows, out)


def summarise(rows, out):
    out("\nSummary: mean over splits (R2 test - PCA: mean, min, max over splits; "
        "n >= PCA - 0.005: splits within the issue's margin)")
    out(f"{'mm':>3} {'k':>3} {'method':<34} {'R2 test':>8} {'R2 train':>8} {'loglik':>10} "
        f"{'decode':>6} {'+-':>5} {'fit s':>7} {'xPCA':>6} {'- PCA':>7} {'min':>7} {'max':>7} {'n ok':>5}")
    keys = sorted({(r["mm"], r["k"]) for r in rows}, key=lambda key: (-key[0], key[1]))
    for mm, k in keys:
        block = [r for r in rows if r["mm"] == mm and r["k"] == k]
        pca = {r["split"]: r["r2_test"] for r in block if r["method"] == "PCA"}
        for method in dict.fromkeys(r["method"] for r in block):
            mine = [r for r in block if r["method"] == method]
            mean = {c: np.nanmean([r[c] for r in mine]) if any(np.isfinite(r[c]) for r in mine) else np.nan
                    for c in ("r2_test", "r2_train", "loglik", "decode", "seconds", "x_pca")}
            decode_sd = np.nanstd([r["decode"] for r in mine]) if len(mine) > 1 else np.nan
            gaps = [r["r2_test"] - pca[r["split"]] for r in mine if r["split"] in pca]
            gaps = np.array(gaps) if gaps else np.array([np.nan])
            ok = int(np.sum(gaps >= -0.005))
            failed = sum(1 for r in mine if r["notes"].startswith("failed"))
            out(f"{mm:>3} {k:>3} {method:<34} {mean['r2_test']:>8.4f} {mean['r2_train']:>8.4f} "
                f"{mean['loglik']:>10.1f} {mean['decode']:>6.3f} {decode_sd:>5.3f} {mean['seconds']:>7.1f} "
                f"{mean['x_pca']:>6.0f} {np.nanmean(gaps):>+7.4f} {np.nanmin(gaps):>+7.4f} "
                f"{np.nanmax(gaps):>+7.4f} {ok:>2}/{len(mine):<2}"
                + (f" ({failed} failed)" if failed else ""))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[6])
    parser.add_argument("--n-components", type=int, nargs="+", default=[10])
    parser.add_argument("--n-splits", type=int, default=5)
    parser.add_argument("--splits", type=int, nargs="+", default=None, help="run only these splits")
    parser.add_argument("--methods", nargs="*", default=list(BASELINES), choices=BASELINES)
    parser.add_argument("--levers", nargs="*", default=["defaults"], choices=list(LEVERS))
    parser.add_argument("--grid-search", action="store_true", help="add the GridSearchCV row")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="the beta-VAE's device")
    parser.add_argument("--out", default=None, help="also write the output to this file")
    args = parser.parse_args()
    handle = open(args.out, "w") if args.out else None  # noqa: SIM115

    def out(line):
        print(line, flush=True)
        if handle:
            handle.write(line + "\n")
            handle.flush()

    out("bench_real_maps: " + " ".join(sys.argv[1:]))
    out(f"torch {torch.__version__}, {args.threads} thread(s), {args.device}")
    run(args, out)
    if handle:
        handle.close()


if __name__ == "__main__":
    main()
