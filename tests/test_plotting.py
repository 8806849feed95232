"""Each plotting function returns a Figure and writes the file it is given."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from sklearn_betavae import BetaVAETransformer
from tests.conftest import FAST_PARAMS

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from sklearn_betavae.plotting import (  # noqa: E402
    plot_factor_correlations,
    plot_latent_maps,
    plot_latent_traversals,
    plot_score_vs_beta,
    plot_training_curves,
)


@pytest.fixture(scope="module")
def fitted(digits):
    return BetaVAETransformer(**FAST_PARAMS, early_stopping=True).fit(digits)


def _written(figure, path):
    assert isinstance(figure, Figure)
    assert path.exists() and path.stat().st_size > 1000
    return figure


def test_training_curves_show_train_and_validation(fitted, tmp_path):
    figure = _written(plot_training_curves(fitted, path=tmp_path / "curves.png"), tmp_path / "curves.png")
    assert [ax.get_title() for ax in figure.axes] == ["total loss", "reconstruction", "KL"]
    assert [line.get_label() for line in figure.axes[0].get_lines()] == ["train", "valid"]
    first = figure.axes[1].get_lines()[0].get_ydata()
    np.testing.assert_allclose(first, fitted.net_.history[:, "train_rec_loss"])


def test_traversals_of_digits_are_images(fitted, tmp_path):
    figure = plot_latent_traversals(fitted, latents=[0, 2], values=[-1, 0, 1], path=tmp_path / "t.png")
    _written(figure, tmp_path / "t.png")
    assert len(figure.axes) == 6 and figure.axes[0].get_images()


def test_traversals_of_brains_are_slices(tmp_path):
    pytest.importorskip("nilearn")
    from nilearn.maskers import NiftiMasker
    from sklearn.pipeline import Pipeline

    from sklearn_betavae.datasets import make_brain_population

    population = make_brain_population(30, kind="nonlinear", random_state=0)
    pipe = Pipeline([("masker", NiftiMasker(population.mask_img, standardize=None)),
                     ("vae", BetaVAETransformer(**FAST_PARAMS))]).fit(population.images)
    figure = plot_latent_traversals(pipe, latents=[1], values=[-2, 2], cut_coords=10.0,
                                    path=tmp_path / "brain.png")
    _written(figure, tmp_path / "brain.png")


def test_latent_maps_of_digits_are_images_titled_by_kl(fitted, digits, tmp_path):
    figure = _written(plot_latent_maps(fitted, digits, path=tmp_path / "m.png"), tmp_path / "m.png")
    assert len(figure.axes) == 3 and all(ax.get_images() for ax in figure.axes)
    assert all(ax.get_title().startswith("latent ") and "KL" in ax.get_title() for ax in figure.axes)


@pytest.mark.parametrize("kind", ["stat_map", "prob_atlas"])
def test_latent_maps_of_brains(brain_pipeline, kind, tmp_path):
    pipe, population = brain_pipeline
    figure = plot_latent_maps(pipe, population.images[:20], kind=kind, path=tmp_path / "b.png")
    _written(figure, tmp_path / "b.png")
    if kind == "stat_map":
        assert sum(bool(ax.get_images()) for ax in figure.axes) >= 4 * 3  # 4 latents, 3 cuts each


def test_factor_correlation_heat_map(tmp_path):
    correlations = np.array([[0.9, 0.1], [0.2, 0.7], [0.0, 0.05]])
    figure = plot_factor_correlations(correlations, ["age", "lesion"], path=tmp_path / "c.svg")
    _written(figure, tmp_path / "c.svg")
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["age", "lesion"]
    assert {t.get_text() for t in ax.texts} >= {"0.90", "0.70"}


def test_score_vs_beta_from_a_grid_search(digits, tmp_path):
    search = GridSearchCV(BetaVAETransformer(**FAST_PARAMS), {"beta": [0.5, 4.0]}, cv=2).fit(digits)
    figure = _written(plot_score_vs_beta(search, path=tmp_path / "b.png"), tmp_path / "b.png")
    line = figure.axes[0].get_lines()[0]  # the data line; the rest are error-bar caps
    np.testing.assert_allclose(line.get_xdata(), [0.5, 4.0])
    np.testing.assert_allclose(line.get_ydata(), search.cv_results_["mean_test_score"])
    axis = figure.axes[0].xaxis
    assert [label.get_text() for label in axis.get_ticklabels()] == ["0.5", "4"]
    assert not axis.get_minorticklocs().size  # no "2x10^0"-style minor labels
    other = GridSearchCV(BetaVAETransformer(**FAST_PARAMS), {"n_components": [2]}, cv=2).fit(digits)
    with pytest.raises(ValueError, match="no beta parameter"):
        plot_score_vs_beta(other)


def test_unfitted_or_foreign_estimators_are_refused(digits):
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline

    for unfitted in (BetaVAETransformer(), Pipeline([("vae", BetaVAETransformer())])):
        for plot in (plot_training_curves, plot_latent_traversals):
            with pytest.raises(NotFittedError):
                plot(unfitted)
    with pytest.raises(TypeError, match="BetaVAETransformer or a Pipeline"):
        plot_training_curves(PCA(2).fit(digits))


@pytest.mark.parametrize("bad, match", [
    ({"latents": 5}, "'latents' parameter"),
    ({"latents": [3]}, r"latent must be an integer in \[0, 3\)"),
    ({"values": 1.0}, "'values' parameter"),
    ({"values": []}, "values"),
    ({"cut_coords": "top"}, "'cut_coords' parameter"),
])
def test_traversal_plot_arguments_are_validated(fitted, bad, match):
    with pytest.raises(ValueError, match=match):
        plot_latent_traversals(fitted, **bad)


def test_traversal_plot_decodes_with_the_covariates_given(random_data):
    import pandas as pd

    from sklearn_betavae.inspection import latent_traversal

    covariates = pd.DataFrame({"site": ["a", "b"] * 20})
    vae = BetaVAETransformer(**FAST_PARAMS).fit(random_data, covariates=covariates)
    curves = []
    for row in (covariates.iloc[[0]], covariates.iloc[[1]]):
        figure = plot_latent_traversals(vae, latents=[1], values=[-1.0, 1.0], covariates=row)
        # 9 features: a 3 x 3 image per cell.
        curves.append(np.asarray(figure.axes[1].images[0].get_array()).ravel())
        expected = latent_traversal(vae, 1, values=[-1.0, 1.0], covariates=row)[1]
        np.testing.assert_allclose(curves[-1], expected)
    assert not np.allclose(*curves)  # the site changes what is decoded
    with pytest.raises(ValueError, match="fitted with 1 covariate"):
        plot_latent_traversals(vae)


def test_traversal_plot_draws_the_fitted_latents(digits):
    vae = BetaVAETransformer(**FAST_PARAMS).fit(digits).set_params(n_components=5)
    figure = plot_latent_traversals(vae, values=[0.0, 1.0])
    assert len(figure.axes) == 3 * 2


@pytest.mark.parametrize("bad, match", [
    (np.ones(3), "Expected 2D array"),
    (np.full((2, 2), np.nan), "NaN"),
    ("abc", "'correlations' parameter"),
])
def test_factor_correlation_plot_arguments_are_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        plot_factor_correlations(bad)
    with pytest.raises(ValueError, match="2 factor_names for 3 factors"):
        plot_factor_correlations(np.ones((2, 3)), ["a", "b"])


def test_score_vs_beta_keeps_beta_zero_on_a_symlog_axis(digits):
    search = GridSearchCV(BetaVAETransformer(**FAST_PARAMS), {"beta": [0.0, 1.0, 4.0]}, cv=2).fit(digits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = plot_score_vs_beta(search)
    ax = figure.axes[0]
    assert ax.get_xscale() == "symlog"
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [0.0, 1.0, 4.0])
    with pytest.raises(ValueError, match="'search' parameter"):
        plot_score_vs_beta(BetaVAETransformer())
