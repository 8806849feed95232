"""The disentanglement metrics on codes of known quality, on the sprites' factor grid.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_metric_calibration.py [--seeds 0 1 2]
        [--n-votes 2000] [--n-codes 2000] [--dci-estimators 20]

What number does each metric give a code that is perfectly disentangled,
one that holds every factor but mixed, one that misses a factor? No model
is trained: the "encoder" reads the true factor classes of each image of
the dSprites grid (3 shapes, 6 scales, 40 orientations, 32 x 32 positions;
``make_sprites``' ``factor_sizes``) and maps them to 10 latents (as the
methods of ``bench_sprites.py``), the five unused ones constant:

* ``axis-aligned``: latent j is factor j's class divided by its number of
  classes less one (each in [0, 1]);
* ``axis-aligned + noise``: the same plus Gaussian noise of standard
  deviation 0.05 (about one position step of 32 is 0.032);
* ``axis-aligned, warped``: latent j a monotone nonlinear function of factor
  j (``tanh(3 (f - 0.5))``): still one latent per factor;
* ``shape missing``: axis-aligned without the shape (four factors coded);
* ``pairs rotated 45 degrees``: scale with orientation and x with y mixed
  by 45 degrees, the shape alone;
* ``random rotation``: all five latents mixed by a random orthogonal matrix
  (one per seed): every factor is linearly decodable, none by one latent;
* ``random rotation + noise``: the same plus the noise above;
* ``position only``: x and y axis-aligned, the other factors not coded.

Each metric is that of ``bench_sprites.py``, with the same options (the
beta-VAE and FactorVAE scores from ``--n-votes`` training votes and half
as many for evaluation, batches of 64; MIG and DCI disentanglement on the
codes of ``--n-codes`` random images of the grid, DCI with
``--dci-estimators`` trees per class) plus SAP (discrete factors, as
``disentanglement_lib`` for dSprites). ``--seeds`` draws the votes, the
codes, the rotation and the noise. Prints every seed and the mean and
range over seeds, to set beside the trained methods' rows of
``bench_sprites.py``: the scale on which their 68-77% beta-VAE scores sit.
"""

import argparse
import time

import numpy as np
from bench_sprites import disentanglement_scores
from scipy.stats import ortho_group

from sklearn_betavae.datasets import make_sprites
from sklearn_betavae.metrics import sap_score

N_LATENTS = 10
NOISE = 0.05
COS45 = np.sqrt(0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-votes", type=int, default=2000)
    parser.add_argument("--n-codes", type=int, default=2000)
    parser.add_argument("--dci-estimators", type=int, default=20)
    parser.add_argument("--codes", nargs="+", default=list(CODES), choices=list(CODES),
                        help="the codes to score (all by default)")
    args = parser.parse_args()

    grid = _FactorGrid(make_sprites(1, random_state=0).factor_sizes)
    print(f"factor grid {tuple(int(s) for s in grid.factor_sizes)}, {N_LATENTS} latents, "
          f"{args.n_votes} training votes ({args.n_votes // 2} evaluation) of batch 64, "
          f"{args.n_codes} codes for MIG / DCI / SAP, DCI with {args.dci_estimators} trees per class")
    print("| code | seed | beta-VAE score % | FactorVAE score % | MIG | DCI D | SAP | s |")
    print("|---|---|---|---|---|---|---|---|")
    rows = {}
    for name in args.codes:
        for seed in args.seeds:
            start = time.perf_counter()
            encoder = _Encoder(CODES[name], grid.factor_sizes, seed)
            scores = _scores(args, encoder, grid, seed)
            rows.setdefault(name, []).append(scores)
            print(f"| {name} | {seed} | {100 * scores[0]:.1f} | {100 * scores[1]:.1f} | "
                  + " | ".join(f"{s:.3f}" for s in scores[2:]) + f" | {time.perf_counter() - start:.1f} |",
                  flush=True)
    print(f"\nmean (min-max) over {len(args.seeds)} seeds")
    print("| code | beta-VAE score % | FactorVAE score % | MIG | DCI D | SAP |")
    print("|---|---|---|---|---|---|")
    for name, scores in rows.items():
        scores = np.asarray(scores) * [100, 100, 1, 1, 1]
        cells = [f"{m:.{d}f} ({lo:.{d}f}-{hi:.{d}f})" for m, lo, hi, d in
                 zip(scores.mean(axis=0), scores.min(axis=0), scores.max(axis=0), (1, 1, 3, 3, 3))]
        print(f"| {name} | " + " | ".join(cells) + " |")


class _FactorGrid:
    """The sprites' factor grid whose "images" are the factor classes themselves,
    so that an encoder can read the true factors (no drawing: fast)."""

    def __init__(self, factor_sizes):
        self.factor_sizes = np.asarray(factor_sizes)

    def render(self, factor_classes):
        return np.asarray(factor_classes, dtype=np.float64)


class _Encoder:
    """A "fitted transformer" mapping factor classes to a code of N_LATENTS latents."""

    def __init__(self, code, factor_sizes, seed):
        self.code, self.scale = code, np.asarray(factor_sizes) - 1.0
        self.rng = np.random.RandomState(seed)
        self.rotation = ortho_group.rvs(len(factor_sizes), random_state=seed)

    def transform(self, classes):
        informative = self.code(classes / self.scale, self)
        return np.column_stack([informative, np.zeros((len(classes), N_LATENTS - informative.shape[1]))])

    def noise(self, shape):
        return NOISE * self.rng.normal(size=shape)


def _pairs_rotated(f):
    shape, scale, orientation, x, y = f.T
    return np.column_stack([shape, COS45 * (scale + orientation), COS45 * (scale - orientation),
                            COS45 * (x + y), COS45 * (x - y)])


CODES = {
    "axis-aligned": lambda f, e: f,
    "axis-aligned + noise": lambda f, e: f + e.noise(f.shape),
    "axis-aligned, warped": lambda f, e: np.tanh(3.0 * (f - 0.5)),
    "shape missing": lambda f, e: f[:, 1:],
    "pairs rotated 45 degrees": lambda f, e: _pairs_rotated(f),
    "random rotation": lambda f, e: f @ e.rotation,
    "random rotation + noise": lambda f, e: f @ e.rotation + e.noise(f.shape),
    "position only": lambda f, e: f[:, 3:],
}


def _scores(args, encoder, grid, seed):
    """bench_sprites' metrics, plus SAP on the same codes."""
    beta, factor, mig, disentanglement, codes, classes = disentanglement_scores(args, encoder, grid, seed)
    return beta, factor, mig, disentanglement, sap_score(codes, classes, random_state=seed)


if __name__ == "__main__":
    main()
