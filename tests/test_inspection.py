import copy

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from sklearn_betavae import BetaVAELoss, BetaVAETransformer
from sklearn_betavae._loss import posterior_distribution
from sklearn_betavae.inspection import (
    best_match_scores,
    factor_correlations,
    latent_kl,
    latent_traversal,
    mutual_information_gap,
)
from tests.conftest import FAST_PARAMS


def test_latent_kl_sums_to_the_loss_kl_term(digits):
    vae = BetaVAETransformer(**{**FAST_PARAMS, "max_iter": 10}).fit(digits)
    kl = latent_kl(vae, digits)
    assert kl.shape == (3,) and np.all(kl >= 0)
    x = torch.as_tensor((digits - vae.mean_) / vae.scale_)
    with torch.no_grad():
        mu, logvar = copy.deepcopy(vae.net_.module_).double().eval().encoder(x)
    expected = BetaVAELoss().kl_normal_loss(posterior_distribution(mu, logvar)).item()
    # (latent_kl runs the float32 network: agreement to float32 rounding.)
    assert kl.sum() == pytest.approx(expected, rel=1e-6)


def test_a_huge_beta_switches_every_latent_off(digits):
    collapsed = BetaVAETransformer(**{**FAST_PARAMS, "beta": 1e4, "max_iter": 60,
                                      "beta_warmup": 0.0}).fit(digits)
    assert np.all(latent_kl(collapsed, digits) < 0.05)
    used = BetaVAETransformer(**{**FAST_PARAMS, "beta": 1.0, "max_iter": 60}).fit(digits)
    assert np.all(latent_kl(used, digits) > 0.1)


def test_latent_kl_validates_its_input(digits):
    vae = BetaVAETransformer(**FAST_PARAMS)
    with pytest.raises(NotFittedError):
        latent_kl(vae, digits)
    vae.fit(digits)
    with pytest.raises(ValueError, match="64 features"):
        latent_kl(vae, digits[:, :5])


def test_latent_kl_and_traversals_accept_pipelines(digits):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = Pipeline([("scale", StandardScaler()), ("vae", BetaVAETransformer(**FAST_PARAMS))])
    with pytest.raises(NotFittedError):
        latent_kl(pipe, digits)
    with pytest.raises(NotFittedError):
        latent_traversal(pipe, 0)
    pipe.fit(digits)
    np.testing.assert_array_equal(latent_kl(pipe, digits),
                                  latent_kl(pipe[-1], pipe[:-1].transform(digits)))
    from sklearn.decomposition import PCA

    for function, args in ((latent_kl, (digits,)), (latent_traversal, (0,))):
        with pytest.raises(TypeError, match="BetaVAETransformer or a Pipeline"):
            function(PCA(2).fit(digits), *args)


def test_traversal_arguments_are_validated(digits):
    vae = BetaVAETransformer(**FAST_PARAMS).fit(digits)
    for bad, match in [({"values": 1.0}, "'values' parameter"),
                       ({"values": [0.0, np.nan]}, "NaN"),
                       ({"reference": "zero"}, "'reference' parameter")]:
        with pytest.raises(ValueError, match=match):
            latent_traversal(vae, 0, **bad)
    # The fitted latent count, whatever n_components says now.
    vae.set_params(n_components=7)
    with pytest.raises(ValueError, match=r"latent must be an integer in \[0, 3\)"):
        latent_traversal(vae, 5)


@pytest.fixture(scope="module")
def factors():
    return np.random.RandomState(0).uniform(size=(400, 3))


def test_rank_correlation_sees_through_monotone_non_linear_codes(factors):
    from scipy.stats import norm

    # A perfectly disentangled Gaussian code of uniform factors: Pearson's r
    # would stay near 0.977, the rank correlation is exactly 1.
    Z = norm.ppf(np.clip(factors[:, [2, 0, 1]], 1e-6, 1 - 1e-6))
    correlations = factor_correlations(Z, factors)
    assert correlations.shape == (3, 3)
    np.testing.assert_allclose(np.diag(correlations[[1, 2, 0]]), 1.0)
    assert np.corrcoef(Z[:, 1], factors[:, 0])[0, 1] < 0.99
    np.testing.assert_allclose(best_match_scores(-Z, factors), 1.0)


def test_constant_and_extra_columns(factors):
    Z = np.column_stack([np.ones(len(factors)), factors[:, 0], factors[:, 1] + factors[:, 2]])
    correlations = factor_correlations(Z, factors)
    assert correlations.shape == (3, 3)
    assert not correlations[0].any()  # a constant latent correlates with nothing
    assert best_match_scores(Z, factors)[0] == pytest.approx(1.0)
    assert 0.6 < best_match_scores(Z, factors)[1] < 0.8  # shared with factor 2


def test_mig_rewards_one_latent_per_factor(factors):
    perfect = mutual_information_gap(factors[:, [1, 2, 0]], factors)
    rotated = factors @ np.linalg.qr(np.random.RandomState(1).normal(size=(3, 3)))[0]
    mixed = mutual_information_gap(rotated, factors)
    duplicated = mutual_information_gap(np.column_stack([factors, factors]), factors)
    assert perfect > 0.8 and mixed < 0.3 and duplicated == pytest.approx(0.0, abs=1e-12)


def test_scores_validate_their_inputs(factors):
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        factor_correlations(factors[:10], factors)
    with pytest.raises(ValueError, match="at least two latents"):
        mutual_information_gap(factors[:, :1], factors)
    with pytest.raises(ValueError, match="n_bins"):
        mutual_information_gap(factors, factors, n_bins=1)
    assert mutual_information_gap(factors, factors, n_bins=np.int64(10)) > 0.5
    assert factor_correlations(factors, factors).max() <= 1.0
    with pytest.raises(ValueError, match="NaN"):
        best_match_scores(np.full((5, 2), np.nan), factors[:5])
    with pytest.raises(ValueError, match="Expected 2D array"):
        factor_correlations(factors[:, 0], factors)
    with pytest.raises(ValueError, match="'n_bins' parameter"):
        mutual_information_gap(factors, factors, n_bins=2.5)


def test_traversal_varies_one_latent_from_a_reference(digits):
    vae = BetaVAETransformer(**FAST_PARAMS).fit(digits)
    reference = vae.transform(digits[:1])[0]
    values = [-1.0, 0.5, 2.0]
    traversal = latent_traversal(vae, 1, values=values, reference=reference)
    codes = np.tile(reference, (3, 1))
    codes[:, 1] = values
    # Up to the float32 network's rounding, which depends on the batch size.
    np.testing.assert_allclose(traversal, vae.inverse_transform(codes), rtol=1e-6, atol=1e-6)
    prior = latent_traversal(vae, 0)
    assert prior.shape == (7, 64)
    np.testing.assert_allclose(prior[3], vae.inverse_transform(np.zeros((1, 3)))[0], rtol=1e-6, atol=1e-6)
    for bad, match in [({"latent": 3}, "latent must be"), ({"latent": True}, "latent must be"),
                       ({"latent": 0, "reference": np.zeros(2)}, "reference")]:
        with pytest.raises(ValueError, match=match):
            latent_traversal(vae, **bad)
