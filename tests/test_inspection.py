import copy

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from sklearn_betavae import BetaVAELoss, BetaVAETransformer
from sklearn_betavae._loss import posterior_distribution
from sklearn_betavae.inspection import latent_kl
from tests.conftest import FAST_PARAMS


def test_latent_kl_sums_to_the_loss_kl_term(digits):
    vae = BetaVAETransformer(**{**FAST_PARAMS, "max_iter": 10}).fit(digits)
    kl = latent_kl(vae, digits)
    assert kl.shape == (3,) and np.all(kl >= 0)
    x = torch.as_tensor((digits - vae.mean_) / vae.scale_)
    with torch.no_grad():
        mu, logvar = copy.deepcopy(vae.net_.module_).double().eval().encoder(x)
    expected = BetaVAELoss().kl_normal_loss(posterior_distribution(mu, logvar)).item()
    assert kl.sum() == pytest.approx(expected, rel=1e-9)


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
