import copy

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from sklearn_betavae import BetaVAELoss, BetaVAETransformer
from sklearn_betavae._loss import posterior_distribution
from sklearn_betavae.inspection import latent_kl, latent_maps, latent_traversal
from sklearn_betavae.metrics import factor_correlations
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


def test_latent_maps_of_a_linear_decoder_are_its_loadings(digits):
    vae = BetaVAETransformer(**{**FAST_PARAMS, "hidden_layer_sizes": ()}).fit(digits)
    maps = latent_maps(vae).maps
    weight = vae.net_.module_.decoder.linear_map().weight.detach().double().numpy()
    np.testing.assert_allclose(maps, weight.T * vae.scale_, rtol=1e-6, atol=1e-12)


def test_latent_maps_are_the_decoders_derivative_at_the_prior_mean(digits):
    vae = BetaVAETransformer(**{**FAST_PARAMS, "max_iter": 10}).fit(digits)
    result = latent_maps(vae)
    np.testing.assert_array_equal(result.latents, [0, 1, 2])
    assert result.kl is None and result.maps.shape == (3, 64)
    step = 1e-2
    for latent in range(3):
        codes = np.zeros((2, 3))
        codes[:, latent] = [step, -step]
        decoded = vae.inverse_transform(codes)
        finite_difference = (decoded[0] - decoded[1]) / (2 * step)
        np.testing.assert_allclose(result.maps[latent], finite_difference,
                                   atol=2e-3 * np.abs(finite_difference).max())


def test_latent_maps_are_ordered_by_kl_on_the_given_data(digits):
    vae = BetaVAETransformer(**{**FAST_PARAMS, "n_components": 5, "max_iter": 10}).fit(digits)
    unordered = latent_maps(vae)
    result = latent_maps(vae, digits)
    kl = latent_kl(vae, digits)
    assert sorted(result.latents.tolist()) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(result.kl, kl[result.latents])
    assert np.all(np.diff(result.kl) <= 0)
    np.testing.assert_array_equal(result.maps, unordered.maps[result.latents])


def test_latent_maps_check_the_estimator(digits):
    with pytest.raises(NotFittedError):
        latent_maps(BetaVAETransformer(**FAST_PARAMS))
    with pytest.raises(TypeError, match="BetaVAETransformer or a Pipeline"):
        latent_maps(object())
    vae = BetaVAETransformer(**FAST_PARAMS).fit(digits)
    with pytest.raises(ValueError, match="64 features"):
        latent_maps(vae, digits[:, :5])


def test_brain_latent_maps_are_images_peaking_at_the_atrophies(brain_pipeline):
    """The map of the latent that best matches each focal atrophy peaks
    within 10 mm of its centre (2.4 and 6.6 mm, 8 mm voxels, seen on
    populations 0-2 with the default estimator)."""
    pipe, population = brain_pipeline
    result = latent_maps(pipe, population.images)
    maps = result.maps
    assert maps.shape == (*population.mask_img.shape, 4)
    np.testing.assert_array_equal(maps.affine, population.mask_img.affine)
    masker, vae = pipe[0], pipe[-1]
    expected = masker.inverse_transform(latent_maps(vae).maps[result.latents])
    np.testing.assert_array_equal(np.asarray(maps.dataobj), np.asarray(expected.dataobj))
    correlations = factor_correlations(pipe.transform(population.images), population.factors)
    data = np.asarray(maps.dataobj)
    for name, centre in population.factor_centres.items():
        latent = int(np.argmax(correlations[:, population.factor_names.index(name)]))
        volume = np.abs(data[..., result.latents.tolist().index(latent)])
        peak = np.unravel_index(np.argmax(volume), volume.shape)
        millimetres = maps.affine[:3, :3] @ np.array(peak) + maps.affine[:3, 3]
        assert np.linalg.norm(millimetres - np.array(centre)) < 10.0, name


def test_latent_maps_after_an_offset_step_are_changes_not_points(digits):
    # make_pipeline(StandardScaler(), BetaVAETransformer()), the README's
    # pipeline: the scaler's inverse_transform added its mean_ to every map.
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), BetaVAETransformer(**FAST_PARAMS)).fit(digits)
    scaler, vae = pipe[0], pipe[-1]
    result = latent_maps(pipe, digits)
    expected = latent_maps(vae).maps[result.latents] * scaler.scale_
    np.testing.assert_allclose(result.maps, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
    assert np.abs(result.maps).max() < np.abs(scaler.mean_).max()
