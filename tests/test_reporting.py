"""generate_report: one self-contained HTML page, checked as text and in a real browser."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from sklearn.exceptions import NotFittedError

from sklearn_betavae import BetaVAETransformer
from tests.conftest import FAST_PARAMS

pytest.importorskip("matplotlib")

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
