"""`harness trend RUN...`: each gated metric across runs with its CI and the gate's
thresholds, failing points marked, the best run named in the metric's direction; runs
that do not trend together are refused with a located error (exit 2); the page is one
self-contained file that headless Chromium renders without a script error or a fetch."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.errors import UserError
from harness.report.trend_view import build, render_trend_html
from harness.results.store import load_results
from tests.report.synthetic import HOSTILE, make_results
from tests.report.test_browser import CHROMIUM, FLAGS
from tests.report.test_html import parse

NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
QUALITIES = [0.55, 0.9, 0.7]  # the second run is the best classifier


def write_runs(
    root: Path, qualities: list[float] = QUALITIES, name: str | None = None, **kw: Any
) -> list[Path]:
    paths = []
    for i, q in enumerate(qualities):
        doc = make_results(3, 40, seed=i, quality=q, samples=50, **kw)
        if name is not None:
            doc["suite"]["name"] = name
        doc["provenance"]["adapter"]["path"] = f"/ft/checkpoint-{(i + 1) * 100}"
        folder = root / f"epoch-{i + 1}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(doc), encoding="utf-8")
        paths.append(folder / "results.json")
    return paths


def runs_of(paths: list[Path]) -> list[tuple[Path, Any]]:
    return [(p, load_results(p)) for p in paths]


def test_each_gated_metric_across_runs_and_the_best_run(tmp_path: Path) -> None:
    paths = write_runs(tmp_path)
    runs = runs_of(paths)
    view = build(runs)
    gated = [g.metric for g in runs[0][1].gates]
    assert [m["name"] for m in view["metrics"]] == gated
    acc = view["metrics"][0]
    assert acc["name"] == "clas0.accuracy" and acc["direction"].startswith("↑")
    values = [r[1].tasks["clas0"].metrics["accuracy"] for r in runs]
    assert [row["value"] for row in acc["rows"]] == [f"{m.value:.4g}" for m in values]
    assert acc["rows"][0]["ci"] == f"[{values[0].ci_low:.4g}, {values[0].ci_high:.4g}]"
    assert [row["run"] for row in acc["rows"]] == ["1. epoch-1", "2. epoch-2", "3. epoch-3"]
    assert [r["adapter"] for r in view["runs"]] == [
        "checkpoint-100",
        "checkpoint-200",
        "checkpoint-300",
    ]
    assert acc["chart"].startswith("<svg")
    best = max(range(3), key=lambda i: values[i].value or 0)
    assert view["best"]["index"] == best == 1 and view["best"]["name"] == "epoch-2"

    # lower is better: the registry's direction of perplexity
    ppl = [r[1].tasks["perp2"].metrics["perplexity"].value for r in runs]
    view = build(runs, best="perp2.perplexity")
    assert view["best"]["index"] == ppl.index(min(ppl))
    assert view["best"]["direction"] == "lower is better"


def test_failing_points_and_thresholds_are_drawn(tmp_path: Path) -> None:
    runs = runs_of(write_runs(tmp_path, [0.2, 0.95]))
    view = build(runs)
    acc = view["metrics"][0]
    assert [r["verdict"] for r in acc["rows"]] == ["fail", "pass"]
    svg = acc["chart"]
    assert "min 0.5" in svg  # the gate's threshold, labelled
    assert "#dc2626" in svg  # the failing point in red


def test_cli_writes_the_page_and_names_the_best(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_runs(tmp_path)
    out = tmp_path / "trend.html"
    argv = ["trend", *map(str, paths), "--out", str(out), "--best", "clas0.accuracy"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "best run by clas0.accuracy (higher is better): 2. epoch-2" in err
    html = out.read_text()
    assert 'id="best"' in html and "epoch-2" in html
    # run folders work as well as their results.json
    assert main(["trend", *(str(p.parent) for p in paths), "--out", str(out)]) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["suite"].update(name="other"), "a run of suite 'other', but"),
        (lambda d: d["gates"].pop(), "its gates read"),
    ],
    ids=["other-suite", "other-gates"],
)
def test_runs_that_do_not_trend_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any, message: str
) -> None:
    paths = write_runs(tmp_path)
    doc = json.loads(paths[2].read_text())
    change(doc)
    paths[2].write_text(json.dumps(doc))
    assert main(["trend", *map(str, paths), "--out", str(tmp_path / "t.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {paths[2]}: ") and message in err
    assert "Traceback" not in err and not (tmp_path / "t.html").exists()


def test_a_file_that_is_not_results_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_runs(tmp_path, [0.7])
    bad = tmp_path / "suite.yaml"
    bad.write_text("name: x\n")
    assert main(["trend", str(paths[0]), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not a results file" in err


def test_unknown_best_metric(tmp_path: Path) -> None:
    runs = runs_of(write_runs(tmp_path, [0.7, 0.8]))
    with pytest.raises(UserError, match="--best nope.accuracy: no run has this metric"):
        build(runs, best="nope.accuracy")


def test_page_is_self_contained_and_inert(tmp_path: Path) -> None:
    html = render_trend_html(runs_of(write_runs(tmp_path, name=HOSTILE, hostile=True)))
    tags = parse(html).tags
    names = [t for t, _ in tags]
    assert "script" not in names and "img" not in names and "link" not in names
    for tag, attrs in tags:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
    # the only URL is the SVG namespace, which is a name, never fetched
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) <= NAMESPACES
    assert "Content-Security-Policy" in html
    assert "&lt;script&gt;document.title" in html  # the hostile suite name, as text


def chromium_log(page: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    """The DOM (stdout) and the browser's log with its console messages (stderr)."""
    proc = subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--log-level=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_the_log_shows_a_script_error(tmp_path: Path) -> None:
    """The check below can see a script error: a page that throws one is caught."""
    page = tmp_path / "throws.html"
    page.write_text("<html><body><script>throw new Error('boom')</script></body></html>")
    assert "Uncaught Error: boom" in chromium_log(page, tmp_path / "profile").stderr


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_renders_in_chromium_without_errors_or_requests(tmp_path: Path) -> None:
    page = tmp_path / "trend.html"
    page.write_text(render_trend_html(runs_of(write_runs(tmp_path, [0.2, 0.9, 0.7]))))
    profile = tmp_path / "profile"
    proc = chromium_log(page, profile)
    assert "<title>Trend: synthetic</title>" in proc.stdout
    assert proc.stdout.count("<svg") >= 3  # one chart per gated metric
    log = proc.stderr
    assert "Uncaught" not in log and "CONSOLE" not in log, log[-2000:]
    assert not re.search(r"https?://(?!www\.w3\.org/)", log), log[-2000:]

    shot = tmp_path / "trend.png"
    subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1280,1600",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    from PIL import Image

    with Image.open(shot) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50  # tables and charts, not a blank page
    assert any(rgb == (220, 38, 38) for _, rgb in colours)  # a failing point, in red
