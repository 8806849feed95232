"""
==========================================================
Normative deviation maps: a patient's atrophy, found again
==========================================================

A normative model learns healthy variation from controls and scores how far
each new subject is from what is expected of someone of that age, sex and
scanner site. This example simulates controls from three sites
(``make_brain_cohort``: age, sex and site change the images) whose brains
also differ in shape (``kind="deformation"``: the ventricles' expansion and
the brain's length, variation shared between voxels and far from linear)
and patients carrying one focal atrophy each, fits a conditional beta-VAE
on the controls alone (holding 20% out as the reference), draws one
patient's deviation map beside the true atrophy, and compares it with the
standard mass-univariate answer, a voxel-wise regression on the covariates
(the GLM). About half a minute on a CPU; the figure goes to ``results/``.
"""

# %%
# Simulated controls and patients
# -------------------------------
import os
import time

import nibabel
import numpy as np
import sklearn
from nilearn.image import index_img
from nilearn.maskers import NiftiMasker
from nilearn.plotting import plot_roi, plot_stat_map
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae.datasets import make_brain_cohort
from sklearn_betavae.inspection import deviation_maps

os.makedirs("results", exist_ok=True)
cohort = make_brain_cohort(400, kind="deformation", n_sites=3, n_patients=40, random_state=0)
train = slice(0, 300)  # controls to learn from
test = slice(300, 440)  # 100 unseen controls, then the 40 patients
is_patient = cohort.diagnosis[test] == "patient"
print(cohort.covariates.head())

# %%
# The conditional beta-VAE, fitted on controls only
# --------------------------------------------------
# The covariates reach the pipeline's last step by metadata routing (here
# switched on for this block only; ``sklearn.set_config`` switches it on
# for the session).
with sklearn.config_context(enable_metadata_routing=True):
    vae = BetaVAETransformer(reference_fraction=0.2, random_state=0).set_fit_request(covariates=True)
    pipe = Pipeline([("masker", NiftiMasker(cohort.mask_img, standardize=None)), ("vae", vae)])
    start = time.perf_counter()
    pipe.fit(cohort.images[train], covariates=cohort.covariates.iloc[train])
print(f"fitted in {time.perf_counter() - start:.1f} s on {300 - len(vae.reference_indices_)} "
      f"controls, {len(vae.reference_indices_)} held out as the reference")
result = deviation_maps(pipe, cohort.images[test], covariates=cohort.covariates.iloc[test])

# %%
# The voxel-wise GLM on the same controls
# ---------------------------------------
# Every voxel regressed on a cubic spline in age, sex and site; a patient's
# z-score is the residual over its standard deviation among the controls.
masker = pipe.named_steps["masker"]
X_train = masker.transform(cohort.images[train])
X_test = masker.transform(cohort.images[test])
design = make_column_transformer(
    (SplineTransformer(n_knots=5), ["age"]),
    (OneHotEncoder(sparse_output=False), ["sex", "site"]),
)
D_train = design.fit_transform(cohort.covariates.iloc[train])
glm = LinearRegression().fit(D_train, X_train)
spread = (X_train - glm.predict(D_train)).std(axis=0, ddof=np.linalg.matrix_rank(D_train) + 1)
z_glm = (X_test - glm.predict(design.transform(cohort.covariates.iloc[test]))) / spread

# %%
# Which finds the patients, and where their atrophy is?
# -----------------------------------------------------
# Subject level: the AUC of each subject's mean squared z-score, patients
# against the unseen controls. Voxel level: inside each patient, the AUC of
# -z for the voxels of the true atrophy (mean over patients). Calibration:
# the share of ``|z| > 3`` among the unseen controls, 0.27% for a standard
# normal.
z_vae = masker.transform(result.maps)
masks = masker.transform(nibabel.Nifti1Image(
    np.moveaxis(cohort.abnormality_masks, 0, -1).astype(np.float32), cohort.mask_img.affine)) > 0.5
print("| method | subject AUC | voxel AUC | share of |z| > 3 in controls |")
print("|---|---|---|---|")
for name, z in (("GLM", z_glm), ("conditional beta-VAE", z_vae)):
    subject = roc_auc_score(is_patient, np.mean(z**2, axis=1))
    voxel = np.mean([roc_auc_score(mask, -row) for row, mask in zip(z[is_patient], masks)])
    calibration = np.mean(np.abs(z[~is_patient]) > 3)
    print(f"| {name} | {subject:.3f} | {voxel:.3f} | {100 * calibration:.2f}% |")

# %%
# One patient's deviation map beside the true atrophy
# ---------------------------------------------------
patient = int(np.argmax(cohort.abnormality_depths))  # the deepest atrophy
volume = int(is_patient.argmax()) + patient
centre = cohort.abnormality_centres[patient]
display = plot_stat_map(
    index_img(result.maps, volume), bg_img=cohort.template_img,
    threshold=3.0, cut_coords=centre, title=f"patient {patient}: z-map, |z| > 3",
)
display.savefig("results/normative_deviation_map.png")
plot_roi(
    nibabel.Nifti1Image(cohort.abnormality_masks[patient].astype(np.int8), cohort.mask_img.affine),
    bg_img=cohort.template_img, cut_coords=centre, title="the true atrophy",
)
print(f"patient {patient}: percentile {result.percentiles[volume]:.0f} among the reference")
