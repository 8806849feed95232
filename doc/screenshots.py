"""Open pages of the built documentation in headless Chromium and save screenshots.

Usage: python doc/screenshots.py [--build doc/_build/html] [--out doc/_build/screenshots] [PAGE ...]

PAGE is a path relative to the build (default: the front page, the API page of
``BetaVAETransformer``, a guide page with measured tables and the digits gallery
example). Chromium runs with every host name unresolvable, so a page that
needed the network would show it. Look at the PNGs: this catches what a reader
trips over (broken math, missing figures, unreadable tables) that a link check
cannot. Where Chromium is absent (Debian: ``apt-get install chromium``) the
script says so and exits 0: the check is skipped, not failed.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOC = Path(__file__).resolve().parent
PAGES = [
    "index.html",
    "generated/sklearn_betavae.BetaVAETransformer.html",
    "user_guide/choosing.html",
    "auto_examples/plot_digits_vs_pca.html",
]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(browser, page, png, profile, width=1280, height=2400):
    flags = [
        browser, "--headless", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
        "--disable-background-networking", "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
        f"--user-data-dir={profile}", f"--window-size={width},{height}",
        "--virtual-time-budget=5000", f"--screenshot={png}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.insert(2, "--no-sandbox")  # Chromium refuses to run as root otherwise
    subprocess.run([*flags, page.as_uri()], capture_output=True, timeout=120, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=DOC / "_build" / "html")
    parser.add_argument("--out", type=Path, default=DOC / "_build" / "screenshots")
    parser.add_argument("pages", nargs="*", default=PAGES)
    args = parser.parse_args(argv)

    browser = find_browser()
    if browser is None:
        print("screenshots: SKIPPED, no Chromium found (tried "
              f"{', '.join(BROWSERS)}; Debian: apt-get install chromium)")
        return 0
    missing = [page for page in args.pages if not (args.build / page).is_file()]
    if missing:
        print(f"screenshots: pages not built under {args.build}: {', '.join(missing)}")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        for page in args.pages:
            png = args.out / (page.replace("/", "__").removesuffix(".html") + ".png")
            screenshot(browser, (args.build / page).resolve(), png, profile)
            size = png.stat().st_size if png.exists() else 0
            if size < 20_000:  # a rendered page, not a blank one
                print(f"screenshots: {page} gave a blank or missing screenshot ({size} bytes)")
                return 1
            print(f"screenshots: {page} -> {png} ({size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
