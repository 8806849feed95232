"""Sphinx configuration of the sklearn_betavae documentation.

Built offline: no intersphinx, no math from a CDN (formulas are plain text),
and the theme's fonts and scripts are bundled with it. ``make docs`` runs
``sphinx-build -W --keep-going -b html doc doc/_build/html``; add
``-D plot_gallery=0`` to skip running the examples while editing.
"""

import os
import re
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # gallery_reset
os.environ.setdefault("MPLBACKEND", "Agg")

import sklearn_betavae  # noqa: E402

project = "sklearn_betavae"
author = "the sklearn_betavae developers"
copyright = "the sklearn_betavae developers, BSD-3-Clause"
version = release = sklearn_betavae.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "auto_examples/*.md5"]
default_role = "literal"
nitpicky = False
suppress_warnings = ["myst.header"]
myst_heading_anchors = 3

# API reference: one page per public name, generated from the docstrings.
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# Gallery: the examples/plot_*.py scripts are run and their figures kept;
# train_with_accelerate.py (launched by `accelerate launch`) is shown, not run.
sphinx_gallery_conf = {
    # Each example starts from scikit-learn's default configuration.
    "reset_modules": ("matplotlib", "gallery_reset.reset_sklearn_config"),
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "doc_module": ("sklearn_betavae",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"sklearn_betavae": None},
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "show_memory": False,
    # The execution-times pages load jQuery and DataTables from a CDN: left
    # out, so that no page needs the network (each example shows its time).
    "write_computation_times": False,
    "min_reported_time": 1,
    "within_subsection_order": "FileNameSortKey",
}

# The examples set the Agg backend themselves; silence the warning that
# matplotlib gives when they do so after sphinx-gallery has.
warnings.filterwarnings("ignore", category=UserWarning,
                        message="Matplotlib is currently using agg")

html_theme = "pydata_sphinx_theme"
html_title = f"sklearn_betavae {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
toc_object_entries_show_parents = "hide"
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": True,
    "navbar_end": ["theme-switcher"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
    "show_toc_level": 2,
}
html_context = {"default_mode": "light"}
# Pages without sub-pages get the whole width (no empty navigation column).
html_sidebars = {page: [] for page in ("index", "install", "api", "benchmarks", "changelog")}
# Unlabelled code blocks are printed tables and shell output, not Python.
highlight_language = "text"


# "ndarray of shape (n_samples, n_features_in_)": in reStructuredText a word
# ending in "_" is a link; escape it in types outside inline literals.
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\\])\b([A-Za-z]\w*)_(?=[,)\]])")


def _escape_trailing_underscores(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        parts = line.split("``")
        parts[::2] = [_TRAILING_UNDERSCORE.sub(r"\1\\_", part) for part in parts[::2]]
        lines[i] = "``".join(parts)


# scikit-learn writes the set_*_request methods (metadata routing), whose
# docstrings cite its own glossary and user guide; without intersphinx (no
# fetching) those roles are plain text here, with a link to its guide.
_SKLEARN_ROLE = re.compile(r":(?:term|ref):`(?:([^`<]*?)\s*<[^>]*>|([^`]*))`")
_ROUTING_GUIDE = "https://scikit-learn.org/stable/metadata_routing.html"


def _plain_sklearn_roles(app, what, name, obj, options, lines):
    if not name.endswith("_request"):
        return
    for i, line in enumerate(lines):
        line = line.replace(":ref:`User Guide <metadata_routing>`",
                            f"`User Guide <{_ROUTING_GUIDE}>`__")
        lines[i] = _SKLEARN_ROLE.sub(lambda match: match.group(1) or match.group(2), line)


def setup(app):
    # After numpydoc (priority 500) has turned the docstring into reST.
    app.connect("autodoc-process-docstring", _escape_trailing_underscores, priority=600)
    app.connect("autodoc-process-docstring", _plain_sklearn_roles, priority=600)
