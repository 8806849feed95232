"""
==============================================================================
Real activation maps: the beta-VAE beside PCA and FastICA, on held-out studies
==============================================================================

Every other example simulates its brains. This one uses real ones: 717
modelled-activation maps of 268 published n-back and flanker fMRI studies
(``load_nback_flanker``, computed offline from peaks that ship with the
package). The maps are few (hundreds), wide (8,656 voxels at 6 mm) and
sparse, and analyses of one study share peaks, so every split keeps a
study's maps together.

It fits PCA, FastICA and the beta-VAE on three quarters of the studies and
reports, on the held-out quarter, the share of variance each reconstructs
(R^2 about the training mean) beside the same on the training maps, and how
well a logistic regression tells n-back from flanker from the codes. It
then draws the beta-VAE's latent maps beside PCA's and FastICA's components.

What it shows (``benchmarks/README.md``, "Issue 32", has the measurements
over splits and budgets): on such data the network starts at probabilistic
PCA, and training first adds a little held-out R^2 (about +0.004 to +0.009
over the first 10 epochs), then memorises the training maps: after 200
epochs train R^2 is 0.72 and held-out R^2 below PCA's. The default budget,
``max_iter="auto"``, is therefore 10 epochs when the rows are fewer than the
features (here 537 maps of 8,656 voxels); the last row trains 200 epochs, the
default before, to show the memorising.
About a minute on 2 CPU cores (the 200-epoch fit is most of it); figures go
to ``results/``.
"""

# %%
# Load the maps and split by study
# --------------------------------
import os
import time

import numpy as np
from nilearn.image import index_img
from nilearn.maskers import NiftiMasker
from nilearn.plotting import plot_prob_atlas
from sklearn.decomposition import PCA, FastICA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.datasets import load_nback_flanker
from sklearn_betavae.plotting import plot_latent_maps

os.makedirs("results", exist_ok=True)
maps = load_nback_flanker(resolution=6)
train, test = next(GroupShuffleSplit(1, test_size=0.25, random_state=0).split(
    maps.data, groups=maps.groups))
print(f"{len(train)} training maps of {len(set(maps.groups[train]))} studies, "
      f"{len(test)} held-out maps of {len(set(maps.groups[test]))} studies, "
      f"{maps.data.shape[1]} voxels")

# %%
# Fit the three models on the training studies
# --------------------------------------------
# The beta-VAE is a pipeline from images, as a user would build it; PCA and
# FastICA read the same masked maps. Each gets 10 components.
k = 10


def vae_pipeline(**params):
    return Pipeline([
        ("masker", NiftiMasker(maps.mask_img, standardize=None)),
        ("vae", BetaVAETransformer(n_components=k, device="cpu", random_state=0, **params)),
    ])


models = {
    "PCA": PCA(k, random_state=0),
    "FastICA": FastICA(k, random_state=0, max_iter=1000),
    "beta-VAE, defaults": vae_pipeline(),
    "beta-VAE, max_iter=200": vae_pipeline(max_iter=200),
}
train_images, test_images = index_img(maps.images, train), index_img(maps.images, test)
X_train, X_test = maps.data[train], maps.data[test]
seconds = {}
for name, model in models.items():
    start = time.perf_counter()
    model.fit(train_images if isinstance(model, Pipeline) else X_train)
    seconds[name] = time.perf_counter() - start

# %%
# Held-out reconstruction and task decoding
# -----------------------------------------
# R^2 is 1 - SSE / SS about the training mean. Decoding is the balanced
# accuracy of a logistic regression on the codes of all 717 maps, in 5
# folds that keep each study's maps together.
mean = X_train.mean(axis=0)


def on_masked_maps(model):
    """The model that reads masked maps: the masker's output is ``maps.data``."""
    return model[-1] if isinstance(model, Pipeline) else model


def r2(model, X):
    reconstruction = model.inverse_transform(model.transform(X))
    return 1 - np.sum((reconstruction - X) ** 2) / np.sum((X - mean) ** 2)


decoder = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
print(f"{'model':<32} {'R2 test':>8} {'R2 train':>8} {'decoding':>8} {'fit s':>6}")
for name, model in models.items():
    model = on_masked_maps(model)
    decoding = cross_val_score(decoder, model.transform(maps.data), maps.target,
                               groups=maps.groups, cv=GroupKFold(5),
                               scoring="balanced_accuracy").mean()
    print(f"{name:<32} {r2(model, X_test):8.4f} {r2(model, X_train):8.4f} "
          f"{decoding:8.3f} {seconds[name]:6.1f}")

# %%
# The latent maps beside PCA's and FastICA's components
# -----------------------------------------------------
# Each outline is where a map's absolute value exceeds half its peak (the
# sign of a component is arbitrary). The beta-VAE's maps are the change in
# the reconstruction per unit of each latent (``inspection.latent_maps``).
plot_latent_maps(models["beta-VAE, defaults"], test_images, kind="prob_atlas",
                 path="results/real_maps_vae_atlas.png")
masker = models["beta-VAE, defaults"].named_steps["masker"]
for name in ("PCA", "FastICA"):
    components = masker.inverse_transform(models[name].components_)
    data = np.abs(np.asarray(components.dataobj))
    atlas = type(components)(data / data.reshape(-1, k).max(axis=0), components.affine)
    plot_prob_atlas(atlas, threshold=0.5, view_type="filled_contours", draw_cross=False,
                    title=f"{name} components: |map| above half its peak",
                    output_file=f"results/real_maps_{name.lower()}_atlas.png")
print("figures in results/")
