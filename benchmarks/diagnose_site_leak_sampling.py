"""How much site a linear conditional model leaves in held-out codes by sampling alone (issue 34).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/diagnose_site_leak_sampling.py
    OMP_NUM_THREADS=1 python benchmarks/diagnose_site_leak_sampling.py --n-train 300 \
        --populations amplitude/3 --seeds 0 --n-reference 3000

A model that learns each site's effect from its training subjects also
learns the chance imbalance of their anatomy: the subjects of one site have,
by chance, a slightly higher mean of some factor, the site's fitted offset
takes it in, and the held-out subjects of that site come out shifted the
other way in the codes, which a classifier then finds. This sets a floor
under the leak that no conditional model fitted on the same subjects can go
below, and it shrinks as the sites' training samples grow.

For each population (``make_brain_cohort``: a kind of factors and a number
of sites), seed and training size, scores the site balanced accuracy of
held-out codes (logistic regression on standardized codes, 5-fold
stratified cross-validation among the held-out subjects, as
``bench_covariates.py`` does) of PCA after the regression of every voxel on
the encoded covariates, the regression fitted

- on the ``n_train`` training subjects (``bench_covariates.py``'s
  "PCA after regression");
- on ``--n-reference`` further subjects of the same sites (the same
  ``random_state`` draws the same sites) rendered without noise, so that
  the sites' effects are known almost exactly; PCA is still fitted on the
  training subjects;

- on the training subjects, each site's offset then shrunk along the
  principal directions of the training residuals (empirical Bayes: a
  site's mean along a direction of variance ``lambda`` is off by about
  ``lambda / n_site`` in variance from sampling alone, and the true offsets'
  variance ``tau^2`` is what the sites' means show beyond that, pooled over
  the directions and sites; each projection is multiplied by
  ``tau^2 / (tau^2 + lambda / n_site)``): a candidate remedy, which leaves
  in the codes the part of a site's true offset that lies along the
  anatomy;

and the same accuracy with the held-out site labels permuted
(``--permutations`` times), the spread of the accuracy when the codes carry
no site at all: its mean and 95th percentile.
"""

import argparse
import copy
import warnings

import numpy as np
from bench_covariates import (
    POPULATIONS,
    _covariate_encoder,
    _logistic,
    _permuted_site_accuracies,
    _site_accuracy,
)
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression

from sklearn_betavae.datasets import make_brain_cohort


def _masked(cohort):
    from nilearn.maskers import NiftiMasker

    return NiftiMasker(cohort.mask_img, standardize=None).fit_transform(cohort.images)


def _shrink_site_offsets(regression, encoder, X, covariates, n_components):
    """A copy of ``regression`` whose site offsets are shrunk along the
    principal directions of its training residuals (empirical Bayes)."""
    one_hot = encoder.named_transformers_["onehotencoder"]
    # The site's levels in the encoding's order; its first is the dropped one.
    levels = [str(level) for level in one_hot.categories_[one_hot.feature_names_in_.tolist().index("site")]]
    names = list(encoder.get_feature_names_out())
    columns = [names.index(f"onehotencoder__site_{level}") for level in levels[1:]]
    D = encoder.transform(covariates)
    pca = PCA(n_components).fit(X - regression.predict(D))
    sites = covariates["site"].astype(str).to_numpy()
    counts = np.array([np.sum(sites == level) for level in levels])
    # Each site's offset from the first site, then from their weighted mean.
    offsets = np.vstack([np.zeros(X.shape[1]), regression.coef_[:, columns].T])
    centre = counts @ offsets / counts.sum()
    projections = (offsets - centre) @ pca.components_.T  # (sites, directions)
    sampling = pca.explained_variance_[None, :] / counts[:, None]
    tau2 = max(0.0, float(np.mean(projections**2 - sampling)))
    shrink = tau2 / (tau2 + sampling)
    offsets = offsets - ((1 - shrink) * projections) @ pca.components_
    shrunk = copy.deepcopy(regression)
    shrunk.intercept_ = regression.intercept_ + offsets[0]
    shrunk.coef_[:, columns] = (offsets[1:] - offsets[0]).T
    return shrunk


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", nargs="+", default=POPULATIONS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", nargs="+", type=int, default=[300, 1000])
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--n-reference", type=int, default=3000)
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--permutations", type=int, default=20)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("| n_train | population | seed | chance | regression on the training subjects "
          "| regression on the reference subjects | the training subjects' regression, offsets "
          "shrunk | permuted sites: mean | permuted: 95th pct |")
    print("|---|---|---|---|---|---|---|---|---|")
    for population in args.populations:
        kind, n_sites = population.split("/")
        for seed in args.seeds:
            n_train_most = max(args.n_train)
            n_subjects = n_train_most + args.n_test
            cohort = make_brain_cohort(n_subjects, kind, n_sites=int(n_sites), random_state=seed)
            X = _masked(cohort)
            C = cohort.covariates
            test = slice(n_train_most, n_subjects)
            sites = C["site"].astype(str).to_numpy()[test]
            encoder = _covariate_encoder().fit(C)
            # The same random_state draws the same sites first; the subjects
            # after the first n_subjects are new draws. Without noise, the
            # regression's error is the reference's chance imbalance of
            # factors (a few directions, shrinking with n_reference), not
            # the mean of its noise (one direction per site among all the
            # voxels, which PCA of the training residuals would pick up).
            reference = make_brain_cohort(n_subjects + args.n_reference, kind,
                                          n_sites=int(n_sites), noise=0.0, random_state=seed)
            assert np.array_equal(reference.site_offsets, cohort.site_offsets)
            X_reference = _masked(reference)[n_subjects:]
            C_reference = reference.covariates[n_subjects:]
            reference = LinearRegression().fit(encoder.transform(C_reference), X_reference)
            for n_train in args.n_train:
                train = slice(0, n_train)
                own = LinearRegression().fit(encoder.transform(C[train]), X[train])
                shrunk = _shrink_site_offsets(own, encoder, X[train], C[train], args.n_components)
                row = [n_train, population, seed, f"{1 / int(n_sites):.3f}"]
                for regression in (own, reference, shrunk):
                    train_rows, test_rows = (
                        X[part] - regression.predict(encoder.transform(C[part]))
                        for part in (train, test)
                    )
                    pca = PCA(args.n_components, random_state=seed).fit(train_rows)
                    Z = pca.transform(test_rows)
                    row.append(f"{_site_accuracy(_logistic(), Z, sites, seed):.3f}")
                null = _permuted_site_accuracies(Z, sites, seed, args.permutations)
                row += [f"{np.mean(null):.3f}", f"{np.percentile(null, 95):.3f}"]
                print("| " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
