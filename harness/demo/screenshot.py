"""The README's picture of the report: a headless Chromium screenshot of a demo run.

``python -m harness.demo.screenshot reports/demo/naive/report.html docs/report.png``
(``make screenshot`` runs the demo's report through it). Chromium runs with no network,
no extensions and a throwaway profile; the report is self-contained, so nothing else
is needed. A developer tool: the harness itself never starts a browser.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--force-device-scale-factor=1",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(page: Path, png: Path, *, width: int = 1280, height: int = 1400) -> Path:
    """Render ``page`` at width x height pixels into ``png``."""
    browser = find_chromium()
    if browser is None:
        raise SystemExit("chromium not found (Debian: apt-get install chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png.resolve()}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1400)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    out = screenshot(args.page, args.png, width=args.width, height=args.height)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
