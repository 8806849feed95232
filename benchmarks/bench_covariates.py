"""Covariates (issue 34): the conditional beta-VAE against PCA, PCA after regression and the plain beta-VAE.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_covariates.py
    OMP_NUM_THREADS=1 python benchmarks/bench_covariates.py --n-train 300 --seeds 0 \
        --populations amplitude/3
    OMP_NUM_THREADS=1 python benchmarks/bench_covariates.py --n-train 300 \
        --methods "conditional beta-VAE" --levers max_iter=100 beta=16

For each population (``sklearn_betavae.datasets.make_brain_cohort``: a kind
of factors and a number of scanner sites; age, sex and site change the
images), each seed (a new cohort and new model seeds) and each training
size, masks the images with nilearn's ``NiftiMasker`` and fits, with the
same number of components, on the first ``n_train`` subjects:

- ``PCA``: scikit-learn's PCA of the images;
- ``PCA after regression``: a least-squares regression of every voxel on
  the encoded covariates (age scaled, sex and site one-hot), then PCA of the
  residuals (the linear conditional model);
- ``beta-VAE``: ``BetaVAETransformer`` with its defaults, no covariates;
- ``conditional beta-VAE``: the same, fitted with ``covariates=``.

Each is scored on ``--n-test`` held-out subjects of the same sites: the
reconstruction mean squared error; the log-likelihood per map (PCA's
``score``; for the beta-VAEs ``score``, the evidence lower bound, a lower
bound of it; the conditional models' are of the map given its covariates);
the mean best-match rank correlation of the codes with the true factors
(``metrics.best_match_scores``; the factors are independent of the
covariates); how well the held-out codes predict the site (balanced
accuracy, 5-fold stratified cross-validation among the held-out subjects,
logistic regression on standardized codes and gradient boosting; chance is
1 / n_sites, and the 95th percentile of the logistic model's accuracy with
the held-out sites permuted 20 times says how far from chance codes with
no site in them stray) and the age (R^2, ridge regression and gradient boosting;
chance 0), from the latents in use (mean KL from the prior on the held-out
rows above 0.1 nats; every PCA component) and from all latents (a latent
the beta-VAE switched off varies by a few hundredths of a prior standard
deviation, but standardizing it, or a tree, finds what it carries); and the
fit time. Prints one row per fit, failures included, then a summary against
the issue's targets. ``--levers`` adds, for each beta-VAE method, a row
per lever (one change from the defaults). ``--without-site-scale`` removes
the sites' multiplicative scale from every image (its offset map, the
other covariates and the noise kept), to measure what the scale leaves in
the codes.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.compose import make_column_transformer
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression, RidgeCV
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.datasets import make_brain_cohort
from sklearn_betavae.inspection import latent_kl
from sklearn_betavae.metrics import best_match_scores

POPULATIONS = ["amplitude/3", "overlapping/3", "nonlinear/3", "amplitude/5", "nonlinear/5"]
METHODS = ["PCA", "PCA after regression", "beta-VAE", "conditional beta-VAE"]
# One change from the estimator's defaults each; the name is what the table shows.
LEVERS = {
    "max_iter=100": {"max_iter": 100},
    "max_iter=200": {"max_iter": 200},
    "beta=16": {"beta": 16.0},
    "beta=1": {"beta": 1.0},
    "hidden=() (linear)": {"hidden_layer_sizes": ()},
    "input_lr_scale=1": {"input_lr_scale": 1.0},
    "beta_warmup=0": {"beta_warmup": 0.0},
}
HEADER = (
    "| n_train | population | seed | method | held-out MSE | held-out log-lik/map | train log-lik/map "
    "| best match | latents in use | site bal. acc., in use (logistic / boosting) "
    "| site bal. acc., all (logistic / boosting) | chance "
    "| permuted sites, 95th pct (logistic, in use) | age R^2, in use (ridge / boosting) "
    "| age R^2, all (ridge / boosting) | fit s |"
)
# A latent is in use when its mean KL from the prior on the held-out rows
# exceeds this (as the report says): the others are switched off.
IN_USE_KL = 0.1
# Permutations of the held-out sites behind the null's 95th percentile.
PERMUTATIONS = 20


class RegressedPCA:
    """Regression of every feature on the encoded covariates, then PCA of the residuals."""

    def __init__(self, n_components, random_state):
        self.encoder = _covariate_encoder()
        self.regression = LinearRegression()
        self.pca = PCA(n_components, random_state=random_state)

    def fit(self, X, covariates):
        C = self.encoder.fit_transform(covariates)
        self.pca.fit(X - self.regression.fit(C, X).predict(C))
        return self

    def residuals(self, X, covariates):
        return X - self.regression.predict(self.encoder.transform(covariates))

    def transform(self, X, covariates):
        return self.pca.transform(self.residuals(X, covariates))

    def reconstruct(self, X, covariates):
        C = self.encoder.transform(covariates)
        return self.regression.predict(C) + self.pca.inverse_transform(self.transform(X, covariates))

    def score(self, X, covariates):
        return self.pca.score(self.residuals(X, covariates))


def _covariate_encoder():
    return make_column_transformer(
        (StandardScaler(), ["age"]),
        (OneHotEncoder(drop="first", sparse_output=False), ["sex", "site"]),
    )


def _fit_and_score(method, X_train, X_test, C_train, C_test, k, seed):
    """Returns the held-out codes, which latents are in use, the MSE, the
    log-likelihoods (held-out, train) and the fit time."""
    method, _, lever = method.partition(" + ")
    start = time.perf_counter()
    if method == "PCA":
        model = PCA(k, random_state=seed).fit(X_train)
        seconds = time.perf_counter() - start
        Z = model.transform(X_test)
        reconstruction = model.inverse_transform(Z)
        scores = model.score(X_test), model.score(X_train)
        in_use = np.ones(k, dtype=bool)
    elif method == "PCA after regression":
        model = RegressedPCA(k, seed).fit(X_train, C_train)
        seconds = time.perf_counter() - start
        Z = model.transform(X_test, C_test)
        reconstruction = model.reconstruct(X_test, C_test)
        scores = model.score(X_test, C_test), model.score(X_train, C_train)
        in_use = np.ones(k, dtype=bool)
    else:
        kwargs = {"covariates": C_train} if method == "conditional beta-VAE" else {}
        test = {"covariates": C_test} if kwargs else {}
        model = BetaVAETransformer(n_components=k, random_state=seed, **LEVERS.get(lever, {}))
        model.fit(X_train, **kwargs)
        seconds = time.perf_counter() - start
        Z = model.transform(X_test, **test)
        reconstruction = model.inverse_transform(Z, **test)
        scores = model.score(X_test, **test), model.score(X_train, **kwargs)
        in_use = latent_kl(model, X_test, **test) > IN_USE_KL
    return Z, in_use, float(np.mean((reconstruction - X_test) ** 2)), scores, seconds


def _without_site_scale(X, cohort):
    """The images as if every site's scale were 1: the noise-free volume
    (scale times anatomy, plus offset) is re-rendered with the anatomy at
    scale 1 and the same noise added back."""
    clean = cohort.render(cohort.factors, cohort.covariates)
    site = cohort.covariates["site"].cat.codes.to_numpy()
    offsets = cohort.site_offsets[site]
    unscaled = (clean - offsets) / cohort.site_scales[site][:, None, None, None] + offsets
    # Boolean indexing keeps the masker's voxel order (C order of the mask).
    mask = np.asarray(cohort.mask_img.dataobj) > 0
    return X - clean[:, mask] + unscaled[:, mask]


def _logistic():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def _site_accuracy(model, Z, sites, seed):
    """Balanced accuracy of ``model`` predicting ``sites`` from ``Z``, 5-fold stratified CV."""
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return balanced_accuracy_score(sites, cross_val_predict(model, Z, sites, cv=folds))


def _permuted_site_accuracies(Z, sites, seed, n_permutations=PERMUTATIONS):
    """The logistic model's accuracy with the sites permuted: its spread when
    the codes carry no site (cross-validated balanced accuracy has a spread
    of a few points around chance on 300 subjects, and sits slightly below
    it on average)."""
    rng = np.random.RandomState(seed)
    return [_site_accuracy(_logistic(), Z, rng.permutation(sites), seed)
            for _ in range(n_permutations)]


def _leakage(Z, C_test, seed):
    """What the held-out codes tell of the site and the age, cross-validated among them."""
    sites = np.asarray(C_test["site"].astype(str))
    site = [_site_accuracy(model, Z, sites, seed)
            for model in (_logistic(), HistGradientBoostingClassifier(random_state=seed))]
    age_folds = KFold(5, shuffle=True, random_state=seed)
    age = [
        r2_score(C_test["age"], cross_val_predict(model, Z, C_test["age"], cv=age_folds))
        for model in (
            make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))),
            HistGradientBoostingRegressor(random_state=seed),
        )
    ]
    return site, age


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", nargs="+", default=POPULATIONS,
                        help="kind/number of sites, e.g. nonlinear/5")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", nargs="+", type=int, default=[300, 1000])
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--levers", nargs="*", default=[], choices=list(LEVERS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--without-site-scale", action="store_true",
                        help="divide out each site's scale (the offset map and noise kept)")
    args = parser.parse_args()
    methods = args.methods + [f"{method} + {lever}" for method in args.methods
                              if "beta-VAE" in method for lever in args.levers]
    torch.set_num_threads(args.threads)
    from nilearn.maskers import NiftiMasker

    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    rows = []
    for n_train in args.n_train:
        for population in args.populations:
            kind, n_sites = population.split("/")
            for seed in args.seeds:
                cohort = make_brain_cohort(n_train + args.n_test, kind, n_sites=int(n_sites),
                                           random_state=seed)
                X = NiftiMasker(cohort.mask_img, standardize=None).fit_transform(cohort.images)
                if args.without_site_scale:
                    X = _without_site_scale(X, cohort)
                X_train, X_test = X[:n_train], X[n_train:]
                C_train = cohort.covariates.iloc[:n_train].reset_index(drop=True)
                C_test = cohort.covariates.iloc[n_train:].reset_index(drop=True)
                for method in methods:
                    row = dict(n_train=n_train, population=population, seed=seed, method=method,
                               chance=1 / int(n_sites))
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            Z, in_use, mse, (ll_test, ll_train), seconds = _fit_and_score(
                                method, X_train, X_test, C_train, C_test, args.n_components, seed)
                            site, age = _leakage(Z[:, in_use], C_test, seed)
                            site_all, age_all = _leakage(Z, C_test, seed)
                            null = np.percentile(_permuted_site_accuracies(
                                Z[:, in_use], C_test["site"].astype(str).to_numpy(), seed), 95)
                        match = best_match_scores(Z, cohort.factors[n_train:]).mean()
                        row.update(mse=mse, ll_test=ll_test, ll_train=ll_train, match=match,
                                   site=site, age=age, site_all=site_all, age_all=age_all, null=null,
                                   in_use=int(in_use.sum()), seconds=seconds)
                        print(f"| {n_train} | {population} | {seed} | {method} | {mse:.3e} | "
                              f"{ll_test:.1f} | {ll_train:.1f} | {match:.3f} | {row['in_use']} | "
                              f"{site[0]:.3f} / {site[1]:.3f} | {site_all[0]:.3f} / {site_all[1]:.3f} | "
                              f"{row['chance']:.3f} | {null:.3f} | {age[0]:.3f} / {age[1]:.3f} | "
                              f"{age_all[0]:.3f} / {age_all[1]:.3f} | {seconds:.1f} |", flush=True)
                    except Exception as error:  # a failure is a row too
                        row["error"] = f"{type(error).__name__}: {error}"
                        print(f"| {n_train} | {population} | {seed} | {method} | failed: "
                              f"{row['error'][:120]} |", flush=True)
                    rows.append(row)
    _summary(rows)


def _summary(rows):
    print("\nSummary: mean over populations and seeds (n fits); then the issue's targets.\n")
    print("| n_train | method | fits | held-out MSE | held-out log-lik/map | best match "
          "| site acc. above chance, in use (logistic / boosting) | the same, all latents "
          "| age R^2, in use (ridge / boosting) | age R^2, all latents |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    done = [row for row in rows if "error" not in row]
    for n_train in sorted({row["n_train"] for row in rows}):
        for method in dict.fromkeys(r["method"] for r in rows):
            group = [r for r in done if r["n_train"] == n_train and r["method"] == method]
            if not group:
                continue
            mean = {key: np.mean([r[key] for r in group], axis=0)
                    for key in ("mse", "ll_test", "match", "age", "age_all")}
            above = {key: np.mean([np.subtract(r[key], r["chance"]) for r in group], axis=0)
                     for key in ("site", "site_all")}
            print(f"| {n_train} | {method} | {len(group)} | {mean['mse']:.3e} | "
                  f"{mean['ll_test']:.1f} | {mean['match']:.3f} | "
                  f"{above['site'][0]:+.3f} / {above['site'][1]:+.3f} | "
                  f"{above['site_all'][0]:+.3f} / {above['site_all'][1]:+.3f} | "
                  f"{mean['age'][0]:.3f} / {mean['age'][1]:.3f} | "
                  f"{mean['age_all'][0]:.3f} / {mean['age_all'][1]:.3f} |")
    by_fit = {}
    for r in done:
        by_fit.setdefault((r["n_train"], r["population"], r["seed"]), {})[r["method"]] = r
    for method in dict.fromkeys(r["method"] for r in done if r["method"].startswith("conditional")):
        _targets("all cohorts", method, [fit for fit in by_fit.values() if method in fit])
        for n_train in sorted({key[0] for key in by_fit}):
            _targets(f"{n_train} subjects", method,
                     [fit for key, fit in by_fit.items() if key[0] == n_train and method in fit])
    print(f"\nFailed fits: {sum('error' in r for r in rows)}")


def _targets(label, method, fits):
    """The issue's targets for one conditional method, against the fits of the same cohorts."""
    if not fits:
        return
    print(f"\nTargets, {method}, {label}, over {len(fits)} cohorts:")
    for key, latents in (("site", "latents in use"), ("site_all", "all latents")):
        for j, name in enumerate(("logistic", "boosting")):
            gaps = [fit[method][key][j] - fit[method]["chance"] for fit in fits]
            plain = [fit["beta-VAE"][key][j] - fit["beta-VAE"]["chance"]
                     for fit in fits if "beta-VAE" in fit]
            print(f"- site within 5 pp of chance ({latents}, {name}): "
                  f"{sum(abs(g) <= 0.05 for g in gaps)}/{len(gaps)} (excess {min(gaps):+.3f} to "
                  f"{max(gaps):+.3f})"
                  + (f"; from the plain codes {min(plain):+.3f} to {max(plain):+.3f}" if plain else ""))
    for who in (method, "PCA after regression"):
        scored = [fit[who] for fit in fits if "null" in fit.get(who, {})]
        if scored:
            print(f"- site above the permuted-site null's 95th percentile ({who}, latents in use, "
                  f"logistic): {sum(r['site'][0] > r['null'] for r in scored)}/{len(scored)}")
    for other, key, what, unit in (("PCA after regression", "match", "best match", ""),
                                   ("beta-VAE", "ll_test", "held-out ELBO", " nats/map")):
        gaps = [fit[method][key] - fit[other][key] for fit in fits if other in fit]
        if gaps:
            print(f"- {what} at least {other}'s: {sum(g >= 0 for g in gaps)}/{len(gaps)} "
                  f"(differences {min(gaps):+.3g} to {max(gaps):+.3g}{unit})")

if __name__ == "__main__":
    main()
