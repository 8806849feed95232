"""Covariates of a conditional beta-VAE: their encoding, learnt in ``fit``.

Per-sample covariates (age, sex, scanner site) condition the network: the
encoder reads their encoding beside X, and the decoder beside the code.
Continuous covariates are centred and divided by their standard deviation
(as ``standardize=True`` does to features), categorical ones are one-hot
encoded over the levels seen in ``fit``. The encoding is a frozen dataclass
of JSON values, saved in model and pipeline files and applied by every
later method; anything it cannot apply (other columns, an unseen level,
NaN) is a ``ValueError`` saying what is wrong.
"""

import numbers
from dataclasses import dataclass

import numpy as np

CONTINUOUS, CATEGORICAL = "continuous", "categorical"
# Levels a model file can hold as JSON.
_LEVEL_TYPES = (str, bool, int, float)


@dataclass(frozen=True)
class CovariateEncoding:
    """How covariates become the network's extra input columns.

    Parameters
    ----------
    names : tuple of str or None
        The columns' names when ``fit`` saw a DataFrame, else None.
    kinds : tuple of str
        ``"continuous"`` or ``"categorical"``, per column.
    means, scales : tuple of float
        Per column; 0 and 1 for categorical ones.
    levels : tuple of tuple
        Per column, the sorted levels of a categorical one (``()`` for a
        continuous one).
    """

    names: tuple
    kinds: tuple
    means: tuple
    scales: tuple
    levels: tuple

    @property
    def width(self):
        """The number of encoded columns: one per continuous covariate, one
        per level of a categorical one."""
        return sum(1 if kind == CONTINUOUS else len(levels)
                   for kind, levels in zip(self.kinds, self.levels))

    @classmethod
    def fit(cls, covariates, categorical, n_samples):
        """Learn the encoding of ``covariates`` (``n_samples`` rows);
        ``categorical``: the ``categorical_covariates`` parameter."""
        names, columns, by_dtype = _columns(covariates, n_samples, "fit")
        kinds = _kinds(categorical, names, by_dtype)
        means, scales, levels = [], [], []
        for index, (kind, values) in enumerate(zip(kinds, columns)):
            label = _label(names, index)
            if kind == CONTINUOUS:
                values = _continuous(values, label, "fit")
                scale = float(values.std())
                means.append(float(values.mean()))
                scales.append(scale if scale > 0 and np.isfinite(scale) else 1.0)
                levels.append(())
            else:
                means.append(0.0)
                scales.append(1.0)
                levels.append(_levels(values, label))
        return cls(names, tuple(kinds), tuple(means), tuple(scales), tuple(levels))

    def transform(self, covariates, n_samples, method):
        """The encoded covariates, a float64 array ``(n_samples, width)``;
        ``method`` names the caller in error messages."""
        names, columns, _ = _columns(covariates, n_samples, method)
        self._check_columns(names, len(columns), method)
        encoded = []
        for index, values in enumerate(columns):
            label = _label(self.names, index)
            if self.kinds[index] == CONTINUOUS:
                values = _continuous(values, label, method)
                encoded.append(((values - self.means[index]) / self.scales[index])[:, None])
            else:
                encoded.append(self._one_hot(values, index, label, method))
        return np.hstack(encoded) if encoded else np.empty((n_samples, 0))

    def _one_hot(self, values, index, label, method):
        position = {_plain(level): column for column, level in enumerate(self.levels[index])}
        rows = np.empty(len(values), dtype=np.intp)
        for row, value in enumerate(values):
            found = position.get(_plain(value)) if _hashable(value) else None
            if found is None:
                known = ", ".join(map(repr, self.levels[index][:10]))
                more = " ..." if len(self.levels[index]) > 10 else ""
                raise ValueError(
                    f"{method}: covariate {label} has the level {value!r} (row {row}), which "
                    f"fit did not see; its levels are {known}{more}. A model conditioned on "
                    "categories cannot encode a new one: refit with it in the training data."
                )
            rows[row] = found
        one_hot = np.zeros((len(values), len(self.levels[index])))
        one_hot[np.arange(len(values)), rows] = 1.0
        return one_hot

    def _check_columns(self, names, n_columns, method):
        if self.names is not None and names is None:
            raise ValueError(
                f"{method}: covariates must be a DataFrame with the columns {list(self.names)}, "
                "as in fit (the columns are matched by name)."
            )
        if self.names is None and names is not None:
            raise ValueError(
                f"{method}: fit took the covariates as an array without column names; pass an "
                f"array of {len(self.kinds)} columns here too, not a DataFrame."
            )
        if names is not None and tuple(names) != self.names:
            missing = [name for name in self.names if name not in names]
            extra = [name for name in names if name not in self.names]
            detail = (f"missing {missing}" if missing else "") + (
                f"{'; ' if missing else ''}unexpected {extra}" if extra else "")
            raise ValueError(
                f"{method}: covariates must have the columns {list(self.names)} in that order, "
                f"as in fit; got {list(names)} ({detail or 'reordered'})."
            )
        if n_columns != len(self.kinds):
            raise ValueError(
                f"{method}: covariates must have {len(self.kinds)} column(s), as in fit; got "
                f"{n_columns}."
            )

    def to_json(self):
        return {"names": None if self.names is None else list(self.names),
                "kinds": list(self.kinds), "means": list(self.means),
                "scales": list(self.scales), "levels": [list(levels) for levels in self.levels]}

    @classmethod
    def from_json(cls, document):
        """The inverse of ``to_json``; ValueError for a document no fit writes."""
        try:
            names = document["names"]
            encoding = cls(
                None if names is None else tuple(names), tuple(document["kinds"]),
                tuple(document["means"]), tuple(document["scales"]),
                tuple(tuple(levels) for levels in document["levels"]),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a covariate encoding ({error})") from None
        n = len(encoding.kinds)
        valid = (
            (encoding.names is None or (len(encoding.names) == n
                                        and all(isinstance(name, str) for name in encoding.names)))
            and all(kind in (CONTINUOUS, CATEGORICAL) for kind in encoding.kinds)
            and len(encoding.means) == len(encoding.scales) == len(encoding.levels) == n
            and all(isinstance(v, float) and np.isfinite(v) for v in encoding.means + encoding.scales)
            and all(scale > 0 for scale in encoding.scales)
            and all((kind == CONTINUOUS) == (not levels) and len(set(levels)) == len(levels)
                    and all(isinstance(level, _LEVEL_TYPES) for level in levels)
                    for kind, levels in zip(encoding.kinds, encoding.levels))
        )
        if not valid:
            raise ValueError(f"not a covariate encoding that fit writes: {document!r}")
        return encoding


def _columns(covariates, n_samples, method):
    """``(names or None, list of 1-D arrays, per column whether its dtype
    is categorical)``."""
    if hasattr(covariates, "columns") and hasattr(covariates, "shape"):  # pandas, polars
        names = tuple(covariates.columns)
        names = names if all(isinstance(name, str) for name in names) else None
        columns, by_dtype = [], []
        for name in covariates.columns:
            column = covariates[name]
            category = getattr(column.dtype, "name", "") == "category"  # pandas
            values = np.asarray(column.to_numpy(), dtype=object if category else None)
            columns.append(values)
            by_dtype.append(category or values.dtype.kind in "OUSb")
    else:
        try:
            array = np.asarray(covariates)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{method}: covariates must be a 2-D array or a DataFrame ({error}).") from None
        if array.ndim != 2:
            raise ValueError(
                f"{method}: covariates must be 2-D, one row per sample and one column per "
                f"covariate; got an array of shape {array.shape} (a single covariate: "
                "reshape(-1, 1))."
            )
        names, columns = None, list(array.T)
        by_dtype = [array.dtype.kind in "OUSb"] * len(columns)
    if not columns:
        raise ValueError(f"{method}: covariates have no columns.")
    if len(columns[0]) != n_samples:
        raise ValueError(
            f"{method}: covariates must have one row per sample ({n_samples}); got "
            f"{len(columns[0])}."
        )
    return names, columns, by_dtype


def _kinds(categorical, names, by_dtype):
    n = len(by_dtype)
    if isinstance(categorical, str) and categorical == "from_dtype":
        return [CATEGORICAL if flag else CONTINUOUS for flag in by_dtype]
    chosen = np.asarray(categorical)
    if chosen.dtype.kind == "b":
        if chosen.shape != (n,):
            raise ValueError(
                f"categorical_covariates as a boolean mask must have one entry per covariate "
                f"({n}); got shape {chosen.shape}."
            )
        flags = list(map(bool, chosen))
    else:
        flags = [False] * n
        for item in chosen.ravel().tolist():
            if isinstance(item, str):
                if names is None or item not in names:
                    raise ValueError(
                        f"categorical_covariates names {item!r}, which is not a column of the "
                        f"covariates ({'no names: an array' if names is None else list(names)})."
                    )
                flags[names.index(item)] = True
            elif isinstance(item, numbers.Integral) and not isinstance(item, bool) and -n <= item < n:
                flags[item] = True
            else:
                raise ValueError(
                    f"categorical_covariates must be 'from_dtype', column indices, column names "
                    f"or a boolean mask over the {n} covariate(s); got {categorical!r}."
                )
    return [CATEGORICAL if flag else CONTINUOUS for flag in flags]


def _continuous(values, label, method):
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{method}: covariate {label} is continuous but holds values that are not "
            "numbers; declare it in categorical_covariates, or pass numbers."
        ) from None
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{method}: covariate {label} holds {values[row]} at row {row}; covariates must be "
            "finite (impute missing values first)."
        )
    return values


def _levels(values, label):
    plain = []
    for row, value in enumerate(values):
        value = _plain(value)
        if not isinstance(value, _LEVEL_TYPES) or (isinstance(value, float) and not np.isfinite(value)):
            raise ValueError(
                f"fit: covariate {label} is categorical and holds {value!r} at row {row}; its "
                "levels must be strings, integers, finite floats or booleans (impute missing "
                "values first)."
            )
        plain.append(value)
    return tuple(sorted(set(plain), key=lambda level: (type(level).__name__, level)))


def _plain(value):
    """NumPy scalars as the Python values JSON holds."""
    return value.item() if isinstance(value, np.generic) else value


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _label(names, index):
    return repr(names[index]) if names is not None else f"column {index}"
