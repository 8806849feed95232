import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from sklearn_betavae._data import RowDataset, SliceLoader, float32_rows, iter_chunks, standardisation


def test_row_dataset_shares_float32_memory():
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    dataset = RowDataset(X)
    assert np.shares_memory(dataset.X.numpy(), X)
    assert len(dataset) == 4
    with pytest.raises(ValueError, match="no targets"):
        RowDataset(X, y=np.zeros(4))


def test_unshuffled_batches_are_slices_in_order():
    X = torch.arange(10.0).reshape(5, 2)
    batches = list(SliceLoader(RowDataset(X), batch_size=2))
    assert [len(b[0]) for b in batches] == [2, 2, 1]
    assert all(y is None for _, y in batches)
    assert torch.equal(torch.cat([b[0] for b in batches]), X)
    assert len(SliceLoader(RowDataset(X), batch_size=2)) == 3


def test_shuffled_batches_cover_every_row_once():
    X = torch.arange(20.0).reshape(10, 2)
    torch.manual_seed(0)
    rows = torch.cat([b[0] for b in SliceLoader(RowDataset(X), batch_size=3, shuffle=True)])
    assert not torch.equal(rows, X)
    assert torch.equal(rows[rows[:, 0].argsort()], X)


def test_subsets_are_honoured_shuffled_or_not():
    X = torch.arange(20.0).reshape(10, 2)
    subset = Subset(Subset(RowDataset(X), [1, 3, 5, 7, 9]), [0, 2, 4])
    rows = torch.cat([b[0] for b in SliceLoader(subset, batch_size=2)])
    assert torch.equal(rows, X[[1, 5, 9]])
    shuffled = torch.cat([b[0] for b in SliceLoader(subset, batch_size=2, shuffle=True)])
    assert sorted(shuffled[:, 0].tolist()) == [2.0, 10.0, 18.0]


def test_other_datasets_are_refused():
    with pytest.raises(TypeError, match="RowDataset"):
        SliceLoader(torch.utils.data.TensorDataset(torch.zeros(3, 2)), batch_size=2)


def test_iter_chunks_reads_a_memmap_in_pieces(tmp_path):
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(10, 3))
    X[:] = np.arange(30).reshape(10, 3)
    chunks = list(iter_chunks(X, 4, torch.float64, "cpu"))
    assert [c.shape[0] for c in chunks] == [4, 4, 2]
    assert all(c.dtype == torch.float64 for c in chunks)
    assert np.array_equal(torch.cat(chunks).numpy(), X)


def test_standardisation_keeps_constant_features_finite():
    from sklearn_betavae._data import standardisation

    X = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 0.0]], dtype=np.float32)
    mean, scale = standardisation(X, True)
    np.testing.assert_allclose(mean, [2.0, 5.0, 0.0])
    np.testing.assert_allclose(scale, [1.0, 1.0, 1.0])  # std 1, then two constants
    assert mean.dtype == scale.dtype == np.float64
    mean, scale = standardisation(X, False)
    assert not mean.any() and np.all(scale == 1)


def test_standardisation_refuses_values_that_overflow_float64_statistics():
    X = np.array([[1e200, 0.0], [-1e200, 1.0]])
    with pytest.raises(ValueError, match="too large to standardise.*1e\\+200"):
        standardisation(X, True)
    mean, scale = standardisation(X / 1e170, True)
    assert np.isfinite(scale).all()


def test_float32_rows_refuse_what_float32_cannot_hold():
    rows = float32_rows(np.asfortranarray([[1.0, 2.0], [3.0, 4.0]]))
    assert rows.dtype == np.float32 and rows.flags.c_contiguous
    with pytest.raises(ValueError, match="beyond float32's range.*standardize=True"):
        float32_rows(np.array([[1e39, 0.0]]))
