"""generate_report: one self-contained HTML page, checked as text and in a real browser."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression

from sklearn_betavae import BetaVAETransformer
from tests.conftest import FAST_PARAMS, fit_normative_brain

pytest.importorskip("matplotlib")

from sklearn_betavae._report_sections import covariate_associations  # noqa: E402
from sklearn_betavae.reporting import BetaVAEReport, generate_report  # noqa: E402

BRAIN_FIGURES = ["Mask", "Training curves", "KL per latent", "Latent maps", "Latent traversals"]


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text of <title>."""

    def __init__(self):
        super().__init__()
        self.tags, self.title, self._in_title = [], "", False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def _elements(page):
    parser = _Elements()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def brain_report(brain_pipeline):
    pipe, population = brain_pipeline
    return generate_report(pipe, population.images[:20], title="Amplitude population")


def test_brain_report_holds_every_section_and_nothing_external(brain_report, brain_pipeline):
    page = brain_report.get_html()
    elements = _elements(page)
    assert elements.title == "Amplitude population"
    assert brain_report.figures == BRAIN_FIGURES
    images = [attrs for tag, attrs in elements.tags if tag == "img"]
    assert [attrs["alt"] for attrs in images] == BRAIN_FIGURES
    assert all(attrs["src"].startswith("data:image/png;base64,") for attrs in images)
    # Self-contained: no script, no stylesheet or frame to fetch, no URL anywhere.
    assert not {tag for tag, _ in elements.tags} & {"script", "link", "iframe", "object", "embed"}
    assert not re.search(r"(https?|ftp|wss?)://", page)
    for heading in ("Model", "Data", "Training", "Held-out data", "Latents", "Versions"):
        assert f"<h2>{heading}</h2>" in page
    pipe, population = brain_pipeline
    assert f"{pipe[-1].n_features_in_} voxels inside the mask" in page
    assert f"{pipe.score(population.images[:20]):.6g}" in page
    for library in ("torch", "skorch", "scikit-learn", "nilearn", "nibabel"):
        assert f"<td>{library}</td>" in page


def test_report_without_held_out_data_says_so(digits, tmp_path, capsys):
    vae = BetaVAETransformer(**FAST_PARAMS).fit(digits)
    report = generate_report(vae, n_traversals=2, verbose=1)
    log = capsys.readouterr().out
    assert "[generate_report] Model" in log and "[generate_report] figure: Latent maps" in log
    assert isinstance(report, BetaVAEReport)
    assert report.figures == ["Training curves", "Latent maps", "Latent traversals"]
    page = report.get_html()
    assert "No held-out data was given" in page and "Held-out score" not in page
    assert report._repr_html_() == page
    path = report.save_as_html(tmp_path / "report.html")
    assert path.read_text(encoding="utf-8") == page
    assert "3 figures" in repr(report)


def test_report_checks_its_arguments(digits):
    with pytest.raises(NotFittedError):
        generate_report(BetaVAETransformer(**FAST_PARAMS))
    with pytest.raises(TypeError, match="BetaVAETransformer or a Pipeline"):
        generate_report(object())
    vae = BetaVAETransformer(**FAST_PARAMS).fit(digits)
    with pytest.raises(ValueError, match="n_traversals"):
        generate_report(vae, n_traversals=0)
    with pytest.raises(ValueError, match="64 features"):
        generate_report(vae, digits[:, :5])


# Covariates and one subject's deviation ----------------------------------------


@pytest.fixture(scope="module")
def conditional_brain():
    """A conditional normative pipeline fitted on 60 simulated controls of two
    sites, and the cohort (two patients after the controls)."""
    return fit_normative_brain(60, n_patients=2)


def test_report_of_a_conditional_brain_model_with_a_patient(conditional_brain):
    from sklearn_betavae.inspection import deviation_maps

    pipe, cohort = conditional_brain
    covariates = cohort.covariates
    report = generate_report(pipe, cohort.images[40:60], covariates=covariates.iloc[40:60],
                             subject=cohort.images[60], subject_covariates=covariates.iloc[60])
    assert report.figures == [*BRAIN_FIGURES, "Latents and covariates", "Deviation map",
                              "Reference deviations"]
    page = report.get_html()
    for heading in ("Latents and covariates", "Deviation", "Versions"):
        assert f"<h2>{heading}</h2>" in page
    assert "<th>latent</th><th>age</th><th>sex</th><th>site</th>" in page
    assert "should be near zero" in page
    first = covariates.iloc[40]
    assert f"decoded with those of the first row (age={first.age}, sex={first.sex}" in page
    result = deviation_maps(pipe, [cohort.images[60]], covariates=covariates.iloc[[60]])
    assert f"<b>{result.percentiles[0]:.1f}</b>" in page
    # The cluster table: its header, and the deepest voxel (the atrophy) as a peak.
    assert "<th>peak x (mm)</th><th>peak y (mm)</th><th>peak z (mm)</th><th>peak z-score</th>" in page
    z = result.maps.get_fdata()
    assert abs(z.min()) > 3 and f"<td>{z.min():+.2f}</td>" in page
    assert not re.search(r"(https?|ftp|wss?)://", page)


def test_the_association_table_is_the_r2_of_a_least_squares_regression():
    rng = np.random.default_rng(0)
    covariates = pd.DataFrame({"age": rng.uniform(20, 80, 30), "site": rng.choice(["a", "b", "c"], 30)})
    codes = np.column_stack([covariates.age / 20 + rng.normal(size=30),
                             (covariates.site == "b") + rng.normal(size=30)])
    names, r2 = covariate_associations(codes, covariates)
    assert names == ["age", "site"] and r2.shape == (2, 2)
    designs = {"age": covariates[["age"]].to_numpy(),
               "site": pd.get_dummies(covariates.site).to_numpy(dtype=float)}
    for latent in range(2):
        for column, name in enumerate(names):
            regression = LinearRegression().fit(designs[name], codes[:, latent])
            expected = regression.score(designs[name], codes[:, latent])
            assert r2[latent, column] == pytest.approx(expected, abs=1e-10)
    # An array's columns are numbered; its numbers are continuous.
    names, by_array = covariate_associations(codes, covariates[["age"]].to_numpy())
    assert names == ["covariate 0"]
    np.testing.assert_allclose(by_array[:, 0], r2[:, 0], atol=1e-10)


def test_a_z_map_without_a_cluster_gives_an_empty_table():
    nibabel = pytest.importorskip("nibabel")
    pytest.importorskip("nilearn")
    from sklearn_betavae._report_sections import cluster_rows

    z = np.zeros((6, 7, 8))
    z[1, 1, 1] = 5.0  # one voxel of 8 mm^3: below the smallest cluster listed
    assert cluster_rows(nibabel.Nifti1Image(z, np.diag([2.0, 2.0, 2.0, 1.0]))) == []
    z[2:5, 2:5, 2:5] = -4.0  # 27 voxels, 216 mm^3 ... still below
    z[:, :, 6:] = 4.0  # 84 voxels, 672 mm^3
    rows = cluster_rows(nibabel.Nifti1Image(z, np.diag([2.0, 2.0, 2.0, 1.0])))
    assert [(row[3], row[5]) for row in rows] == [("+4.00", 84)]


@pytest.fixture(scope="module")
def array_cohort():
    rng = np.random.default_rng(0)
    covariates = pd.DataFrame({"age": rng.uniform(20, 80, 80), "site": rng.choice(["a", "b"], 80)})
    X = (rng.normal(size=(80, 2)) @ rng.normal(size=(2, 12)) + (covariates.site == "b").to_numpy()[:, None]
         + 0.3 * rng.normal(size=(80, 12)))
    return X, covariates


def test_a_conditional_model_needs_covariates_in_the_report(array_cohort):
    X, covariates = array_cohort
    vae = BetaVAETransformer(**FAST_PARAMS, reference_fraction=0.25).fit(X[:60], covariates=covariates[:60])
    with pytest.raises(ValueError, match=r"so the report needs them: pass generate_report\(estimator, X, "
                                         r"covariates=\.\.\.\), the covariates of X's rows"):
        generate_report(vae, X[60:])
    with pytest.raises(ValueError, match="subject_covariates=..., the subject's one row"):
        generate_report(vae, X[60:], covariates=covariates[60:], subject=X[70])
    # Without X, any rows' covariates: the latent maps are averaged over them.
    report = generate_report(vae, covariates=covariates[:10], n_traversals=1)
    assert report.figures == ["Training curves", "Latent maps", "Latent traversals"]


def test_the_deviation_of_a_row_of_features(array_cohort):
    X, covariates = array_cohort
    vae = BetaVAETransformer(**FAST_PARAMS, reference_fraction=0.25).fit(X[:60], covariates=covariates[:60])
    subject = X[70].copy()
    subject[5] += 20.0  # far beyond the reference's spread
    report = generate_report(vae, X[60:70], covariates=covariates[60:70], subject=subject,
                             subject_covariates=covariates.iloc[70])
    assert report.figures == ["Training curves", "KL per latent", "Latent maps", "Latent traversals",
                              "Latents and covariates", "Deviation scores per feature",
                              "Reference deviations"]
    page = report.get_html()
    z = vae.deviation_scores(subject[None], covariates=covariates.iloc[[70]])[0]
    percentile = vae.deviation_percentiles(subject[None], covariates=covariates.iloc[[70]])[0]
    assert f"<b>{percentile:.1f}</b>" in page
    # The 10 features of largest |z|, the shifted one first.
    assert int(np.argmax(np.abs(z))) == 5
    assert f"<tr><td>feature 5</td><td>{z[5]:+.2f}</td></tr>" in page
    assert page.count("<tr><td>feature ") == 10
    with pytest.raises(ValueError, match="one subject, a row of features"):
        generate_report(vae, subject=X[:2], covariates=covariates[:2], subject_covariates=covariates[:2])


def test_a_model_without_covariates_uses_them_for_the_table_only(array_cohort):
    X, covariates = array_cohort
    vae = BetaVAETransformer(**FAST_PARAMS).fit(X[:60])
    report = generate_report(vae, X[60:], covariates=covariates[60:], n_traversals=1)
    assert report.figures[-1] == "Latents and covariates"
    assert "fitted without covariates" in report.get_html()
    with pytest.raises(ValueError, match="has none: fit it with reference_fraction > 0"):
        generate_report(vae, subject=X[60])
    with pytest.raises(ValueError, match="leave subject_covariates out"):
        generate_report(vae, subject=X[60], subject_covariates=covariates.iloc[60])


# In the browser: a copy of the page with a policy that allows nothing but
# inline styles, data: images and the check's own inline script, which
# records what a reader would see once the page has loaded.
_CHECK = """<meta http-equiv="Content-Security-Policy" content="default-src 'none';
 img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<script>
const blocked = [];
document.addEventListener('securitypolicyviolation', e => blocked.push(e.blockedURI));
window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.setAttribute('data-check', JSON.stringify({
    title: document.title, captions: [...document.querySelectorAll('figcaption')].map(c => c.textContent),
    drawn: images.filter(i => i.complete && i.naturalWidth > 100 && i.naturalHeight > 100).length,
    images: images.length, blocked: blocked}));
});
</script>"""


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium here (Debian: apt-get install chromium); the report is checked as text only")


def test_brain_report_renders_in_headless_chromium(brain_report, tmp_path):
    browser = _chromium()
    page = brain_report.get_html().replace("<head>", "<head>" + _CHECK, 1)
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    match = re.search(r'data-check="([^"]*)"', dom)
    assert match, "the page did not finish loading in Chromium"
    check = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["title"] == "Amplitude population"
    assert check["captions"] == BRAIN_FIGURES
    assert check["images"] == check["drawn"] == len(BRAIN_FIGURES)
    assert check["blocked"] == []  # the page asked for nothing outside itself
    screenshot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1200,3000", f"--screenshot={screenshot}", path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert screenshot.stat().st_size > 50_000  # a rendered page, not a blank one
