"""scikit-learn's own estimator checks, with no expected failures."""

import pytest
from sklearn.utils.estimator_checks import (
    check_estimator,
    check_param_validation,
    parametrize_with_checks,
)

from sklearn_betavae import BetaVAETransformer

FAST = BetaVAETransformer(device="cpu", n_components=2, hidden_layer_sizes=(8,), max_iter=2,
                          batch_size=16)
# default_dist="bernoulli" is left out: the common checks feed data outside
# [0, 1], which that decoder refuses by design (tests/test_estimator.py covers it).


@parametrize_with_checks([FAST])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.slow
def test_check_estimator_with_default_parameters():
    # Defaults but the device: the checks compare outputs to 1e-7 and below,
    # the CPU's rounding, and device="auto" would train on a visible GPU.
    check_estimator(BetaVAETransformer(device="cpu"))


def test_param_validation():
    check_param_validation("BetaVAETransformer", BetaVAETransformer())
