"""The examples of a generation task that extracts answers (issue 16 point 4) show the
raw generation and the extracted answer, both as inert text."""

from __future__ import annotations

from typing import Any

from harness.report.html import render_html
from harness.report.view import samples_view
from tests.report.synthetic import as_results, make_results

ANSWER = "<script>alert('x')</script>"
RAW = "She pays $12.\n#### <b>12</b>"


def extracting_run() -> dict[str, Any]:
    """A synthetic run whose generation task stores answers; the first example's
    extracted answer is a script tag (model output is untrusted)."""
    results = make_results(2, 6, audits=False, finetune=False)
    records = results["tasks"]["gene1"]["records"]
    for i, rec in enumerate(records):
        rec["gold_answers"] = ["12"]
        rec["answer"] = "12" if i % 2 else f"answer-{i}"
    records[0].update(prediction=RAW, answer=ANSWER)
    return results


def test_rows_carry_the_raw_generation_and_the_answer() -> None:
    results = extracting_run()
    view = samples_view("gene1", results["tasks"]["gene1"], results["suite"])
    by_id = {r["id"]: r for r in view["rows"]}
    assert by_id["gene1-0"]["got"] == RAW
    assert by_id["gene1-0"]["answer"] == ANSWER
    assert by_id["gene1-0"]["expected_answer"] == "12"
    # an answer equal to a gold answer is right whatever the raw generation says
    assert by_id["gene1-1"]["ok"] and not by_id["gene1-0"]["ok"]
    assert view["headers"][1] == "generation, answer"


def test_report_escapes_the_extracted_answer_and_shows_both() -> None:
    html = render_html(as_results(extracting_run()))
    assert "<script>alert" not in html and "<b>12</b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html  # the answer
    assert "She pays $12.\n#### &lt;b&gt;12&lt;/b&gt;" in html  # the raw generation
    assert html.count('<div class="answer">') == 2 * 6  # gold and extracted, every row


def test_tasks_without_answers_show_no_answer_line() -> None:
    html = render_html(as_results(make_results(2, 6, audits=False, finetune=False)))
    assert 'class="answer"' not in html


def test_compare_flips_show_the_answers_they_are_judged_on() -> None:
    """A generation that keeps its raw text but loses its answer is a flip, and the flip
    row shows the gold answer and both runs' answers."""
    from harness.results.compare import compare

    base = extracting_run()
    new = extracting_run()
    new["tasks"]["gene1"]["records"][1]["answer"] = "13"  # gene1-1 was right
    task = next(
        t for t in compare(as_results(base), as_results(new))["tasks"] if t["id"] == "gene1"
    )
    assert task["flips"]["n_correct_to_wrong"] == 1
    (row,) = task["flips"]["correct_to_wrong"]
    assert (row["id"], row["gold"], row["baseline"], row["new"]) == ("gene1-1", "12", "12", "13")
