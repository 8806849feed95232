"""Tests of ``_device``: the device parameter resolved and checked."""

import pytest
import torch

from sklearn_betavae._device import resolve_device, same_device, with_index


@pytest.mark.parametrize("device", ["cpu", "cpu:0", torch.device("cpu")])
def test_cpu_devices(device):
    assert resolve_device(device) == torch.device("cpu")


def test_auto_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:-1", "cpu:1", " cpu", torch.device("meta")])
def test_malformed_devices(device):
    with pytest.raises(ValueError, match="cuda:N"):
        resolve_device(device)


def test_cuda_index_beyond_the_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


def test_cuda_without_an_index_means_the_current_device(monkeypatch):
    """Tensors report "cuda:0", which does not equal torch.device("cuda")."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert with_index(torch.device("cuda")) == torch.device("cuda:0")
    assert with_index(torch.device("cuda:1")) == torch.device("cuda:1")
    assert with_index(torch.device("cpu")) == torch.device("cpu")


def test_cuda_and_its_index_are_the_same_device(monkeypatch):
    """A model fitted on "cuda:0" continues on "cuda" (or "auto"), and the other way round."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert same_device("cuda", torch.device("cuda:0"))
    assert same_device(torch.device("cuda:0"), "cuda")
    assert not same_device("cuda", "cuda:1")
    assert not same_device("cpu", "cuda:0")
    assert same_device("cpu", torch.device("cpu"))
