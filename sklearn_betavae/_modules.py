"""Torch modules: the MLP encoder and decoder, and the VAE that joins them."""

import torch
from torch import nn

from ._loss import posterior_std


def _mlp(sizes):
    """Linear layers with ReLU between them (none after the last)."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class MLPEncoder(nn.Module):
    """MLP from the data to the mean and log-variance of q(z|x).

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
        self.head = nn.Linear(sizes[-1], 2 * n_components)

    def forward(self, x):
        mu, logvar = self.head(self.body(x)).chunk(2, dim=-1)
        return mu, logvar


class MLPDecoder(nn.Module):
    """MLP from a latent code to the decoder's mean or success probability.

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

    def forward(self, z):
        return self.body(z)


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
    """

    def __init__(
        self, n_features, n_components, hidden_layer_sizes, default_dist, encoder=None, decoder=None
    ):
        super().__init__()
        hidden = tuple(hidden_layer_sizes)
        self.encoder = (
            MLPEncoder(n_features, hidden, n_components) if encoder is None else encoder
        )
        self.decoder = (
            MLPDecoder(n_components, hidden[::-1], n_features, default_dist)
            if decoder is None
            else decoder
        )

    def forward(self, x):
        mu, logvar = self.encoder(x)
        z = mu + posterior_std(logvar) * torch.randn(mu.shape, generator=getattr(self, "noise_generator", None), dtype=mu.dtype, device=mu.device) if self.training else mu  # noqa: E501
        return self.decoder(z), mu, logvar
