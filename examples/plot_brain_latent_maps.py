"""
=====================================================================
Brain maps of the latents, a shareable brain model and an HTML report
=====================================================================

After fitting ``Pipeline([NiftiMasker(...), BetaVAETransformer()])`` a
neuroimaging user wants three things nilearn's own decompositions give:
to see what each latent does in the brain (as ``components_img_`` of
``CanICA``), to hand the fitted model to a colleague, and a report of the
fit (as the maskers' ``generate_report()``).

This example fits the beta-VAE on a simulated population whose factors are
known (a global scaling and two focal atrophies, in nilearn's bundled
MNI152 anatomy), draws its latent maps beside PCA's components, checks where
each map peaks against the atrophies' true centres, saves the whole
pipeline in one safe file, loads it back, and writes an HTML report.
About a minute and a half on 2 CPU cores; figures and files go to ``results/``.
"""

# %%
# Fit the pipeline and PCA on the same masked images
# ---------------------------------------------------
import os
import time

import numpy as np
from nilearn.maskers import NiftiMasker
from nilearn.plotting import plot_prob_atlas
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline

from sklearn_betavae import BetaVAETransformer, load_pipeline, save_pipeline
from sklearn_betavae.datasets import make_brain_population
from sklearn_betavae.inspection import latent_maps
from sklearn_betavae.metrics import factor_correlations
from sklearn_betavae.plotting import plot_latent_maps
from sklearn_betavae.reporting import generate_report

os.makedirs("results", exist_ok=True)
population = make_brain_population(300, kind="amplitude", random_state=0)
train, held_out = population.images[:250], population.images[250:]

pipe = Pipeline([
    ("masker", NiftiMasker(population.mask_img, standardize=None)),
    ("vae", BetaVAETransformer(n_components=4, device="cpu", random_state=0)),
])
start = time.perf_counter()
pipe.fit(train)
print(f"beta-VAE fitted in {time.perf_counter() - start:.1f} s")
masker = pipe.named_steps["masker"]
pca = PCA(4, random_state=0).fit(masker.transform(train))

# %%
# What each latent does in the brain
# ----------------------------------
# ``latent_maps`` returns one volume per latent, the change in the
# reconstruction per unit of that latent at the prior mean, ordered by the
# latent's KL on the held-out images (the most informative first).
maps = latent_maps(pipe, held_out)
print("latents by KL:", maps.latents.tolist(), "KL (nats):", np.round(maps.kl, 2).tolist())
plot_latent_maps(pipe, held_out, path="results/brain_latent_maps.png")

# %%
# Beside PCA's components, as nilearn compares CanICA and DictLearning
# --------------------------------------------------------------------
# The sign of a component is arbitrary: the atlas outlines where each
# absolute map exceeds half its peak.
plot_latent_maps(pipe, held_out, kind="prob_atlas", path="results/brain_latent_atlas.png")
pca_maps = masker.inverse_transform(pca.components_)
pca_data = np.abs(np.asarray(pca_maps.dataobj))
pca_atlas = type(pca_maps)(pca_data / pca_data.reshape(-1, 4).max(axis=0), pca_maps.affine)
plot_prob_atlas(pca_atlas, threshold=0.5, view_type="filled_contours", draw_cross=False,
                title="PCA components: |map| above half its peak",
                output_file="results/brain_pca_atlas.png")


# %%
# Where the maps peak, against the atrophies' true centres
# --------------------------------------------------------
def peak_distances(codes, images):
    """For each focal atrophy: |Spearman| of its best-matching code and the
    distance (mm) from the atrophy's centre to that code's map's peak."""
    correlations = factor_correlations(codes, population.factors[250:])
    data, affine = np.asarray(images.dataobj), images.affine
    rows = {}
    for name, centre in population.factor_centres.items():
        best = int(np.argmax(correlations[:, population.factor_names.index(name)]))
        volume = np.abs(data[..., best])
        peak = np.array(np.unravel_index(np.argmax(volume), volume.shape))
        rows[name] = (correlations[best, population.factor_names.index(name)],
                      np.linalg.norm(affine[:3, :3] @ peak + affine[:3, 3] - np.array(centre)))
    return rows


unordered = latent_maps(pipe).maps  # index order, as transform's columns
vae_rows = peak_distances(pipe.transform(held_out), unordered)
pca_rows = peak_distances(pca.transform(masker.transform(held_out)), pca_maps)
print(f"\n{'factor':<22}{'VAE |rho|':>10}{'VAE peak (mm)':>15}{'PCA |rho|':>11}{'PCA peak (mm)':>15}")
for name in population.factor_centres:
    print(f"{name:<22}{vae_rows[name][0]:>10.3f}{vae_rows[name][1]:>15.1f}"
          f"{pca_rows[name][0]:>11.3f}{pca_rows[name][1]:>15.1f}")

# %%
# One safe file for the whole brain model
# ---------------------------------------
# The file holds the mask, the masker's parameters and the network, and no
# pickle: a colleague loads it and gives it images.
save_pipeline(pipe, "results/brain_model.safetensors")
shared = load_pipeline("results/brain_model.safetensors")
codes = shared.transform(held_out)
same = np.array_equal(np.asarray(shared.inverse_transform(codes).dataobj),
                      np.asarray(pipe.inverse_transform(pipe.transform(held_out)).dataobj))
print(f"\nloaded pipeline: codes {codes.shape}, identical reconstructions: {same}")

# %%
# A report of the fit
# -------------------
# One self-contained HTML page (inline figures, no script, nothing fetched):
# parameters, mask, training curves, KL per latent, maps, traversals,
# held-out score, library versions.
report = generate_report(pipe, held_out, title="beta-VAE on a simulated amplitude population")
report.save_as_html("results/brain_report.html")
print(report)
