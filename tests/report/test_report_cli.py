"""`harness report`: re-renders any format from a stored results.json; exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.results.store import dumps
from tests.report.stored_run import copy_run, stored_run  # noqa: F401 (fixtures)
from tests.report.synthetic import as_results, make_results


@pytest.fixture(scope="module")
def results_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report-cli") / "results.json"
    path.write_text(dumps(as_results(make_results(3, 20))), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["html", "junit", "md"])
def test_report_to_stdout_and_file(
    results_file: Path, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(results_file), "--format", fmt]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "nested" / f"out.{fmt}"
    assert main(["report", str(results_file), "--format", fmt, "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == printed
    if fmt == "html":
        assert printed.startswith("<!DOCTYPE html>")
    elif fmt == "junit":
        ET.fromstring(printed)
    else:
        assert printed.startswith("## ")


def test_default_format_is_html(results_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(results_file)]) == 0
    assert "<!DOCTYPE html>" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("{broken", "not a results file of this harness"),
        ("[1, 2]", "not a results file of this harness"),
        ('{"tasks": {}}', "missing schema_version or tasks"),
    ],
)
def test_bad_results_exit_2(
    tmp_path: Path, content: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path), "--format", "md"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unwritable_out_exits_2(
    results_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["report", str(results_file), "--out", str(blocker / "report.html")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_unknown_format_exits_2(results_file: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", str(results_file), "--format", "pdf"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_run_writes_every_format_as_a_rendering_of_results(
    stored_run: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = stored_run / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "digests.json",
        "junit.xml",
        "report.html",
        "results.json",
        "summary.md",
    ]
    for fmt, name in (("html", "report.html"), ("junit", "junit.xml"), ("md", "summary.md")):
        again = tmp_path / name
        assert (
            main(["report", str(out / "results.json"), "--format", fmt, "--out", str(again)]) == 0
        )
        assert again.read_bytes() == (out / name).read_bytes(), name
    results = json.loads((out / "results.json").read_text())
    assert results["finetune"]["history"][-1] == {
        "step": 6,
        "epoch": 1.5,
        "train_loss": 2.7,
        "val_loss": 2.95,
    }
    assert results["finetune"]["manifest"]["best_step"] == 6
    html = (out / "report.html").read_text()
    assert 'id="finetune"' in html and "learning curves" in html
    # the audits' real sections render (forgetting with flips, explanations, privacy)
    assert set(results["audits"]) == {"forgetting", "explain", "privacy"}
    forgetting = html[html.index('id="forgetting"') : html.index('id="explain"')]
    assert "sentiment" in forgetting and "Flipped examples" in forgetting and "lm" in forgetting
    explain = html[html.index('id="explain"') : html.index('id="privacy"')]
    assert "lime: top terms by mean |attribution|" in explain
    assert explain.count('<article class="explained">') == len(
        results["audits"]["explain"]["examples"]
    )
    assert "background-color:rgba(" in explain
    privacy = results["audits"]["privacy"]
    assert [c["id"] for c in privacy["canaries"]["canaries"]] == ["canary-0", "control-0"]
    assert privacy["pii"]["tasks"] == ["summarize"] and privacy["extraction"]["listed"] == 2
    section = html[html.index('id="privacy"') : html.index('id="finetune"')]
    assert "Canary exposure" in section and "Verbatim extraction" in section
    assert "Personal data in the fine-tune data" in html
    summary = (out / "summary.md").read_text()
    assert "- **Forgetting** (checkpoint vs base):" in summary and "- **Explanations**" in summary
    junit = ET.fromstring((out / "junit.xml").read_text())
    assert len(junit.findall("./testsuite/testcase")) == 3
