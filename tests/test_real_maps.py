"""The real activation maps that ship with the package (``load_nback_flanker``):
the published counts, the maps against their peaks, the images against the
masked array, and bad parameters."""

import numpy as np
import pytest

from sklearn_betavae.datasets import load_nback_flanker

NiftiMasker = pytest.importorskip("nilearn.maskers").NiftiMasker


@pytest.fixture(scope="module")
def maps():
    return load_nback_flanker()


def test_the_maps_have_the_counts_of_the_studyset(maps):
    # 717 analyses with MNI peaks, from 268 studies: 406 n-back, 311 flanker.
    assert maps.data.shape == (717, 8656) and maps.data.dtype == np.float32
    assert len(maps.target) == len(maps.groups) == len(maps.analysis_ids) == 717
    assert len(set(maps.analysis_ids)) == 717 and len(set(maps.groups)) == 268
    assert {name: int(np.sum(maps.target == name)) for name in maps.target_names} == {
        "n-back": 406, "flanker": 311}
    assert len(maps.peaks["xyz"]) == 7819
    for text in ("717", "268", "NiMARE 0.22.1", "MIT", "nback_vs_flanker_studyset_2026-07"):
        assert text in maps.DESCR


def test_a_study_has_one_task_and_analysis_ids_name_their_study(maps):
    for analysis, study in zip(maps.analysis_ids, maps.groups):
        assert analysis.startswith(study + "-")
    tasks_per_study = {}
    for study, task in zip(maps.groups, maps.target):
        tasks_per_study.setdefault(study, set()).add(task)
    assert all(len(tasks) == 1 for tasks in tasks_per_study.values())


def test_each_map_peaks_at_its_own_coordinates(maps):
    # A voxel of the mask at a reported peak takes the value 1 (up to the
    # distance to the voxel's centre); the maps are sparse.
    mask = np.asarray(maps.mask_img.dataobj) > 0
    affine = maps.mask_img.affine
    ijk_of_mask = np.argwhere(mask)
    column = {tuple(ijk): j for j, ijk in enumerate(ijk_of_mask)}
    checked = 0
    for xyz, row in zip(maps.peaks["xyz"][:400], maps.peaks["analysis_index"][:400]):
        ijk = np.rint(np.linalg.solve(affine[:3, :3], xyz - affine[:3, 3])).astype(int)
        if tuple(ijk) in column:
            # At most half a voxel's diagonal (5.2 mm at 6 mm) from the peak: > exp(-5.2^2 / (2 * 4.25^2)).
            assert maps.data[row, column[tuple(ijk)]] > 0.47
            checked += 1
    assert checked > 100
    assert 0.0 <= maps.data.min() and maps.data.max() <= 1.0
    assert 0.005 < np.mean(maps.data > 0.1) < 0.05


def test_a_smaller_kernel_gives_sparser_maps():
    narrow = load_nback_flanker(fwhm=5.0, return_images=False)
    wide = load_nback_flanker(fwhm=15.0, return_images=False)
    assert np.mean(narrow.data > 0.1) < np.mean(wide.data > 0.1)
    assert narrow.images is None


def test_the_images_mask_back_to_the_data(maps):
    assert maps.images.shape == maps.mask_img.shape + (717,)
    np.testing.assert_allclose(maps.images.affine, maps.mask_img.affine)
    masked = NiftiMasker(maps.mask_img, standardize=None).fit_transform(maps.images)
    np.testing.assert_array_equal(masked, maps.data)


def test_four_millimetres_gives_the_finer_mask():
    maps = load_nback_flanker(resolution=4, return_images=False)
    assert maps.data.shape == (717, 28144)


@pytest.mark.parametrize("kwargs", [
    {"resolution": 0}, {"resolution": True}, {"resolution": 6.0}, {"fwhm": 0}, {"fwhm": -1.0},
    {"fwhm": "10"}, {"return_images": "yes"},
])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises((ValueError, TypeError), match="resolution|fwhm|return_images"):
        load_nback_flanker(**kwargs)
