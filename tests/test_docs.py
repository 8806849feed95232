"""The documentation's sources and checkers, without building the site.

``make docs`` builds it (examples run, Sphinx warnings as errors) and runs
``doc/check_links.py`` and ``doc/screenshots.py`` on the result; these tests
keep the API reference complete and test the link checker itself, in well
under a second.
"""

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "doc"
PUBLIC_MODULES = [
    "sklearn_betavae",
    "sklearn_betavae.inspection",
    "sklearn_betavae.metrics",
    "sklearn_betavae.datasets",
    "sklearn_betavae.plotting",
    "sklearn_betavae.reporting",
]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, DOC / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(module_name):
    api = (DOC / "api.rst").read_text(encoding="utf-8")
    module = importlib.import_module(module_name)
    assert f".. automodule:: {module_name}" in api
    documented = set(re.findall(r"^\s{3}(\w+)$", api, flags=re.MULTILINE))  # autosummary entries
    documented |= set(re.findall(r"^\.\. py:data:: (\w+)$", api, flags=re.MULTILINE))
    missing = sorted(set(module.__all__) - documented)
    assert not missing, f"{module_name}: {missing} not in doc/api.rst"


def test_gallery_examples_have_a_title_and_the_accelerate_script_is_not_run():
    conf = (DOC / "conf.py").read_text(encoding="utf-8")
    pattern = re.search(r'"filename_pattern": r"([^"]+)"', conf).group(1)
    for script in sorted((ROOT / "examples").glob("*.py")):
        text = script.read_text(encoding="utf-8")
        title = re.match(r'"""\n(=+\n)?(.+)\n=+\n', text)
        assert title, f"{script.name}: sphinx-gallery needs a docstring with a '===' title"
        executed = re.search(pattern, f"/{script.name}") is not None
        assert executed == script.name.startswith("plot_"), script.name


def _site(tmp_path, pages):
    for name, body in pages.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<!doctype html><html><head></head><body>{body}</body></html>")
    return tmp_path


GOOD = {
    "index.html": '<h1 id="top">Home</h1><a href="guide/page.html#usage">guide</a>'
                  '<a href="#top">top</a><a href="https://example.org/">elsewhere</a>'
                  '<img src="_static/logo.png"><link rel="stylesheet" href="_static/s.css?v=1">',
    "guide/page.html": '<section id="usage"><a href="../index.html">home</a>'
                       '<a href="../">home too</a><a href="mailto:a@b.c">mail</a></section>',
}


def test_link_checker_passes_a_sound_site(tmp_path):
    check_links = _load("check_links")
    site = _site(tmp_path, GOOD)
    (site / "_static").mkdir()
    (site / "_static" / "logo.png").write_bytes(b"png")
    (site / "_static" / "s.css").write_text("@font-face { src: url('fonts/a.woff2'); }")
    (site / "_static" / "fonts").mkdir()
    (site / "_static" / "fonts" / "a.woff2").write_bytes(b"font")
    assert check_links.check(site) == []
    assert check_links.main([str(site)]) == 0


@pytest.mark.parametrize("body, expected", [
    ('<a href="missing.html">x</a>', "missing.html'> does not exist"),
    ('<a href="guide/page.html#nowhere">x</a>', "no id 'nowhere' in guide/page.html"),
    ('<a href="#nowhere">x</a>', "no id 'nowhere' in index.html"),
    ('<img src="images/figure.png">', "images/figure.png'> does not exist"),
    ('<a href="../../etc/passwd">x</a>', "points outside the build"),
    ('<script src="https://cdn.example.org/lib.js"></script>', "loads from the network"),
    ('<link rel="stylesheet" href="//fonts.example.org/f.css">', "loads from the network"),
])
def test_link_checker_finds_each_kind_of_broken_reference(tmp_path, body, expected):
    check_links = _load("check_links")
    site = _site(tmp_path, {**GOOD, "index.html": GOOD["index.html"].split("<img")[0] + body})
    problems = check_links.check(site)
    assert len(problems) == 1 and expected in problems[0], problems
    assert check_links.main([str(site)]) == 1


def test_link_checker_finds_a_css_font_from_the_network(tmp_path):
    check_links = _load("check_links")
    site = _site(tmp_path, {"index.html": "<p>home</p>"})
    (site / "theme.css").write_text("@font-face { src: url(https://fonts.example.org/a.woff2); }")
    assert check_links.check(site) == ["theme.css: url(https://fonts.example.org/a.woff2) "
                                       "loads from the network"]


def test_screenshots_skip_with_a_reason_without_chromium(monkeypatch, capsys, tmp_path):
    screenshots = _load("screenshots")
    monkeypatch.setattr(screenshots, "find_browser", lambda: None)
    assert screenshots.main(["--build", str(tmp_path), "--out", str(tmp_path / "png")]) == 0
    assert "SKIPPED, no Chromium found" in capsys.readouterr().out


def test_the_guide_says_which_beta_is_the_plain_vae():
    """Issue 37: the guide said beta = 1 is a plain VAE, which holds for the
    laplace and bernoulli decoders, not for "normal" (squared error, twice
    the unit-variance negative log-likelihood: beta = 2 there)."""
    from sklearn_betavae import BetaVAETransformer

    for page in ("estimator.md", "choosing.md"):
        text = " ".join((DOC / "user_guide" / page).read_text(encoding="utf-8").split())
        assert "1 is a plain VAE" not in text and "`beta = 1` is a plain VAE;" not in text
        assert "*twice*" in text and "beta = 2" in text.replace("`", ""), page
    doc = " ".join(BetaVAETransformer.__doc__.split())
    assert "``1`` is a plain VAE" not in doc
    assert "there ``beta = 2`` is the plain VAE whose ELBO ``score`` reports" in doc
