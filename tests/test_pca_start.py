import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback, LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR

from sklearn_betavae import BetaVAETransformer
from sklearn_betavae._pca_start import fit_pca, ppca_solution
from tests.conftest import FAST_PARAMS, LinearEncoder, requires_cuda


def low_rank(n_samples, n_features=200, rank=3, noise=0.3, seed=0):
    rng = np.random.RandomState(seed)
    scores = rng.normal(size=(n_samples, rank)) * [3.0, 2.0, 1.5][:rank]
    loadings = rng.normal(size=(rank, n_features))
    offsets = rng.uniform(-5, 5, size=n_features)
    return scores @ loadings + offsets + noise * rng.normal(size=(n_samples, n_features))


class RecordStart(Callback):
    """Keeps a copy of the weights the network starts training with."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.weights = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}


def start_weights(vae):
    """The weights the fitted ``vae`` started training with (its RecordStart)."""
    return next(cb for _, cb in vae.net_.callbacks_ if isinstance(cb, RecordStart)).weights


def test_ppca_solution_by_hand():
    gain, logvar, loading = ppca_solution([10.0, 3.0, 1.0], beta=4.0)  # noise variance 2
    np.testing.assert_allclose(loading, [np.sqrt(8), 1.0, 0.0])
    np.testing.assert_allclose(gain, [np.sqrt(8) / 10, 1 / 3, 0.0])
    np.testing.assert_allclose(logvar, [np.log(0.2), np.log(2 / 3), 0.0])


def test_ppca_solution_at_beta_zero_is_finite():
    gain, logvar, loading = ppca_solution([4.0, 0.0], beta=0.0)
    np.testing.assert_allclose(loading, [2.0, 0.0])
    np.testing.assert_allclose(gain, [0.5, 0.0])
    assert logvar[0] == -30.0 and logvar[1] == 0.0


def test_the_start_is_the_linear_vae_optimum():
    # At the pPCA solution the gradient of the expected loss is zero: over
    # many noise draws (float64) it is a Monte Carlo error of about 1/sqrt(draws).
    X = StandardScaler().fit_transform(low_rank(400, n_features=20))
    params = dict(device="cpu", n_components=3, hidden_layer_sizes=(), max_iter=1, batch_size=400,
                  learning_rate_init=1e-12, standardize=False, beta_warmup=0.0, random_state=0)
    x = torch.as_tensor(X).repeat(1000, 1)

    def gradient_norm(init):
        vae = BetaVAETransformer(**params, init=init).fit(X)
        module = vae.net_.module_.train().double()
        module.zero_grad(set_to_none=True)  # not the training step's gradient
        vae.net_.loss_terms(module(x), x)["loss"].backward()
        return torch.cat([p.grad.flatten() for p in module.parameters()]).norm()

    assert gradient_norm("pca") < 0.005 * gradient_norm("random")


@pytest.mark.parametrize("training", ["none", "constant", "cosine"])
def test_linear_model_with_pca_start_has_pca_subspace_and_error(training):
    X = low_rank(700, n_features=400)
    X_train, X_test = X[:500], X[500:]
    budget = {
        # One step of a vanishing learning rate: the start itself.
        "none": {"max_iter": 1, "learning_rate_init": 1e-12},
        "constant": {},
        "cosine": {"callbacks": [LRScheduler(policy=CosineAnnealingLR, T_max=200)]},
    }[training]
    vae = BetaVAETransformer(beta=1.0, device="cpu", n_components=3, hidden_layer_sizes=(),
                             random_state=0, **budget).fit(X_train)
    # The default scaling divides by one number: the start is PCA of X as it is.
    scaler = StandardScaler(with_std=False).fit(X_train)
    pca = PCA(3).fit(scaler.transform(X_train))
    decoder = vae.net_.module_.decoder.linear_map().weight.detach().double().numpy()
    # Seen: 1e-7 rad at the start, 7e-4 after constant-rate training, 2e-4 annealed.
    assert subspace_angles(decoder, pca.components_.T).max() < (
        5e-3 if training == "constant" else 1e-3)
    vae_mse = np.mean((vae.inverse_transform(vae.transform(X_test)) - X_test) ** 2)
    pca_rec = scaler.inverse_transform(pca.inverse_transform(pca.transform(scaler.transform(X_test))))
    pca_mse = np.mean((pca_rec - X_test) ** 2)
    # The posterior mean shrinks component i by (lambda_i - beta / 2) / lambda_i,
    # which costs a little (seen: 1.003). 200 epochs of Adam at a constant
    # learning rate wander from the optimum, near the subspace (seen: 1.03;
    # 1.10-1.13 with per-feature scaling); a learning rate annealed to zero
    # comes back to it (seen: 1.003).
    assert 1 <= vae_mse / pca_mse < (1.3 if training == "constant" else 1.01)


def test_mlp_residual_starts_at_zero_so_the_network_starts_at_ppca():
    X = low_rank(300, n_features=40)
    params = {**FAST_PARAMS, "hidden_layer_sizes": (16, 8), "callbacks": [RecordStart()]}
    mlp = start_weights(BetaVAETransformer(**params).fit(X))
    for name in ("encoder.head.weight", "encoder.head.bias", "decoder.body.0.4.weight",
                 "decoder.body.0.4.bias"):
        assert not mlp[name].any(), name
    assert mlp["encoder.linear.weight"].any()
    linear = start_weights(BetaVAETransformer(**{**params, "hidden_layer_sizes": ()}).fit(X))
    torch.testing.assert_close(linear["encoder.head.weight"], mlp["encoder.linear.weight"])
    torch.testing.assert_close(linear["decoder.body.0.0.weight"], mlp["decoder.linear.weight"])


def test_validation_rows_are_left_out_of_the_pca():
    X = low_rank(100, n_features=30)
    X[:, 0] += np.arange(100) * 0.5  # a trend, so the two halves' means differ
    vae = BetaVAETransformer(**FAST_PARAMS, early_stopping=True, validation_fraction=0.5,
                             callbacks=[RecordStart()]).fit(X)
    standardized = (X - vae.mean_) / vae.scale_
    train_part, valid_part = vae.net_.get_split_datasets(np.float32(standardized))
    train_rows = standardized[train_part.indices]
    # The decoder's offset is the training rows' mean, not the one over all rows (zero).
    np.testing.assert_allclose(start_weights(vae)["decoder.linear.bias"].numpy(),
                               train_rows.mean(axis=0), atol=1e-5)
    assert abs(standardized.mean(axis=0)[0]) < 1e-9
    assert abs(train_rows.mean(axis=0)[0]) > 1e-3


def test_components_below_the_noise_level_start_at_the_prior():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 5))
    X[:, [0, 2]] = X[:, [1]] + 0.01 * X[:, [0, 2]]  # one strong direction, the rest noise
    vae = BetaVAETransformer(**{**FAST_PARAMS, "n_components": 4, "max_iter": 1,
                                "learning_rate_init": 1e-12, "standardize": True}).fit(X)
    # Standardized: eigenvalues about 3, 1, 1, 0 against beta / 2 = 2 (beta=4).
    _, logvar = vae.net_.module_.encoder(torch.zeros(1, 5))
    logvar = logvar.detach().numpy().ravel()
    assert logvar[0] == pytest.approx(np.log(2 / 3), abs=0.05)
    np.testing.assert_allclose(logvar[1:], 0, atol=1e-6)
    assert np.all(np.isfinite(vae.transform(X)))


def test_more_components_than_training_rows(random_data):
    params = {**FAST_PARAMS, "n_components": 6, "callbacks": [RecordStart()]}
    vae = BetaVAETransformer(**params).fit(random_data[:4])
    assert vae.transform(random_data).shape == (40, 6)
    assert np.isfinite(vae.transform(random_data)).all()
    # 4 rows have 3 directions of variance: latents 3-5 start at the prior.
    start = start_weights(vae)
    assert not start["encoder.linear.weight"][3:6].any()
    assert not start["encoder.linear.bias"][3:6].any() and not start["encoder.linear.bias"][9:].any()
    assert not start["decoder.linear.weight"][:, 3:].any()


def test_rounding_level_variance_is_not_a_latent_even_at_beta_zero():
    # Rank 2 in 30 features: at beta=0 (no noise floor) only 2 latents start in use.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 30))
    vae = BetaVAETransformer(beta=0.0, device="cpu", n_components=6, hidden_layer_sizes=(),
                             max_iter=1, learning_rate_init=1e-12, random_state=0,
                             callbacks=[RecordStart()]).fit(X)
    weight = start_weights(vae)["decoder.body.0.0.weight"]
    assert (weight.abs().sum(axis=0) > 0).sum() == 2
    assert np.abs(vae.transform(X + rng.normal(size=X.shape))).max() < 100


@pytest.mark.parametrize("path", ["one chunk", "exact scatter", "randomized"])
def test_chunked_pca_matches_scikit_learn(path, monkeypatch):
    from sklearn_betavae import _data

    n_rows, n_features = (300, 40) if path != "randomized" else (30, 500)
    # Chunks of at most 2,000 values: 40 x 40 is no larger, 500 x 500 is.
    if path != "one chunk":
        monkeypatch.setattr(_data, "CHUNK_VALUES", 2000)
    X = np.float32(low_rank(n_rows, n_features=n_features, rank=3, noise=0.5))
    step = 7  # small chunks, uneven at the end
    chunks = lambda: (X[i:i + step].copy() for i in range(0, n_rows, step))  # noqa: E731
    mean, components, eigenvalues, explained = fit_pca(chunks, n_rows, n_features, 5, 0)
    pca = PCA(5, svd_solver="full").fit(np.float64(X))
    np.testing.assert_allclose(mean, pca.mean_, rtol=1e-5, atol=1e-4)
    expected = pca.explained_variance_ * (n_rows - 1) / n_rows
    # The randomized solver finds the 3 signal components as tightly, and
    # those in the flat noise spectrum approximately (as scikit-learn's own).
    signal = 3 if path == "randomized" else 5
    np.testing.assert_allclose(eigenvalues[:signal], expected[:signal], rtol=1e-4)
    np.testing.assert_allclose(eigenvalues[signal:], expected[signal:], rtol=0.02)
    np.testing.assert_allclose(explained[:signal], pca.explained_variance_ratio_[:signal],
                               rtol=1e-4)
    # Signed as scikit-learn signs them (largest loading positive), so the
    # start does not depend on what sign an eigensolver returns.
    for found, direction in zip(components[:signal], pca.components_):
        assert found @ direction > 1 - 1e-5
    assert (components[np.arange(5), np.abs(components).argmax(axis=1)] > 0).all()


@pytest.mark.parametrize("path", ["one chunk", "exact scatter", "randomized"])
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_chunked_pca_standardizes_the_rows_it_is_given(path, offset, monkeypatch):
    # The rows as the dataset stores them, float32, far from zero or not,
    # each feature in its own units: the PCA of the standardized rows.
    from sklearn_betavae import _data

    n_rows, n_features = (300, 40) if path != "randomized" else (30, 500)
    if path != "one chunk":
        monkeypatch.setattr(_data, "CHUNK_VALUES", 2000)
    rng = np.random.default_rng(1)
    units = rng.uniform(0.1, 10.0, n_features)
    X = np.float32(low_rank(n_rows, n_features=n_features, rank=3, noise=0.5) * units + offset)
    standardization = _data.Standardization(X.mean(axis=0, dtype=np.float64),
                                            X.std(axis=0, dtype=np.float64))
    step = 7
    chunks = lambda: (X[i:i + step] for i in range(0, n_rows, step))  # noqa: E731
    mean, components, eigenvalues, explained = fit_pca(
        chunks, n_rows, n_features, 5, 0, standardization=standardization)
    standardized = standardization.apply(np.float64(X))
    pca = PCA(5, svd_solver="full").fit(standardized)
    np.testing.assert_allclose(mean, 0, atol=1e-5)
    signal = 3 if path == "randomized" else 5
    expected = pca.explained_variance_ * (n_rows - 1) / n_rows
    np.testing.assert_allclose(eigenvalues[:signal], expected[:signal], rtol=1e-4)
    np.testing.assert_allclose(explained[:signal], pca.explained_variance_ratio_[:signal],
                               rtol=1e-4)
    for found, direction in zip(components[:signal], pca.components_):
        assert abs(found @ direction) > 1 - 1e-5


def test_chunked_pca_leaves_its_chunks_alone():
    X = np.float32(low_rank(50, n_features=20))
    before = X.copy()
    fit_pca(lambda: iter([X[:25], X[25:]]), 50, 20, 3, 0)
    np.testing.assert_array_equal(X, before)
    # Nor the training data, when fit trains on X in place without standardizing.
    X_fit = np.ascontiguousarray(X)
    BetaVAETransformer(**FAST_PARAMS, standardize=False).fit(X_fit)
    np.testing.assert_array_equal(X_fit, before)


def test_warm_start_never_reinitialises(digits, monkeypatch):
    vae = BetaVAETransformer(**FAST_PARAMS, warm_start=True).fit(digits)
    before = {k: v.clone() for k, v in vae.net_.module_.state_dict().items()}

    def fail(*args, **kwargs):
        raise AssertionError("pca_start called on a warm start")

    monkeypatch.setattr("sklearn_betavae._estimator.pca_start", fail)
    vae.set_params(callbacks=[RecordStart()]).fit(digits)
    for name, value in before.items():
        torch.testing.assert_close(start_weights(vae)[name], value)


def test_random_init_is_not_the_pca_start(digits):
    pca = BetaVAETransformer(**FAST_PARAMS, callbacks=[RecordStart()]).fit(digits)
    rand = BetaVAETransformer(**FAST_PARAMS, init="random", callbacks=[RecordStart()]).fit(digits)
    assert start_weights(pca)["encoder.head.weight"].abs().sum() == 0
    assert start_weights(rand)["encoder.head.weight"].abs().sum() > 0


def test_pca_start_is_printed_with_verbose(digits, capsys):
    BetaVAETransformer(**FAST_PARAMS, verbose=1).fit(digits)
    out = capsys.readouterr().out
    assert "PCA start on 240 training rows: " in out and "of 3 latents in use" in out
    BetaVAETransformer(**FAST_PARAMS, init="random", verbose=1).fit(digits)
    assert "PCA start" not in capsys.readouterr().out


def test_pca_needs_the_builtin_normal_network(digits, unit_data):
    with pytest.raises(ValueError, match='init="pca" starts the built-in encoder'):
        BetaVAETransformer(**FAST_PARAMS, init="pca", encoder=LinearEncoder(64, 3)).fit(digits)
    with pytest.raises(ValueError, match="default_dist='bernoulli'"):
        BetaVAETransformer(**FAST_PARAMS, init="pca", default_dist="bernoulli").fit(unit_data)
    # "auto" falls back to a random start there.
    BetaVAETransformer(**FAST_PARAMS, encoder=LinearEncoder(64, 3)).fit(digits)
    BetaVAETransformer(**FAST_PARAMS, default_dist="laplace").fit(digits)


@pytest.mark.parametrize("path", ["exact scatter", "randomized"])
def test_chunked_pca_moves_only_its_sums_to_the_host(path, monkeypatch):
    """Tensor chunks (rows resident on a GPU, in a fit there; CPU tensors
    stand in) are reduced where they are: what crosses to the host is a
    pass's sums, never a chunk. The results are those of the same rows
    given as NumPy chunks, to rounding."""
    from sklearn_betavae import _data

    monkeypatch.setattr(_data, "CHUNK_VALUES", 2000)
    n_rows, n_features = (300, 40) if path == "exact scatter" else (30, 500)
    X = np.float32(low_rank(n_rows, n_features=n_features, rank=3, noise=0.5) + 100.0)
    step = 7
    expected = fit_pca(lambda: (X[i:i + step] for i in range(0, n_rows, step)), n_rows, n_features, 5, 0)
    rows = torch.from_numpy(X)
    moved = []

    def spy(name):
        original = getattr(torch.Tensor, name)

        def method(tensor, *args, **kwargs):
            moved.append(tuple(tensor.shape))
            return original(tensor, *args, **kwargs)

        return method

    for name in ("cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, spy(name))
    found = fit_pca(lambda: (rows[i:i + step] for i in range(0, n_rows, step)), n_rows, n_features, 5, 0)
    assert moved and not any(len(shape) == 2 and shape[0] <= step for shape in moved), moved
    # The 3 signal components to float32 rounding (those of the flat noise
    # spectrum are not defined much better than that).
    np.testing.assert_allclose(found[0], expected[0], rtol=1e-9)
    np.testing.assert_allclose(found[2][:3], expected[2][:3], rtol=1e-5)
    assert (np.abs(np.sum(found[1][:3] * expected[1][:3], axis=1)) > 1 - 1e-6).all()


def test_the_fit_path_of_rows_resident_on_a_device(monkeypatch):
    """What a fit does with rows ``resident_rows`` put on a GPU, with the
    CPU standing in for the GPU: the statistics, the PCA start (a conditional
    one too) and training read the tensor, and the model is the one of the
    same rows as NumPy, to rounding."""
    from sklearn_betavae import _data, _estimator, _pca_start

    monkeypatch.setattr(_data, "CHUNK_VALUES", 2000)  # the chunked PCA, not one chunk
    rng = np.random.RandomState(0)
    X = np.float32(low_rank(400, n_features=30, rank=3, noise=0.5) * 5 + 2)
    covariates = np.column_stack([rng.uniform(20, 80, 400), rng.randint(3, size=400)])
    params = dict(FAST_PARAMS, max_iter=2, reference_fraction=0.2, categorical_covariates=[1])

    def fits():
        return [BetaVAETransformer(**params).fit(X),
                BetaVAETransformer(**params).fit(X, covariates=covariates)]

    expected = fits()
    given = []

    def as_if_resident(X_fit, device):
        given.append(X_fit.shape)
        return torch.from_numpy(X_fit)

    monkeypatch.setattr(_estimator, "resident_rows", as_if_resident)
    # The start's chunks stay tensors, as on a GPU (a CPU tensor would go to NumPy).
    tensor_chunks = []
    monkeypatch.setattr(_pca_start, "_numpy_on_cpu", lambda rows: tensor_chunks.append(rows) or rows)
    found = fits()
    assert tensor_chunks and all(isinstance(chunk, torch.Tensor) for chunk in tensor_chunks)
    assert given == [(320, 30), (320, 30)]
    for vae, reference in zip(found, expected, strict=True):
        np.testing.assert_allclose(vae.mean_, reference.mean_, rtol=1e-12)
        np.testing.assert_allclose(vae.scale_, reference.scale_, rtol=1e-12)
    np.testing.assert_allclose(found[0].transform(X), expected[0].transform(X), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(found[1].deviation_scores(X[:20], covariates=covariates[:20]),
                               expected[1].deviation_scores(X[:20], covariates=covariates[:20]),
                               rtol=1e-3, atol=1e-3)


@requires_cuda
@pytest.mark.parametrize("shape", [(20_000, 600), (3_000, 3_000)])  # exact scatter, randomized
@pytest.mark.parametrize("conditional", [False, True])
def test_the_pca_start_on_a_gpu_is_the_cpus(shape, conditional):
    """Rows resident on the GPU: the statistics and the start's passes (the
    covariates' regression too) run there, and give the CPU's start to
    float32 rounding."""
    X = np.float32(low_rank(shape[0], n_features=shape[1], rank=3, noise=0.5))
    rng = np.random.RandomState(1)
    covariates = np.column_stack([rng.uniform(20, 80, len(X)), rng.randint(3, size=len(X))])
    extra = dict(categorical_covariates=[1]) if conditional else {}
    starts = [start_weights(BetaVAETransformer(device=device, n_components=4, hidden_layer_sizes=(16,),
                                               max_iter=1, learning_rate_init=1e-12, random_state=0,
                                               callbacks=[RecordStart()], **extra)
                            .fit(X, covariates=covariates if conditional else None))
              for device in ("cpu", "cuda")]
    for name, weight in starts[0].items():
        np.testing.assert_allclose(starts[1][name].cpu().numpy(), weight.numpy(), rtol=1e-3, atol=1e-4,
                                   err_msg=name)
