"""mask_to_memmap: the masker's rows, chunk by chunk, in a memmap on disk."""

import os
import tracemalloc

import numpy as np
import pytest

from sklearn_betavae import BetaVAETransformer, mask_to_memmap

pytest.importorskip("nilearn")

import nibabel  # noqa: E402
from nilearn.image import concat_imgs  # noqa: E402
from nilearn.maskers import NiftiMasker  # noqa: E402

from sklearn_betavae.datasets import make_brain_population  # noqa: E402


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """(population, masker, files): 25 subjects at 12 mm, also as files on disk."""
    population = make_brain_population(25, resolution=12, random_state=0)
    masker = NiftiMasker(population.mask_img, standardize=None).fit()
    folder = tmp_path_factory.mktemp("study")
    files = []
    for index, image in enumerate(population.images):
        files.append(str(folder / f"sub-{index:02d}.nii"))
        nibabel.save(image, files[-1])
    return population, masker, files


@pytest.mark.parametrize("batch_size", [1, 7, 25, 100])
def test_rows_equal_masking_all_at_once(study, tmp_path, batch_size):
    population, masker, files = study
    expected = masker.transform(population.images).astype(np.float32)
    for imgs in (population.images, files):
        X = mask_to_memmap(imgs, masker, tmp_path / "X.npy", batch_size=batch_size)
        assert isinstance(X, np.memmap) and not X.flags.writeable
        assert X.dtype == np.float32 and X.shape == (25, masker.n_elements_)
        np.testing.assert_array_equal(X, expected)
        np.testing.assert_array_equal(np.load(tmp_path / "X.npy"), expected)


def test_a_4d_image_and_its_file(study, tmp_path):
    population, masker, _ = study
    four_d = concat_imgs(population.images)
    nibabel.save(four_d, tmp_path / "all.nii")
    expected = masker.transform(population.images)
    for imgs in (four_d, str(tmp_path / "all.nii")):
        X = mask_to_memmap(imgs, masker, tmp_path / "X.npy", batch_size=6, dtype=np.float64)
        assert X.dtype == np.float64
        np.testing.assert_array_equal(X, expected)


def test_fit_and_transform_on_the_memmap_equal_in_memory(study, tmp_path):
    population, masker, files = study
    X = mask_to_memmap(files, masker, tmp_path / "X.npy", batch_size=4)
    params = dict(device="cpu", n_components=2, hidden_layer_sizes=(16,), max_iter=3, random_state=0)
    on_disk = BetaVAETransformer(**params).fit(X)
    in_memory = BetaVAETransformer(**params).fit(np.array(X))
    np.testing.assert_array_equal(on_disk.transform(X), in_memory.transform(np.array(X)))


def test_memory_holds_one_chunk_not_the_study(study, tmp_path):
    population, masker, files = study

    def peak(run):
        tracemalloc.start()
        run()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    at_once = peak(lambda: masker.transform(files))
    chunked = peak(lambda: mask_to_memmap(files, masker, tmp_path / "X.npy", batch_size=2))
    assert chunked < 0.5 * at_once, (chunked, at_once)


def test_progress_is_printed(study, tmp_path, capsys):
    population, masker, _ = study
    mask_to_memmap(population.images, masker, tmp_path / "X.npy", batch_size=10, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["10/25", "20/25", "25/25"]


def test_bad_arguments_are_refused_and_leave_no_file(study, tmp_path):
    population, masker, _ = study
    path = tmp_path / "X.npy"
    with pytest.raises(ValueError, match="must be fitted first"):
        mask_to_memmap(population.images, NiftiMasker(population.mask_img), path)
    with pytest.raises(ValueError, match="standardize='zscore_sample' treats the images as one series"):
        mask_to_memmap(population.images,
                       NiftiMasker(population.mask_img, standardize="zscore_sample").fit(), path)
    with pytest.raises(TypeError, match="fitted nilearn NiftiMasker"):
        mask_to_memmap(population.images, object(), path)
    with pytest.raises(ValueError, match="no images"):
        mask_to_memmap([], masker, path)
    with pytest.raises(TypeError, match="list of 3D images"):
        mask_to_memmap(np.zeros((3, 4)), masker, path)
    with pytest.raises(ValueError, match="batch_size"):
        mask_to_memmap(population.images, masker, path, batch_size=0)
    with pytest.raises(ValueError, match="floating-point"):
        mask_to_memmap(population.images, masker, path, dtype=np.int16)
    with pytest.raises(ValueError, match="4D image"):
        mask_to_memmap(population.images[0], masker, path)
    # A broken image halfway: the error comes through and no file is left.
    broken = [*population.images[:12], "missing.nii", *population.images[12:]]
    with pytest.raises(Exception, match="missing.nii"):
        mask_to_memmap(broken, masker, path, batch_size=5)
    assert os.listdir(tmp_path) == []


def test_the_file_keeps_its_mode_honours_the_umask_and_writes_through_links(study, tmp_path):
    # It was always 0600 (mkstemp's mode), and a link became a regular file.
    population, masker, _ = study
    path = tmp_path / "study.npy"
    old_mask = os.umask(0o022)
    try:
        mask_to_memmap(population.images, masker, path)
        assert path.stat().st_mode & 0o777 == 0o644
        os.chmod(path, 0o640)
        mask_to_memmap(population.images, masker, path)
        assert path.stat().st_mode & 0o777 == 0o640
        link = tmp_path / "latest.npy"
        link.symlink_to(path)
        X = mask_to_memmap(population.images[:5], masker, link)
        assert link.is_symlink() and os.readlink(link) == str(path)
        assert path.stat().st_mode & 0o777 == 0o640
        assert np.load(path).shape == X.shape == (5, masker.n_elements_)
        dangling = tmp_path / "next.npy"
        dangling.symlink_to(tmp_path / "run8.npy")
        mask_to_memmap(population.images[:3], masker, dangling)
        assert dangling.is_symlink() and np.load(tmp_path / "run8.npy").shape[0] == 3
        assert (tmp_path / "run8.npy").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old_mask)
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]
