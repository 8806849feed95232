"""Shared fixtures: autouse seeding, tiny data, fast parameters, a failing callback, GPU skip helper."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from skorch.callbacks import Callback

# Few epochs and small layers: every fit in the suite takes well under a second.
FAST_PARAMS = dict(
    device="cpu", n_components=3, hidden_layer_sizes=(16,), max_iter=3, batch_size=32,
    random_state=0,
)

class LinearEncoder(torch.nn.Module):
    """The one custom encoder of the tests: a linear map to ``(mu, logvar)``."""

    def __init__(self, n_features, n_components):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, 2 * n_components)

    def forward(self, x):
        return tuple(self.linear(x).chunk(2, dim=-1))


class PoisonWeightsAt(Callback):
    """Set the first weight matrix to NaN when epoch ``epoch`` begins."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            with torch.no_grad():
                next(net.module_.parameters()).fill_(float("nan"))


#: Skips a test, or one of its parameters (with ``pytest.mark.gpu``), without CUDA.
skip_without_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def requires_cuda(test):
    """Mark a test ``gpu`` (select them with ``-m gpu``) and skip it without CUDA."""
    return pytest.mark.gpu(skip_without_cuda(test))


@pytest.fixture(autouse=True)
def _seed_everything():
    np.random.seed(0)  # noqa: NPY002 (seeds code that draws from the legacy global generator)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return
    plt.close("all")


@pytest.fixture(scope="module")
def digits():
    """A small subset of the raw digits (0-16 pixel values), float64."""
    X, _ = load_digits(return_X_y=True)
    return X[:240]


@pytest.fixture(scope="module")
def fitted(digits):
    """The default fast estimator fitted on ``digits``: one per test module,
    never modified by the tests (copy it first)."""
    from sklearn_betavae import BetaVAETransformer

    return BetaVAETransformer(**FAST_PARAMS).fit(digits)


@pytest.fixture(scope="module")
def random_data():
    """Random data with distinct dimensions: 7 samples would be too few, so 40 x 9."""
    return np.random.RandomState(42).normal(size=(40, 9))


@pytest.fixture(scope="module")
def unit_data(digits):
    """Digits scaled to [0, 1], for the Bernoulli decoder."""
    return digits / 16.0


@pytest.fixture(scope="session")
def brain_pipeline():
    """``(pipeline, population)``: NiftiMasker + default BetaVAETransformer fitted
    on a small "amplitude" population (120 subjects, 8 mm, 20 epochs, a few
    seconds), shared by the tests of the brain outputs; never modified."""
    pytest.importorskip("nilearn")
    from nilearn.maskers import NiftiMasker
    from sklearn.pipeline import Pipeline

    from sklearn_betavae import BetaVAETransformer
    from sklearn_betavae.datasets import make_brain_population

    population = make_brain_population(120, kind="amplitude", resolution=8, random_state=0)
    pipe = Pipeline([
        ("masker", NiftiMasker(population.mask_img, standardize=None)),
        ("vae", BetaVAETransformer(n_components=4, max_iter=20, device="cpu", random_state=0)),
    ])
    return pipe.fit(population.images), population


def fit_normative_brain(n_controls, n_patients):
    """``(pipeline, cohort)``: NiftiMasker + a conditional BetaVAETransformer
    (``FAST_PARAMS``, ``reference_fraction=0.25``) fitted, with metadata
    routing, on the ``n_controls`` controls of a two-site
    ``make_brain_cohort`` whose ``n_patients`` patients come after them."""
    pytest.importorskip("nilearn")
    import sklearn
    from nilearn.maskers import NiftiMasker
    from sklearn.pipeline import Pipeline

    from sklearn_betavae import BetaVAETransformer
    from sklearn_betavae.datasets import make_brain_cohort

    cohort = make_brain_cohort(n_controls, n_sites=2, n_patients=n_patients, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        vae = BetaVAETransformer(**FAST_PARAMS, reference_fraction=0.25).set_fit_request(covariates=True)
        pipe = Pipeline([("masker", NiftiMasker(cohort.mask_img, standardize=None)), ("vae", vae)])
        pipe.fit(cohort.images[:n_controls], covariates=cohort.covariates.iloc[:n_controls])
    return pipe, cohort
