import numpy as np
import torch

from sklearn_betavae import BetaVAETransformer, _data
from sklearn_betavae._inference import FittedModel, elbo_noise


def _model(vae):
    return FittedModel(vae.net_.module_, vae.mean_, vae.scale_, vae.default_dist_, torch.device("cpu"))


def test_chunking_does_not_change_results(fitted, digits, monkeypatch):
    model = _model(fitted)
    whole = model.encode(digits), model.elbo(digits), model.latent_kl(digits)
    monkeypatch.setattr(_data, "CHUNK_VALUES", 64 * 7)  # 7 rows per chunk
    chunked = model.encode(digits), model.elbo(digits), model.latent_kl(digits)
    for a, b in zip(whole, chunked):
        # The network runs in float32: chunking changes its last bits only.
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(a).max())


def test_memmaps_are_read_in_chunks(fitted, digits, tmp_path, monkeypatch):
    path = tmp_path / "X.dat"
    X = np.memmap(path, dtype=np.float32, mode="w+", shape=digits.shape)
    X[:] = digits
    X.flush()
    monkeypatch.setattr(_data, "CHUNK_VALUES", 64 * 50)
    seen = []
    original = _data.Standardization.chunks

    def spy(*args, **kwargs):
        for chunk in original(*args, **kwargs):
            seen.append(len(chunk))
            yield chunk

    monkeypatch.setattr(_data.Standardization, "chunks", spy)
    Z = _model(fitted).encode(np.memmap(path, dtype=np.float32, mode="r", shape=digits.shape))
    assert seen == [50, 50, 50, 50, 40]
    # float32 rows are standardized in float32: float64 ones agree to its rounding.
    np.testing.assert_allclose(Z, fitted.transform(digits), rtol=0, atol=1e-6 * np.abs(Z).max())


def test_the_fitted_module_is_used_as_it_is_no_copy(fitted, digits):
    fitted.transform(digits[:2])
    model = _model(fitted)
    assert model.module is fitted.net_.module_
    assert next(fitted.net_.module_.parameters()).dtype == torch.float32
    assert not fitted.net_.module_.training  # inference uses posterior means
    assert model.encode(digits).dtype == np.float64


def test_elbo_noise_is_fixed_and_antithetic():
    eps = elbo_noise(3)
    assert eps.shape == (16, 3) and torch.equal(eps[:8], -eps[8:])
    assert torch.equal(eps, elbo_noise(3))


def test_chunks_are_sized_by_the_widest_layer_for_narrow_data(monkeypatch):
    """A 1-feature input through 256-wide layers: each chunk's activations,
    not only its input, stay within CHUNK_VALUES values."""
    X = np.random.RandomState(0).normal(size=(3000, 1))
    vae = BetaVAETransformer(device="cpu", n_components=2, hidden_layer_sizes=(256, 64),
                             max_iter=1, random_state=0).fit(X[:200])
    monkeypatch.setattr(_data, "CHUNK_VALUES", 2**12)
    largest = []

    def record(module, inputs, output):
        outputs = output if isinstance(output, tuple) else (output,)
        largest.append(max(o.numel() for o in outputs if isinstance(o, torch.Tensor)))

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        results = [vae.transform(X), vae.score_samples(X), vae.inverse_transform(vae.transform(X)),
                   vae.sample(3000, random_state=0)]
    finally:
        handle.remove()
    assert max(largest) <= 2**12
    monkeypatch.setattr(_data, "CHUNK_VALUES", 2**23)
    np.testing.assert_allclose(results[0], vae.transform(X), rtol=1e-5, atol=1e-6)


def test_float32_rows_far_from_zero_keep_their_precision():
    # float32 rows are standardized in float32: the float32 mean is off by
    # up to half a unit here (3e7), which the correction term takes back.
    X = (3e7 + np.random.RandomState(0).normal(0, 3, size=(200, 6))).astype(np.float32)
    vae = BetaVAETransformer(device="cpu", n_components=2, hidden_layer_sizes=(8,), max_iter=3,
                             random_state=0).fit(X)
    model = _model(vae)
    from_float32 = model.encode(X)
    from_float64 = model.encode(X.astype(np.float64))
    np.testing.assert_allclose(from_float32, from_float64, rtol=0,
                               atol=1e-6 * np.abs(from_float64).max())
