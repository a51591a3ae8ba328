"""The report in a real browser: headless Chromium opens a report whose inputs and
generations carry HTML/JS payloads; no script runs, no element is injected, and the page
renders (screenshot). Skipped when Chromium is not installed (`make test` installs it
where it can: Debian packages chromium and chromium-driver)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.report.html import render_html
from tests.report.synthetic import HOSTILE, as_results, make_results
from tests.report.test_html import parse

CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
        if p and os.access(p, os.X_OK)
    ),
    None,
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed"),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: no network at all
    "--proxy-server=127.0.0.1:9",
    "--virtual-time-budget=3000",  # let any timer-based payload fire before the dump
]


def chromium(tmp_path: Path, *args: str) -> str:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_canary_script_does_run(tmp_path: Path) -> None:
    """The check below can see script execution: a page that runs one is caught."""
    page = tmp_path / "canary.html"
    page.write_text(
        "<html><head><title>clean</title></head><body>"
        "<script>document.title='PWNED';document.body.setAttribute('data-pwned','1')</script>"
        "</body></html>"
    )
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert "<title>PWNED</title>" in dom and 'data-pwned="1"' in dom


def test_payloads_do_not_run_and_page_renders(tmp_path: Path) -> None:
    results = make_results(3, 20, hostile=True)
    for g in results["gates"]:
        g["description"] = HOSTILE
    page = tmp_path / "report.html"
    page.write_text(render_html(as_results(results)), encoding="utf-8")
    title = "Release audit: synthetic"

    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert f"<title>{title}</title>" in dom and "<title>PWNED" not in dom
    tags = parse(dom).tags
    names = [t for t, _ in tags]
    assert "img" not in names and "textarea" not in names and "script" not in names
    for tag, attrs in tags:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
        assert "data-pwned" not in attrs, tag
    assert "&lt;script&gt;document.title" in dom  # the payload is there, as text

    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 2400)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 50  # text, banner, tables and charts, not a blank page
        # the red FAIL banner is painted (the stylesheet survived the </style> payload)
        assert any(rgb == (185, 28, 28) for _, rgb in colours)
