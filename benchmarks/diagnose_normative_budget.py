"""Why a longer fit finds fewer patients in the normative benchmark (issue 35).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/diagnose_normative_budget.py
    OMP_NUM_THREADS=1 python benchmarks/diagnose_normative_budget.py --populations nonlinear/3 \
        --seeds 0 1 --budgets 10 50 100

``bench_normative.py`` found that the conditional beta-VAE trained for 50 or
100 epochs (instead of the default 10 for fewer controls than voxels) loses
0.05-0.12 subject AUC, and that a second pass which keeps the abnormality
out of the code does not bring it back. Two explanations predict different
numbers here:

- the network reconstructs the patients' atrophy: then the share of the
  true loss left in the residual inside each patient's abnormality falls
  with the budget;
- the network fits the training controls' noise: then its expectation of a
  held-out control moves away from the true healthy image, the spread
  measured on the reference controls grows, and every z shrinks.

For each population and seed (``make_brain_cohort``, 1,000 training
controls, 200 unseen controls and 200 patients, as ``bench_normative.py``),
fits PCA on GLM residuals and the conditional beta-VAE at each budget
(``max_iter``), and prints: the reconstruction error of the training
controls; the error of the expectation of the unseen controls against their
true healthy image (the simulation's noise-free rendering; 0 for a perfect
normative model, whatever the noise); the mean spread (the per-voxel
standard deviation measured on the reference controls; the noise is 0.02);
the share of the true loss inside the patients' abnormality masks left in
their residual (1 when the expectation ignores the atrophy); and the
subject AUC (mean z^2).
"""

import argparse
import warnings

import numpy as np
import torch
from bench_normative import VAE, Oracle, ResidualPCA, _scores, _split

from sklearn_betavae.datasets import make_brain_cohort


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", nargs="+", default=["nonlinear/3", "nonlinear/5"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--budgets", nargs="+", type=int, default=[10, 50])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from nilearn.maskers import NiftiMasker

    print("| population | seed | model | training controls' MSE | unseen controls: expectation "
          "vs true healthy image, MSE | mean spread | share of the loss left in patients' masks "
          "| subject AUC (mean z^2) | voxel AUC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for population in args.populations:
        kind, n_sites = population.split("/")
        for seed in args.seeds:
            cohort = make_brain_cohort(args.n_train + args.n_test, kind, n_sites=int(n_sites),
                                       n_patients=args.n_test, random_state=seed)
            mask = np.asarray(cohort.mask_img.dataobj) > 0
            masker = NiftiMasker(cohort.mask_img, standardize=None).fit()
            train, test, is_patient = _split(cohort, args.n_train, args.n_test, False)
            X = masker.transform([cohort.images[i] for i in np.concatenate([train, test])])
            X_train, X_test = X[:len(train)], X[len(train):]
            C_train = cohort.covariates.iloc[train].reset_index(drop=True)
            C_test = cohort.covariates.iloc[test].reset_index(drop=True)
            healthy = Oracle(cohort, test).expected(X_test, C_test)
            first_patient = np.flatnonzero(cohort.diagnosis == "patient")[0]
            patients = test[is_patient] - first_patient
            truth = cohort.abnormality_masks[patients][:, mask]
            # The true loss, in image units: the healthy image minus the
            # patient's noise-free image.
            loss = healthy[is_patient] - cohort.render(
                cohort.factors[test[is_patient]], C_test[is_patient],
                cohort.abnormalities[patients])[:, mask]
            models = [("PCA on GLM residuals", ResidualPCA(10, seed))] + [
                (f"conditional beta-VAE, max_iter={budget}",
                 VAE(True, 10, seed, max_iter=budget)) for budget in args.budgets]
            for name, model in models:
                model.fit(X_train, C_train)
                train_error = np.mean((model.expected(X_train, C_train) - X_train) ** 2)
                expected = model.expected(X_test, C_test) + model.mean
                healthy_error = np.mean((expected[~is_patient] - healthy[~is_patient]) ** 2)
                left = (X_test - expected)[is_patient]
                share = np.sum(-left[truth]) / np.sum(loss[truth])
                z = model.z(X_test, C_test)
                (subject, _), voxel, _ = _scores(z, is_patient, truth)
                print(f"| {population} | {seed} | {name} | {train_error:.3e} | {healthy_error:.3e} | "
                      f"{np.mean(model.spread):.4f} | {share:.3f} | {subject:.3f} | {voxel:.3f} |",
                      flush=True)


if __name__ == "__main__":
    main()
