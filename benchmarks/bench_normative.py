"""Normative deviation maps (issue 35): the conditional beta-VAE against the voxel-wise GLM and PCA.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_normative.py
    OMP_NUM_THREADS=1 python benchmarks/bench_normative.py --n-train 300 --seeds 0 \
        --populations nonlinear/3
    OMP_NUM_THREADS=1 python benchmarks/bench_normative.py --n-train 3000 --seeds 0 \
        --populations amplitude/3 overlapping/3 nonlinear/3
    OMP_NUM_THREADS=1 python benchmarks/bench_normative.py --n-train 1000 --seeds 0 \
        --populations nonlinear/3 --left-out-site
    python benchmarks/bench_normative.py --from-table benchmarks/results/issue35_normative.md

For each population (``make_brain_cohort``: a kind of healthy factors and a
number of scanner sites; age, sex and site change the images), each seed
and each number of training controls, masks the images with
``NiftiMasker`` and fits, on controls only:

- ``GLM``: every voxel regressed on the covariates (a cubic spline in age
  with 5 knots, sex and site one-hot); z = residual / its standard
  deviation over the training controls (ddof: the number of regressors);
- ``PCA on GLM residuals`` (a linear normative model): the GLM, then PCA
  (``--n-components``) of its residuals, fitted on 80% of the controls;
  the expectation is the GLM's prediction plus the PCA reconstruction of
  the residual, and each voxel's spread is measured on the other 20%;
- ``beta-VAE``: ``BetaVAETransformer(reference_fraction=0.2)``, no
  covariates, ``deviation_scores``;
- ``conditional beta-VAE``: the same with ``covariates=``;
- ``oracle`` (not run unless named in ``--methods``): the ceiling of any
  normative model of these data, each test subject's true healthy image
  (the simulation's noise-free rendering of its factors and covariates,
  without its abnormality) as the expectation and the noise's standard
  deviation as the spread; it fits nothing.

Each is tested on ``--n-test`` unseen controls and as many patients of the
same sites (with ``--left-out-site``, of a site no method trained on: the
conditional beta-VAE refuses it, the GLM takes that site's effect as
unknown). Metrics: subject-level AUC (patients against controls) of two
per-subject statistics of the z-map, its mean square and the mean of its
1% largest squares; voxel-level AUC of -z for the true abnormality inside
each patient (mean over patients); the share of |z| > 3 in the held-out
controls (nominal 0.27%); the fit time. One row per fit, failures included,
then a summary against the issue's targets: over all cohorts, then by
number of training controls and by kind of population (the issue's targets
are for 1,000 controls or more, on populations whose healthy variation is
nonlinear: the ``deformation`` kind, where 10 principal components of
noise-free maps leave about 40% of the noise's variance unexplained; the
``nonlinear`` kind's moving lesion, less than 1%). ``--from-table``
prints the summary of rows printed before (one or more such tables)
without fitting anything.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.compose import make_column_transformer
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OneHotEncoder, SplineTransformer

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.datasets import make_brain_cohort

POPULATIONS = ["amplitude/3", "overlapping/3", "nonlinear/3", "amplitude/5", "nonlinear/5",
               "deformation/3", "deformation/5"]
METHODS = ["GLM", "PCA on GLM residuals", "beta-VAE", "conditional beta-VAE"]
ORACLE = "oracle"
NOISE = 0.02  # make_brain_cohort's default noise, which this script keeps
# One change from the estimator's defaults each, for the beta-VAE methods.
LEVERS = {
    "max_iter=30": {"max_iter": 30},
    "max_iter=50": {"max_iter": 50},
    "max_iter=100": {"max_iter": 100},
    "beta=1": {"beta": 1.0},
    "beta=16": {"beta": 16.0},
    # Up to 50 epochs, stopped when the loss on 10% of the controls held out
    # stops improving.
    "max_iter=50, early stopping": {"max_iter": 50, "early_stopping": True},
    # Not a parameter: age given to the network as the GLM's spline basis.
    "spline age": {},
}
REFERENCE_FRACTION = 0.2
NOMINAL = 0.0027  # P(|z| > 3) of a standard normal
HEADER = (
    "| n_train | population | seed | method | subject AUC (mean z^2) | subject AUC (top 1%) "
    "| voxel AUC | share |z|>3 in controls | fit s |"
)


class GLM:
    """Voxel-wise regression on the covariates; z against the training residuals' spread."""

    def __init__(self):
        self.design = make_column_transformer(
            (SplineTransformer(n_knots=5, degree=3), ["age"]),
            (OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["sex", "site"]),
        )
        self.regression = LinearRegression()

    def fit(self, X, covariates):
        D = self.design.fit_transform(covariates)
        residuals = X - self.regression.fit(D, X).predict(D)
        self.spread = residuals.std(axis=0, ddof=np.linalg.matrix_rank(D) + 1)
        return self

    def residuals(self, X, covariates):
        return X - self.expected(X, covariates)

    def expected(self, X, covariates):
        return self.regression.predict(self.design.transform(covariates))

    def z(self, X, covariates):
        return self.residuals(X, covariates) / self.spread


class ResidualPCA:
    """The GLM, then PCA of its residuals; the spread measured on held-out controls."""

    def __init__(self, n_components, seed):
        self.glm, self.pca, self.seed = GLM(), PCA(n_components, random_state=seed), seed

    def fit(self, X, covariates):
        fit_rows, reference = train_test_split(
            np.arange(len(X)), test_size=REFERENCE_FRACTION, random_state=self.seed,
            stratify=covariates["site"])
        C = covariates.iloc[fit_rows]
        self.pca.fit(self.glm.fit(X[fit_rows], C).residuals(X[fit_rows], C))
        residuals = self._unexplained(X[reference], covariates.iloc[reference])
        self.mean, self.spread = residuals.mean(axis=0), residuals.std(axis=0, ddof=1)
        return self

    def _unexplained(self, X, covariates):
        residuals = self.glm.residuals(X, covariates)
        return residuals - self.pca.inverse_transform(self.pca.transform(residuals))

    def expected(self, X, covariates):
        return X - self._unexplained(X, covariates)

    def z(self, X, covariates):
        return (self._unexplained(X, covariates) - self.mean) / self.spread


class VAE:
    def __init__(self, conditional, n_components, seed, spline_age=False, **params):
        self.conditional = conditional
        self.spline = SplineTransformer(n_knots=5, degree=3) if spline_age else None
        self.model = BetaVAETransformer(n_components=n_components, random_state=seed,
                                        reference_fraction=REFERENCE_FRACTION, **params)

    def _covariates(self, covariates, fit=False):
        if not self.conditional:
            return None
        if self.spline is None:
            return covariates
        basis = (self.spline.fit_transform if fit else self.spline.transform)(covariates[["age"]])
        columns = {f"age_{j}": basis[:, j] for j in range(basis.shape[1])}
        return covariates.drop(columns="age").assign(**columns)

    def fit(self, X, covariates):
        self.model.fit(X, covariates=self._covariates(covariates, fit=True))
        return self

    def z(self, X, covariates):
        return self.model.deviation_scores(X, covariates=self._covariates(covariates))

    def expected(self, X, covariates):
        covariates = self._covariates(covariates)
        return self.model.inverse_transform(self.model.transform(X, covariates=covariates),
                                            covariates=covariates)

    @property
    def mean(self):
        return self.model._reference_.residual_mean

    @property
    def spread(self):
        return self.model._reference_.residual_scale


class Robust:
    """A second pass that does not read the abnormality: the features whose
    first-pass |z| exceeds 3 are replaced by what the model expects there,
    the row is encoded again, and the original row is scored against that
    expectation (the spread is the model's)."""

    def __init__(self, model):
        self.model = model

    def fit(self, X, covariates):
        self.model.fit(X, covariates)
        return self

    def z(self, X, covariates):
        first = self.model.z(X, covariates)
        expected = self.model.expected(X, covariates) + self.model.mean
        cleaned = np.where(np.abs(first) > 3, expected, X)
        again = self.model.expected(cleaned, covariates)
        return (X - again - self.model.mean) / self.model.spread


class Oracle:
    """The true healthy image of each test subject as its expectation."""

    def __init__(self, cohort, test):
        self.cohort, self.test = cohort, test

    def fit(self, X, covariates):
        return self

    def expected(self, X, covariates):
        healthy = self.cohort.render(self.cohort.factors[self.test], covariates)
        # Boolean indexing keeps the masker's voxel order (C order of the mask).
        return healthy[:, np.asarray(self.cohort.mask_img.dataobj) > 0]

    def z(self, X, covariates):
        return (X - self.expected(X, covariates)) / NOISE


def _model(method, n_components, seed):
    if method.endswith(" + robust"):
        return Robust(_model(method.removesuffix(" + robust"), n_components, seed))
    method, _, lever = method.partition(" + ")
    if method == "GLM":
        return GLM()
    if method == "PCA on GLM residuals":
        return ResidualPCA(n_components, seed)
    return VAE(method == "conditional beta-VAE", n_components, seed,
               spline_age=lever == "spline age", **LEVERS.get(lever, {}))


def _scores(z, is_patient, truth):
    """Subject AUCs (mean z^2, top 1%), voxel AUC in patients and the controls' |z| > 3 share."""
    squares = np.sort(z**2, axis=1)
    top = squares[:, -max(1, squares.shape[1] // 100):].mean(axis=1)
    subject = [roc_auc_score(is_patient, squares.mean(axis=1)), roc_auc_score(is_patient, top)]
    voxel = np.mean([roc_auc_score(mask, -row) for row, mask in zip(z[is_patient], truth)
                     if 0 < mask.sum() < mask.size])
    calibration = np.mean(np.abs(z[~is_patient]) > 3)
    return subject, voxel, calibration


def _split(cohort, n_train, n_test, left_out_site):
    """Indices of the training controls and of the test subjects, and whether each test one is a patient."""
    sites = cohort.covariates["site"].astype(str).to_numpy()
    controls = np.flatnonzero(cohort.diagnosis == "control")
    patients = np.flatnonzero(cohort.diagnosis == "patient")
    if left_out_site:
        last = cohort.covariates["site"].cat.categories[-1]
        train = controls[sites[controls] != last][:n_train]
        test_controls = controls[sites[controls] == last][:n_test]
        test_patients = patients[sites[patients] == last][:n_test]
    else:
        train, test_controls, test_patients = controls[:n_train], controls[n_train:], patients
    test = np.concatenate([test_controls, test_patients])
    return train, test, np.isin(test, patients)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", nargs="+", default=POPULATIONS,
                        help="kind/number of sites, e.g. nonlinear/5")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", nargs="+", type=int, default=[300, 1000])
    parser.add_argument("--n-test", type=int, default=200,
                        help="held-out controls, and as many patients")
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=[*METHODS, ORACLE])
    parser.add_argument("--levers", nargs="*", default=[], choices=list(LEVERS),
                        help="add, for each beta-VAE method, a row per lever")
    parser.add_argument("--robust", action="store_true",
                        help="add, for each method with a learnt expectation (and lever), a row "
                             "scored by a second pass that replaces the features with |z| > 3 "
                             "first")
    parser.add_argument("--left-out-site", action="store_true",
                        help="test on a site left out of training (one more site is drawn)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--from-table", nargs="+", metavar="FILE",
                        help="summarize the rows of tables this script printed, and stop")
    args = parser.parse_args()
    if args.from_table:
        _summary([row for path in args.from_table for row in _read_rows(path)])
        return
    torch.set_num_threads(args.threads)
    from nilearn.maskers import NiftiMasker

    methods = args.methods + [f"{method} + {lever}" for method in args.methods
                              if "beta-VAE" in method for lever in args.levers]
    methods += [f"{method} + robust" for method in methods
                if args.robust and method not in ("GLM", ORACLE)]
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    rows = []
    for n_train in args.n_train:
        for population in args.populations:
            kind, n_sites = population.split("/")
            n_sites = int(n_sites) + args.left_out_site
            label = population + (" + left-out site" if args.left_out_site else "")
            for seed in args.seeds:
                # With a left-out site, draw enough subjects for its share.
                scale = n_sites if args.left_out_site else 1
                cohort = make_brain_cohort(
                    (n_train + args.n_test) * scale if args.left_out_site else n_train + args.n_test,
                    kind, n_sites=n_sites, n_patients=args.n_test * scale, random_state=seed)
                masker = NiftiMasker(cohort.mask_img, standardize=None).fit()
                train, test, is_patient = _split(cohort, n_train, args.n_test, args.left_out_site)
                X = masker.transform([cohort.images[i] for i in np.concatenate([train, test])])
                X_train, X_test = X[:len(train)], X[len(train):]
                C_train = cohort.covariates.iloc[train].reset_index(drop=True)
                C_test = cohort.covariates.iloc[test].reset_index(drop=True)
                first_patient = np.flatnonzero(cohort.diagnosis == "patient")[0]
                truth = masker.transform(
                    _images(cohort.abnormality_masks[test[is_patient] - first_patient],
                            cohort.mask_img)) > 0.5
                for method in methods:
                    row = dict(n_train=n_train, population=label, seed=seed, method=method)
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            start = time.perf_counter()
                            model = (Oracle(cohort, test) if method == ORACLE
                                     else _model(method, args.n_components, seed))
                            model.fit(X_train, C_train)
                            seconds = time.perf_counter() - start
                            z = model.z(X_test, C_test)
                        subject, voxel, calibration = _scores(z, is_patient, truth)
                        row.update(subject=subject, voxel=voxel, calibration=calibration,
                                   seconds=seconds)
                        print(f"| {n_train} | {label} | {seed} | {method} | {subject[0]:.3f} | "
                              f"{subject[1]:.3f} | {voxel:.3f} | {100 * calibration:.2f}% | "
                              f"{seconds:.1f} |", flush=True)
                    except Exception as error:  # a failure is a row too
                        row["error"] = f"{type(error).__name__}: {error}"
                        print(f"| {n_train} | {label} | {seed} | {method} | failed: "
                              f"{row['error'][:150]} |", flush=True)
                    rows.append(row)
    _summary(rows)


def _read_rows(path):
    """The rows of a table this script printed (failures included)."""
    rows = []
    with open(path, encoding="utf-8") as file:
        for line in file:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if (len(cells) < 5 or not cells[0].isdigit()
                    or cells[3].partition(" + ")[0] not in [*METHODS, ORACLE]):
                continue
            row = dict(n_train=int(cells[0]), population=cells[1], seed=int(cells[2]),
                       method=cells[3])
            if cells[4].startswith("failed"):
                row["error"] = cells[4]
            else:
                row.update(subject=[float(cells[4]), float(cells[5])], voxel=float(cells[6]),
                           calibration=float(cells[7].rstrip("%")) / 100, seconds=float(cells[8]))
            rows.append(row)
    return rows


def _images(masks, mask_img):
    import nibabel

    return nibabel.Nifti1Image(np.moveaxis(masks.astype(np.float32), 0, -1), mask_img.affine)


def _summary(rows):
    print("\nSummary: mean over populations and seeds (n fits); then the issue's targets.\n")
    print("| n_train | method | fits | subject AUC (mean z^2) | subject AUC (top 1%) | voxel AUC "
          "| share |z|>3 (nominal 0.27%) |")
    print("|---|---|---|---|---|---|---|")
    done = [row for row in rows if "error" not in row]
    for n_train in sorted({row["n_train"] for row in rows}):
        for method in dict.fromkeys(r["method"] for r in rows):
            group = [r for r in done if r["n_train"] == n_train and r["method"] == method]
            if group:
                subject = np.mean([r["subject"] for r in group], axis=0)
                print(f"| {n_train} | {method} | {len(group)} | {subject[0]:.3f} | {subject[1]:.3f} | "
                      f"{np.mean([r['voxel'] for r in group]):.3f} | "
                      f"{100 * np.mean([r['calibration'] for r in group]):.2f}% |")
    by_fit = {}
    for r in done:
        by_fit.setdefault((r["n_train"], r["population"], r["seed"]), {})[r["method"]] = r
    for method in dict.fromkeys(r["method"] for r in done if r["method"].startswith("conditional")):
        _targets("all cohorts", method, [fit for fit in by_fit.values() if method in fit])
        for n_train in sorted({key[0] for key in by_fit}):
            for kind in ("deformation", "nonlinear", "amplitude", "overlapping"):
                _targets(f"{n_train} controls, {kind} populations", method,
                         [fit for key, fit in by_fit.items() if key[0] == n_train
                          and key[1].startswith(kind) and method in fit])
    print(f"\nFailed fits: {sum('error' in r for r in rows)}")


def _targets(label, method, fits):
    """The issue's targets: ``method`` (a conditional beta-VAE) against each
    other method on ``fits``."""
    if fits:
        print(f"\nTargets, {label}, over {len(fits)} cohorts ({method} against each other "
              "method):")
        others = [other for other in METHODS if other != method]
        for other in others + [m for m in fits[0] if m not in METHODS and m != method]:
            pairs = [fit for fit in fits if other in fit]
            for name, get in (("subject AUC (mean z^2)", lambda r: r["subject"][0]),
                              ("subject AUC (top 1%)", lambda r: r["subject"][1]),
                              ("voxel AUC", lambda r: r["voxel"])):
                gaps = [get(fit[method]) - get(fit[other]) for fit in pairs]
                if gaps:
                    print(f"- {name} ahead of {other}: {sum(g > 0 for g in gaps)}/{len(gaps)} "
                          f"(differences {min(gaps):+.3f} to {max(gaps):+.3f})")
        ratios = [fit[method]["calibration"] / NOMINAL for fit in fits]
        print(f"- calibration within a factor of 2 of nominal: "
              f"{sum(0.5 <= r <= 2 for r in ratios)}/{len(ratios)} "
              f"(|z| > 3 at {min(ratios):.2f} to {max(ratios):.2f} times nominal)")

if __name__ == "__main__":
    main()
