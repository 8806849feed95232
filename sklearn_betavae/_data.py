"""The data path: batches sliced from one tensor, and chunked inference.

skorch's default path indexes a ``Dataset`` one row at a time and collates
the rows again; for tabular data that costs more than the network. Here a
batch is one fancy-index into a single tensor. Batches stay ``(X, y)`` pairs
(``y`` is always None) so skorch's callbacks see what they expect.
"""

import numpy as np
import torch
from torch.utils.data import Dataset, Subset


class RowDataset(Dataset):
    """The rows of one 2-D tensor, as a torch ``Dataset`` without targets.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Converted with ``torch.as_tensor``: a writeable float32 NumPy array is
        shared, not copied (a read-only one is copied once, as torch tensors
        cannot be read-only).
    y : None
        Present for skorch's ``dataset(X, y)`` call; must be None.
    """

    def __init__(self, X, y=None):
        if y is not None:
            raise ValueError("RowDataset holds no targets; y must be None.")
        self.X = torch.as_tensor(_writeable(X))

    def __len__(self):
        return len(self.X)

    def __getitem__(self, index):
        return self.X[index], None


def _writeable(X):
    if isinstance(X, np.ndarray) and not X.flags.writeable:
        return X.copy()
    return X


def _rows_of(dataset):
    """The underlying tensor and the row indices (or None for all) of a dataset."""
    if isinstance(dataset, Subset):
        rows, indices = _rows_of(dataset.dataset)
        sub = torch.as_tensor(np.asarray(dataset.indices), dtype=torch.long)
        return rows, sub if indices is None else indices[sub]
    if isinstance(dataset, RowDataset):
        return dataset.X, None
    raise TypeError(
        f"SliceLoader needs a RowDataset or a Subset of one; got {type(dataset).__name__}."
    )


class SliceLoader:
    """Iterate over mini-batches ``(X[batch_rows], None)`` of a ``RowDataset``.

    A drop-in ``iterator_train`` / ``iterator_valid`` for skorch.

    Parameters
    ----------
    dataset : RowDataset or torch.utils.data.Subset of one
    batch_size : int
    shuffle : bool, default=False
        Draw a new permutation of the rows at each pass, from the global torch
        generator (which the estimator seeds and isolates during ``fit``).
    """

    def __init__(self, dataset, batch_size, shuffle=False):
        self.rows, self.indices = _rows_of(dataset)
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self):
        n_rows = len(self.rows) if self.indices is None else len(self.indices)
        return -(-n_rows // self.batch_size)

    def __iter__(self):
        n_rows = len(self.rows) if self.indices is None else len(self.indices)
        if self.shuffle:
            order = torch.randperm(n_rows)
            order = order if self.indices is None else self.indices[order]
        elif self.indices is not None:
            order = self.indices
        else:
            # Unshuffled passes over all rows take plain slices: views, no copy.
            for start in range(0, n_rows, self.batch_size):
                yield self.rows[start : start + self.batch_size], None
            return
        for start in range(0, n_rows, self.batch_size):
            yield self.rows[order[start : start + self.batch_size]], None


def iter_chunks(X, chunk_size, dtype, device):
    """Yield consecutive row chunks of ``X`` as tensors of ``dtype`` on ``device``.

    Only one chunk is converted at a time, so a ``numpy.memmap`` is never
    loaded whole.
    """
    for start in range(0, X.shape[0], chunk_size):
        chunk = _writeable(np.asarray(X[start : start + chunk_size]))
        yield torch.as_tensor(chunk, dtype=dtype, device=device)


def standardisation(X, standardize):
    """Per-feature (mean, scale) in float64; zeros and ones when not standardising."""
    n_features = X.shape[1]
    if not standardize:
        return np.zeros(n_features), np.ones(n_features)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = X.mean(axis=0, dtype=np.float64)
        scale = X.std(axis=0, dtype=np.float64)
    if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
        raise ValueError(
            "X has values too large to standardise in float64 (largest magnitude "
            f"{np.max(np.abs(X)):.3g}); divide X by a constant first."
        )
    # Constant features keep their values' spread (none): divide by 1, not 0.
    scale[scale < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)] = 1.0
    return mean, scale


def float32_rows(X):
    """X as a C-ordered float32 array for training, refusing values float32 cannot hold."""
    with np.errstate(over="ignore"):
        rows = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(rows).all():
        raise ValueError(
            "X has values beyond float32's range (largest magnitude "
            f"{np.max(np.abs(X)):.3g}), the precision the network trains in; use "
            'standardize=True (or "auto") or rescale X.'
        )
    return rows
