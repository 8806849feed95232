"""Figures for a fitted beta-VAE: training curves, latent maps, traversals, factor correlations, beta search.

Needs the ``plot`` extra (matplotlib; the brain traversals also use nilearn's
plotting), imported when a function is called. Every function returns the
``matplotlib.figure.Figure`` and, given ``path``, also saves it there.
"""

import os
from numbers import Real

import numpy as np
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils._param_validation import StrOptions, validate_params
from sklearn.utils.validation import check_array, check_is_fitted

from ._figures import draw_latent_maps, draw_row, pyplot, saved
from ._pipeline_steps import check_traversal_values, split_pipeline
from .inspection import latent_maps, latent_traversal

_PATH = [str, os.PathLike, None]

__all__ = [
    "plot_factor_correlations",
    "plot_latent_maps",
    "plot_latent_traversals",
    "plot_score_vs_beta",
    "plot_training_curves",
]


@validate_params({"path": _PATH}, prefer_skip_nested_validation=True)
def plot_training_curves(estimator, path=None):
    """Loss per epoch from the net's history: total, reconstruction and KL.

    Parameters
    ----------
    estimator : BetaVAETransformer or Pipeline ending in one
        Fitted. Validation curves are drawn when it trained with
        ``early_stopping=True``.
    path : str or path-like or None, default=None
        Where to save the figure (format from the suffix).

    Returns
    -------
    figure : matplotlib.figure.Figure
        The figure, also saved to ``path`` when given.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_betavae import BetaVAETransformer
    >>> from sklearn_betavae.plotting import plot_training_curves
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAETransformer(device="cpu", n_components=2, max_iter=3,
    ...                          random_state=0).fit(X[:100])
    >>> [ax.get_title() for ax in plot_training_curves(vae).axes]
    ['total loss', 'reconstruction', 'KL']
    """
    history = split_pipeline(estimator)[0].net_.history
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.5), constrained_layout=True)
    for ax, (term, title) in zip(axes, [("loss", "total loss"), ("rec_loss", "reconstruction"),
                                        ("kl_loss", "KL")]):
        for prefix in ("train", "valid"):
            key = f"{prefix}_{term}"
            epochs = [row["epoch"] for row in history if key in row]
            if epochs:
                ax.plot(epochs, [row[key] for row in history if key in row], label=prefix)
        ax.set(title=title, xlabel="epoch", ylabel="nats per sample")
        ax.legend()
    return saved(figure, path)


@validate_params(
    {"X": "no_validation", "covariates": "no_validation",
     "kind": [StrOptions({"stat_map", "prob_atlas"})], "path": _PATH},
    prefer_skip_nested_validation=True,
)
def plot_latent_maps(estimator, X=None, *, covariates=None, kind="stat_map", path=None):
    """Every latent's map (``inspection.latent_maps``), as nilearn shows decompositions.

    Parameters
    ----------
    estimator : Pipeline ending in a BetaVAETransformer, or the estimator
        Fitted. After a ``NiftiMasker`` the maps are brain images on the
        MNI152 template (bundled with nilearn); otherwise each map is drawn
        as a square image when its length is a square (such as digits), or
        as a curve.
    X : array-like, list of images or None, default=None
        Data to order the latents by their KL on (most informative first;
        the KL is in each title); None keeps the index order.
    covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
        For a model fitted with covariates (required then): the covariates
        of X's rows, or without X of any rows (a population). The maps are
        averaged over them (see ``inspection.latent_maps``).
    kind : {"stat_map", "prob_atlas"}, default="stat_map"
        For brain maps: one ``plot_stat_map`` per latent, cut through its
        largest absolute value (red: the reconstruction rises with the
        latent, blue: it falls), or all of them in one ``plot_prob_atlas``,
        as nilearn's example comparing CanICA and DictLearning does. The
        atlas outlines where each absolute map exceeds half its peak (the
        sign of a latent is arbitrary).
    path : str or path-like or None, default=None
        Where to save the figure (format from the suffix).

    Returns
    -------
    figure : matplotlib.figure.Figure
        The figure, also saved to ``path`` when given.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_betavae import BetaVAETransformer
    >>> from sklearn_betavae.plotting import plot_latent_maps
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAETransformer(device="cpu", n_components=2, max_iter=3,
    ...                          random_state=0).fit(X[:100])
    >>> len(plot_latent_maps(vae, X[100:200]).axes)
    2
    """
    return draw_latent_maps(latent_maps(estimator, X, covariates=covariates), kind, path)


@validate_params(
    {"latents": ["array-like", None], "values": ["array-like"], "reference": ["array-like", None],
     "cut_coords": [Real, None], "path": _PATH, "covariates": "no_validation"},
    prefer_skip_nested_validation=True,
)
def plot_latent_traversals(estimator, latents=None, values=np.linspace(-2.0, 2.0, 5),
                           reference=None, cut_coords=None, path=None, *, covariates=None):
    """A grid of decoded traversals: one row per latent, one column per value.

    Parameters
    ----------
    estimator : Pipeline ending in a BetaVAETransformer, or the estimator
        Fitted. After a ``NiftiMasker`` each cell is one axial slice of the
        change from the map at the value nearest 0 (red up, blue down, one
        scale per row); otherwise the decoded row is drawn as a curve, or as a
        square image when its length is a square (such as digits).
    latents : list of int or None, default=None
        Rows to draw; all the latents the estimator was fitted with when None.
    values : array-like, default=np.linspace(-2, 2, 5)
        The traversed values, in prior standard deviations.
    reference : array-like of shape (n_components,) or None, default=None
        The other latents' values (see ``latent_traversal``).
    cut_coords : float or None, default=None
        The z coordinate (mm) of the axial slice; nilearn chooses when None.
    path : str or path-like or None, default=None
        Where to save the figure (format from the suffix).
    covariates : array-like or DataFrame of shape (1, n_covariates) or None, default=None
        For a model fitted with covariates (required then): the one row of
        covariates every code is decoded with (a subject's age, sex, site;
        see ``inspection.latent_traversal``).

    Returns
    -------
    figure : matplotlib.figure.Figure
        The figure, also saved to ``path`` when given.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_betavae import BetaVAETransformer
    >>> from sklearn_betavae.plotting import plot_latent_traversals
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAETransformer(device="cpu", n_components=2, max_iter=3,
    ...                          random_state=0).fit(X[:100])
    >>> len(plot_latent_traversals(vae, values=[-2, 0, 2]).axes)
    6
    """
    vae, _ = split_pipeline(estimator)
    # The fitted latent count: n_components may have been changed since.
    latents = list(range(vae._n_features_out)) if latents is None else list(np.ravel(latents))
    if not latents:
        raise ValueError("latents must name at least one latent (or be None for all); got none.")
    values = check_traversal_values(values)
    plt = pyplot()
    figure, axes = plt.subplots(len(latents), len(values), squeeze=False,
                                figsize=(2.2 * len(values), 2.0 * len(latents)))
    for row, latent in enumerate(latents):
        traversal = latent_traversal(estimator, latent, values=values, reference=reference,
                                     covariates=covariates)
        for column, value in enumerate(values):
            ax = axes[row, column]
            _draw_cell(ax, traversal, column, cut_coords, centre=int(np.argmin(np.abs(values))))
            if row == 0:
                ax.set_title(f"z = {value:+.1f}")
        axes[row, 0].text(-0.1, 0.5, f"latent {latent}", transform=axes[row, 0].transAxes,
                          rotation=90, va="center", ha="right")
    return saved(figure, path)


def _draw_cell(ax, traversal, column, cut_coords, centre):
    if hasattr(traversal, "affine"):  # a 4D NIfTI image
        import nibabel
        from nilearn.plotting import plot_img

        # The change from the map at the value nearest 0, on a diverging scale:
        # the maps themselves differ too little to see side by side.
        data = np.asarray(traversal.dataobj, dtype=np.float32)
        change = data[..., column] - data[..., centre]
        limit = float(np.abs(data - data[..., [centre]]).max()) or 1.0
        plot_img(nibabel.Nifti1Image(change, traversal.affine), display_mode="z", axes=ax,
                 cut_coords=None if cut_coords is None else [cut_coords], cmap="RdBu_r",
                 vmin=-limit, vmax=limit, colorbar=False, annotate=False, draw_cross=False,
                 black_bg=False)
        return
    draw_row(ax, np.asarray(traversal)[column], cmap="gray")


@validate_params(
    {"correlations": ["array-like"], "factor_names": ["array-like", None], "path": _PATH},
    prefer_skip_nested_validation=True,
)
def plot_factor_correlations(correlations, factor_names=None, path=None):
    """Heat map of the latent x factor matrix of ``factor_correlations``.

    Parameters
    ----------
    correlations : array-like of shape (n_latents, n_factors)
        The matrix to draw, e.g. from ``metrics.factor_correlations``.
    factor_names : list of str or None, default=None
        Column labels; ``factor 0``, ``factor 1``, ... when None.
    path : str or path-like or None, default=None
        Where to save the figure (format from the suffix).

    Returns
    -------
    figure : matplotlib.figure.Figure
        The figure, also saved to ``path`` when given.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_betavae.plotting import plot_factor_correlations
    >>> figure = plot_factor_correlations(np.eye(2), factor_names=["size", "position"])
    >>> [label.get_text() for label in figure.axes[0].get_xticklabels()]
    ['size', 'position']
    """
    correlations = check_array(correlations, dtype=np.float64, input_name="correlations")
    n_latents, n_factors = correlations.shape
    names = [f"factor {j}" for j in range(n_factors)] if factor_names is None else list(factor_names)
    if len(names) != n_factors:
        raise ValueError(
            f"Got {len(names)} factor_names for {n_factors} factors (columns of correlations)."
        )
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(1.2 * n_factors + 2, 0.5 * n_latents + 1.5),
                              constrained_layout=True)
    image = ax.imshow(correlations, vmin=0, vmax=1, cmap="viridis")
    for (i, j), value in np.ndenumerate(correlations):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center",
                color="black" if value > 0.6 else "white")
    ax.set(xticks=range(n_factors), xticklabels=names, yticks=range(n_latents),
           yticklabels=[f"latent {i}" for i in range(n_latents)])
    ax.tick_params(axis="x", rotation=30)
    figure.colorbar(image, ax=ax, label="|Spearman correlation|")
    return saved(figure, path)


@validate_params({"search": [BaseSearchCV], "path": _PATH}, prefer_skip_nested_validation=True)
def plot_score_vs_beta(search, path=None):
    """Mean cross-validated score (held-out ELBO) against beta, from a grid search.

    Parameters
    ----------
    search : fitted GridSearchCV or RandomizedSearchCV
        Over a parameter named ``beta`` or ending in ``__beta``. With other
        parameters in the grid, one line per combination of them. The beta
        axis is logarithmic; with ``beta=0`` in the search it is symmetric-log
        (linear below the smallest positive beta), so that 0 is drawn too.
    path : str or path-like or None, default=None
        Where to save the figure (format from the suffix).

    Returns
    -------
    figure : matplotlib.figure.Figure
        The figure, also saved to ``path`` when given.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_betavae import BetaVAETransformer
    >>> from sklearn_betavae.plotting import plot_score_vs_beta
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAETransformer(device="cpu", n_components=2, max_iter=2, random_state=0)
    >>> search = GridSearchCV(vae, {"beta": [1.0, 4.0]}, cv=2).fit(X[:100])
    >>> plot_score_vs_beta(search).axes[0].get_xlabel()
    'beta'
    """
    check_is_fitted(search, "cv_results_")
    plt = pyplot()
    results = search.cv_results_
    keys = [key for key in results if key.startswith("param_") and
            (key == "param_beta" or key.endswith("__beta"))]
    if not keys:
        raise ValueError("The search has no beta parameter (beta or <step>__beta).")
    beta_key = keys[0]
    others = [key for key in results if key.startswith("param_") and key != beta_key]
    lines = {}
    for index, beta in enumerate(results[beta_key]):
        label = ", ".join(f"{key[6:]}={results[key][index]}" for key in others) or "score"
        lines.setdefault(label, []).append(
            (float(beta), results["mean_test_score"][index], results["std_test_score"][index])
        )
    figure, ax = plt.subplots(figsize=(5, 3.5), constrained_layout=True)
    for label, points in lines.items():
        beta, mean, std = np.array(sorted(points)).T
        ax.errorbar(beta, mean, yerr=std, marker="o", capsize=3, label=label)
    betas = np.array([point[0] for points in lines.values() for point in points])
    if (betas <= 0).any():
        # A log axis would drop beta=0 (a plain autoencoder) without a word.
        positive = betas[betas > 0]
        ax.set_xscale("symlog", linthresh=positive.min() if positive.size else 1.0)
    else:
        ax.set_xscale("log")
    # A tick at each searched beta, labelled as written: over less than a
    # decade the log axis would otherwise label only minor ticks, as "2x10^0".
    ticks = np.unique(betas)
    ax.set_xticks(ticks, [f"{beta:g}" for beta in ticks])
    ax.set_xticks([], minor=True)
    ax.set(xlabel="beta", ylabel="mean held-out score (ELBO)")
    if others:
        ax.legend()
    return saved(figure, path)
