"""
==================================================================
Latent brain maps: beta-VAE, PCA and FastICA on simulated subjects
==================================================================

Simulated grey-matter maps on nilearn's bundled MNI152 template (6 mm), with
known factors (:func:`sklearn_betavae.datasets.make_brain_population`), go
through the usual neuroimaging pipeline, ``NiftiMasker`` then a
decomposition. PCA, FastICA and :class:`sklearn_betavae.BetaVAETransformer`
get the same number of components and are compared on held-out subjects:
reconstruction error, how well some component follows each true factor
(best-match rank correlation) and the mutual information gap (MIG). Figures
follow: training curves, latent traversals as brain slices and the
latent-factor correlation matrix, saved under ``results/``. (Choosing beta
by cross-validation is shown on digits, in
:ref:`sphx_glr_auto_examples_plot_digits_vs_pca.py`.)

The beta-VAE keeps its default training budget, ``max_iter="auto"``: with
fewer subjects than voxels that is 10 epochs, after which its MLP starts to
memorise the training subjects (``benchmarks/README.md``, issue 32: 200
epochs put its held-out error 0.03-0.20 of R^2 below PCA's here).
The masked images have 8,656 voxels, so the beta-VAE's default
``standardize="auto"`` centres each voxel and divides them all by one
number (``"global"``), which keeps the relative voxel variances PCA sees;
per-voxel z-scoring is compared in ``benchmarks/bench_brain_factors.py``.
"""

# %%
# Three kinds of population
# -------------------------
# ``amplitude``: global scaling and two focal atrophies of distinct strength;
# ``overlapping``: three equally strong atrophies in overlapping regions;
# ``nonlinear``: a lesion that moves along a path and changes its extent.
import time
import warnings
from pathlib import Path

import numpy as np
from nilearn.maskers import NiftiMasker
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.datasets import make_brain_population
from sklearn_betavae.metrics import best_match_scores, factor_correlations, mutual_information_gap
from sklearn_betavae.plotting import (
    plot_factor_correlations,
    plot_latent_traversals,
    plot_training_curves,
)

N_TRAIN, N_TEST, K = 300, 100, 6
RESULTS = Path("results")
RESULTS.mkdir(exist_ok=True)
warnings.simplefilter("ignore", ConvergenceWarning)


def pipeline(population, model):
    return Pipeline([("masker", NiftiMasker(population.mask_img, standardize=None)), ("model", model)])


# %%
# Fit the three methods on each population, score the held-out subjects
# ------------------------------------------------------------------------
rows, fitted = [], {}
for kind in ("amplitude", "overlapping", "nonlinear"):
    population = make_brain_population(N_TRAIN + N_TEST, kind=kind, random_state=0)
    train, test = population.images[:N_TRAIN], population.images[N_TRAIN:]
    factors = population.factors[N_TRAIN:]
    models = {
        "PCA": PCA(K, random_state=0),
        "FastICA": FastICA(K, whiten="unit-variance", max_iter=2000, random_state=0),
        "beta-VAE": BetaVAETransformer(n_components=K, device="cpu", random_state=0),
    }
    for name, model in models.items():
        pipe = pipeline(population, model)
        start = time.perf_counter()
        pipe.fit(train)
        seconds = time.perf_counter() - start
        masker = pipe[0]
        X_test = masker.transform(test)
        Z = model.transform(X_test)
        mse = float(np.mean((model.inverse_transform(Z) - X_test) ** 2))
        scores = best_match_scores(Z, factors)
        rows.append((kind, name, mse, scores.mean(), mutual_information_gap(Z, factors), seconds))
        fitted[kind, name] = (pipe, Z, factors, population)

print(f"Held-out subjects ({N_TEST}), {K} components, 6 mm grey matter")
print("| population  | method   | MSE      | best-match | MIG   | fit s |")
print("|-------------|----------|----------|------------|-------|-------|")
for kind, name, mse, best, mig, seconds in rows:
    print(f"| {kind:<11} | {name:<8} | {mse:.2e} | {best:10.3f} | {mig:.3f} | {seconds:5.1f} |")

# %%
# Figures
# -------
pipe, Z, factors, population = fitted["nonlinear", "beta-VAE"]
plot_training_curves(pipe, path=RESULTS / "brain_training_curves.png")
plot_latent_traversals(pipe, values=[-2, -1, 0, 1, 2], cut_coords=10.0,
                       path=RESULTS / "brain_traversals.png")
plot_factor_correlations(factor_correlations(Z, factors), population.factor_names,
                         path=RESULTS / "brain_factor_correlations.png")
print("\nFigures saved under results/: brain_training_curves.png, brain_traversals.png, "
      "brain_factor_correlations.png")
