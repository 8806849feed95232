"""
====================================================
Disentanglement on sprites: a beta-VAE against PCA
====================================================

The reference experiment of the beta-VAE (Higgins et al., ICLR 2017) is
dSprites: 64 x 64 binary images of one sprite, generated from five
independent factors (shape, scale, orientation, x and y position).
:func:`sklearn_betavae.datasets.make_sprites` draws images of the same factor
grid procedurally. This example fits a beta-VAE (``beta=4``, Bernoulli
decoder) and PCA with 10 components on a few thousand of them, scores both
with the standard disentanglement metrics of :mod:`sklearn_betavae.metrics`
on images neither saw, and draws the beta-VAE's latent traversals.

It is a small version of ``benchmarks/bench_sprites.py`` (3 seeds, 20,000
images, the VAE, FastICA and an untrained encoder too), whose tables and
their reading are in the benchmarks page. Runs in about a minute and a half
on a 2-core CPU.
"""

# %%
# Sprites with known factors
# --------------------------
# Images come as rows of 4,096 pixels in [0, 1], with their factor values
# (``factors``) and their positions on the grid (``factor_classes``).
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.datasets import make_sprites
from sklearn_betavae.inspection import latent_kl
from sklearn_betavae.metrics import beta_vae_score, factor_vae_score, mutual_information_gap
from sklearn_betavae.plotting import plot_latent_traversals

N_TRAIN, N_TEST, K = 5000, 1000, 10
sprites = make_sprites(N_TRAIN + N_TEST, random_state=0)
X_train, X_test = sprites.images[:N_TRAIN], sprites.images[N_TRAIN:]
print(f"{len(sprites.images)} images of {sprites.images.shape[1]} pixels; factors "
      f"{', '.join(sprites.factor_names)} with {', '.join(map(str, sprites.factor_sizes))} values")

figure, axes = plt.subplots(1, 6, figsize=(9, 1.8))
for ax, image in zip(axes, X_train):
    ax.imshow(image.reshape(64, 64), cmap="gray")
    ax.set_axis_off()
figure.suptitle("training images")

# %%
# Fit a beta-VAE and PCA
# ----------------------
# Bernoulli pixels, ``beta=4`` as in Higgins et al., 10 latents; 12 epochs
# of batches of 64 (a short budget: the papers train for 300,000 steps).
models = {
    "beta-VAE": BetaVAETransformer(beta=4.0, default_dist="bernoulli", n_components=K,
                                   batch_size=64, max_iter=12, device="cpu", random_state=0),
    "PCA": PCA(K, random_state=0),
}
for name, model in models.items():
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train)
    print(f"{name}: fitted in {time.perf_counter() - start:.1f} s")

# %%
# Score the codes
# ---------------
# The beta-VAE score and the FactorVAE score encode images they draw from the
# grid themselves (pairs or batches that share one factor), so they take the
# fitted model and the generator; MIG takes the codes of random images and
# their factor classes. The votes here are few (the papers use 10,000), so
# the scores move by a few points with the seed. The reconstruction error is
# on the held-out images.
rng = np.random.RandomState(1)
classes = rng.randint(sprites.factor_sizes, size=(2000, len(sprites.factor_sizes)))
print("| method | beta-VAE score % | FactorVAE score % | MIG | held-out SSE / image |")
print("|---|---|---|---|---|")
for name, model in models.items():
    beta = beta_vae_score(model, sprites, n_train=500, n_eval=250, random_state=0)
    factor = factor_vae_score(model, sprites, n_train=500, n_eval=250, n_variance_estimate=2000,
                              random_state=0)
    mig = mutual_information_gap(model.transform(sprites.render(classes)), classes,
                                 discretize_factors=False)
    reconstruction = model.inverse_transform(model.transform(X_test))
    sse = np.mean(np.sum((reconstruction - X_test) ** 2, axis=1))
    print(f"| {name} | {100 * beta:.1f} | {100 * factor:.1f} | {mig:.3f} | {sse:.1f} |")

# %%
# Latent traversals
# -----------------
# Each row decodes one latent moved from -2 to 2 prior standard deviations,
# the others at 0, rows in order of the latent's mean KL on the held-out
# images. Latents the model does not use (KL near zero) change nothing; the
# others move, grow or reshape the sprite.
vae = models["beta-VAE"]
kl = latent_kl(vae, X_test)
order = np.argsort(kl)[::-1]
print("KL per latent (nats):", " ".join(f"{kl[i]:.2f}" for i in order))
plot_latent_traversals(vae, latents=order, values=np.linspace(-2.0, 2.0, 7))
plt.show()
