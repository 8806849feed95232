import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Laplace, Normal

from sklearn_betavae import BetaVAELoss
from sklearn_betavae._loss import kl_per_sample, log_likelihood_per_sample

X = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]])
MEAN = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 0.0]])
# Hand-computed over all 6 elements, divided by the batch size 2:
# squared errors 0.25 + 0.25 + 0 + 0 + 1 + 0.0625 = 1.5625
SSE_PER_IMAGE = 1.5625 / 2
# absolute errors 0.5 + 0.5 + 0 + 0 + 1 + 0.25 = 2.25
SAE_PER_IMAGE = 2.25 / 2


def test_normal_reconstruction_is_summed_squared_error_per_image():
    loss = BetaVAELoss().reconstruction_loss(Normal(MEAN, 1.0), X)
    assert loss.item() == pytest.approx(SSE_PER_IMAGE)


def test_laplace_reconstruction_is_summed_absolute_error_per_image():
    loss = BetaVAELoss().reconstruction_loss(Laplace(MEAN, 1.0), X)
    assert loss.item() == pytest.approx(SAE_PER_IMAGE)


def test_bernoulli_reconstruction_is_summed_cross_entropy_per_image():
    probs = torch.tensor([[0.5, 0.8, 0.5], [0.9, 0.2, 0.25]])
    expected = -sum(
        x * math.log(p) + (1 - x) * math.log(1 - p)
        for x, p in zip(X.flatten().tolist(), probs.flatten().tolist())
    ) / 2
    loss = BetaVAELoss().reconstruction_loss(Bernoulli(probs=probs), X)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    from_logits = BetaVAELoss().reconstruction_loss(Bernoulli(logits=torch.logit(probs)), X)
    assert from_logits.item() == pytest.approx(expected, rel=1e-5)


def test_bernoulli_is_finite_at_probabilities_zero_and_one():
    data = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    probs = torch.tensor([[0.0, 1.0, 0.0, 1.0]], requires_grad=True)
    loss = BetaVAELoss(default_dist="bernoulli").reconstruction_loss(Bernoulli(probs=probs), data)
    assert torch.isfinite(loss)
    # Matching 0s and 1s cost nothing; the two misses are clamped, not infinite.
    assert loss.item() == pytest.approx(200.0)
    loss.backward()
    assert torch.isfinite(probs.grad).all()
    # Away from 0 and 1 the value is the exact cross-entropy.
    half = BetaVAELoss().reconstruction_loss(Bernoulli(probs=torch.full((1, 4), 0.5)), data)
    assert half.item() == pytest.approx(4 * math.log(2))


def test_kl_is_summed_over_latents_and_averaged_over_batch():
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    scale = torch.tensor([[1.0, 2.0], [0.5, 1.0]])
    per_element = 0.5 * (scale**2 + mu**2 - 1 - 2 * torch.log(scale))
    expected = per_element.sum() / 2
    kl = BetaVAELoss().kl_normal_loss(Normal(mu, scale))
    assert kl.item() == pytest.approx(expected.item())
    reference = torch.distributions.kl_divergence(Normal(mu, scale), Normal(0.0, 1.0))
    assert kl.item() == pytest.approx(reference.sum(1).mean().item())


def test_kl_of_the_prior_is_zero():
    assert BetaVAELoss().kl_normal_loss(Normal(torch.zeros(3, 4), torch.ones(3, 4))).item() == 0.0


@pytest.mark.parametrize(
    "dist, p_tensor, p_distribution",
    [
        ("normal", MEAN, Normal(MEAN, 1.0)),
        ("laplace", MEAN, Laplace(MEAN, 1.0)),
        ("bernoulli", MEAN.clamp(0.1, 0.9), Bernoulli(probs=MEAN.clamp(0.1, 0.9))),
    ],
)
def test_call_accepts_tensor_or_distribution(dist, p_tensor, p_distribution):
    q = Normal(torch.tensor([[1.0, 0.0]] * 2), torch.ones(2, 2))
    criterion = BetaVAELoss(beta=3.0, default_dist=dist)
    from_tensor = criterion(X, p_tensor, q)
    from_distribution = criterion(X, p_distribution, q)
    assert set(from_tensor) == {"loss", "rec_loss", "kl_loss"}
    for key in from_tensor:
        assert from_tensor[key].item() == pytest.approx(from_distribution[key].item())
    assert from_tensor["kl_loss"].item() == pytest.approx(0.5)
    assert from_tensor["loss"].item() == pytest.approx(
        from_tensor["rec_loss"].item() + 3.0 * 0.5
    )


def test_gradients_flow_to_decoder_and_encoder_outputs():
    mean = MEAN.clone().requires_grad_(True)
    mu = torch.zeros(2, 2, requires_grad=True)
    logvar = torch.zeros(2, 2, requires_grad=True)
    q = Normal(mu + 1.0, torch.exp(0.5 * logvar))
    BetaVAELoss()(X, mean, q)["loss"].backward()
    for tensor in (mean, mu):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    assert logvar.grad is not None


@pytest.mark.parametrize("bad", ["gaussian", "Normal", None, 1])
def test_unknown_distribution_is_a_value_error_naming_the_choices(bad):
    with pytest.raises(ValueError, match="normal.*laplace.*bernoulli"):
        BetaVAELoss(default_dist=bad)


def test_unsupported_decoder_distribution_is_a_type_error():
    with pytest.raises(TypeError, match="Normal, Laplace or Bernoulli"):
        BetaVAELoss().reconstruction_loss(torch.distributions.Uniform(0.0, 1.0), X)
    with pytest.raises(TypeError, match="Normal"):
        BetaVAELoss().kl_normal_loss(Laplace(torch.zeros(2), torch.ones(2)))


def test_log_likelihood_per_sample_keeps_constants():
    x = torch.zeros(1, 2)
    normal = log_likelihood_per_sample(x, Normal(torch.zeros(1, 2), 1.0))
    assert normal.item() == pytest.approx(-math.log(2 * math.pi))
    laplace = log_likelihood_per_sample(x, Laplace(torch.zeros(1, 2), 1.0))
    assert laplace.item() == pytest.approx(-2 * math.log(2))
    bernoulli = log_likelihood_per_sample(x, Bernoulli(probs=torch.full((1, 2), 0.5)))
    assert bernoulli.item() == pytest.approx(-2 * math.log(2))
    q = Normal(torch.tensor([[1.0, 0.0]]), torch.ones(1, 2))
    assert kl_per_sample(q).item() == pytest.approx(0.5)


@pytest.mark.parametrize("beta", [-1.0, "a", None, float("nan"), True])
def test_bad_beta_is_a_value_error(beta):
    with pytest.raises(ValueError, match="beta must be a non-negative real"):
        BetaVAELoss(beta=beta)


def test_shape_mismatch_is_an_error_not_a_broadcast():
    with pytest.raises(ValueError, match=r"shape \(2, 1\) but the data \(2, 3\)"):
        BetaVAELoss().reconstruction_loss(Normal(torch.zeros(2, 1), 1.0), X)


def test_data_dtype_follows_the_decoder():
    probs = torch.full((2, 3), 0.5)
    loss = BetaVAELoss().reconstruction_loss(Bernoulli(probs=probs), X.double())
    assert loss.item() == pytest.approx(3 * math.log(2))


def test_extreme_log_variances_keep_the_kl_finite():
    """A log-variance of -210 underflows exp in float32 (KL would be inf);
    clamped to LOGVAR_RANGE, the KL stays finite and still grows."""
    from sklearn_betavae._loss import LOGVAR_RANGE, kl_per_sample, posterior_distribution

    mu = torch.zeros(2, 3)
    logvar = torch.tensor([[-210.0, 0.0, 0.0], [500.0, 0.0, 0.0]])
    kl = kl_per_sample(posterior_distribution(mu, logvar))
    assert torch.isfinite(kl).all()
    low, high = LOGVAR_RANGE
    expected = 0.5 * torch.tensor([np.exp(low) - 1 - low, np.exp(high) - 1 - high], dtype=torch.float32)
    torch.testing.assert_close(kl, expected)


@pytest.mark.parametrize("dist", ["normal", "laplace", "bernoulli"])
def test_unit_log_likelihood_is_the_distributions_own(dist):
    from sklearn_betavae._loss import (
        decoder_distribution,
        log_likelihood_per_sample,
        unit_log_likelihood_per_sample,
    )

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(5, 7, generator=generator)
    output = torch.rand(5, 7, generator=generator).clamp(0.05, 0.95)
    fast = unit_log_likelihood_per_sample(x, output, dist)
    reference = log_likelihood_per_sample(x.double(), decoder_distribution(output.double(), dist))
    assert fast.dtype == torch.float64
    torch.testing.assert_close(fast, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dist, plain_beta, constant_per_feature", [
    ("normal", 2.0, 0.5 * math.log(2 * math.pi)),  # squared error: twice the NLL
    ("laplace", 1.0, math.log(2.0)),
    ("bernoulli", 1.0, 0.0),
])
def test_which_beta_trains_on_the_elbo_that_score_reports(dist, plain_beta, constant_per_feature):
    """The docstring said rec_loss is "the negative log-likelihood (up to
    constants)" and beta = 1 the VAE loss; for "normal" it is twice it, so
    there beta = 2 is the plain VAE: its loss is twice the negative
    unit-variance ELBO (score's) less a constant, and beta = 1 is not."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(5, 4, generator=generator, dtype=torch.float64)
    output = torch.rand(5, 4, generator=generator, dtype=torch.float64)
    q = Normal(torch.randn(5, 3, generator=generator, dtype=torch.float64),
               torch.rand(5, 3, generator=generator, dtype=torch.float64) + 0.5)
    p = {"normal": Normal(output, 1.0), "laplace": Laplace(output, 1.0),
         "bernoulli": Bernoulli(probs=output)}[dist]
    elbo = (log_likelihood_per_sample(x, p) - kl_per_sample(q)).mean().item()
    factor = 2.0 if dist == "normal" else 1.0
    constant = x.shape[1] * constant_per_feature
    loss = BetaVAELoss(beta=plain_beta, default_dist=dist)(x, output, q)["loss"].item()
    assert loss == pytest.approx(factor * (-elbo - constant), rel=1e-12)
    if dist == "normal":
        beta_one = BetaVAELoss(beta=1.0)(x, output, q)["loss"].item()
        assert beta_one != pytest.approx(factor * (-elbo - constant), rel=1e-3)
    doc = " ".join(BetaVAELoss.__doc__.split())
    assert "*twice* the negative log-likelihood of a unit-variance Gaussian" in doc
    assert "``beta = 2`` is the plain VAE whose ELBO ``BetaVAETransformer.score`` reports" in doc
