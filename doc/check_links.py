"""Check the built documentation offline: every internal link resolves, nothing loads from the network.

Usage: python doc/check_links.py [BUILD_DIR]   (default: doc/_build/html)

For every HTML file of the build, each ``href`` and ``src`` that is not an
external URL must name a file of the build (relative paths, query strings
ignored) and, with a ``#fragment``, an element of that page with that ``id``
(or ``name``). Resources the page loads (images, scripts, stylesheets, icons,
frames) must not be external URLs, nor may ``url(...)`` in the build's CSS:
the site has to work offline. Links to external pages (``<a href="https://...">``)
are allowed and not fetched. Sphinx's ``linkcheck`` builder goes to the
internet for those; this script does not.

Exits 1 and lists the problems, one per line, if there are any.
"""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

SKIPPED_SCHEMES = {"mailto", "javascript", "data", "tel"}
# Attributes that make the browser fetch something, by tag.
LOADED = {"img": "src", "script": "src", "iframe": "src", "source": "src", "video": "src",
          "audio": "src", "embed": "src", "input": "src"}
LOADED_LINK_RELS = {"stylesheet", "icon", "shortcut", "preload", "modulepreload",
                    "apple-touch-icon", "manifest", "prefetch"}
CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.refs = []  # (tag, attribute, value, loaded)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "link" and attrs.get("href"):
            rels = set((attrs.get("rel") or "").lower().split())
            self.refs.append((tag, "href", attrs["href"], bool(rels & LOADED_LINK_RELS)))
        elif tag == "a" and attrs.get("href") is not None:
            self.refs.append((tag, "href", attrs["href"], False))
        elif tag in LOADED and attrs.get(LOADED[tag]):
            self.refs.append((tag, LOADED[tag], attrs[LOADED[tag]], True))
        if attrs.get("srcset"):
            for candidate in attrs["srcset"].split(","):
                if candidate.strip():
                    self.refs.append((tag, "srcset", candidate.split()[0], True))

    handle_startendtag = handle_starttag


def _parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    page.close()
    return page


def _pages(build):
    """The site's pages: HTML files outside the theme's and sources' folders
    (``_static`` holds templates copied as they are, not pages)."""
    return [path for path in sorted(build.rglob("*.html"))
            if not {"_static", "_sources"} & set(path.relative_to(build).parts[:-1])]


def check(build):
    """Return the problems found in the built site under ``build``, as strings."""
    build = Path(build).resolve()
    if not (build / "index.html").is_file():
        return [f"{build}: no index.html (build the site first)"]
    pages = {path: _parse(path) for path in _pages(build)}
    problems = []

    def target_of(source, value):
        """The file a relative reference points to, or a problem."""
        parts = urlsplit(value)
        if not parts.path:
            return source, None
        target = (source.parent / unquote(parts.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        if build not in target.parents and target != build:
            return None, "points outside the build"
        if not target.exists():
            return None, "does not exist"
        return target, None

    for source, page in pages.items():
        where = source.relative_to(build)
        for tag, attribute, value, loaded in page.refs:
            value = value.strip()
            parts = urlsplit(value)
            if parts.scheme in SKIPPED_SCHEMES:
                continue
            if parts.scheme or parts.netloc:  # http://, https://, //host/...
                if loaded:
                    problems.append(f"{where}: <{tag} {attribute}={value!r}> loads from the network")
                continue
            if value in ("", "#"):
                continue
            target, problem = target_of(source, value)
            if problem:
                problems.append(f"{where}: <{tag} {attribute}={value!r}> {problem}")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if fragment not in ids:
                    problems.append(f"{where}: <{tag} {attribute}={value!r}> no id {fragment!r} "
                                    f"in {target.relative_to(build)}")

    for css in sorted(build.rglob("*.css")):
        where = css.relative_to(build)
        for _, value in CSS_URL.findall(css.read_text(encoding="utf-8", errors="replace")):
            parts = urlsplit(value.strip())
            if parts.scheme in SKIPPED_SCHEMES or value.startswith("#"):
                continue
            if parts.scheme or parts.netloc:
                problems.append(f"{where}: url({value}) loads from the network")
                continue
            target = (css.parent / unquote(parts.path)).resolve()
            if not target.exists():
                problems.append(f"{where}: url({value}) does not exist")
    return problems


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    build = Path(argv[0]) if argv else Path(__file__).resolve().parent / "_build" / "html"
    problems = check(build)
    n_pages = len(_pages(Path(build).resolve()))
    for problem in problems:
        print(problem)
    if problems:
        print(f"check_links: {len(problems)} problem(s) in {n_pages} pages under {build}")
        return 1
    print(f"check_links: every internal link and anchor of {n_pages} pages resolves; "
          "nothing is loaded from the network")
    return 0


if __name__ == "__main__":
    sys.exit(main())
