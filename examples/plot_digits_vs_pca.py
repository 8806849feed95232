"""
===============================================
Beta-VAE versus PCA on scikit-learn's digits
===============================================

Fit :class:`sklearn_betavae.BetaVAETransformer` and :class:`~sklearn.decomposition.PCA`
with the same number of components on the 8x8 digits, exactly as
``load_digits`` returns them (pixel values 0-16), and compare them on
held-out data: reconstruction error in pixel units, the number of latents
in use, the held-out evidence lower bound, and fit time. A figure of
held-out reconstructions is saved to ``results/digits_reconstructions.png``.

Runs in about a minute on a 2-core CPU.
"""

# %%
# Data: a held-out quarter of the digits
# --------------------------------------
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.inspection import latent_kl

N_COMPONENTS = 8
X, _ = load_digits(return_X_y=True)
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)


# %%
# Fit PCA and the beta-VAE at beta = 1 and beta = 4 (the default)
# ---------------------------------------------------------------
# With the normal decoder the loss's squared error is twice the unit-variance
# Gaussian negative log-likelihood, so beta = 1 weighs the KL half as much as
# the ELBO that ``score`` reports (beta = 2 would be that plain VAE), and
# beta = 4 twice as much.
# The estimator centres each pixel and divides all of them by one scale
# inside ``fit`` (``standardize="auto"``), so that it starts at PCA of the
# pixels as they are, and undoes it on the way out: the reconstructions
# below are in pixel units.
models = {"PCA": PCA(N_COMPONENTS)}
for beta in (1.0, 4.0):
    models[f"beta-VAE, beta={beta:g}"] = BetaVAETransformer(
        beta, device="cpu", n_components=N_COMPONENTS, random_state=0
    )

rows, reconstructions = [], {}
for name, model in models.items():
    start = time.perf_counter()
    model.fit(X_train)
    seconds = time.perf_counter() - start
    reconstructions[name] = model.inverse_transform(model.transform(X_test))
    mse = np.mean((reconstructions[name] - X_test) ** 2)
    if isinstance(model, PCA):
        active, elbo = N_COMPONENTS, model.score(X_test)
    else:
        # A latent is in use when its KL to the prior exceeds 0.1 nats.
        active, elbo = int(np.sum(latent_kl(model, X_test) > 0.1)), model.score(X_test)
    rows.append((name, mse, active, elbo, seconds))

# %%
# Results
# -------
# PCA's ``score`` is its probabilistic-PCA log-likelihood, the VAE's the
# evidence lower bound; both are per sample in pixel units.
print(f"Held-out digits ({len(X_test)} samples), {N_COMPONENTS} components")
print(f"| {'model':<22} | MSE (pixels^2) | latents in use | held-out log-lik / ELBO | fit s |")
print(f"|{'-' * 24}|{'-' * 16}|{'-' * 16}|{'-' * 25}|{'-' * 7}|")
for name, mse, active, elbo, seconds in rows:
    print(f"| {name:<22} | {mse:>14.3f} | {active:>14} | {elbo:>23.1f} | {seconds:>5.1f} |")

# %%
# Choosing beta by cross-validation
# ---------------------------------
# ``score`` is the held-out ELBO computed with beta = 1 whatever beta the model
# was trained with, so ``GridSearchCV`` compares values of beta directly, with
# no ``scoring`` argument.
from sklearn.model_selection import GridSearchCV

search = GridSearchCV(
    BetaVAETransformer(device="cpu", n_components=N_COMPONENTS, max_iter=100, random_state=0),
    {"beta": [0.5, 1.0, 4.0]},
    cv=3,
)
start = time.perf_counter()
search.fit(X_train)
print(f"\nGridSearchCV over beta (3-fold, 100 epochs), {time.perf_counter() - start:.0f} s")
for beta, mean, std in zip(search.cv_results_["param_beta"],
                           search.cv_results_["mean_test_score"],
                           search.cv_results_["std_test_score"]):
    print(f"  beta={beta:<4g} mean held-out ELBO {mean:8.1f} (+/- {std:.1f})")
print(f"  best beta: {search.best_params_['beta']:g}, "
      f"held-out test ELBO {search.score(X_test):.1f}")

# %%
# Reconstructions of the first held-out digits
# --------------------------------------------
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

n_shown = 10
titles = ["original", *models]
fig, axes = plt.subplots(len(titles), n_shown, figsize=(n_shown, 1.1 * len(titles)))
for row, title in enumerate(titles):
    images = X_test if title == "original" else reconstructions[title]
    for col in range(n_shown):
        ax = axes[row, col]
        ax.imshow(images[col].reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[row, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
fig.suptitle(f"Held-out digits reconstructed from {N_COMPONENTS} components")
out = Path("results")
out.mkdir(exist_ok=True)
fig.savefig(out / "digits_reconstructions.png", dpi=100, bbox_inches="tight")
print(f"Saved {out / 'digits_reconstructions.png'}")

# %%
# The cross-validated score against beta
# --------------------------------------
# The grid search above, drawn: one point per beta, with the standard
# deviation over the folds.
from sklearn_betavae.plotting import plot_score_vs_beta

plot_score_vs_beta(search, path=out / "digits_score_vs_beta.png")
print(f"Saved {out / 'digits_score_vs_beta.png'}")
