"""Issue #24 defect 8 (first half): the fine-tune data's curation gets its own section.

The leakage finding (training rows overlapping the evaluation data) used to appear only
as dotted keys inside a flattened manifest dump. The report now has a "Training data"
section with one row per check (found, done), the listed rows in collapsed tables, an
alert under the verdict when leaking rows were kept, a line in the Markdown summary,
and the raw manifest collapsed below. The curation reports rendered here are made by
finetune.data.curate itself, from data with known leaks (tests/finetune/data/test_leakage.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from finetune.config.schema import load_config
from finetune.data.curate import curate
from harness.report.html import render_html
from harness.report.markdown import render_markdown
from tests.finetune.conftest import write_config, write_jsonl
from tests.finetune.data.test_leakage import EVAL, TRAIN
from tests.report.synthetic import HOSTILE, as_results, make_results
from tests.report.test_html import parse

# TRAIN has 8 rows, 5 of them leaking into EVAL (3 exact, 2 by 8-grams); two repeats
# make duplicates
LEAK_ROW = (
    '<tr class="worse"><td>leakage into the evaluation data (eval.jsonl)</td>'
    '<td class="text">5 of 8 training rows overlap the 5 evaluation texts: 3 exact, '
    "2 sharing ≥ 80% of their 8-grams</td>"
    '<td class="text">KEPT in the training data; set curation.leakage.drop: true to remove '
    "them</td></tr>"
)
DROPPED_ROW = (
    '<tr class=""><td>leakage into the evaluation data (eval.jsonl)</td>'
    '<td class="text">5 of 8 training rows overlap the 5 evaluation texts: 3 exact, '
    "2 sharing ≥ 80% of their 8-grams</td>"
    '<td class="text">removed (5 rows; curation.leakage.drop)</td></tr>'
)
ALERT = (
    '<p class="alert worse"><a href="#curation">Training data: 5 training rows overlap the '
    "evaluation data and were kept; scores on that data may be inflated.</a></p>"
)


def curated_manifest(folder: Path, monkeypatch: pytest.MonkeyPatch, drop: bool) -> dict[str, Any]:
    """The manifest fields finetune.train.run writes about curation, from a real curate()."""
    monkeypatch.chdir(folder)
    write_jsonl(folder / "eval.jsonl", EVAL)
    rows = [{"prompt": p, "completion": t} if p else {"text": t} for p, t, _ in TRAIN]
    write_jsonl(folder / "train.jsonl", rows)
    path = write_config(
        folder,
        folder,  # the base model is not loaded by curation
        eval_data=["eval.jsonl"],
        curation={"leakage": {"drop": drop}},
    )
    config = load_config(path)
    return {
        "config": config.model_dump(mode="json"),
        "curation": curate(config, config.eval_data).report,
    }


def report_with(manifest: dict[str, Any]) -> dict[str, Any]:
    results = make_results(3, 12, samples=20)
    results["finetune"]["manifest"] = {"base_model": "/models/base", **manifest}
    return results


@pytest.fixture
def kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return report_with(curated_manifest(tmp_path, monkeypatch, drop=False))


def section(html: str) -> str:
    return html[html.index('<section id="curation">') : html.index('<section id="finetune">')]


def test_leakage_kept_is_a_flagged_row_an_alert_and_an_open_list(kept: dict[str, Any]) -> None:
    html = render_html(as_results(kept))
    cur = section(html)
    assert LEAK_ROW in cur
    header = html[: html.index("</header>")]
    assert ALERT in header
    assert '<a href="#curation">Training data</a>' in header  # in the table of contents
    # the leaking rows are listed, open because they were kept
    listed = cur[cur.index("training rows overlapping the evaluation data") :]
    assert cur.count("<details") == 1 and '<details class="listed" open>' in cur
    for line in (1, 2, 3, 5, 6):
        assert f'<td class="mono">train.jsonl line {line}</td>' in listed
    assert '<td class="mono">eval.jsonl line 4</td>' in listed


def test_every_check_has_its_row(kept: dict[str, Any]) -> None:
    curation = kept["finetune"]["manifest"]["curation"]
    cur = section(render_html(as_results(kept)))
    rows = re.findall(r'<tr class="(?:worse|)"><td>([^<]*)</td><td class="text">([^<]*)</td>', cur)
    assert rows == [
        ("training rows loaded", "8"),
        ("duplicates", "0 exact, 0 after normalization"),
        ("leakage into the evaluation data (eval.jsonl)", rows[2][1]),
        ("validation data", "a seeded split: 25% of the rows (seed 42)"),
        ("validation vs training", "0 validation rows repeat a training row"),
        (
            f"personal data ({curation['pii']['scanner']['library']})",
            "0 of 8 rows",
        ),
        ("training examples after curation", str(curation["train_examples"])),
        ("validation examples after curation", str(curation["validation_examples"])),
    ]


def test_dropped_leaks_are_reported_not_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    html = render_html(as_results(report_with(curated_manifest(tmp_path, monkeypatch, drop=True))))
    assert DROPPED_ROW in section(html)
    assert 'class="alert' not in html
    assert '<details class="listed">' in section(html)  # listed, collapsed


def test_raw_manifest_is_collapsed_below(kept: dict[str, Any]) -> None:
    html = render_html(as_results(kept))
    ft = html[html.index('<section id="finetune">') : html.index('<section id="samples">')]
    raw = ft[ft.index('<details class="manifest">') :]
    assert "curation.leakage.listed[0].train" in raw  # everything is still there, folded
    assert html.index('id="curation"') < html.index('<details class="manifest">')
    # no flattened curation key is shown outside the folded manifest
    assert "curation.leakage.listed" not in html.replace(raw, "")


def test_markdown_summary_names_the_kept_leak(kept: dict[str, Any]) -> None:
    md = render_markdown(kept)
    assert (
        "### Training data (fine-tune curation)\n\n"
        "- ⚠️ leakage into the evaluation data \\(eval.jsonl\\)\\: 5 of 8 training rows "
        "overlap the 5 evaluation texts\\: 3 exact, 2 sharing ≥ 80% of their 8\\-grams; "
        "KEPT in the training data; set curation.leakage.drop\\: true to remove them\n"
    ) in md


def test_markdown_nothing_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.report.markdown import NO_FLAGGED_FINDING

    md = render_markdown(report_with(curated_manifest(tmp_path, monkeypatch, drop=True)))
    assert f"### Training data (fine-tune curation)\n\n{NO_FLAGGED_FINDING}\n" in md


def test_no_curation_no_section() -> None:
    results = make_results(3, 12, samples=20)
    del results["finetune"]["manifest"]["curation"]
    html = render_html(as_results(results))
    assert 'id="curation"' not in html and 'class="alert' not in html
    assert "Training data" not in render_markdown(results)


def test_unknown_and_damaged_keys_still_render() -> None:
    from harness.report import curation_view

    results = make_results(3, 12, samples=20)
    cur = results["finetune"]["manifest"]["curation"]
    cur["leakage"] = {"eval_sources": [], "leaking": "many"}
    cur["duplicates"] = ["not", "a", "mapping"]
    cur["future_step"] = {"rows": 4, "note": "new"}
    cur["reweight"] = {"by": "group", "cells": [{"count": None}, 7]}
    html = render_html(as_results(results))
    cur_html = section(html)
    assert (
        '<tr class="worse"><td>leakage into the evaluation data (–)</td>'
        f'<td class="text">{curation_view.LEAKAGE_UNCHECKED}</td>'
    ) in cur_html
    assert '<td>future_step.rows</td><td class="text">4</td>' in cur_html
    assert '<td>duplicates</td><td class="text">not, a, mapping</td>' in cur_html  # as it is
    assert '<td>group balance (group)</td><td class="text">1 cells</td>' in cur_html


def test_hostile_curation_is_text() -> None:
    results = make_results(3, 12, samples=20, hostile=True)
    html = render_html(as_results(results))
    cur = section(html)
    tags = parse(cur).tags
    assert {t for t, _ in tags} <= {
        "section",
        "h2",
        "p",
        "code",
        "table",
        "tr",
        "th",
        "td",
        "details",
        "summary",
        "a",
    }
    assert all(not any(a.startswith("on") for a in attrs) for _, attrs in tags)
    text = "".join(parse(cur).text)
    assert "<script>document.title='PWNED'" in text  # a file name from the data, as text
    assert "\u202e" not in cur and "\x00" not in cur
    assert max(len(m) for m in re.findall("A+", cur)) < 1000
    assert HOSTILE not in cur  # shown cleaned, never verbatim
