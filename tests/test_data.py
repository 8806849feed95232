import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from sklearn_betavae._data import (
    RowDataset,
    SliceLoader,
    Standardization,
    iter_chunks,
    resident_rows,
    row_blocks,
    standardization,
    training_dataset,
)
from tests.conftest import requires_cuda


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


def test_row_blocks_of_a_dataset_are_views_in_order_or_the_rows_asked_for():
    X = torch.arange(20.0).reshape(10, 2)
    blocks = list(row_blocks(RowDataset(X), 4))
    assert [len(b) for b in blocks] == [4, 4, 2]
    assert all(b.untyped_storage().data_ptr() == X.untyped_storage().data_ptr() for b in blocks)
    assert torch.equal(torch.cat(blocks), X)
    order = torch.tensor([9, 0, 4, 4, 7])
    assert torch.equal(torch.cat(list(row_blocks(RowDataset(X), 2, order))), X[order])


def test_row_blocks_map_positions_through_nested_subsets():
    X = torch.arange(20.0).reshape(10, 2)
    subset = Subset(Subset(RowDataset(X), [1, 3, 5, 7, 9]), [4, 0, 2])
    assert torch.equal(torch.cat(list(row_blocks(subset, 2))), X[[9, 1, 5]])
    assert torch.equal(torch.cat(list(row_blocks(subset, 2, torch.tensor([2, 0])))), X[[5, 9]])


def test_row_blocks_standardize_in_float64_and_keep_the_rows_dtype():
    rng = np.random.RandomState(0)
    X = (1e4 + rng.normal(size=(30, 3))).astype(np.float32)
    mean, scale = X.mean(axis=0, dtype=np.float64) + 0.1, X.std(axis=0, dtype=np.float64)
    blocks = list(row_blocks(RowDataset(X, mean=mean, scale=scale), 7))
    assert [len(b) for b in blocks] == [7, 7, 7, 7, 2]
    assert all(b.dtype == torch.float32 for b in blocks)
    expected = Standardization(mean, scale).apply(X).astype(np.float32)
    np.testing.assert_array_equal(torch.cat(blocks).numpy(), expected)
    # The same rows a DataLoader fetches through __getitems__, or one at a time.
    dataset = RowDataset(X, mean=mean, scale=scale)
    np.testing.assert_array_equal(dataset.__getitems__([3, 1])[0].numpy(), expected[[3, 1]])
    np.testing.assert_array_equal(dataset[5][0].numpy(), expected[5])


def test_row_blocks_of_an_array_are_its_rows_sized_by_the_widest_layer(tmp_path, monkeypatch):
    from sklearn_betavae import _data

    monkeypatch.setattr(_data, "CHUNK_VALUES", 12)
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.int16, shape=(10, 3))
    X[:] = np.arange(30).reshape(10, 3)
    blocks = list(row_blocks(X))
    assert [len(b) for b in blocks] == [4, 4, 2]  # 12 values of width 3
    assert all(b.dtype == np.int16 and np.shares_memory(b, X) for b in blocks)
    assert [len(b) for b in row_blocks(X, width=6)] == [2] * 5  # a 6-wide layer counts
    assert [len(b) for b in row_blocks(X, width=100)] == [1] * 10  # never empty


def test_row_blocks_stream_host_rows_to_another_device(monkeypatch):
    """Rows left on the host for a CUDA device go through the pinned
    streamer (a fake here), slices or pieces of the order alike."""
    from sklearn_betavae import _data

    calls = []

    class Streamer:
        def __init__(self, rows, device):
            calls.append(("new", device))
            self.rows = rows

        def __call__(self, which):
            calls.append(which)
            return self.rows[which]

    monkeypatch.setattr(_data, "_PinnedStreamer", Streamer)
    X = torch.arange(20.0).reshape(10, 2)
    dataset = RowDataset(X)
    assert list(row_blocks(dataset, 4)) and calls == []  # rows already there: no streamer
    dataset.device = torch.device("cpu", 1)  # Accelerate's CPU device in process 1
    assert list(row_blocks(dataset, 4)) and calls == []
    dataset.device = torch.device("cuda", 0)  # a GPU the rows did not fit on
    assert torch.equal(torch.cat(list(row_blocks(dataset, 4))), X)
    assert calls == [("new", torch.device("cuda", 0)), slice(0, 4), slice(4, 8), slice(8, 10)]
    calls.clear()
    batches = list(SliceLoader(Subset(dataset, [8, 2, 5]), batch_size=2))
    assert torch.equal(torch.cat([b for b, _ in batches]), X[[8, 2, 5]])
    assert [c.tolist() for c in calls[1:]] == [[8, 2], [5]]


def test_iter_chunks_reads_a_memmap_in_pieces(tmp_path, monkeypatch):
    from sklearn_betavae import _data

    monkeypatch.setattr(_data, "CHUNK_VALUES", 12)  # 4 rows of 3
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(10, 3))
    X[:] = np.arange(30).reshape(10, 3)
    chunks = list(iter_chunks(X, torch.float64, "cpu"))
    assert [c.shape[0] for c in chunks] == [4, 4, 2]
    assert all(c.dtype == torch.float64 for c in chunks)
    assert np.array_equal(torch.cat(chunks).numpy(), X)


def test_standardization_keeps_constant_features_finite():
    from sklearn_betavae._data import standardization

    X = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 0.0]], dtype=np.float32)
    mean, scale = standardization(X, True)
    np.testing.assert_allclose(mean, [2.0, 5.0, 0.0])
    np.testing.assert_allclose(scale, [1.0, 1.0, 1.0])  # std 1, then two constants
    assert mean.dtype == scale.dtype == np.float64
    mean, scale = standardization(X, False)
    assert not mean.any() and np.all(scale == 1)


def test_standardization_refuses_values_that_overflow_float64_statistics():
    X = np.array([[1e200, 0.0], [-1e200, 1.0]])
    with pytest.raises(ValueError, match="too large to standardize.*1e\\+200"):
        standardization(X, True)
    mean, scale = standardization(X / 1e170, True)
    assert np.isfinite(scale).all()


def test_global_standardization_refuses_a_scale_that_overflows():
    # Each feature's variance (6.4e307) is finite; their sum is not.
    X = np.array([[8e153] * 10, [-8e153] * 10])
    assert np.isfinite(standardization(X, True)[1]).all()
    with pytest.raises(ValueError, match='standardize="global".*too large.*8e\\+153'):
        standardization(X, "global")
    mean, scale = standardization(X / 1e10, "global")
    assert np.isfinite(scale).all()
    from sklearn_betavae import BetaVAETransformer

    vae = BetaVAETransformer(device="cpu", standardize="global", max_iter=1)
    with pytest.raises(ValueError, match='standardize="global"'):
        vae.fit(X)
    assert not hasattr(vae, "scale_")


def test_float32_c_data_are_trained_on_in_place_and_standardized_per_batch():
    X = np.random.RandomState(0).normal(3.0, 2.0, size=(50, 7)).astype(np.float32)
    X.setflags(write=False)  # read-only arrays (and memmaps) are shared too
    mean, scale = standardization(X, True)
    dataset = training_dataset(X, mean, scale, True, "cpu")
    assert np.shares_memory(dataset.X.numpy(), X)
    batches = [batch for batch, _ in SliceLoader(dataset, batch_size=16)]
    np.testing.assert_allclose(torch.cat(batches).numpy(), (X - mean) / scale, rtol=1e-5, atol=1e-6)


def test_other_data_are_converted_once_with_float64_precision():
    # A large offset with a small spread: float32 would lose it before
    # standardizing, float64 arithmetic on the way keeps it.
    X = 1e6 + np.random.RandomState(0).normal(0.0, 1e-3, size=(40, 3))
    mean, scale = standardization(X, True)
    dataset = training_dataset(np.asfortranarray(X), mean, scale, True, "cpu")
    rows = dataset.X.numpy()
    assert rows.dtype == np.float32 and rows.flags.c_contiguous and dataset.standardization is None
    np.testing.assert_allclose(rows, (X - mean) / scale, rtol=1e-6, atol=1e-6)
    assert 0.9 < rows.std(axis=0).min()


def test_values_beyond_float32_are_refused_without_standardization():
    X = np.array([[1e39, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="beyond float32's range.*standardize=True"):
        training_dataset(X, *standardization(X, False), False, "cpu")
    assert training_dataset(X, *standardization(X, True), True, "cpu").X.isfinite().all()


@pytest.mark.parametrize("dtype, budget", [(np.float32, 0.1), (np.float64, 0.6)])
def test_fit_makes_at_most_one_conversion_copy(dtype, budget, monkeypatch):
    """Peak NumPy memory during fit, relative to X: no copy for C-ordered
    float32, one float32 copy (half of X) for float64. Chunks are made small
    so that a chunk's temporaries are visibly not a full copy."""
    import tracemalloc

    from sklearn_betavae import BetaVAETransformer, _data

    monkeypatch.setattr(_data, "CHUNK_VALUES", 2**14)
    X = np.random.RandomState(0).normal(size=(8000, 300)).astype(dtype)
    vae = BetaVAETransformer(device="cpu", n_components=2, hidden_layer_sizes=(8,), max_iter=1,
                             batch_size=500, random_state=0)
    vae.fit(X[:50])  # first-call imports and caches are not the data's
    tracemalloc.start()
    try:
        vae.fit(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < budget * X.nbytes, peak / X.nbytes


@requires_cuda
@pytest.mark.parametrize("share", [0.5, 0.0])
def test_batches_reach_the_gpu_resident_or_streamed(monkeypatch, share):
    """Rows that fit go to the GPU once; others stream through pinned buffers.
    Either way the batches are those of the CPU path."""
    from sklearn_betavae import _data

    monkeypatch.setattr(_data, "RESIDENT_SHARE", share)
    X = np.random.RandomState(0).normal(size=(100, 5)).astype(np.float32)
    mean, scale = standardization(X, True)
    on_gpu = training_dataset(X, mean, scale, True, "cuda")
    assert on_gpu.X.is_cuda == (share > 0)
    on_cpu = training_dataset(X, mean, scale, True, "cpu")
    for shuffle in (False, True):
        torch.manual_seed(0)
        gpu = [batch for batch, _ in SliceLoader(on_gpu, 16, shuffle=shuffle)]
        torch.manual_seed(0)
        cpu = [batch for batch, _ in SliceLoader(on_cpu, 16, shuffle=shuffle)]
        assert all(batch.is_cuda for batch in gpu)
        for g, c in zip(gpu, cpu, strict=True):
            np.testing.assert_allclose(g.cpu().numpy(), c.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("standardize", [True, "global"])
def test_standardization_of_a_tensor_is_that_of_its_values_and_leaves_it_alone(standardize, monkeypatch):
    """Rows resident on a GPU are reduced there (here the CPU stands in):
    the statistics of the array, to float64 rounding, and the rows intact
    (a float64 tensor is not standardized in place)."""
    from sklearn_betavae import _data

    monkeypatch.setattr(_data, "CHUNK_VALUES", 700)  # 100 rows a chunk: merged as in a large X
    X = np.random.RandomState(0).normal(3.0, 2.0, size=(950, 7)) * np.arange(1, 8)
    for rows in (torch.from_numpy(X.copy()), torch.from_numpy(X.astype(np.float32))):
        before = rows.clone()
        mean, scale = standardization(rows, standardize)
        expected_mean, expected_scale = standardization(rows.numpy(), standardize)
        np.testing.assert_allclose(mean, expected_mean, rtol=1e-12)
        np.testing.assert_allclose(scale, expected_scale, rtol=1e-12)
        assert torch.equal(rows, before)


def test_memory_cached_by_torch_counts_as_free(monkeypatch):
    """An earlier fit's rows, released to torch's cache, stay free to the next fit."""
    from sklearn_betavae import _data

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10_000, 80_000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 50_000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 20_000)
    assert _data.free_memory(torch.device("cuda:0")) == 40_000


@requires_cuda
def test_a_released_gpu_copy_is_free_memory_again():
    from sklearn_betavae import _data

    device = torch.device("cuda", torch.cuda.current_device())
    before = _data.free_memory(device)
    rows = torch.empty(1 << 28, dtype=torch.uint8, device=device)
    assert _data.free_memory(device) <= before - (1 << 28) + (1 << 22)
    del rows  # back to torch's cache, not to the driver
    assert _data.free_memory(device) >= before - (1 << 22)


def test_rows_stay_on_the_host_for_a_cpu_fit():
    X = np.ones((4, 3), dtype=np.float32)
    assert resident_rows(X, "cpu") is X


@requires_cuda
@pytest.mark.parametrize("share", [0.5, 0.0])
def test_c_ordered_float32_rows_go_to_the_gpu_when_they_fit(monkeypatch, share):
    from sklearn_betavae import _data

    monkeypatch.setattr(_data, "RESIDENT_SHARE", share)
    X = np.random.RandomState(0).normal(size=(100, 5)).astype(np.float32)
    rows = resident_rows(X, "cuda")
    if share:
        assert rows.is_cuda and np.array_equal(rows.cpu().numpy(), X)
        # The dataset trains on that tensor as it is: no second copy.
        assert training_dataset(rows, np.zeros(5), np.ones(5), True, "cuda").X is rows
    else:
        assert rows is X
    for other in (X.astype(np.float64), np.asfortranarray(X)):  # converted by training_dataset
        assert resident_rows(other, "cuda") is other


def test_training_rows_given_as_a_tensor_must_be_float32():
    with pytest.raises(TypeError, match="must be float32"):
        training_dataset(torch.zeros((4, 3), dtype=torch.float64), np.zeros(3), np.ones(3), True, "cpu")
    rows = torch.zeros((4, 3))
    assert training_dataset(rows, np.zeros(3), np.ones(3), True, "cpu").X is rows
