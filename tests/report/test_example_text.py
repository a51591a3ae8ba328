"""Issue #24 defect 8 (second half): per-example tables show the input text beside the id.

Forgetting flips and most-moved examples, counterfactual flips, explained examples,
outputs with personal data and the worst examples named an example by its id only; the
text is in the run's stored records. Each now shows the input, shortened to a line
with the whole text one click away, cleaned and autoescaped (the text is untrusted).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from harness.report.html import render_compare_html, render_html
from tests.report.synthetic import as_results, make_results
from tests.report.test_html import parse

LONG = "word " * 100  # 500 characters
HOSTILE_INPUT = (
    '<script>document.title="PWNED"</script> x" onmouseover="alert(1)" '
    "\u202eevil\u202c <img src=x onerror=alert(1)> " + "B" * 5000
)


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return make_results(3, 30, samples=20)


@pytest.fixture(scope="module")
def html(results: dict[str, Any]) -> str:
    return render_html(as_results(results))


def text_of(results: dict[str, Any], task: str, example_id: str) -> str:
    (rec,) = [r for r in results["tasks"][task]["records"] if r["id"] == example_id]
    return str(rec["input"]["text"])


def between(html: str, start: str, end: str) -> str:
    return html[html.index(start) : html.index(end)]


def test_forgetting_tables_show_the_input(html: str, results: dict[str, Any]) -> None:
    part = between(html, 'id="forgetting"', 'id="fairness"')
    assert (
        '<td class="mono">clas0-1</td><td class="num">2</td>'
        f'<td class="text">{text_of(results, "clas0", "clas0-1")}</td>'
    ) in part  # a flipped example
    assert (
        '<td class="mono">gene1-3</td><td class="num">4</td>'
        f'<td class="text">{text_of(results, "gene1", "gene1-3")}</td>'
    ) in part  # the example the checkpoint made worst


def test_counterfactual_flips_show_the_input_and_the_swap(
    html: str, results: dict[str, Any]
) -> None:
    part = between(html, 'id="fairness"', 'id="explain"')
    assert (
        '<td class="mono">clas0-0</td><td class="num">1</td>'
        f'<td class="text">{text_of(results, "clas0", "clas0-0")}</td>'
        '<td class="text">text: she said it was great</td>'
    ) in part


def test_explained_examples_show_the_input(html: str, results: dict[str, Any]) -> None:
    part = between(html, 'id="explain"', 'id="privacy"')
    for i in range(3):
        text = text_of(results, "clas0", f"clas0-{i}")
        assert f'<div class="text example-input">{text}</div>' in part


def test_outputs_with_personal_data_show_the_input(html: str, results: dict[str, Any]) -> None:
    part = between(html, 'id="privacy"', 'id="curation"')
    assert (
        '<td class="mono">gene1-4</td><td class="num">5</td>'
        f'<td class="text">{text_of(results, "gene1", "gene1-4")}</td>'
    ) in part


def test_worst_examples_show_the_input_and_the_prompt(html: str, results: dict[str, Any]) -> None:
    part = html[html.index('id="samples"') :]
    rec = results["tasks"]["clas0"]["records"][0]
    assert (
        f'<td class="text"><details class="snippet"><summary>{rec["input"]["text"]}</summary>'
        f'<div class="text full">{rec["prompt"]}</div></details></td>'
    ) in part


def test_long_text_is_cut_to_a_line_with_the_whole_text_on_expanding(
    results: dict[str, Any],
) -> None:
    r = copy.deepcopy(results)
    r["tasks"]["clas0"]["records"][1]["input"]["text"] = LONG
    part = between(render_html(as_results(r)), 'id="forgetting"', 'id="fairness"')
    short = LONG[:120].rstrip() + "…"
    assert (
        f'<td class="mono">clas0-1</td><td class="num">2</td><td class="text">'
        f'<details class="snippet"><summary>{short}</summary>'
        f'<div class="text full">{LONG}</div></details></td>'
    ) in part


def test_an_unknown_id_shows_a_dash(results: dict[str, Any]) -> None:
    r = copy.deepcopy(results)
    r["audits"]["forgetting"]["tasks"]["clas0"]["flips"]["correct_to_wrong"][1]["id"] = "nope"
    del r["tasks"]["gene1"]["records"]
    html = render_html(as_results(r))
    part = between(html, 'id="forgetting"', 'id="fairness"')
    assert '<td class="mono">nope</td><td class="num">2</td><td class="text">–</td>' in part
    assert '<td class="mono">gene1-3</td><td class="num">4</td><td class="text">–</td>' in part


def test_hostile_input_is_inert_text(results: dict[str, Any]) -> None:
    r = copy.deepcopy(results)
    for rec in r["tasks"]["clas0"]["records"]:
        rec["input"]["text"] = HOSTILE_INPUT
    html = render_html(as_results(r))
    tags = parse(html)
    names = [t for t, _ in tags.tags]
    assert "script" not in names and "img" not in names
    for tag, attrs in tags.tags:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
    assert "\u202e" not in html and "\u202c" not in html
    text = "".join(tags.text)
    assert '<script>document.title="PWNED"</script> x" onmouseover="alert(1)" \ufffdevil' in text
    # one line of 120 characters in the cell, at most 1,000 when expanded
    assert 500 < max(len(m) for m in re.findall("B+", html)) <= 1000
    assert "… [+" in html
    part = between(html, 'id="forgetting"', 'id="fairness"')
    summary = re.search(r'<td class="mono">clas0-1</td>.*?<summary>(.*?)</summary>', part)
    assert summary is not None
    shown = parse(summary.group(1))
    assert len("".join(shown.text)) == 121  # 120 characters and the ellipsis


def test_compare_flips_show_the_input_when_the_comparison_carries_it(
    results: dict[str, Any],
) -> None:
    from harness.results.compare import compare

    new = copy.deepcopy(results)
    for rec in new["tasks"]["clas0"]["records"][:4]:
        rec["pred"] = 1 - rec["pred"]
    comparison = compare(as_results(results), as_results(new))
    flips = comparison["tasks"][0]["flips"]
    rows = flips["correct_to_wrong"] + flips["wrong_to_correct"]
    by_id = {rec["id"]: rec for rec in new["tasks"]["clas0"]["records"]}
    for row in rows:
        row.setdefault("input", by_id[row["id"]]["input"])
    html = render_compare_html(comparison)
    first = rows[0]
    assert (
        f'<td class="mono">{first["id"]}</td><td class="num">{first["line"]}</td>'
        f'<td class="text">{first["input"]["text"]}</td>'
    ) in html


def test_compare_document_flips_carry_the_input(results: dict[str, Any]) -> None:
    from harness.results.compare import compare

    new = copy.deepcopy(results)
    for rec in new["tasks"]["clas0"]["records"][:4]:
        rec["pred"] = 1 - rec["pred"]
    flips = compare(as_results(results), as_results(new))["tasks"][0]["flips"]
    assert all("input" in r for r in flips["correct_to_wrong"] + flips["wrong_to_correct"])
