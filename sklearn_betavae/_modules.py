"""Torch modules: the MLP encoder and decoder, and the VAE that joins them."""

import torch
from torch import nn

from ._loss import posterior_std

# The network's precision, whatever torch's global default dtype: batches are
# float32, and with torch.set_default_dtype(torch.float64) (set in many
# scientific notebooks, and by GPyTorch and BoTorch users) float64 layers
# failed every fit on "mat1 and mat2 must have the same dtype", and load
# refused valid files.
DTYPE = torch.float32


def _linear(n_in, n_out):
    return nn.Linear(n_in, n_out, dtype=DTYPE)


def _mlp(sizes):
    """Linear layers with ReLU between them (none after the last)."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [_linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class MLPEncoder(nn.Module):
    """MLP from the data to the mean and log-variance of q(z|x).

    With hidden layers the output is the sum of a
    linear map of the input (``linear``) and the MLP (``body`` then
    ``head``), so that the network can start exactly at probabilistic PCA
    (``linear`` at the pPCA posterior, ``head`` at zero) and learn only the
    nonlinear residual. Without hidden layers ``head`` is the linear map.

    Parameters
    ----------
    n_features : int
        Input size.
    hidden_layer_sizes : tuple of int
        Widths of the hidden layers, first to last.
    n_components : int
        Latent size.
    """

    def __init__(self, n_features, hidden_layer_sizes, n_components):
        super().__init__()
        sizes = (n_features, *hidden_layer_sizes)
        self.body = nn.Sequential(_mlp(sizes), nn.ReLU()) if hidden_layer_sizes else nn.Identity()
        self.head = _linear(sizes[-1], 2 * n_components)
        self.linear = _linear(n_features, 2 * n_components) if hidden_layer_sizes else None

    def forward(self, x):
        out = self.head(self.body(x))
        if self.linear is not None:
            out = out + self.linear(x)
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar

    def linear_map(self):
        """The ``nn.Linear`` from the data to ``(mu, logvar)``: the linear
        path, or the whole encoder when it has no hidden layers."""
        return self.head if self.linear is None else self.linear

    def residual_output_layer(self):
        """The MLP's last layer (None without hidden layers): zero it and
        the MLP adds nothing to the linear path."""
        return None if self.linear is None else self.head

    @staticmethod
    def input_weight_names(hidden_layer_sizes):
        """Names (in this module) of the weights that read the input: the
        first hidden layer's and the linear path's, or ``head``'s without
        hidden layers. Each has one column per feature."""
        if not hidden_layer_sizes:
            return ["head.weight"]
        return ["body.0.0.weight", "linear.weight"]


class MLPDecoder(nn.Module):
    """MLP from a latent code to the decoder's mean or success probability.

    As the encoder, with hidden layers it adds a
    linear map of the code (``linear``) to the MLP (``body``), before the
    sigmoid of the Bernoulli decoder.

    Parameters
    ----------
    n_components : int
        Latent size.
    hidden_layer_sizes : tuple of int
        Widths of the hidden layers, first to last (the reverse of the
        encoder's, so the decoder mirrors it).
    n_features : int
        Output size.
    default_dist : {"normal", "laplace", "bernoulli"}
        ``"bernoulli"`` ends in a sigmoid, so the output is a probability.
    """

    def __init__(self, n_components, hidden_layer_sizes, n_features, default_dist):
        super().__init__()
        layers = [_mlp((n_components, *hidden_layer_sizes, n_features))]
        if default_dist == "bernoulli":
            layers.append(nn.Sigmoid())
        self.body = nn.Sequential(*layers)
        self.linear = _linear(n_components, n_features) if hidden_layer_sizes else None

    def forward(self, z):
        if self.linear is None:
            return self.body(z)
        mlp, *sigmoid = self.body
        out = mlp(z) + self.linear(z)
        return sigmoid[0](out) if sigmoid else out

    def linear_map(self):
        """The ``nn.Linear`` from codes to the output (before any sigmoid)."""
        return self.body[0][-1] if self.linear is None else self.linear

    def residual_output_layer(self):
        """The MLP's last layer (None without hidden layers)."""
        return None if self.linear is None else self.body[0][-1]


class VAEModule(nn.Module):
    """A VAE: encode to (mu, logvar), sample by reparameterisation, decode.

    In training mode the code is ``mu + exp(logvar / 2) * eps`` (``logvar``
    clamped to ``LOGVAR_RANGE``, as everywhere) with
    ``eps ~ N(0, I)``; in evaluation mode it is the posterior mean, so
    inference is deterministic. The forward pass returns
    ``(decoder_output, mu, logvar)``.

    Built from plain values (skorch's ``module__*`` idiom), so a pickled net
    holds no tensors outside skorch's device-mapped state.

    Parameters
    ----------
    n_features : int
        Data size.
    n_components : int
        Latent size.
    hidden_layer_sizes : tuple of int
        Encoder widths; the built-in decoder mirrors them.
    default_dist : {"normal", "laplace", "bernoulli"}
        Decoder distribution (a sigmoid ends the built-in Bernoulli decoder).
    encoder, decoder : nn.Module or None, default=None
        Replace the built-in MLPs. The encoder maps a batch of data to
        ``(mu, logvar)``; the decoder maps codes to the decoder output.
    n_covariates : int, default=0
        The number of encoded covariate columns, which follow the
        ``n_features`` data columns of every input batch: the encoder reads
        the whole row (data and covariates), the decoder the code with the
        covariates appended (a conditional VAE).
    """

    def __init__(
        self, n_features, n_components, hidden_layer_sizes, default_dist, encoder=None,
        decoder=None, n_covariates=0,
    ):
        super().__init__()
        hidden = tuple(hidden_layer_sizes)
        self.n_covariates = n_covariates
        self.encoder = (
            MLPEncoder(n_features + n_covariates, hidden, n_components) if encoder is None else encoder
        )
        self.decoder = (
            MLPDecoder(n_components + n_covariates, hidden[::-1], n_features, default_dist)
            if decoder is None
            else decoder
        )

    def forward(self, x):
        mu, logvar = self.encoder(x)
        z = mu + posterior_std(logvar) * torch.randn(mu.shape, generator=getattr(self, "noise_generator", None), dtype=mu.dtype, device=mu.device) if self.training else mu  # noqa: E501
        return self.decoder(self.decoder_input(z, x)), mu, logvar

    def decoder_input(self, z, x):
        """What the decoder reads for codes ``z`` of the input rows ``x``: the
        codes, with the rows' covariate columns appended when there are any."""
        if not self.n_covariates:
            return z
        return torch.cat([z, x[:, x.shape[1] - self.n_covariates:].to(z.dtype)], dim=1)
