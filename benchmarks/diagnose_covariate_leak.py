"""Where the site hides in a conditional beta-VAE's codes (issue 34): latents in use or switched off.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/diagnose_covariate_leak.py

Fits the linear conditional model (``hidden_layer_sizes=()``, 10 epochs,
``random_state=0``) on 1,000 subjects of ``make_brain_cohort(1300,
"amplitude", n_sites=3, random_state=0)`` with their covariates, and
predicts the site of the 300 held-out subjects from their codes (logistic
regression, 5-fold stratified cross-validation among them; chance 1/3): from
all latents, the latents in use (mean KL on the held-out rows above 0.1
nats) and the switched-off ones, each from the raw codes and standardized.
"""

import warnings

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.datasets import make_brain_cohort
from sklearn_betavae.inspection import latent_kl


def main():
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from nilearn.maskers import NiftiMasker

    cohort = make_brain_cohort(1300, "amplitude", n_sites=3, random_state=0)
    X = NiftiMasker(cohort.mask_img, standardize=None).fit_transform(cohort.images)
    covariates = cohort.covariates
    train = covariates.iloc[:1000].reset_index(drop=True)
    test = covariates.iloc[1000:].reset_index(drop=True)
    vae = BetaVAETransformer(n_components=10, hidden_layer_sizes=(), max_iter=10, random_state=0)
    vae.fit(X[:1000], covariates=train)
    Z = vae.transform(X[1000:], covariates=test)
    kl = latent_kl(vae, X[1000:], covariates=test)
    print("KL per latent (nats):", np.round(kl, 2).tolist())
    sites = test["site"].astype(str).to_numpy()
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    print("| latents | codes | site balanced accuracy (chance 0.333) |")
    print("|---|---|---|")
    for name, columns in (("all", slice(None)), ("in use", kl > 0.1), ("switched off", kl <= 0.1)):
        for scaled in (False, True):
            model = LogisticRegression(max_iter=2000)
            model = make_pipeline(StandardScaler(), model) if scaled else model
            predicted = cross_val_predict(model, Z[:, columns], sites, cv=folds)
            print(f"| {name} | {'standardized' if scaled else 'raw'} | "
                  f"{balanced_accuracy_score(sites, predicted):.3f} |", flush=True)


if __name__ == "__main__":
    main()
