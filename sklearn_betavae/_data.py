"""The data path: batches sliced from one tensor, and chunked conversions.

skorch's default path indexes a ``Dataset`` one row at a time and collates
the rows again; for tabular data that costs more than the network. Here a
batch is one fancy-index into a single tensor, which on a GPU lives on the
device when it fits. Batches stay ``(X, y)`` pairs (``y`` is always None) so
skorch's callbacks see what they expect.
Every reader of rows (the batches, the PCA start, inference's chunks and
the statistics of ``standardization``) takes them from ``row_blocks``.
"""

import warnings

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ._device import with_index

# Rows of about this many values are converted at a time: a few tens of MB,
# so no step makes a full-size temporary and a memmap is never loaded whole.
CHUNK_VALUES = 2**23
# Training data move to a GPU only when they take at most this share of its
# free memory, leaving the rest to the network, Adam and the activations.
RESIDENT_SHARE = 0.5


class Standardization:
    """The affine map ``x -> (x - mean) / scale`` of fit, the data path and inference.

    One definition, in float64 arithmetic whatever the rows' dtype (a large
    offset keeps its precision, and every layout of X gives the same bits),
    for NumPy rows and torch tensors alike; only ``chunks`` standardizes
    float32 rows for a float32 network in float32 (with a correction term:
    a large offset keeps its precision there too).

    Parameters
    ----------
    mean, scale : array-like of shape (n_features,)
    device : str or torch.device, default="cpu"
        Where the torch copies of ``mean`` and ``scale`` live.
    """

    def __init__(self, mean, scale, device="cpu"):
        self.mean_array = np.asarray(mean, dtype=np.float64)
        self.scale_array = np.asarray(scale, dtype=np.float64)
        self.mean = torch.as_tensor(self.mean_array, device=device)
        self.scale = torch.as_tensor(self.scale_array, device=device)

    def apply(self, x):
        """``(x - mean) / scale``, float64: a tensor for a tensor, else an ndarray."""
        if isinstance(x, torch.Tensor):
            return (x.double() - self.mean) / self.scale
        return (x - self.mean_array) / self.scale_array

    def invert(self, y):
        """``y * scale + mean`` of a tensor, in float64: back to the input's units."""
        return y.double() * self.scale + self.mean

    def chunks(self, X, dtype, device="cpu", width=1):
        """Standardized row chunks of X, rounded to ``dtype`` (the network's).

        Rows of any dtype but float32 are standardized with ``apply``'s
        arithmetic (float64, then one rounding: the same bits), so a large
        offset keeps its precision; on the CPU each chunk takes two passes
        over reused buffers (a subtraction that also widens X's values, a
        division that writes ``dtype``) instead of a float64 copy and two new
        float64 arrays. float32 rows for a float32 network, which hold no
        more precision than that, are standardized in float32 by torch on
        the device (in parallel, and sent as float32 to a GPU: no float64
        copy of them anywhere): ``(x - m32) * (1 / scale) - (mean - m32) /
        scale``, with ``m32`` the mean rounded to float32, so a large offset
        costs nothing either; the values are ``apply``'s within a few float32
        roundings. Without standardization (mean 0,
        scale 1) a float32 X is not copied at all. A chunk's buffer is
        reused for the next one: use each chunk before taking the next.
        Chunked as ``row_blocks``.
        """
        numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        identity = not self.mean_array.any() and bool((self.scale_array == 1).all())
        on_cpu = torch.device(device).type == "cpu"
        widened = narrow = None
        for chunk in row_blocks(X, width=width):
            chunk = np.asarray(chunk)
            if chunk.dtype == np.float32 and numpy_dtype == np.float32:
                rows = _shared_tensor(chunk).to(device, non_blocking=True)
                if identity:
                    yield rows
                    continue
                if narrow is None:
                    shift, reciprocal, residual = self._float32_terms(rows.device)
                    narrow = torch.empty(rows.shape, dtype=torch.float32, device=rows.device)
                out = torch.sub(rows, shift, out=narrow[:len(rows)])
                yield out.mul_(reciprocal).sub_(residual)
                continue
            if not on_cpu:
                yield self.apply(_shared_tensor(np.asarray(chunk, np.float64)).to(device)).to(dtype)
                continue
            if chunk.dtype.kind != "f":  # integers and booleans: exact in float64
                chunk = chunk.astype(np.float64)
            if identity:
                yield _shared_tensor(np.asarray(chunk, dtype=numpy_dtype))
                continue
            if widened is None:
                widened = np.empty(chunk.shape, dtype=np.float64)
                narrow = np.empty(chunk.shape, dtype=numpy_dtype)
            n = len(chunk)
            # Rows beyond the network's range round to inf here, and the
            # methods report them (an error naming the first, or -inf): not
            # NumPy's warning as well.
            with np.errstate(over="ignore"):
                np.subtract(chunk, self.mean_array, out=widened[:n])
                np.divide(widened[:n], self.scale_array, out=narrow[:n], casting="same_kind")
            yield torch.from_numpy(narrow[:n])

    def _float32_terms(self, device):
        """``m32``, ``1 / scale`` and ``(mean - m32) / scale`` as float32
        tensors on ``device``: ``chunks``'s float32 arithmetic."""
        shift = self.mean_array.astype(np.float32)
        terms = (shift, 1.0 / self.scale_array, (self.mean_array - shift) / self.scale_array)
        return tuple(torch.as_tensor(np.asarray(t, dtype=np.float32), device=device) for t in terms)

    def invert_into(self, y, out):
        """``out[:] = y * scale + mean`` (``invert``'s arithmetic, the same
        bits) for a CPU tensor ``y``, into the float64 array ``out``."""
        np.multiply(y.numpy(), self.scale_array, out=out)
        out += self.mean_array
        return out

    def log_jacobian(self):
        """``log |det d apply / dx|^-1 = sum(log scale)``, what densities in the
        input's units subtract."""
        return torch.log(self.scale).sum()


class RowDataset(Dataset):
    """The rows of one 2-D float tensor, as a torch ``Dataset`` without targets.

    Parameters
    ----------
    X : ndarray or torch.Tensor of shape (n_samples, n_features)
        Shared, not copied, when it is a float32 or float64 array: the
        dataset only reads it (a read-only array or memmap is fine).
    y : None
        Present for skorch's ``dataset(X, y)`` call; must be None.
    mean, scale : array-like of shape (n_features,) or None, default=None
        When given, every batch is standardized on the fly as
        ``(batch - mean) / scale``, so X itself is never copied to do it.
    device : str or torch.device, default="cpu"
        Where batches go. On a CUDA device the rows are moved there once if
        they take at most ``RESIDENT_SHARE`` of its free memory; otherwise
        they stay in host memory and batches are streamed through pinned
        buffers.
    covariates : array-like of shape (n_samples, n_covariates) or None, default=None
        Encoded covariates, appended (as float32, after the standardization)
        to every batch's rows: the network reads them after the features.
    """

    def __init__(self, X, y=None, *, mean=None, scale=None, device="cpu", covariates=None):
        if y is not None:
            raise ValueError("RowDataset holds no targets; y must be None.")
        self.device = with_index(torch.device(device))
        self.X = _resident(_shared_tensor(X), self.device)
        self.standardization = None if mean is None else Standardization(mean, scale, self.device)
        self.covariates = None if covariates is None else torch.as_tensor(
            np.asarray(covariates, dtype=np.float32), device=self.device)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, index):
        batch, _ = self.__getitems__([index])
        return batch[0], None

    def __getitems__(self, indices):
        # A DataLoader fetches a whole batch with one fancy-index through this
        # (not one row at a time), and collates nothing.
        order = torch.as_tensor(indices, dtype=torch.long)
        (batch,) = row_blocks(self, len(order), order)
        return batch, None

    def standardize(self, batch):
        """``(batch - mean) / scale`` (in float64, returned in the rows' dtype)
        when the dataset standardizes, else batch."""
        if self.standardization is None:
            return batch
        return self.standardization.apply(batch).to(batch.dtype)


def _shared_tensor(X):
    if isinstance(X, torch.Tensor):
        return X
    X = np.asarray(X)
    with warnings.catch_warnings():
        # torch warns that it cannot mark a tensor read-only; the rows are
        # only ever read, so sharing a read-only array is safe.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(X)


def _resident(rows, device):
    if device.type != "cuda" or rows.device == device:
        return rows
    if rows.element_size() * rows.nelement() <= RESIDENT_SHARE * free_memory(device):
        return rows.to(device)
    return rows


def free_memory(device):
    """Bytes this process can still take on a CUDA ``device``.

    The driver's free memory and what torch's caching allocator holds unused:
    free to this process though not to the driver. Without the latter, an
    earlier fit's rows (a search's previous fold) would push the next fit's
    onto the slow streamed path.
    """
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def _dataset_of(dataset):
    """The ``RowDataset`` and the row indices (or None for all) of a dataset."""
    if isinstance(dataset, Subset):
        base, indices = _dataset_of(dataset.dataset)
        sub = torch.as_tensor(np.asarray(dataset.indices), dtype=torch.long)
        return base, sub if indices is None else indices[sub]
    if isinstance(dataset, RowDataset):
        return dataset, None
    raise TypeError(
        f"Rows are read from a RowDataset or a Subset of one; got {type(dataset).__name__}."
    )


def row_blocks(data, step=None, order=None, width=1):
    """Yield the rows of ``data`` (at positions ``order``, else all, as
    slices: views) in consecutive blocks of ``step`` rows.

    A ``RowDataset`` (or ``Subset`` of one) gives tensors on its device,
    standardized when it standardizes, host rows streamed to a GPU through
    pinned buffers; an array gives its own rows, unconverted, one block at a
    time (a memmap is never loaded whole). ``step=None`` means about
    ``CHUNK_VALUES`` values per row width, the larger of the rows' and
    ``width`` (the widest layer a block goes through: its activations stay
    bounded too when the rows are narrow).
    """
    dataset, indices = _dataset_of(data) if isinstance(data, Dataset) else (None, None)
    rows = data if dataset is None else dataset.X
    if indices is not None:
        order = indices if order is None else indices[order]
    if order is not None:
        order = order.to(rows.device)
    n_rows = len(rows) if order is None else len(order)
    step = step or max(1, CHUNK_VALUES // max(1, rows.shape[1], width))
    fetch = rows.__getitem__
    if dataset is not None and rows.device.type == "cpu" and dataset.device.type == "cuda":
        fetch = _PinnedStreamer(rows, dataset.device)  # (a process's CPU may be "cpu:1")
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)  # exact: the streamer sizes its buffers by it
        which = slice(start, stop) if order is None else order[start:stop]
        block = fetch(which)
        if dataset is None:
            yield block
        elif dataset.covariates is None:
            yield dataset.standardize(block)
        else:
            covariates = dataset.covariates[which if order is None else which.to(dataset.device)]
            yield torch.cat([dataset.standardize(block), covariates.to(block.device, block.dtype)], 1)


def on_the_fly_standardization(data):
    """The ``Standardization`` a ``RowDataset`` (or ``Subset`` of one)
    applies to its stored rows batch by batch; None when it applies none, or
    when it appends covariates (its rows are then read standardized)."""
    dataset, _ = _dataset_of(data)
    return dataset.standardization if dataset.covariates is None else None


def stored_row_blocks(data):
    """``row_blocks`` of a ``RowDataset`` (or ``Subset`` of one) as it stores
    them: before its standardization, without covariates, on its storage's
    device."""
    dataset, indices = _dataset_of(data)
    return row_blocks(dataset.X, order=indices)


class SliceLoader:
    """Iterate over mini-batches ``(X[batch_rows], None)`` of a ``RowDataset``.

    A drop-in ``iterator_train`` / ``iterator_valid`` for skorch. Batches are
    ``row_blocks``: on the dataset's device and standardized when the
    dataset does so.

    Parameters
    ----------
    dataset : RowDataset or torch.utils.data.Subset of one
    batch_size : int
    shuffle : bool, default=False
        Draw a new permutation of the rows at each pass, on the CPU so that
        the order is the same on every device.
    generator : torch.Generator or None, default=None
        The CPU generator the permutations come from (the estimator passes
        its fit's own); None means torch's global one.
    """

    def __init__(self, dataset, batch_size, shuffle=False, generator=None):
        _dataset_of(dataset)  # other datasets are refused here, not at the first pass
        self.dataset, self.batch_size, self.shuffle, self.generator = dataset, batch_size, shuffle, generator

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.dataset), generator=self.generator) if self.shuffle else None
        for batch in row_blocks(self.dataset, self.batch_size, order):
            yield batch, None


class _PinnedStreamer:
    """Copy batches of host rows to a GPU through two pinned staging buffers.

    Gathering into page-locked memory lets the host-to-device copy run
    asynchronously; a buffer is reused only after its previous copy ended.
    """

    def __init__(self, rows, device):
        self.rows, self.device = rows, device
        self.buffers, self.done = [None, None], [None, None]
        self.turn = 0

    def __call__(self, which):
        k, self.turn = self.turn, 1 - self.turn
        n = which.stop - which.start if isinstance(which, slice) else len(which)
        if self.buffers[k] is None or len(self.buffers[k]) < n:
            self.buffers[k] = torch.empty((n, self.rows.shape[1]), dtype=self.rows.dtype, pin_memory=True)
        if self.done[k] is not None:
            self.done[k].synchronize()
        staging = self.buffers[k][:n]
        if isinstance(which, slice):
            staging.copy_(self.rows[which])
        else:
            torch.index_select(self.rows, 0, which, out=staging)
        batch = staging.to(self.device, non_blocking=True)
        self.done[k] = torch.cuda.Event()
        self.done[k].record(torch.cuda.current_stream(self.device))  # where the copy runs
        return batch


def iter_chunks(X, dtype, device, width=1):
    """The ``row_blocks`` of array ``X`` (for a layer ``width`` wide), as
    tensors of ``dtype`` on ``device``, converted one at a time."""
    numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    for chunk in row_blocks(X, width=width):
        yield _shared_tensor(np.asarray(chunk, dtype=numpy_dtype)).to(device)


def standardization(X, standardize):
    """Per-feature (mean, scale) in float64; zeros and ones when not standardizing.

    With ``standardize="global"`` every feature's scale is the root mean
    feature variance (one number), so that features keep their relative
    variances.

    Computed over row chunks: no full-size temporary, whatever X's dtype.
    """
    n_samples, n_features = X.shape
    if not standardize:
        return np.zeros(n_features), np.ones(n_features)
    with np.errstate(over="ignore", invalid="ignore"):
        # One pass: each chunk's mean and sum of squared deviations, merged
        # as Chan, Golub and LeVeque (1979) do, as stable as two passes.
        count, mean, squares = 0, np.zeros(n_features), np.zeros(n_features)
        for chunk in row_blocks(X):
            rows = len(chunk)
            chunk_mean, chunk_squares = _moments(chunk)
            delta = chunk_mean - mean
            total = count + rows
            squares += chunk_squares + np.square(delta) * (count * rows / total)
            mean += delta * (rows / total)
            count = total
        scale = np.sqrt(squares / n_samples)
    if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
        raise ValueError(
            "X has values too large to standardize in float64 (largest magnitude "
            f"{max(-X.min(), X.max()):.3g}); divide X by a constant first."
        )
    if standardize == "global":
        with np.errstate(over="ignore"):
            root_mean_variance = np.sqrt(np.mean(np.square(scale)))
        # Each feature's variance can be finite while their sum overflows.
        if not np.isfinite(root_mean_variance):
            raise ValueError(
                'standardize="global" divides by the root mean feature variance, which '
                "is too large for float64 here (largest magnitude in X "
                f"{max(-X.min(), X.max()):.3g}); divide X by a constant first, or use "
                "standardize=True (per feature)."
            )
        scale = np.full(n_features, root_mean_variance)
    # Constant features keep their values' spread (none): divide by 1, not 0.
    scale[scale < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)] = 1.0
    return mean, scale


def _moments(chunk):
    """A chunk's per-feature mean and sum of squared deviations, in float64
    NumPy arrays; a tensor's are computed on its device (rows resident on a
    GPU are not copied back to the host)."""
    if isinstance(chunk, torch.Tensor):
        chunk = chunk.to(torch.float64, copy=True)
        chunk_mean = chunk.sum(0) / len(chunk)
        squares = chunk.sub_(chunk_mean).square_().sum(0)
        return chunk_mean.cpu().numpy(), squares.cpu().numpy()
    # C-ordered float64 first: the sums then run in the same order whatever
    # X's layout and dtype, and so give the same bits.
    chunk = np.ascontiguousarray(chunk, dtype=np.float64)
    chunk_mean = chunk.sum(axis=0) / len(chunk)
    deviations = np.subtract(chunk, chunk_mean)  # (chunk may be X itself)
    np.square(deviations, out=deviations)
    return chunk_mean, deviations.sum(axis=0)


def resident_rows(X, device):
    """X as a tensor on ``device`` when that is a GPU and X, C-ordered
    float32 (the rows the network trains on as they are), takes at most
    ``RESIDENT_SHARE`` of its free memory; else X itself.

    ``fit`` moves its rows there before anything reads them, so that the
    statistics, the PCA start and the batches all run on the device and
    the rows cross to it once.
    """
    device = with_index(torch.device(device))
    if device.type != "cuda" or not (X.dtype == np.float32 and X.flags.c_contiguous):
        return X
    rows = _resident(_shared_tensor(X), device)
    return rows if rows.is_cuda else X


def training_dataset(X, mean, scale, standardize, device, covariates=None):
    """The ``RowDataset`` to train on, making at most one copy of X.

    A C-ordered float32 X, or a float32 tensor (``resident_rows``'s), is
    used as it is (standardized batch by batch). Any other X is converted
    once to C-ordered float32, standardized on the way in float64
    arithmetic, chunk by chunk (so large offsets keep their precision and
    no float64 copy is made). ``covariates`` (encoded) are appended to every
    batch.
    """
    if isinstance(X, torch.Tensor) and X.dtype != torch.float32:
        raise TypeError(f"Training rows given as a tensor must be float32 (resident_rows's); got {X.dtype}.")
    if isinstance(X, torch.Tensor) or (X.dtype == np.float32 and X.flags.c_contiguous):
        return RowDataset(X, mean=mean if standardize else None,
                          scale=scale if standardize else None, device=device,
                          covariates=covariates)
    rows = np.empty(X.shape, dtype=np.float32)
    standardization = Standardization(mean, scale)
    with np.errstate(over="ignore"):
        for out, chunk in zip(row_blocks(rows), row_blocks(X), strict=True):
            out[:] = standardization.apply(chunk) if standardize else chunk
    _check_float32_range(rows, standardize, original=X)
    return RowDataset(rows, device=device, covariates=covariates)


def _check_float32_range(rows, standardize, original):
    # Finite float64 values beyond float32's range become inf when converted.
    if not standardize and not (np.isfinite(rows.max()) and np.isfinite(rows.min())):
        raise ValueError(
            "X has values beyond float32's range (largest magnitude "
            f"{max(-original.min(), original.max()):.3g}), the precision the network "
            'trains in; use standardize=True (or "auto") or rescale X.'
        )
