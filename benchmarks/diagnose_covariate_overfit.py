"""Where the conditional beta-VAE's own excess of site lies (issue 34): training or held-out codes.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/diagnose_covariate_overfit.py
    OMP_NUM_THREADS=1 python benchmarks/diagnose_covariate_overfit.py --cohorts overlapping/3:2

At 1,000 training subjects ``bench_covariates.py`` found the conditional
beta-VAE's held-out codes further from chance than PCA after regression's
on two cohorts (overlapping/3 seed 2 and amplitude/5 seed 1). This script
asks, on such cohorts (``kind/n_sites:seed``; ``make_brain_cohort`` of
``--n-train`` + 300 subjects, the first ``--n-train`` to fit on, as
``bench_covariates.py`` draws them), whether the site is in the training
codes too, or only in the held-out ones, for

- ``PCA after regression`` (``bench_covariates.py``'s linear model);
- ``linear conditional``: ``BetaVAETransformer(hidden_layer_sizes=())``
  with ``covariates=``, 10 latents, its defaults otherwise;
- ``conditional beta-VAE``: the defaults with ``covariates=``;
- ``conditional, hidden layers blind to the covariates``: the same, with the
  covariate columns of the encoder's first hidden layer held at zero (a
  skorch callback), so that the covariates reach the code only through the
  encoder's linear path and cannot interact with the image.

Columns: the number of latents in use (mean KL on the held-out rows above
0.1 nats, as ``bench_covariates.py``); the site's balanced accuracy from the
held-out codes of those latents (logistic regression on standardized codes,
5-fold stratified cross-validation among the held-out subjects), with
chance; and, per latent in use, the share of its variance the site explains
(eta squared: the variance of the site means over the total), its largest
value over the latents on the training codes and on the held-out codes.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from bench_covariates import IN_USE_KL, RegressedPCA, _logistic, _site_accuracy
from skorch.callbacks import Callback

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae._report_sections import covariate_associations
from sklearn_betavae.datasets import make_brain_cohort
from sklearn_betavae.inspection import latent_kl

COHORTS = ["overlapping/3:2", "amplitude/5:1", "amplitude/3:0"]
METHODS = ["PCA after regression", "linear conditional", "conditional beta-VAE",
           "conditional, hidden layers blind to the covariates"]


class CovariatesOutOfHiddenLayers(Callback):
    """Holds the covariate columns of the encoder's first hidden layer at
    zero: zeroed before the first epoch, their gradient masked after."""

    def on_train_begin(self, net, **kwargs):
        module = net.vae_module()
        weight = module.encoder.body[0][0].weight
        covariate_columns = slice(weight.shape[1] - module.n_covariates, None)
        keep = torch.ones_like(weight)
        keep[:, covariate_columns] = 0
        with torch.no_grad():
            weight.mul_(keep)
        weight.register_hook(lambda grad: grad * keep)


def _site_share(Z, covariates):
    """Eta squared of each column of ``Z`` on the site: the report's R^2 of
    each latent on the site's one-hot levels."""
    return covariate_associations(Z, covariates[["site"]])[1][:, 0]


def _codes(method, X_train, X_test, C_train, C_test, seed):
    """Training codes, held-out codes and which latents are in use."""
    if method == "PCA after regression":
        model = RegressedPCA(10, seed).fit(X_train, C_train)
        return model.transform(X_train, C_train), model.transform(X_test, C_test), np.ones(10, bool)
    params = {"hidden_layer_sizes": ()} if method == "linear conditional" else {}
    if method.endswith("blind to the covariates"):
        params["callbacks"] = [CovariatesOutOfHiddenLayers()]
    model = BetaVAETransformer(n_components=10, random_state=seed, **params)
    model.fit(X_train, covariates=C_train)
    in_use = latent_kl(model, X_test, covariates=C_test) > IN_USE_KL
    return (model.transform(X_train, covariates=C_train),
            model.transform(X_test, covariates=C_test), in_use)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", nargs="+", default=COHORTS,
                        help="kind/number of sites:seed, e.g. overlapping/3:2")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from nilearn.maskers import NiftiMasker

    print("| cohort | method | latents in use | site bal. acc., held out (chance) "
          "| largest site eta^2 of a latent, training codes | the same, held-out codes | fit s |")
    print("|---|---|---|---|---|---|---|")
    for cohort_name in args.cohorts:
        population, seed = cohort_name.split(":")
        kind, n_sites = population.split("/")
        cohort = make_brain_cohort(args.n_train + 300, kind, n_sites=int(n_sites),
                                   random_state=int(seed))
        X = NiftiMasker(cohort.mask_img, standardize=None).fit_transform(cohort.images)
        C_train = cohort.covariates.iloc[:args.n_train].reset_index(drop=True)
        C_test = cohort.covariates.iloc[args.n_train:].reset_index(drop=True)
        test_sites = C_test["site"].astype(str).to_numpy()
        for method in args.methods:
            start = time.perf_counter()
            Z_train, Z_test, in_use = _codes(method, X[:args.n_train], X[args.n_train:],
                                             C_train, C_test, int(seed))
            seconds = time.perf_counter() - start
            accuracy = _site_accuracy(_logistic(), Z_test[:, in_use], test_sites, int(seed))
            print(f"| {cohort_name} | {method} | {in_use.sum()} | {accuracy:.3f} "
                  f"({1 / int(n_sites):.3f}) | "
                  f"{_site_share(Z_train[:, in_use], C_train).max():.4f} | "
                  f"{_site_share(Z_test[:, in_use], C_test).max():.4f} | {seconds:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
