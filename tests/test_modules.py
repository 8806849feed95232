import pytest
import torch
from torch import nn

from sklearn_betavae._modules import MLPDecoder, MLPEncoder, VAEModule
from tests.conftest import LinearEncoder


def test_encoder_returns_mean_and_log_variance_heads():
    mu, logvar = MLPEncoder(7, (8, 9), 3)(torch.zeros(5, 7))
    assert mu.shape == logvar.shape == (5, 3)


def test_decoder_mirrors_and_bernoulli_ends_in_a_probability():
    out = MLPDecoder(3, (9, 8), 7, "bernoulli")(torch.randn(5, 3) * 100)
    assert out.shape == (5, 7)
    assert ((out >= 0) & (out <= 1)).all()
    mean = MLPDecoder(3, (), 7, "normal")
    assert [type(m) for m in mean.modules() if not isinstance(m, nn.Sequential)][1:] == [nn.Linear]


def test_reparameterisation_samples_in_training_and_uses_the_mean_in_eval():
    module = VAEModule(7, 3, (8,), "normal")
    x = torch.randn(4, 7)
    module.eval()
    out_a, mu, _ = module(x)
    out_b, _, _ = module(x)
    assert torch.equal(out_a, out_b)
    assert torch.equal(out_a, module.decoder(mu))
    module.train()
    out_c, _, _ = module(x)
    assert not torch.equal(out_a, out_c)


def test_gradients_reach_the_encoder_through_the_sampled_code():
    module = VAEModule(7, 3, (8,), "normal").train()
    decoded, _, _ = module(torch.randn(4, 7))
    decoded.sum().backward()
    assert module.encoder.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("use_decoder", [False, True])
def test_custom_modules_replace_the_builtin_ones(use_decoder):
    decoder = nn.Linear(2, 7) if use_decoder else None
    module = VAEModule(7, 2, (8,), "normal", encoder=LinearEncoder(7, 2), decoder=decoder)
    assert isinstance(module.encoder, LinearEncoder)
    assert isinstance(module.decoder, nn.Linear) == use_decoder
    decoded, mu, _ = module.eval()(torch.zeros(3, 7))
    assert decoded.shape == (3, 7) and mu.shape == (3, 2)
