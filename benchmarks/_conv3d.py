"""A small 3D convolutional encoder and decoder for masked brain images.

For ``BetaVAETransformer(encoder=..., decoder=...)`` on the rows that
nilearn's ``NiftiMasker`` gives (one row per subject, one column per voxel
of the mask, in the C order of the mask's boolean array). The encoder
scatters a row back into the mask's bounding box (zeros outside the mask),
runs strided ``Conv3d`` layers, flattens and maps to ``(mu, logvar)``; the
decoder mirrors it (``Linear``, then ``ConvTranspose3d`` layers that double
the size each) and gathers the mask's voxels again.

Used by ``bench_brain_factors.py`` (lever ``conv3d``).
"""

import numpy as np
import torch
from torch import nn


def _grid(mask, n_strides):
    """The mask's bounding box, padded to a multiple of 2**n_strides, and the voxels' flat indices in it."""
    mask = np.asarray(mask, dtype=bool)
    lo = [int(np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != d)))[0]) for d in range(3)]
    hi = [int(np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != d)))[-1]) + 1 for d in range(3)]
    box = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    step = 2**n_strides
    shape = tuple(-(-n // step) * step for n in box.shape)
    padded = np.zeros(shape, dtype=bool)
    padded[: box.shape[0], : box.shape[1], : box.shape[2]] = box
    # C order of the box = C order of the mask restricted to it, as NiftiMasker orders voxels.
    return shape, np.flatnonzero(padded)


class Conv3dEncoder(nn.Module):
    """Masked voxels (batch, n_voxels) -> (mu, logvar), each (batch, n_components)."""

    def __init__(self, mask, n_components, channels=(8, 16)):
        super().__init__()
        shape, index = _grid(mask, len(channels))
        self.shape = shape
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long))
        layers, n_in = [], 1
        for n_out in channels:
            layers += [nn.Conv3d(n_in, n_out, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            n_in = n_out
        self.body = nn.Sequential(*layers, nn.Flatten())
        n_flat = channels[-1] * int(np.prod([n // 2 ** len(channels) for n in shape]))
        self.head = nn.Linear(n_flat, 2 * n_components)

    def forward(self, x):
        grid = x.new_zeros(x.shape[0], int(np.prod(self.shape))).index_copy(1, self.index, x)
        mu, logvar = self.head(self.body(grid.view(-1, 1, *self.shape))).chunk(2, dim=-1)
        return mu, logvar


class Conv3dDecoder(nn.Module):
    """Codes (batch, n_components) -> masked voxels (batch, n_voxels); the encoder mirrored."""

    def __init__(self, mask, n_components, channels=(8, 16)):
        super().__init__()
        shape, index = _grid(mask, len(channels))
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long))
        self.small = (channels[-1], *[n // 2 ** len(channels) for n in shape])
        self.head = nn.Sequential(nn.Linear(n_components, int(np.prod(self.small))), nn.ReLU())
        layers, widths = [], (*channels[::-1], 1)
        for n_in, n_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose3d(n_in, n_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers[:-1])  # no ReLU after the last: a mean in z-score units

    def forward(self, z):
        grid = self.body(self.head(z).view(-1, *self.small))
        return grid.flatten(1).index_select(1, self.index)


def conv3d_modules(mask, n_components, channels=(8, 16), random_state=0):
    """An (encoder, decoder) pair with weights initialised from ``random_state``.

    The global torch random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        return (Conv3dEncoder(mask, n_components, channels),
                Conv3dDecoder(mask, n_components, channels))
