import numpy as np
import pytest
import torch
from torch import nn

from sklearn_betavae._modules import VAEModule
from sklearn_betavae._validation import (
    check_module_outputs,
    check_unit_interval,
    check_user_module,
)


def test_unit_interval_names_the_range():
    check_unit_interval(np.array([[0.0, 1.0]]), "bernoulli")
    with pytest.raises(ValueError, match=r"\[-0.5, 2\]"):
        check_unit_interval(np.array([[-0.5, 2.0]]), "bernoulli")


def test_user_modules_are_copied_and_typed():
    linear = nn.Linear(2, 2)
    assert check_user_module(linear, "decoder") is not linear
    with pytest.raises(TypeError, match="decoder must be None or a torch.nn.Module"):
        check_user_module(lambda z: z, "decoder")


def test_bernoulli_decoder_must_return_probabilities():
    module = VAEModule(4, 2, (3,), "bernoulli", decoder=nn.Linear(2, 4))
    with torch.no_grad():
        module.decoder.bias.fill_(5.0)
    with pytest.raises(ValueError, match="end it with a sigmoid"):
        check_module_outputs(module, 4, 2, "bernoulli")
    check_module_outputs(VAEModule(4, 2, (3,), "bernoulli"), 4, 2, "bernoulli")


def _public_calls_with_a_boolean_number():
    from sklearn_betavae import mask_to_memmap
    from sklearn_betavae.datasets import load_nback_flanker
    from sklearn_betavae.metrics import beta_vae_score, factor_vae_score, mutual_information_gap
    from sklearn_betavae.reporting import generate_report

    Z = np.random.RandomState(0).normal(size=(20, 2))
    return {
        "load_nback_flanker": lambda: load_nback_flanker(True),
        "mask_to_memmap": lambda: mask_to_memmap([], None, "unused.npy", batch_size=True),
        "mutual_information_gap": lambda: mutual_information_gap(Z, Z, n_bins=True),
        "beta_vae_score": lambda: beta_vae_score(None, None, n_train=True),
        "factor_vae_score": lambda: factor_vae_score(None, None, collapsed_std=True),
        "generate_report": lambda: generate_report(None, n_traversals=True),
    }


@pytest.mark.parametrize("name", sorted(_public_calls_with_a_boolean_number()))
def test_public_functions_refuse_booleans_for_numbers(name):
    # Issue 37: True is an int to Python; as a count, a size or a scale it is a
    # mistake (make_brain_population and make_sprites refused it already).
    with pytest.raises(ValueError, match=r"\(not a bool\) in the range.*Got True"):
        _public_calls_with_a_boolean_number()[name]()
