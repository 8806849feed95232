"""The probabilistic-PCA start of the built-in network (``init="pca"``).

With the normal decoder the loss of a sample is

    ||x - f(z)||^2 + beta * KL(q(z|x) || N(0, I)),

which is ``2 s2`` times the negative ELBO of the Gaussian likelihood
``N(f(z), s2 I)`` with ``s2 = beta / 2``, up to a constant (the loss is
squared error without the factor 1/2). For a linear decoder
``f(z) = W z + m`` the ELBO is highest at the maximum-likelihood solution of
probabilistic PCA with that fixed noise variance (Tipping and Bishop, 1999;
Lucas et al., 2019, show that a linear VAE with a diagonal posterior reaches
it). With ``lambda_i`` and ``u_i`` the eigenvalues and eigenvectors of the
training rows' covariance (divided by n, as the loss averages over rows):

- decoder: ``W = U (Lambda - s2)^{1/2}`` and ``m`` the rows' mean; a
  component with ``lambda_i <= s2`` gets a zero column (it is switched off);
- encoder: ``q(z|x) = N(M^{-1} W^T (x - m), s2 M^{-1})`` with
  ``M = W^T W + s2 I``, which is diagonal: the mean of latent i is
  ``sqrt(lambda_i - s2) / lambda_i * u_i^T (x - m)`` and its log-variance the
  constant ``log(s2 / lambda_i)``; a switched-off latent has mean 0 and
  variance 1, the prior.

The built-in network is the linear path plus an MLP whose last layers start
at zero, so it starts at this solution (see ``fit_pca`` for how exactly the
PCA is computed) and training learns only what
the nonlinear part adds. With ``hidden_layer_sizes=()`` it is the linear
model itself, whose subspace is PCA's.
"""

import numpy as np
import torch
from scipy import linalg
from sklearn.decomposition import PCA
from sklearn.utils import check_random_state
from sklearn.utils.extmath import svd_flip

from . import _data
from ._loss import LOGVAR_RANGE
from ._modules import MLPDecoder, MLPEncoder


def ppca_solution(eigenvalues, beta, floor=0.0):
    """Per-component encoder gain, log-variance and decoder scale of the pPCA optimum.

    Parameters
    ----------
    eigenvalues : ndarray of shape (n_components,)
        Covariance eigenvalues (divided by n), largest first.
    beta : float
        The loss's KL weight; the implied noise variance is ``beta / 2``.
    floor : float, default=0.0
        Eigenvalues at or below it count as zero (rounding errors of a
        rank-deficient covariance), whatever ``beta``.

    Returns
    -------
    gain : ndarray
        ``sqrt(lambda - s2) / lambda`` (0 where switched off): the encoder
        mean is ``gain * u^T (x - m)``.
    logvar : ndarray
        ``log(s2 / lambda)`` (0 where switched off), clamped to the
        network's ``LOGVAR_RANGE`` (``beta=0`` gives a zero posterior
        variance).
    loading : ndarray
        ``sqrt(lambda - s2)`` (0 where switched off): the decoder column
        is ``loading * u``.
    """
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    noise = beta / 2.0
    active = eigenvalues > max(noise, floor)
    # np.where evaluates both branches; keep the inactive ones harmless.
    safe = np.where(active, eigenvalues, 1.0)
    loading = np.where(active, np.sqrt(np.where(active, safe - noise, 0.0)), 0.0)
    gain = np.where(active, loading / safe, 0.0)
    with np.errstate(divide="ignore"):
        logvar = np.where(active, np.log(noise / safe), 0.0)
    return gain, np.clip(logvar, *LOGVAR_RANGE), loading


def training_rows(net, dataset, stored=False):
    """A callable giving, at each call, the rows ``net`` trains on (its
    validation split left out) in chunks, in order; their number; and the
    standardization still to apply to them.

    Chunks of rows on the CPU come as NumPy arrays (NumPy's products and
    sums are the faster there); rows resident on a GPU stay there as
    tensors, so that the start's passes run on the device and only their
    sums come back. With ``stored=False`` the rows come standardized
    (float32, covariate columns appended) and the standardization is None.
    With ``stored=True`` they come as the dataset stores them, before any
    standardization it applies batch by batch, which is then returned:
    ``fit_pca`` applies it to its few basis vectors instead of to every row
    at every pass.
    """
    train_part, _ = net.get_split_datasets(dataset)
    standardization = _data.on_the_fly_standardization(train_part) if stored else None
    if standardization is None:
        def chunks():
            return (_numpy_on_cpu(rows.float()) for rows in _data.row_blocks(train_part))
    else:
        def chunks():
            return (_numpy_on_cpu(rows) for rows in _data.stored_row_blocks(train_part))

    return chunks, len(train_part), standardization


def _numpy_on_cpu(rows):
    return rows.numpy() if rows.device.type == "cpu" else rows


def covariate_regression(chunks, n_features):
    """Least-squares coefficients of the data columns of the rows that
    ``chunks()`` yields on an intercept and their covariate columns (those
    after the first ``n_features``): an array ``(1 + n_covariates,
    n_features)``, the intercept first, summed over chunks without a copy
    of the rows. One-hot levels with the intercept are collinear: the
    minimum-norm solution is taken, whose fitted values are the same."""
    def terms(chunk):
        design, data = _design(chunk, n_features), _cast(chunk[:, :n_features], "float64")
        return design.T @ design, design.T @ data

    gram, cross = _sums(chunks(), terms)
    return np.linalg.lstsq(gram, cross, rcond=None)[0]


def _design(chunk, n_features):
    covariates = _cast(chunk[:, n_features:], "float64")
    if isinstance(covariates, torch.Tensor):
        return torch.cat([covariates.new_ones((len(chunk), 1)), covariates], 1)
    return np.hstack([np.ones((len(chunk), 1)), covariates])


def _residuals(chunks, n_features, coef):
    """A ``chunks`` callable of the data columns less their regression on the
    covariates."""
    def residual_chunks():
        coef_beside = _once_per_pass(lambda chunk: _like(coef, chunk))
        for chunk in chunks():
            yield _cast(chunk[:, :n_features], "float64") - _design(chunk, n_features) @ coef_beside(chunk)

    return residual_chunks


# Chunks are NumPy arrays or (rows resident on a GPU) tensors on their
# device; these few helpers let one arithmetic serve both.


def _cast(chunk, dtype):
    """``chunk`` in ``dtype`` (``"float32"`` or ``"float64"``), not copied
    when it already is."""
    if isinstance(chunk, torch.Tensor):
        return chunk.to(getattr(torch, dtype))
    return np.asarray(chunk, dtype=dtype)


def _like(array, chunk):
    """A NumPy ``array`` beside ``chunk``: itself, or a tensor on ``chunk``'s device."""
    return torch.as_tensor(array, device=chunk.device) if isinstance(chunk, torch.Tensor) else array


def _once_per_pass(make):
    """``chunk -> make(chunk)``, made at a pass's first chunk and reused for
    the others: a pass's chunks are all of one kind, on one device, so what
    they are combined with is converted (or sent to the device) once, not
    at every chunk."""
    made = []

    def beside(chunk):
        if not made:
            made.append(make(chunk))
        return made[0]

    return beside


def _product_dtype(chunk):
    """The precision of the randomized PCA's products with the rows:
    float32, theirs, for NumPy chunks (NumPy's float32 products are the fast
    ones on a CPU); float64 for tensors, which a GPU multiplies fast either
    way and which TF32, where a user has turned it on for float32 products,
    would round to about 1e-3."""
    return "float64" if isinstance(chunk, torch.Tensor) else "float32"


def _column_sums(chunk):
    """The sum of each column, in float64."""
    if isinstance(chunk, torch.Tensor):
        return chunk.sum(0, dtype=torch.float64)
    return chunk.sum(axis=0, dtype=np.float64)


def _column_squares(chunk):
    """The sum of each column's squares, in float64."""
    if isinstance(chunk, torch.Tensor):
        return chunk.double().square().sum(0)
    return np.einsum("ij,ij->j", chunk, chunk, dtype=np.float64)


def _sums(chunks, terms):
    """The sums over ``chunks`` of each array that ``terms(chunk)`` returns,
    accumulated where the chunks are and returned as NumPy arrays: rows on a
    GPU send one pass's sums to the host, not every chunk."""
    totals = None
    for chunk in chunks:
        values = terms(chunk)
        if totals is None:
            totals = list(values)
        else:
            for total, value in zip(totals, values, strict=True):
                total += value
    return [total.cpu().numpy() if isinstance(total, torch.Tensor) else total for total in totals]


def fit_pca(chunks, n_rows, n_features, n_components, random_state, n_iter=7,
            standardization=None):
    """PCA of the rows that ``chunks()`` yields, without a copy of them.

    scikit-learn's ``PCA`` needs the centred rows in memory, a copy of X, so
    it is used only when the rows come as one chunk (about
    ``_data.CHUNK_VALUES`` values at most, a chunk-sized copy). Otherwise,
    when the ``n_features x n_features`` scatter matrix
    ``(X - mean)^T (X - mean)`` is no larger than a chunk (up to 2,896
    features), it is summed chunk by chunk in float64 and diagonalised:
    exact. Wider data get randomized subspace iteration (Halko, Martinsson
    and Tropp, 2011) on that scatter matrix, applied one chunk at a time,
    with scikit-learn's randomized-PCA settings for few components
    (``k + 10`` dimensions, 7 iterations) and a final Rayleigh-Ritz step.
    Its products with the rows run in float32, the rows' own precision (as
    scikit-learn's for float32 X), and the centring and standardization are
    applied to the basis, not to the rows: each pass costs two
    matrix products and no elementwise pass over X. Rows whose mean is far
    from zero next to their spread are shifted near zero first, so that the
    float32 products keep the centred part. Leading components with a
    spectral gap are found to float32 rounding, those in a flat noise
    spectrum within a few percent. Only a few ``n_features x (k + 10)``
    arrays and one chunk are held, so the start keeps ``fit``'s promise of
    at most one copy of X. At most ``n_rows - 1`` components have a
    non-zero variance; fewer are returned then.

    The chunks are NumPy arrays or tensors; the passes over tensors run on
    their device (a GPU, for rows resident there; the randomized products in
    float64 there, see ``_product_dtype``), and only each pass's sums come
    to the host, where the small factorisations run.

    Parameters
    ----------
    chunks : callable
        Returns an iterable over the rows in chunks, anew at each call.
    standardization : _data.Standardization or None, default=None
        When given, the PCA is that of the standardized rows
        ``(row - mean) / scale``, the rows being given as they are.

    Returns
    -------
    mean : ndarray of shape (n_features,)
    components : ndarray of shape (k, n_features)
        Orthonormal rows, the directions of largest variance first.
    eigenvalues : ndarray of shape (k,)
        Their variances, divided by ``n_rows``.
    explained : ndarray of shape (k,)
        The share of the rows' total variance each explains.
    """
    if standardization is None:
        standardization = _data.Standardization(np.zeros(n_features), np.ones(n_features))
    scale = standardization.scale_array
    raw_mean = _sums(chunks(), lambda chunk: (_column_sums(chunk),))[0] / n_rows
    mean = standardization.apply(raw_mean)
    k = min(n_components, n_rows - 1, n_features)
    if k < 1:
        return mean, np.zeros((0, n_features)), np.zeros(0), np.zeros(0)
    if n_rows * n_features <= _data.CHUNK_VALUES:
        # The rows the network trains on, bit for bit (float64 arithmetic,
        # rounded once to the rows' dtype), as one chunk-sized array.
        host = [chunk.cpu().numpy() if isinstance(chunk, torch.Tensor) else chunk for chunk in chunks()]
        rows = np.concatenate([standardization.apply(chunk).astype(chunk.dtype) for chunk in host])
        pca = PCA(k, svd_solver="full").fit(rows)
        return (rows.sum(axis=0, dtype=np.float64) / n_rows, pca.components_.astype(np.float64),
                pca.singular_values_.astype(np.float64) ** 2 / n_rows,
                np.nan_to_num(pca.explained_variance_ratio_.astype(np.float64)))
    if n_features**2 <= _data.CHUNK_VALUES:
        # The whole scatter matrix, summed in float64 and diagonalised.
        centring = _once_per_pass(lambda chunk: (_like(raw_mean, chunk), _like(scale, chunk)))

        def scatter_of(chunk):
            mean_beside, scale_beside = centring(chunk)
            centred = (chunk - mean_beside) / scale_beside
            return (centred.T @ centred,)

        scatter = _sums(chunks(), scatter_of)[0]
        values, vectors = linalg.eigh(scatter)
        order = np.argsort(values)[::-1][:k]
        eigenvalues = np.maximum(values[order], 0.0) / n_rows
        total = np.trace(scatter)
        explained = eigenvalues * n_rows / total if total > 0 else np.zeros(k)
        return mean, _signed(vectors[:, order].T), eigenvalues, explained
    return (mean, *_randomized_pca(chunks, n_rows, raw_mean, scale, k, random_state, n_iter))


# Rows whose mean is more than this many (standardized) spreads from zero are
# shifted near zero before the float32 products of the randomized PCA.
FAR_FROM_ZERO = 16


def _randomized_pca(chunks, n_rows, raw_mean, scale, k, random_state, n_iter):
    """``fit_pca``'s randomized subspace iteration, for the rows ``chunks()``
    yields as they are, their mean ``raw_mean``, divided by ``scale``."""
    n_features = len(raw_mean)
    # A float32 product of rows loses about 6e-8 of their magnitude; far from
    # zero next to their spread, that would be a large part of what varies.
    # (Any shift is undone exactly by the centring below.)
    far = np.max(np.abs(raw_mean) / scale) > FAR_FROM_ZERO
    shift = raw_mean.astype(np.float32) if far else np.zeros(n_features, dtype=np.float32)
    offset = raw_mean - shift  # the mean of the shifted rows, in float64

    def centred_codes(basis):
        """``chunk -> (shifted chunk, (chunk - mean) / scale @ basis)``, the
        product in ``_product_dtype``, where the chunk is; the basis is
        scaled once, not at every chunk."""
        scaled = basis / scale[:, None]
        offset_codes = offset @ scaled
        terms = _once_per_pass(lambda chunk: (
            _product_dtype(chunk),
            *(_cast(_like(a, chunk), _product_dtype(chunk)) for a in (shift, scaled)),
            _like(offset_codes, chunk),
        ))

        def encode(chunk):
            dtype, shift_beside, scaled_beside, offset_codes_beside = terms(chunk)
            chunk = _cast(chunk, dtype)
            if far:
                chunk = chunk - shift_beside
            return chunk, _cast(chunk @ scaled_beside, "float64") - offset_codes_beside

        return encode

    def summed(basis, terms):
        """``terms(shifted chunk, its codes on basis)`` summed over the chunks."""
        encode = centred_codes(basis)
        return _sums(chunks(), lambda chunk: terms(*encode(chunk)))

    def scatter_times_codes(chunk, codes):
        return _cast(chunk.T @ _cast(codes, _product_dtype(chunk)), "float64"), codes.sum(0)

    def codes_scatter_and_squares(chunk, codes):
        return codes.T @ codes, _column_squares(chunk)

    width = min(k + 10, n_features)
    rng = check_random_state(random_state)
    basis = linalg.qr(rng.standard_normal((n_features, width)), mode="economic")[0]
    for _ in range(n_iter):
        # ((rows - offset) / scale)^T @ codes, summed over the chunks: the
        # offset and the scale are applied once, after the sums.
        product, code_sums = summed(basis, scatter_times_codes)
        scatter_basis = (product - np.outer(offset, code_sums)) / scale[:, None]
        basis = linalg.qr(scatter_basis, mode="economic", overwrite_a=True)[0]
    projected, squares = summed(basis, codes_scatter_and_squares)
    total = float(np.sum((squares - n_rows * offset**2) / scale**2))
    values, vectors = linalg.eigh(projected)
    order = np.argsort(values)[::-1][:k]
    eigenvalues = np.maximum(values[order], 0.0) / n_rows
    explained = eigenvalues * n_rows / total if total > 0 else np.zeros(k)
    return _signed((basis @ vectors[:, order]).T), eigenvalues, explained


def _signed(components):
    """``components`` (fresh arrays, signed in place) with each one's largest
    loading made positive, as scikit-learn signs ``PCA.components_`` (its
    ``svd_flip``): an eigensolver may return either sign, and which one can
    change with the last bits of its input (another device, another BLAS),
    so the start would otherwise differ by a flip."""
    return svd_flip(None, components, u_based_decision=False)[1]


def pca_start(net, dataset, beta, random_state, log=None):
    """Set ``net``'s built-in linear paths to the pPCA optimum of its training rows.

    The MLPs' last layers are set to zero, so the network's output is the
    linear paths' alone. Only the rows ``net`` trains on are used (not its
    validation split).

    Parameters
    ----------
    net : BetaVAENet
        Initialised, with the built-in encoder and decoder.
    dataset : RowDataset
        The standardized training data, as ``fit`` passes it to skorch.
    beta : float
    random_state : int
        Seeds the randomized PCA solver.
    log : callable or None, default=None
        Called with one line describing the start.

    Returns
    -------
    n_active : int
        The number of latents whose eigenvalue exceeds ``beta / 2``.
    """
    module = net.vae_module()
    encoder, decoder = module.encoder, module.decoder
    if not (isinstance(encoder, MLPEncoder) and isinstance(decoder, MLPDecoder)):
        raise TypeError('init="pca" needs the built-in encoder and decoder.')
    n_components = encoder.linear_map().out_features // 2
    n_covariates = module.n_covariates
    n_features = encoder.linear_map().in_features - n_covariates
    chunks, n_rows, standardization = training_rows(net, dataset, stored=not n_covariates)
    if n_covariates:
        # The conditional model's linear optimum: pPCA of what the covariates'
        # linear effect leaves, that effect in the decoder's covariate weights.
        with np.errstate(all="ignore"):
            coef = covariate_regression(chunks, n_features)
        chunks = _residuals(chunks, n_features, coef)
    with np.errstate(all="ignore"):
        mean, components, eigenvalues, explained = fit_pca(
            chunks, n_rows, n_features, n_components, random_state,
            standardization=standardization,
        )
    if not all(np.isfinite(a).all() for a in (mean, components, eigenvalues)):
        raise ValueError(
            'init="pca": the PCA of the training rows is not finite (the values are '
            'too large); rescale X, standardize it (standardize="auto") or use init="random".'
        )
    # As numpy's matrix_rank: singular values below the largest times
    # max(n, d) times float32's epsilon (the rows' precision) are rounding.
    floor = (eigenvalues.max(initial=0.0)
             * (max(n_rows, n_features) * np.finfo(np.float32).eps) ** 2)
    gain, logvar, loading = ppca_solution(eigenvalues, beta, floor)
    k = len(eigenvalues)
    enc_weight = np.zeros((2 * n_components, n_features + n_covariates))
    enc_bias = np.zeros(2 * n_components)
    enc_weight[:k, :n_features] = gain[:, None] * components
    enc_bias[n_components:n_components + k] = logvar
    dec_weight = np.zeros((n_features, n_components + n_covariates))
    dec_weight[:, :k] = components.T * loading
    if n_covariates:
        # x = intercept + effects^T c + W z: the encoder reads x less what
        # the covariates explain.
        intercept, effects = coef[0], coef[1:]
        enc_weight[:k, n_features:] = -enc_weight[:k, :n_features] @ effects.T
        dec_weight[:, n_components:] = effects.T
        mean = mean + intercept
    enc_bias[:k] = -enc_weight[:k, :n_features] @ mean
    with torch.no_grad():
        _assign(encoder.linear_map(), enc_weight, enc_bias)
        _assign(decoder.linear_map(), dec_weight, mean)
        for layer in (encoder.residual_output_layer(), decoder.residual_output_layer()):
            if layer is not None:
                layer.weight.zero_()
                layer.bias.zero_()
    active = loading > 0
    if log is not None:
        log(
            f"PCA start on {n_rows} training rows: {int(active.sum())} of {n_components} latents "
            f"in use (covariance eigenvalue above beta / 2 = {beta / 2:g}), explaining "
            f"{100 * explained[active].sum():.1f}% of the variance."
        )
    return int(active.sum())


def _assign(layer, weight, bias):
    layer.weight.copy_(torch.as_tensor(weight, dtype=layer.weight.dtype))
    layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))
