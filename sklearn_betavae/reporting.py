"""An HTML report of a fitted beta-VAE, in the manner of nilearn's ``generate_report``.

``generate_report`` gathers on one page what a reader of a fit wants to see:
the parameters, the data and (for a brain pipeline) the mask, the training
curves, the KL of every latent, the latent maps and traversals, the
held-out score, how much each covariate explains of each latent (given
covariates), one subject's deviation from a normative reference (given a
subject), and the library versions. The page is one self-contained
HTML file: figures are inline PNG, styles are inline, there is no script
and nothing is fetched from the network, so it can be mailed, archived with
a paper's supplementary material, or opened offline.

Needs the ``plot`` extra (matplotlib; a brain pipeline also needs nilearn),
imported when a report is made.
"""

import base64
import html
import io
import platform
import time
from importlib import metadata
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import validate_params

from ._figures import draw_latent_maps
from ._pipeline_steps import compute_latent_maps, masker_index, split_pipeline
from ._report_sections import (
    MIN_CLUSTER_MM3,
    Z_THRESHOLD,
    association_figure,
    cluster_rows,
    covariate_associations,
    covariate_rows,
    deviation_map_figure,
    feature_deviation_figure,
    feature_rows,
    one_subject,
    reference_figure,
    subject_deviation,
)
from ._validation import NumberInterval
from .inspection import latent_kl
from .plotting import plot_latent_traversals, plot_training_curves

__all__ = ["BetaVAEReport", "generate_report"]

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 62em; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #3465a4; padding-bottom: .2em; }
h2 { color: #3465a4; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; font-size: .92em; }
th { background: #f0f3f8; }
img { max-width: 100%; display: block; margin: .5em 0; }
.note { color: #555; font-style: italic; }
"""

_VERSIONED = ("sklearn_betavae", "torch", "skorch", "scikit-learn", "numpy", "scipy", "nibabel",
              "nilearn", "matplotlib")


class BetaVAEReport:
    """A report made by ``generate_report``: the HTML, to save or show.

    Parameters
    ----------
    html : str
        The whole self-contained page.
    title : str
        The page's title.
    figures : list of str
        The title of every figure on the page, in order.

    Attributes
    ----------
    title : str
        The page's title.
    figures : list of str
        The title of every figure on the page, in order.

    Examples
    --------
    >>> from sklearn_betavae.reporting import BetaVAEReport
    >>> report = BetaVAEReport("<html>...</html>", "A fit", ["Training curves"])
    >>> report
    <BetaVAEReport 'A fit': 1 figures>
    """

    def __init__(self, html, title, figures):
        self._html = html
        self.title = title
        self.figures = list(figures)

    def get_html(self):
        """The page, as a string.

        Returns
        -------
        html : str
            The whole self-contained HTML page.
        """
        return self._html

    def save_as_html(self, path):
        """Write the page to a file, in UTF-8.

        Parameters
        ----------
        path : str or path-like
            The file to write (conventionally ``*.html``).

        Returns
        -------
        path : str or path-like
            The ``path`` given.
        """
        with open(path, "w", encoding="utf-8") as file:
            file.write(self._html)
        return path

    def _repr_html_(self):
        # Shown inline by Jupyter, as nilearn's reports are.
        return self._html

    def __repr__(self):
        return f"<BetaVAEReport {self.title!r}: {len(self.figures)} figures>"


@validate_params(
    {"X": "no_validation", "covariates": "no_validation", "subject": "no_validation",
     "subject_covariates": "no_validation", "title": [str, None],
     "n_traversals": [NumberInterval(Integral, 1, None, closed="left")], "verbose": ["verbose"]},
    prefer_skip_nested_validation=True,
)
def generate_report(estimator, X=None, *, covariates=None, subject=None, subject_covariates=None,
                    title=None, n_traversals=4, verbose=0):
    """Make a self-contained HTML report of a fitted estimator or brain pipeline.

    Parameters
    ----------
    estimator : BetaVAETransformer or Pipeline ending in one
        Fitted; a ``Pipeline([NiftiMasker(...), BetaVAETransformer()])``
        gets brain figures (its mask, the latent maps on the MNI152
        template, traversals as slices).
    X : array-like, list of images or None, default=None
        Held-out data in the estimator's input space (images for a brain
        pipeline). Given, the report adds the held-out score (mean ELBO per
        sample) and the KL of every latent on it, and orders the latent
        maps and traversals by that KL; without it, those sections say so.
    covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
        The covariates of X's rows (for a model fitted with covariates and
        no X: of any rows, a population). Required by a model fitted with
        covariates, which gets them for the score, the KL, the latent maps
        (averaged over these rows) and the traversals (decoded with the
        first row's). With X, the section "Latents and covariates" gives
        the R^2 of each latent's code on each covariate; for a model
        fitted without covariates they are used for that table only.
    subject : image, array-like of shape (n_features,) or (1, n_features), or None, default=None
        One subject to score against the normative reference of a model
        fitted with ``reference_fraction > 0``: one image for a brain
        pipeline (with the mask's shape and affine), else one row. The
        section "Deviation" gives its percentile among the reference
        controls, its z-map above ``|z| = 3`` with a table of the largest
        clusters (a brain pipeline) or its z-score per feature with the
        features of largest ``|z|``, and the reference's distribution with
        the subject in it.
    subject_covariates : array-like, Series or DataFrame of one row, or None, default=None
        The subject's covariates, for a model fitted with covariates.
    title : str or None, default=None
        The page's title; "BetaVAETransformer report" when None.
    n_traversals : int, default=4
        How many latents (the most informative first, with X) to show
        traversals of.
    verbose : int, default=0
        Above 0, prints each section as it is made, with the time it took
        (the figures of a brain pipeline take a few seconds each).

    Returns
    -------
    report : BetaVAEReport
        ``report.save_as_html(path)`` writes it; Jupyter shows it inline.

    Raises
    ------
    ValueError
        For a model fitted with covariates given none (or a subject without
        ``subject_covariates``), for ``subject_covariates`` given to a model
        fitted without covariates, and for a subject of a model without a
        reference (``reference_fraction=0``).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_betavae import BetaVAETransformer
    >>> from sklearn_betavae.reporting import generate_report
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAETransformer(device="cpu", n_components=3, max_iter=3,
    ...                          random_state=0).fit(X[:200])
    >>> report = generate_report(vae, X[200:300])
    >>> report.figures
    ['Training curves', 'KL per latent', 'Latent maps', 'Latent traversals']

    With a reference held out in ``fit``, one subject's deviation:

    >>> vae = BetaVAETransformer(device="cpu", n_components=3, max_iter=3,
    ...                          reference_fraction=0.2, random_state=0).fit(X[:200])
    >>> generate_report(vae, X[200:300], subject=X[300]).figures[-2:]
    ['Deviation scores per feature', 'Reference deviations']
    """
    vae, preceding = split_pipeline(estimator)
    title = "BetaVAETransformer report" if title is None else title
    masker = _masker(preceding)
    conditional = vae._covariate_encoding_ is not None
    _check_covariates(vae, X, covariates, subject, subject_covariates)
    # The covariates the model itself takes: none for a model fitted without
    # (those given then serve the association table only).
    model_covariates = covariates if conditional else None
    page = _Page(title, verbose)
    deviation = None
    if subject is not None:
        # First: a model without a reference is refused before the slow figures.
        brain = preceding is not None and masker_index(preceding) is not None
        deviation = subject_deviation(
            estimator, vae, preceding, one_subject(subject, brain),
            covariate_rows(subject_covariates, 1, "subject_covariates"),
        )

    page.section("Model")
    page.paragraph(
        f"A beta-VAE with {vae._n_features_out} latents and a {vae.default_dist_} decoder, "
        f"fitted for {vae.n_iter_} epochs on {vae.device_}."
    )
    page.table(["parameter", "value"], sorted(vae.get_params(deep=False).items()))
    fitted = [
        ("n_features_in_", vae.n_features_in_), ("n_iter_", vae.n_iter_),
        ("default_dist_", vae.default_dist_), ("device_", vae.device_),
        ("architecture", vae._architecture_.to_json()),
    ]
    if conditional:
        fitted.append(("covariates", _encoding_summary(vae._covariate_encoding_)))
    page.table(["fitted", "value"], fitted)

    page.section("Data")
    if masker is None:
        page.paragraph(f"{vae.n_features_in_} features per sample.")
    else:
        page.paragraph(_mask_summary(masker, vae.n_features_in_))
        page.figure("Mask", _mask_figure(masker))

    page.section("Training")
    page.figure("Training curves", plot_training_curves(vae))
    last = vae.net_.history[-1]
    page.table(["last epoch", "value"], [
        (key, f"{last[key]:.6g}") for key in sorted(last)
        if isinstance(last[key], float) and key.endswith(("loss", "_rec_loss", "_kl_loss"))
    ])

    page.section("Held-out data")
    kl = None
    if X is None:
        page.note("No held-out data was given (generate_report(estimator, X)): no score and no KL "
                  "per latent; the latents are in index order.")
    else:
        # Through the earlier steps once (masking images is the slow part)
        # for the score, the KL and the order of the maps.
        X = X if preceding is None else preceding.transform(X)
        kl = latent_kl(vae, X, covariates=model_covariates)
        score = vae.score(X, covariates=model_covariates)
        page.paragraph(f"Held-out score (mean evidence lower bound per sample, higher is better): "
                       f"<b>{score:.6g}</b> nats.", escape=False)
        page.figure("KL per latent", _kl_figure(kl))
    maps = compute_latent_maps(vae, preceding, kl, model_covariates)
    if kl is not None:
        page.table(["latent", "KL (nats)", "in use (KL > 0.1)"],
                   [(int(j), f"{value:.4f}", "yes" if value > 0.1 else "no")
                    for j, value in zip(maps.latents, maps.kl)])

    page.section("Latents")
    page.paragraph("Each map is the change in the reconstruction per unit of one latent at the "
                   "prior mean (the decoder's Jacobian; see sklearn_betavae.inspection.latent_maps).")
    if conditional:
        page.note(f"The model is conditioned on covariates: the maps are averaged over the "
                  f"covariates of the {len(covariates)} rows given, and the traversals are "
                  f"decoded with those of the first row ({_first_row_summary(covariates)}).")
    page.figure("Latent maps", draw_latent_maps(maps, kind="stat_map", path=None))
    shown = [int(j) for j in maps.latents[:n_traversals]]
    page.figure("Latent traversals", plot_latent_traversals(
        estimator, latents=shown, covariates=None if not conditional else _first_row(covariates)))

    if X is not None and covariates is not None:
        _association_section(page, vae.transform(X, covariates=model_covariates), covariates,
                             vae._covariate_encoding_)
    if deviation is not None:
        _deviation_section(page, vae, preceding, deviation)

    page.section("Versions")
    page.table(["library", "version"], _versions())
    return BetaVAEReport(page.html(), title, page.figure_titles)


def _check_covariates(vae, X, covariates, subject, subject_covariates):
    """Refuse, before any work, covariates missing for a model fitted with
    them, or a subject's given to a model fitted without."""
    encoding = vae._covariate_encoding_
    if encoding is not None:
        columns = "" if encoding.names is None else f" ({', '.join(encoding.names)})"
        if covariates is None:
            rows = "X's rows" if X is not None else "the rows to average the latent maps over"
            raise ValueError(
                f"generate_report: this model was fitted with {len(encoding.kinds)} "
                f"covariate(s){columns}, so the report needs them: pass "
                f"generate_report(estimator, X, covariates=...), the covariates of {rows}."
            )
        if subject is not None and subject_covariates is None:
            raise ValueError(
                f"generate_report: this model was fitted with {len(encoding.kinds)} "
                f"covariate(s){columns}, so the subject needs them too: pass "
                "subject_covariates=..., the subject's one row."
            )
    elif subject_covariates is not None:
        raise ValueError(
            "generate_report: this model was fitted without covariates, so its deviation "
            "scores take none: leave subject_covariates out."
        )


def _association_section(page, codes, covariates, encoding):
    names, r2 = covariate_associations(codes, covariates, encoding)
    page.section("Latents and covariates")
    page.paragraph(
        "How much of each latent's code (its posterior mean on the held-out data) each "
        "covariate explains: the R² of a least-squares regression of the latent on the "
        "covariate (on its values if continuous, on its one-hot levels if categorical)."
        + (" The model is conditioned on these covariates, so its code need not carry them: "
           "these values should be near zero." if encoding is not None else
           " The model was fitted without covariates: a high value is a latent that carries "
           "a covariate (a conditional model, fit(X, covariates=...), would not need to).")
    )
    page.table(["latent", *names], [(j, *(f"{value:.3f}" for value in row))
                                    for j, row in enumerate(r2)])
    page.figure("Latents and covariates", association_figure(r2, names))


def _deviation_section(page, vae, preceding, deviation):
    page.section("Deviation")
    page.paragraph(
        f"The subject's deviation percentile among the {deviation.n_reference} reference "
        f"controls: <b>{deviation.percentile:.1f}</b> (its mean squared z-score is "
        f"{deviation.value:.3g}; about 1 for a typical control, 50 is a typical percentile). "
        "Each z-score compares a feature with what the model expects of this subject, scaled "
        "by its spread among the reference controls (see "
        "BetaVAETransformer.deviation_scores).", escape=False)
    if deviation.image is not None:
        page.figure("Deviation map", deviation_map_figure(deviation.image))
        rows = cluster_rows(deviation.image)
        if rows:
            page.paragraph(f"The largest clusters of |z| > {Z_THRESHOLD:g} (both signs; at least "
                           f"{MIN_CLUSTER_MM3:g} mm³), from nilearn.reporting.get_clusters_table:")
            page.table(["peak x (mm)", "peak y (mm)", "peak z (mm)", "peak z-score",
                        "size (mm³)", "voxels"], rows)
        else:
            page.note(f"No cluster: no voxel with |z| > {Z_THRESHOLD:g} in a cluster of at least "
                      f"{MIN_CLUSTER_MM3:g} mm³.")
    else:
        page.figure("Deviation scores per feature", feature_deviation_figure(deviation.z))
        names = getattr(vae, "feature_names_in_", None) if preceding is None else None
        page.table(["feature", "z-score"], feature_rows(deviation.z, names))
    page.figure("Reference deviations", reference_figure(vae.reference_deviations_, deviation))


def _first_row(covariates):
    return covariates.iloc[:1] if hasattr(covariates, "iloc") else np.asarray(covariates)[:1]


def _first_row_summary(covariates):
    row = _first_row(covariates)
    if hasattr(row, "columns"):
        return ", ".join(f"{name}={value}" for name, value in zip(row.columns, row.iloc[0]))
    return ", ".join(f"covariate {j}={value}" for j, value in enumerate(row[0]))


def _encoding_summary(encoding):
    names = (encoding.names if encoding.names is not None
             else [f"covariate {j}" for j in range(len(encoding.kinds))])
    return "; ".join(
        f"{name} ({kind}{': ' + ', '.join(map(str, levels)) if levels else ''})"
        for name, kind, levels in zip(names, encoding.kinds, encoding.levels)
    )


class _Page:
    """The HTML of the report, built section by section."""

    def __init__(self, title, verbose=0):
        self.title = title
        self.parts = []
        self.figure_titles = []
        self.verbose = verbose
        self._started = time.perf_counter()

    def section(self, heading):
        self._log(f"{heading}")
        self.parts.append(f"<h2>{html.escape(heading)}</h2>")

    def _log(self, message):
        if self.verbose:
            print(f"[generate_report] {message} ({time.perf_counter() - self._started:.1f} s)")

    def paragraph(self, text, escape=True):
        self.parts.append(f"<p>{html.escape(text) if escape else text}</p>")

    def note(self, text):
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def table(self, header, rows):
        head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
                       for row in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def figure(self, title, figure):
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        plt.close(figure)
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        self.figure_titles.append(title)
        self._log(f"figure: {title}")
        self.parts.append(f'<figure><figcaption>{html.escape(title)}</figcaption>'
                          f'<img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">'
                          "</figure>")

    def html(self):
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{''.join(self.parts)}</body></html>\n"
        )


def _masker(preceding):
    """The pipeline's NiftiMasker (its first step) when it has one."""
    if preceding is None:
        return None
    first = preceding[0]
    return first if hasattr(first, "mask_img_") else None


def _mask_summary(masker, n_voxels):
    mask = masker.mask_img_
    sizes = np.sqrt((mask.affine[:3, :3] ** 2).sum(axis=0))
    return (f"{n_voxels} voxels inside the mask of a {' x '.join(map(str, mask.shape[:3]))} grid "
            f"of {' x '.join(f'{size:g}' for size in sizes)} mm voxels "
            f"({type(masker).__name__}).")


def _mask_figure(masker):
    import matplotlib.pyplot as plt
    from nilearn.plotting import plot_roi

    figure = plt.figure(figsize=(8, 2.8))
    plot_roi(masker.mask_img_, figure=figure, title="mask", draw_cross=False)
    return figure


def _kl_figure(kl):
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(max(4, 0.5 * len(kl) + 2), 2.8), constrained_layout=True)
    ax.bar(np.arange(len(kl)), kl, color="#3465a4")
    ax.axhline(0.1, color="grey", linestyle="--", linewidth=1, label="0.1 nats: in use above")
    ax.set(xlabel="latent", ylabel="mean KL (nats)", xticks=np.arange(len(kl)))
    ax.legend(loc="upper right", fontsize=8)
    return figure


def _versions():
    from ._version import __version__

    rows = [("python", platform.python_version())]
    for name in _VERSIONED:
        if name == "sklearn_betavae":
            rows.append((name, __version__))
            continue
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return rows
