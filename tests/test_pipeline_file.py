"""save_pipeline / load_pipeline: a NiftiMasker + BetaVAETransformer pipeline in one
safe file: exact round trips on images, no unpickling, clear refusals."""

import pickle
import shutil

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_betavae import BetaVAETransformer, load_pipeline, save_pipeline
from sklearn_betavae._persistence import read_model_file, write_model_file
from sklearn_betavae._pipeline_file import _masker_state, _rebuild_masker
from tests.conftest import FAST_PARAMS, LinearEncoder

pytest.importorskip("nilearn")
import nibabel  # noqa: E402
from nilearn.maskers import NiftiMasker  # noqa: E402

from sklearn_betavae.datasets import make_brain_population  # noqa: E402

VAE_PARAMS = dict(FAST_PARAMS, n_components=2, max_iter=2)


@pytest.fixture(scope="module")
def population():
    # 12 mm voxels: 18 x 21 x 17 volumes, about 1,100 grey-matter voxels.
    return make_brain_population(16, resolution=12, random_state=0)


@pytest.fixture(scope="module")
def pipe(population):
    return Pipeline([
        ("masker", NiftiMasker(population.mask_img, standardize=None, smoothing_fwhm=6.0)),
        ("vae", BetaVAETransformer(**VAE_PARAMS)),
    ]).fit(population.images)


@pytest.fixture
def saved(pipe, tmp_path):
    path = tmp_path / "brain.safetensors"
    save_pipeline(pipe, path)
    return path


def _same_images(a, b):
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    assert np.asarray(a.dataobj).dtype == np.asarray(b.dataobj).dtype
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.shape == b.shape


def _same_pipeline(a, b, images):
    Z = a.transform(images)
    np.testing.assert_array_equal(b.transform(images), Z)
    _same_images(a.inverse_transform(Z), b.inverse_transform(Z))


def test_round_trip_is_exact(pipe, saved, population):
    loaded = load_pipeline(saved)
    assert isinstance(loaded, Pipeline) and list(loaded.named_steps) == ["masker", "vae"]
    assert type(loaded["masker"]) is NiftiMasker and type(loaded["vae"]) is BetaVAETransformer
    _same_pipeline(pipe, loaded, population.images)
    _same_images(loaded["masker"].mask_img_, pipe["masker"].mask_img_)
    original = pipe["masker"].get_params(deep=False)
    restored = loaded["masker"].get_params(deep=False)
    assert isinstance(restored.pop("mask_img"), nibabel.Nifti1Image)
    original.pop("mask_img")
    assert restored == original
    assert loaded["vae"].get_params() == pipe["vae"].get_params()
    assert loaded["vae"].net_.history.to_list() == pipe["vae"].net_.history.to_list()
    Z = loaded.transform(population.images[:1])
    assert Z.shape == (1, 2) and loaded.inverse_transform(Z).shape == (18, 21, 17, 1)


def test_the_file_is_one_safetensors_pipeline_document(saved):
    document, tensors = read_model_file(saved)
    assert document["kind"] == "pipeline"
    assert [step["name"] for step in document["steps"]] == ["masker", "vae"]
    assert {"nilearn", "nibabel", "torch", "sklearn_betavae"} <= set(document["versions"])
    masker = document["steps"][0]
    assert "mask_img" not in masker["params"] and masker["params"]["smoothing_fwhm"] == 6.0
    assert masker["mask_shape"] == [18, 21, 17] and masker["mask_dtype"] == "uint8"
    assert tensors["step.masker.mask_img_.data"].dtype == torch.uint8
    assert tensors["step.masker.mask_img_.affine"].dtype == torch.float64
    assert tensors["step.masker.affine_"].shape == (4, 4)
    assert all(name.startswith(("step.masker.", "step.vae.")) for name in tensors)
    assert "step.vae.mean" in tensors and any(n.startswith("step.vae.module.") for n in tensors)


def test_loading_never_unpickles(saved, population, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_pipeline must not unpickle")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(module, name, refuse)
    loaded = load_pipeline(saved)
    Z = loaded.transform(population.images)
    assert loaded.inverse_transform(Z).shape == (18, 21, 17, 16)


def test_loads_elsewhere_without_the_mask_file(pipe, population, tmp_path):
    """A masker built from a mask file: the model file alone is enough."""
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    nibabel.save(population.mask_img, here / "mask.nii.gz")
    masker = NiftiMasker(str(here / "mask.nii.gz"), standardize=None, smoothing_fwhm=6.0).fit()
    from_file = Pipeline([("masker", masker), ("vae", pipe["vae"])])
    save_pipeline(from_file, here / "brain.safetensors")
    shutil.copy(here / "brain.safetensors", there / "brain.safetensors")
    shutil.rmtree(here)
    loaded = load_pipeline(there / "brain.safetensors")
    _same_pipeline(pipe, loaded, population.images)


def test_a_pipeline_of_the_estimator_alone(pipe, population, tmp_path):
    X = pipe["masker"].transform(population.images)
    save_pipeline(Pipeline([("vae", pipe["vae"])]), tmp_path / "vae.safetensors")
    loaded = load_pipeline(tmp_path / "vae.safetensors")
    assert list(loaded.named_steps) == ["vae"]
    np.testing.assert_array_equal(loaded.transform(X), pipe.transform(population.images))


def test_masker_parameters_survive(population, tmp_path):
    """Arrays, tuples, dtypes, dicts; memory as a location only, not restored."""
    from joblib import Memory

    masker = NiftiMasker(
        population.mask_img, target_affine=np.diag([14.0, 14.0, 14.0]), dtype=np.float32,
        mask_args={"opening": 1}, memory=Memory(location=str(tmp_path)), memory_level=1,
        standardize=None, t_r=2.0,
    ).fit().set_output(transform="pandas")
    entry, tensors = _masker_state("m", masker)
    assert entry["params"]["memory"] == str(tmp_path)
    rebuilt = _rebuild_masker("here", entry, tensors, memory=None)
    assert rebuilt.memory is None
    params = rebuilt.get_params(deep=False)
    assert isinstance(params["target_affine"], np.ndarray)
    np.testing.assert_array_equal(params["target_affine"], masker.target_affine)
    assert params["dtype"] is np.float32 and params["mask_args"] == {"opening": 1}
    assert params["t_r"] == 2.0 and rebuilt.n_elements_ == masker.n_elements_
    np.testing.assert_array_equal(rebuilt.affine_, masker.affine_)
    assert rebuilt._sklearn_output_config == {"transform": "pandas"}
    _same_images(rebuilt.mask_img_, masker.mask_img_)
    assert _rebuild_masker("here", entry, tensors, memory=str(tmp_path)).memory == str(tmp_path)


def test_device_and_memory_are_forwarded(saved, tmp_path):
    loaded = load_pipeline(saved, device=torch.device("cpu"), memory=str(tmp_path))
    assert loaded["vae"].device == torch.device("cpu") and loaded["vae"].device_ == torch.device("cpu")
    assert loaded["masker"].memory == str(tmp_path)
    with pytest.raises(ValueError, match="device must be"):
        load_pipeline(saved, device="tpu")


def test_steps_that_cannot_be_stored_are_refused_by_name(pipe, population, random_data, tmp_path):
    masker, vae = pipe["masker"], pipe["vae"]
    never = tmp_path / "never-written.safetensors"
    unfitted = NiftiMasker(population.mask_img, standardize=None)
    scaler = StandardScaler().fit(masker.transform(population.images))
    cases = [
        (Pipeline([("scale", scaler), ("vae", vae)]), TypeError, r"step 'scale' \(StandardScaler\)"),
        (Pipeline([("masker", masker), ("scale", scaler), ("vae", vae)]), TypeError,
         r"step 'scale' \(StandardScaler\)"),
        (Pipeline([("masker", masker), ("skip", "passthrough"), ("vae", vae)]), TypeError,
         r"step 'skip' \('passthrough'\)"),
        (Pipeline([("masker", masker), ("scale", scaler)]), TypeError,
         r"step 'scale' \(StandardScaler\).*last step must be a BetaVAETransformer"),
        (Pipeline([("masker", unfitted), ("vae", vae)]), NotFittedError,
         r"step 'masker' \(NiftiMasker\).*not fitted"),
        (Pipeline([("masker", masker), ("vae", BetaVAETransformer())]), NotFittedError,
         r"step 'vae' \(BetaVAETransformer\).*not fitted"),
    ]
    for pipeline, error, message in cases:
        with pytest.raises(error, match=message + ".*save_pipeline stores a fitted"):
            save_pipeline(pipeline, never)
    custom = BetaVAETransformer(**VAE_PARAMS, encoder=LinearEncoder(9, 2)).fit(random_data)
    with pytest.raises(ValueError, match=r"step 'vae' \(BetaVAETransformer\).*encoder.*"
                                         r"BetaVAETransformer.save"):
        save_pipeline(Pipeline([("vae", custom)]), never)
    with pytest.raises(TypeError, match=r"save_pipeline saves a Pipeline.*estimator.save\(path\)"):
        save_pipeline(vae, never)
    with pytest.raises(TypeError, match="got a list"):
        save_pipeline([masker, vae], never)
    with pytest.raises(ValueError, match=r"step names \['m', 'm.vae'\].*rename the steps"):
        save_pipeline(Pipeline([("m", masker), ("m.vae", vae)]), never)
    assert list(tmp_path.iterdir()) == []


def test_masker_parameters_that_are_not_json_are_refused(pipe, population, tmp_path):
    masker = NiftiMasker(population.mask_img, standardize=None,
                         clean_args={"filter": object()}).fit()
    with pytest.raises(TypeError, match=r"step 'masker' \(NiftiMasker\).*parameter 'clean_args'"
                                        r".*object"):
        save_pipeline(Pipeline([("masker", masker), ("vae", pipe["vae"])]),
                      tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_files_of_the_other_kind_are_refused_each_way(pipe, saved, tmp_path):
    pipe["vae"].save(tmp_path / "vae.safetensors")
    with pytest.raises(ValueError, match=r"single BetaVAETransformer.*BetaVAETransformer.load\(path\)"):
        load_pipeline(tmp_path / "vae.safetensors")
    with pytest.raises(ValueError, match=r"whole pipeline.*load_pipeline\(path\)"):
        BetaVAETransformer.load(saved)


def test_corrupted_and_other_files_are_refused(saved, tmp_path):
    data = saved.read_bytes()
    saved.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ValueError, match="do not match their checksum"):
        load_pipeline(saved)
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable model file.*save_pipeline"):
        load_pipeline(saved)
    with pytest.raises(FileNotFoundError, match="No model file"):
        load_pipeline(tmp_path / "missing.safetensors")


def test_edited_files_are_refused(saved, tmp_path):
    """Re-signed files pass the checksum; what they hold is checked all the same."""
    def variant(edit):
        document, tensors = read_model_file(saved)
        edit(document, tensors)
        write_model_file(tmp_path / "edited.safetensors", document, tensors)
        return tmp_path / "edited.safetensors"

    def masker(document):
        return document["steps"][0]

    cases = [
        (lambda d, t: t["step.masker.affine_"].mul_(2), "another mask or affine"),
        (lambda d, t: t.update({"step.masker.mask_img_.data": t["step.masker.mask_img_.data"][1:]}),
         "mask of the wrong shape or dtype"),
        (lambda d, t: t["step.masker.mask_img_.data"][:2].fill_(1), "voxels but a BetaVAETransformer"),
        (lambda d, t: t.pop("step.vae.mean"), "structure of a saved BetaVAETransformer"),
        (lambda d, t: d["steps"].reverse(), "save_pipeline writes an optional"),
        (lambda d, t: d.pop("steps"), "structure of a saved pipeline"),
        (lambda d, t: masker(d)["params"].update(future=1), r"parameters \['future'\].*another nilearn"),
        (lambda d, t: masker(d)["params"].update(mask_img="/evil.nii"), r"\['mask_img'\]"),
        (lambda d, t: d.update(kind="other"), "not a pipeline file"),
    ]
    for edit, message in cases:
        with pytest.raises(ValueError, match=message):
            load_pipeline(variant(edit))


def test_parameters_of_a_newer_nilearn_left_at_their_default_are_dropped(saved, pipe, population,
                                                                         tmp_path):
    document, tensors = read_model_file(saved)
    document["steps"][0]["params"]["future"] = None
    document["steps"][0]["defaults"].append("future")
    write_model_file(tmp_path / "newer.safetensors", document, tensors)
    _same_pipeline(pipe, load_pipeline(tmp_path / "newer.safetensors"), population.images)
