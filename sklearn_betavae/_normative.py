"""Normative modelling: deviation scores against a reference held out of training.

A normative model learns healthy variation from controls and scores how far
a new subject is from what it expects of someone with that subject's
covariates. Here the expectation of a row is its reconstruction through the
fitted network (the decoder's mean at the row's posterior-mean code and
covariates), which explains the variation shared between features; each
feature's residual is then compared with the residuals of *reference*
controls the network did not train on (training residuals are too small: the
network fitted them). ``fit`` holds the reference out
(``reference_fraction``) and ``NormativeReference`` keeps what it measured.
"""

import warnings
from dataclasses import dataclass, replace

import numpy as np

from ._covariates import CONTINUOUS

# At least this many rows on each side of the split: a spread left out one
# row at a time needs three.
MIN_ROWS = 3


def reference_split(n_rows, fraction, seed, strata=None):
    """The rows ``(training, reference)`` of a reference split, each sorted.

    Every stratum (the rows of one combination of categorical covariates, a
    site and a sex) gives ``round(fraction * size)`` of its rows to the
    reference, and keeps at least one for training, so that the network sees
    every level it will be asked about.
    """
    rng = np.random.RandomState(seed)
    strata = np.zeros(n_rows, dtype=np.intp) if strata is None else strata
    reference = []
    for stratum in np.unique(strata):
        rows = np.flatnonzero(strata == stratum)
        n_reference = min(int(round(fraction * len(rows))), len(rows) - 1)
        reference.extend(rng.permutation(rows)[:n_reference])
    reference = np.sort(np.asarray(reference, dtype=np.intp))
    training = np.setdiff1d(np.arange(n_rows), reference)
    if len(reference) < MIN_ROWS or len(training) < MIN_ROWS:
        raise ValueError(
            f"reference_fraction={fraction} of {n_rows} rows gives {len(reference)} reference "
            f"row(s) and {len(training)} training row(s); each needs at least {MIN_ROWS} "
            "(the split keeps every site's and sex's rows in training too). Give more rows or "
            "another reference_fraction."
        )
    return training, reference


def strata_of(encoded, encoding):
    """One integer per row: its combination of categorical levels (all 0 without any)."""
    if encoding is None:
        return None
    categorical = np.zeros(encoded.shape[1], dtype=bool)
    start = 0
    for kind, levels in zip(encoding.kinds, encoding.levels):
        width = 1 if kind == CONTINUOUS else len(levels)
        categorical[start:start + width] = kind != CONTINUOUS
        start += width
    _, strata = np.unique(encoded[:, categorical], axis=0, return_inverse=True)
    return strata.ravel()


@dataclass(frozen=True)
class NormativeReference:
    """What deviation scores need, measured on the reference rows.

    Parameters
    ----------
    fraction : float
        The ``reference_fraction`` it was measured with.
    indices : ndarray of shape (n_reference,)
        The reference rows of the training data.
    residual_mean, residual_scale : ndarray of shape (n_features,)
        Mean and standard deviation (ddof=1) of each feature's residual
        ``x - reconstruction`` over the reference rows; the deviation is at
        least a hundredth of the median feature's.
    deviations : ndarray of shape (n_reference,)
        Each reference row's mean squared z-score against the other
        reference rows' mean and spread (left out one at a time, as a new
        subject is), sorted.
        The arrays are None when the network changed after they were
        measured (a warm start that did not finish).
    covariate_ranges : tuple of (str, float, float, float, float, int)
        Per continuous covariate: its label, its lowest and highest value
        among the training rows, the mean and scale of its encoding, and its
        encoded column.
    """

    fraction: float
    indices: np.ndarray
    residual_mean: np.ndarray
    residual_scale: np.ndarray
    deviations: np.ndarray
    covariate_ranges: tuple = ()

    @classmethod
    def measure(cls, fraction, indices, residuals, encoded_training=None, encoding=None):
        """From the reference rows' ``residuals`` and the training rows'
        encoded covariates (None without covariates)."""
        mean = residuals.mean(axis=0)
        scale = residuals.std(axis=0, ddof=1)
        # A feature (a pixel of background) that hardly varies among the
        # reference rows would turn any change into a z-score of millions:
        # its spread is at least a hundredth of the typical feature's.
        positive = scale[scale > 0]
        floor = 0.01 * np.median(positive) if positive.size else 1.0
        scale = np.maximum(scale, floor)
        deviations = np.sort(_left_out_deviations(residuals, floor))
        return cls(float(fraction), np.asarray(indices, dtype=np.int64), mean, scale, deviations,
                   _covariate_ranges(encoded_training, encoding))

    @property
    def measured(self):
        return self.residual_mean is not None

    def unmeasured(self):
        """The same split, its measurements dropped (the network changed)."""
        return replace(self, residual_mean=None, residual_scale=None, deviations=None)

    def z_scores(self, residuals):
        """Each feature's residual, centred and scaled by the reference's."""
        return (residuals - self.residual_mean) / self.residual_scale

    def percentiles(self, z):
        """Where each row's mean squared z-score (rows of ``z``, as
        ``z_scores`` gives them) falls among the reference rows', 0-100."""
        deviations = mean_squared(z)
        below = np.searchsorted(self.deviations, deviations, side="left")
        at_or_below = np.searchsorted(self.deviations, deviations, side="right")
        return 100.0 * (below + at_or_below) / (2 * len(self.deviations))

    def warn_outside(self, encoded, method):
        """Warn when a continuous covariate lies outside the training range."""
        for label, low, high, mean, scale, column in self._continuous(encoded):
            values = column * scale + mean
            below, above = low - values.min(), values.max() - high
            outside = np.count_nonzero((values < low) | (values > high))
            if outside:
                warnings.warn(
                    f"{method}: {label} of {outside} row(s) lies outside its range among the "
                    f"training subjects, [{low:.4g}, {high:.4g}], by up to "
                    f"{max(below, above):.4g}; the model's expectation there is an "
                    "extrapolation, so their deviation scores are less reliable.",
                    UserWarning,
                    stacklevel=3,
                )

    def _continuous(self, encoded):
        for label, low, high, mean, scale, position in self.covariate_ranges:
            yield label, low, high, mean, scale, encoded[:, position]

    def to_json(self):
        """The JSON part (the arrays go to ``tensors``)."""
        return {"fraction": self.fraction, "covariate_ranges": [list(r) for r in self.covariate_ranges]}

    def tensors(self):
        arrays = {"indices": self.indices, "residual_mean": self.residual_mean,
                  "residual_scale": self.residual_scale, "deviations": self.deviations}
        return {name: array for name, array in arrays.items() if array is not None}

    @classmethod
    def from_json(cls, document, arrays):
        return cls(
            float(document["fraction"]), arrays["indices"], arrays.get("residual_mean"),
            arrays.get("residual_scale"), arrays.get("deviations"),
            tuple(tuple(r) for r in document["covariate_ranges"]),
        )


def mean_squared(z):
    """Each row's mean squared z-score: the per-subject deviation statistic."""
    return np.mean(np.asarray(z) ** 2, axis=-1)


def _left_out_deviations(residuals, floor):
    """Each row's mean squared z-score against the mean and spread of the
    *other* rows: a new subject is not among the rows that define its
    spread, so scored against its own row a reference subject would look
    more typical than new ones (its percentiles then too high)."""
    n = len(residuals)
    mean = residuals.mean(axis=0)
    squares = ((residuals - mean) ** 2).sum(axis=0)
    left_out_mean = (n * mean - residuals) / (n - 1)
    # The sum of squares about the mean without row i (an exact identity).
    left_out_squares = squares - n / (n - 1) * (residuals - mean) ** 2
    left_out_scale = np.maximum(np.sqrt(np.maximum(left_out_squares, 0) / (n - 2)), floor)
    return mean_squared((residuals - left_out_mean) / left_out_scale)


def _covariate_ranges(encoded, encoding):
    if encoding is None:
        return ()
    ranges, position = [], 0
    for index, (kind, levels) in enumerate(zip(encoding.kinds, encoding.levels)):
        if kind == CONTINUOUS:
            mean, scale = encoding.means[index], encoding.scales[index]
            values = encoded[:, position] * scale + mean
            label = (f"covariate {encoding.names[index]!r}" if encoding.names is not None
                     else f"covariate column {index}")
            ranges.append((label, float(values.min()), float(values.max()), mean, scale, position))
            position += 1
        else:
            position += len(levels)
    return tuple(ranges)
