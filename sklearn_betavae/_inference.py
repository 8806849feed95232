"""Inference with a fitted network: the network itself, run over row chunks.

The network runs in the precision it was trained in (float32), on the
fitted module itself: no copy of the weights is made, so a call costs what
a plain PyTorch pass costs (``benchmarks/bench_inference.py``), also on a
GPU, where float64 runs 30-60 times slower. Everything around the network
is computed in float64: the standardization on the way in (rounded once to
the network's dtype, in reused buffers: ``Standardization.chunks``; float32
rows, which hold no more precision, are standardized in float32 by torch,
in parallel and on the device) and out, the sums of the log-likelihood, the
KL term and the outputs. Results therefore depend on how rows are chunked
only through the network's float32 rounding (about 1e-7 of the values;
measured in ``tests/test_inference.py``).

Chunks of rows are sized so that each of their layers' activations holds
about ``_data.CHUNK_VALUES`` values, the widest layer counting, not only the
input: memory stays bounded for narrow data too, and a ``numpy.memmap`` is
never loaded whole. Nothing is written to the module (it is left in
evaluation mode by ``fit``), so one fitted estimator serves several threads
at once.
"""

import numpy as np
import torch

from ._data import Standardization, iter_chunks
from ._loss import (
    kl_per_latent,
    kl_per_sample,
    posterior_distribution,
    posterior_std,
    unit_log_likelihood_per_sample,
)


def elbo_noise(n_components, n_pairs=8):
    """Fixed antithetic standard-normal draws for the Monte Carlo ELBO."""
    generator = torch.Generator().manual_seed(0)
    eps = torch.randn(n_pairs, n_components, generator=generator, dtype=torch.float64)
    return torch.cat([eps, -eps])


class FittedModel:
    """A fitted VAE module with its standardization, for NumPy in, NumPy out.

    Parameters
    ----------
    module : VAEModule
        Used as it is (never copied or modified); it must be in evaluation
        mode, as ``fit`` leaves it.
    mean, scale : ndarray of shape (n_features,)
        The standardization the module was trained behind.
    default_dist : str
    device : torch.device
    covariates : ndarray of shape (n_rows, n_covariates) or None, default=None
        The encoded covariates of the rows (of X or of codes Z) that the
        methods are then given: the network reads them after each row.
    check_rows : callable or None, default=None
        Given, the rows that ``encode``, ``latent_kl`` and ``elbo`` receive
        were not checked for NaN and infinity on the host: each chunk is
        checked where it is standardized (on a GPU, where the host's pass
        over X is a large share of a plain pass: ``benchmarks/README.md``),
        and where one is not finite ``check_rows(X)`` raises the caller's
        error (returning, for finite rows whose standardization overflowed,
        leaves them to the methods' own checks).
    """

    def __init__(self, module, mean, scale, default_dist, device, covariates=None, check_rows=None):
        self.module = module
        parameters = [p for p in module.parameters() if p.ndim]
        self.dtype = parameters[0].dtype if parameters else torch.float32
        # The widest layer, from the parameters' shapes (a Linear's weight
        # is out x in): chunk rows times it bounds the activations.
        self.width = max((max(p.shape) for p in parameters), default=1)
        self.standardization = Standardization(mean, scale, device)
        self.default_dist = default_dist
        self.device = device
        self.covariates = covariates
        self.check_rows = check_rows
        self.n_features = self.standardization.mean_array.size

    def map_chunks(self, X, fn):
        """Apply ``fn`` to row chunks of X, standardized and in the network's
        dtype, and concatenate its outputs on the CPU."""
        # Filled chunk by chunk: concatenating would hold the output twice.
        result, start, finite = None, 0, None
        with torch.inference_mode():
            for chunk in self.standardization.chunks(X, self.dtype, self.device, self.width):
                if self.check_rows is not None:
                    # Whether its sum is finite, as scikit-learn's own check
                    # starts: one pass (isfinite(chunk).all() makes several,
                    # with temporaries); a finite chunk whose sum overflows
                    # costs only check_rows's pass. Kept on the device, read
                    # after the last chunk.
                    chunk_finite = torch.isfinite(chunk.sum())
                    finite = chunk_finite if finite is None else finite.logical_and_(chunk_finite)
                values = fn(self.with_covariates(chunk, start)).cpu().numpy()
                if result is None:
                    result = np.empty((X.shape[0], *values.shape[1:]), dtype=values.dtype)
                result[start:start + len(values)] = values
                start += len(values)
        if finite is not None and not finite.item():
            self.check_rows(X)
        return result

    def with_covariates(self, rows, start):
        """``rows`` (the chunk of rows from ``start`` on), with their
        covariates appended when there are any."""
        if self.covariates is None:
            return rows
        covariates = torch.as_tensor(self.covariates[start:start + len(rows)], device=rows.device)
        return torch.cat([rows, covariates.to(rows.dtype)], 1)

    def encoder(self, x):
        """(mu, logvar), in float64, of standardized rows in the network's dtype."""
        mu, logvar = self.module.encoder(x.to(self.dtype))
        return mu.double(), logvar.double()

    def encode(self, X):
        """Posterior means of the rows of X (ValueError where they overflow)."""
        return _finite(self.map_chunks(X, lambda x: self.encoder(x)[0]), "transform", _FAR_ROWS)

    def decode(self, Z):
        """Decoder outputs of codes Z, in the input's units (ValueError where
        they overflow)."""
        result = np.empty((Z.shape[0], self.standardization.mean_array.size))
        start = 0
        with torch.inference_mode():
            for z in iter_chunks(Z, torch.float64, self.device, width=self.width):
                z = self.with_covariates(z.to(self.dtype), start)
                output = self.module.decoder(z)
                rows = result[start:start + len(output)]
                if output.device.type == "cpu":
                    # Straight into the result: no float64 copy of the output.
                    self.standardization.invert_into(output, rows)
                else:
                    # One copy from the device straight into the result: no
                    # host tensor in between, and no second pass over it.
                    torch.from_numpy(rows).copy_(self.standardization.invert(output))
                start += len(output)
        return _finite(result, "inverse_transform", _FAR_CODES)

    def latent_kl(self, X):
        """KL(q(z_j|x) || N(0, 1)) per row and latent (ValueError where it
        overflows)."""
        kl = self.map_chunks(X, lambda x: kl_per_latent(posterior_distribution(*self.encoder(x))))
        return _finite(kl, "latent_kl", _FAR_ROWS)

    def elbo(self, X):
        """Monte Carlo ELBO of each row over fixed antithetic draws (see
        ``BetaVAETransformer.score_samples``); -inf where it overflows."""
        log_jacobian = self.standardization.log_jacobian()

        def bound(x):
            # x is standardized once, for the encoder and the likelihood, both
            # in the network's dtype (the likelihood summed in float64).
            mu, logvar = self.encoder(x)
            eps = elbo_noise(mu.shape[1]).to(self.device)
            std = posterior_std(logvar)
            data = x[:, :self.n_features]
            log_lik = sum(
                unit_log_likelihood_per_sample(
                    data, self.module.decoder(self.module.decoder_input((mu + std * e).to(self.dtype), x)),
                    self.default_dist,
                )
                for e in eps
            ) / len(eps)
            value = log_lik - kl_per_sample(posterior_distribution(mu, logvar)) - log_jacobian
            # X is finite, so NaN here only comes from overflow (inf - inf) on
            # rows far outside the training data, whose bound is below range.
            return torch.where(torch.isnan(value), -torch.inf, value)

        return self.map_chunks(X, bound)


_FAR_ROWS = ("they lie so far outside the training data that the network overflows "
             "its float32 range; rescale them or leave them out")
_FAR_CODES = ("they lie so far from the prior N(0, I) that the decoder overflows "
              "its float32 range; codes from transform or sample are a few units at most")


def _finite(result, method, why):
    """``result``, or a ValueError naming the rows where it is not finite: the
    methods promise finite outputs or an error."""
    bad = ~np.isfinite(result.reshape(len(result), -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{method} would give non-finite values for {len(rows)} row(s) of X "
            f"(first: row {rows[0]}): {why}."
        )
    return result
