"""Property-based input hardening: any input either works or is a clear error.

For random shapes, dtypes, memory layouts, containers and magnitudes, ``fit``
and the post-fit methods either succeed with finite outputs or raise
``ValueError`` / ``TypeError`` with a message; the input is never modified.
Hypothesis runs derandomized, so CI sees the same examples every time.
"""

import copy
import itertools
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sklearn_betavae import BetaVAETransformer

TINY = dict(device="cpu", n_components=2, hidden_layer_sizes=(4,), max_iter=2, batch_size=8,
            random_state=0)
SETTINGS = settings(
    max_examples=100, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DTYPES = ["bool", "int8", "uint8", "int64", "float16", "float32", "float64", "object"]
MAGNITUDES = [0.0, 1e-30, 1e-5, 1.0, 3.0, 1e5, 1e30]
# One folder for every memmap the strategies write, removed after the module.
_MEMMAPS = tempfile.TemporaryDirectory(prefix="betavae-memmaps-")
_memmap_ids = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def _remove_memmaps():
    yield
    _MEMMAPS.cleanup()


@st.composite
def matrices(draw, n_features=None):
    """A 2-D float64 matrix of mixed magnitudes, possibly with constant columns."""
    n_samples = draw(st.integers(1, 12))
    n_features = n_features or draw(st.integers(1, 6))
    values = draw(st.lists(
        st.tuples(st.sampled_from(MAGNITUDES), st.floats(-1, 1, allow_nan=False)),
        min_size=n_samples * n_features, max_size=n_samples * n_features,
    ))
    X = np.array([magnitude * unit for magnitude, unit in values]).reshape(n_samples, n_features)
    if draw(st.booleans()):
        X[:, draw(st.integers(0, n_features - 1))] = draw(st.sampled_from(MAGNITUDES))
    return X


@st.composite
def inputs(draw, n_features=None):
    """``X`` in some dtype, layout and container."""
    X = draw(matrices(n_features))
    dtype = draw(st.sampled_from(DTYPES))
    with np.errstate(over="ignore", invalid="ignore"):
        X = X.astype(dtype)  # float16 overflows to inf: must then be refused
    layout = draw(st.sampled_from(["C", "F", "strided", "read-only", "memmap", "list",
                                   "frame", "frame-int-columns", "strings"]))
    if layout == "F":
        return np.asfortranarray(X)
    if layout == "strided":
        wide = np.repeat(X, 2, axis=1)
        return wide[:, ::2]
    if layout == "read-only":
        X.setflags(write=False)
        return X
    if layout == "memmap" and dtype != "object":
        path = Path(_MEMMAPS.name) / f"X{next(_memmap_ids)}.dat"
        mm = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
        mm[:] = X
        mm.flush()
        return np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)
    if layout == "list":
        return X.tolist()
    if layout.startswith("frame"):
        pd = pytest.importorskip("pandas")
        columns = range(X.shape[1]) if layout == "frame-int-columns" else [f"v{j}" for j in range(X.shape[1])]
        return pd.DataFrame(X, columns=list(columns))
    if layout == "strings":
        X = X.astype(object)
        X[0, 0] = "n/a"
        return X
    return X


def _snapshot(X):
    return copy.deepcopy(X)


def _assert_unchanged(X, before):
    if hasattr(X, "equals"):
        assert X.equals(before)
    else:
        np.testing.assert_array_equal(np.asarray(X, dtype=object), np.asarray(before, dtype=object))


def _assert_clear_error(error):
    assert isinstance(error, (ValueError, TypeError)), repr(error)
    assert len(str(error)) > 10


@SETTINGS
@given(X=inputs(), dist=st.sampled_from(["normal", "laplace", "bernoulli"]))
def test_fit_and_every_method_work_or_raise_a_clear_error(X, dist):
    before = _snapshot(X)
    vae = BetaVAETransformer(**TINY, default_dist=dist)
    try:
        vae.fit(X)
    except Exception as error:  # noqa: BLE001 - the property is about its type
        event(f"fit refused: {type(error).__name__}")
        _assert_clear_error(error)
        _assert_unchanged(X, before)
        return
    event("fit worked")
    Z = vae.transform(X)
    assert Z.shape == (len(before), 2) and np.isfinite(Z).all()
    assert np.isfinite(vae.inverse_transform(Z)).all()
    _assert_valid_scores(vae.score_samples(X))
    assert np.isfinite(vae.sample(2, random_state=0)).all()
    _assert_unchanged(X, before)


@pytest.fixture(scope="module")
def fitted():
    X = np.random.RandomState(0).normal(size=(30, 4))
    return BetaVAETransformer(**TINY).fit(X)


@SETTINGS
@given(X=st.one_of(inputs(n_features=4), inputs()))
def test_post_fit_methods_on_any_input(fitted, X):
    before = _snapshot(X)
    for method, check in ((fitted.transform, _assert_finite), (fitted.score_samples, _assert_valid_scores)):
        try:
            out = method(X)
        except Exception as error:  # noqa: BLE001
            _assert_clear_error(error)
        else:
            check(out)
    _assert_unchanged(X, before)


def _assert_finite(out):
    assert np.isfinite(out).all()


def _assert_valid_scores(scores):
    # -inf is a documented answer (a bound below float64's range); NaN never is.
    assert not np.isnan(scores).any() and (scores < np.inf).all()
