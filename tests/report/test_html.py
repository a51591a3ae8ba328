"""The HTML compliance report: self-contained, complete, small, print-friendly."""

from __future__ import annotations

import copy
import re
import time
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import pytest

from harness.report.html import environment, render_html
from harness.report.view import SAMPLE_ROWS
from tests.report.synthetic import as_results, make_results

MAX_BYTES = 2_000_000  # issue 5: under 2 MB for 5 tasks x 1,000 examples


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each element id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Tags:
    p = Tags()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return make_results(3, 120)


@pytest.fixture(scope="module")
def html(results: dict[str, Any]) -> str:
    return render_html(as_results(results))


def test_self_contained_no_network_no_script(html: str) -> None:
    tags = parse(html).tags
    names = {t for t, _ in tags}
    assert not names & {"script", "link", "iframe", "img", "object", "embed", "base", "form"}
    for tag, attrs in tags:
        assert not any(a.startswith("on") for a in attrs), tag
        for key in ("src", "href", "xlink:href", "action"):
            value = attrs.get(key)
            assert value is None or value.startswith("#"), (tag, key, value)
    # SVG namespace identifiers are the only URLs, and they are never fetched
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert "@import" not in html and "url(http" not in html
    csp = next(
        a for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in (csp["content"] or "")
    assert html.count("<style>") == 1  # the one inline stylesheet (matplotlib's are removed)


def test_reads_top_down_like_a_compliance_document(html: str) -> None:
    order = [
        'id="verdict"',
        'id="gates"',
        'id="provenance"',
        'id="metrics"',
        'id="forgetting"',
        'id="fairness"',
        'id="explain"',
        'id="privacy"',
        'id="finetune"',
        'id="samples"',
    ]
    positions = [html.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_verdict_banner_and_gate_table(html: str, results: dict[str, Any]) -> None:
    assert 'class="banner fail"' in html and "Verdict: FAIL" in html
    rows = re.findall(r'<tr class="gate (pass|warn|fail)">', html)
    assert rows == [g["verdict"] for g in results["gates"]] == ["pass", "warn", "fail"]
    assert "must beat chance" in html  # the gate's description


def test_provenance_hashes_versions_and_signatures(html: str, results: dict[str, Any]) -> None:
    prov = results["provenance"]
    for digest in [prov["suite"]["sha256"], prov["model"]["fingerprint"]]:
        assert digest in html
    for d in prov["data"]:
        assert d["sha256"] in html and d["path"] in html
    for f in prov["model"]["files"] + prov["adapter"]["files"]:
        assert f["sha256"] in html
    assert "2.13.0" in html  # torch version
    # one sacrebleu-style signature per score, with the metric's own signature inside
    bleu_sig = results["tasks"]["gene1"]["metrics"]["bleu"]["signature"]
    assert bleu_sig and bleu_sig in html
    sigs = re.findall(r'<td class="sig">([^<]*)</td>', html)
    n_scores = sum(len(t["metrics"]) for t in results["tasks"].values())
    assert len(sigs) == n_scores
    assert all("boot:100" in s and "seed:1234" in s and "model:bbbbbbbbbbbb" in s for s in sigs)


def test_provenance_shows_cache_and_baseline_run(results: dict[str, Any]) -> None:
    r = copy.deepcopy(results)
    r["provenance"]["cache"] = {"hits": 3, "misses": 5, "bypassed": None}
    r["baseline"] = {"path": "runs/base.json", "sha256": "ab" * 32}
    html = render_html(as_results(r))
    assert '<th>response cache</th><td class="text">3 hits, 5 misses</td>' in html
    assert f"runs/base.json (sha256 {'ab' * 32})" in html


def test_metrics_with_cis_and_ci_charts(html: str, results: dict[str, Any]) -> None:
    acc = results["tasks"]["clas0"]["metrics"]["accuracy"]
    assert f"{acc['value']:.4g}" in html
    assert f"[{acc['ci_low']:.4g}, {acc['ci_high']:.4g}]" in html
    section = html[html.index('id="metrics"') : html.index('id="forgetting"')]
    assert section.count("<svg") >= 3  # a CI chart per task (two for the 0-1 and 0-100 scales)


def test_audit_sections(html: str) -> None:
    forgetting = html[html.index('id="forgetting"') : html.index('id="fairness"')]
    assert "base vs checkpoint" in forgetting and "<svg" in forgetting
    assert "9 correct → wrong" in forgetting and "2 wrong → correct" in forgetting
    fairness = html[html.index('id="fairness"') : html.index('id="explain"')]
    assert "per-group rates (95% CI)" in fairness and "<svg" in fairness
    assert "demographic_parity_ratio" in fairness and "[0.78, 0.88]" in fairness
    assert "Counterfactual swaps" in fairness and "he → she" in fairness
    assert "Stereotype pairs" in fairness
    explain = html[html.index('id="explain"') : html.index('id="privacy"')]
    assert "Global top terms" in explain and explain.count("<svg") == 2
    # tokens highlighted with inline styles computed in Python: the strongest is opaque
    assert 'style="background-color:rgba(37,99,235,0.75)" title="+0.6"> great</span>' in explain
    assert 'style="background-color:rgba(220,38,38,0.25)" title="-0.2"> movie</span>' in explain


def test_privacy_section(html: str) -> None:
    pv = html[html.index('id="privacy"') : html.index('id="finetune"')]
    assert "Personal data in generated outputs" in pv
    # counts by type, then the output with each found span marked and typed
    assert '<th class="num">URL_WITH_CREDENTIALS</th>' in pv
    assert (
        'mail <mark title="EMAIL_ADDRESS">jane.doe@example.com</mark>'
        '<sub class="muted">EMAIL_ADDRESS</sub> or call <mark title="PHONE_NUMBER">'
        "(212) 555-0198</mark>" in pv
    )
    assert "Canary exposure" in pv and '<tr class="worse"><td class="mono">canary-0</td>' in pv
    assert "<td>no (control)</td>" in pv and ">0.98<" in pv
    assert "Verbatim extraction" in pv and "[0.5, 1]" in pv and "ot a and on." in pv


def test_finetune_learning_curves_and_manifest(html: str) -> None:
    ft = html[html.index('id="finetune"') : html.index('id="samples"')]
    assert "learning curves" in ft and "<svg" in ft
    assert "best validation loss" in ft
    assert "lora.target_modules" in ft and "c_attn, c_proj" in ft
    # the PII summary of the fine-tune data sits beside the learning curves
    pii = ft[ft.index("Personal data in the fine-tune data") : ft.index("Manifest")]
    assert '<td class="text">redact</td>' in pii and '<td class="text">1 x 10</td>' in pii
    assert '<td class="mono">EMAIL_ADDRESS</td><td class="num">3</td>' in pii
    # the training texts it lists for extraction are not dumped into the manifest table
    assert "memorization" not in ft[ft.index("Manifest") :]


def test_samples_worst_first_and_capped(results: dict[str, Any]) -> None:
    from harness.report.view import samples_view

    task = results["tasks"]["clas0"]
    view = samples_view("clas0", task, results["suite"])
    assert view["shown"] == SAMPLE_ROWS and view["total"] == 120
    oks = [r["ok"] for r in view["rows"]]
    errors = sum(r["pred"] != r["gold"] for r in task["records"])
    assert oks[: min(errors, SAMPLE_ROWS)] == [False] * min(errors, SAMPLE_ROWS)
    wrong = [float(r["score"]) for r in view["rows"] if not r["ok"]]
    assert wrong == sorted(wrong)  # most confident mistakes (lowest p(gold)) first
    ppl = samples_view("perp2", results["tasks"]["perp2"], results["suite"])
    nll = [float(r["score"]) for r in ppl["rows"]]
    assert nll == sorted(nll, reverse=True)


def test_absent_sections_are_skipped(results: dict[str, Any]) -> None:
    bare = copy.deepcopy(results)
    del bare["audits"], bare["finetune"]
    html = render_html(as_results(bare))
    for section in ("forgetting", "fairness", "explain", "privacy", "finetune", "other-audits"):
        assert f'id="{section}"' not in html
    partial = copy.deepcopy(results)
    partial["audits"] = {"fairness": {"task": "clas0"}, "novel_audit": {"score": 0.5}}
    html = render_html(as_results(partial))
    assert 'id="fairness"' in html and 'id="forgetting"' not in html
    assert 'id="other-audits"' in html and "novel_audit" in html


def test_print_friendly(html: str) -> None:
    css = html[html.index("<style>") : html.index("</style>")]
    assert "@media print" in css
    assert "break-inside: avoid" in css and "print-color-adjust: exact" in css


def test_templates_are_package_data_with_autoescape() -> None:
    folder = resources.files("harness.report") / "templates"
    names = {p.name for p in folder.iterdir()}
    assert {"report.html.j2", "compare.html.j2", "macros.j2", "report.css"} <= names
    assert environment().autoescape is True


def test_deterministic(results: dict[str, Any], html: str) -> None:
    assert render_html(as_results(results)) == html


@pytest.mark.slow
def test_size_and_time_for_5_tasks_of_1000_examples(capsys: pytest.CaptureFixture[str]) -> None:
    big = make_results(5, 1000, samples=200)
    start = time.perf_counter()
    html = render_html(as_results(big))
    seconds = time.perf_counter() - start
    size = len(html.encode("utf-8"))
    with capsys.disabled():
        print(
            f"\nHTML report, 5 tasks x 1,000 examples: {size:,} bytes, rendered in {seconds:.2f} s"
        )
    assert size < MAX_BYTES
    assert html.count('<tr class="ok">') + html.count('<tr class="error">') == 5 * SAMPLE_ROWS


def test_damaged_privacy_section_still_renders(results: dict[str, Any]) -> None:
    """Any content renders (a hand-edited or newer file); bad values show as '–'."""
    damaged = copy.deepcopy(results)
    damaged["audits"] = {
        "privacy": {
            "pii": {
                "counts": [1, 2],
                "scanner": "x",
                "examples": [
                    {"output": 5, "spans": [{"start": "x"}]},
                    {"output": "abc", "spans": [{"start": 2, "end": 1}, {"start": 0, "end": 9}]},
                    "not a mapping",
                ],
            },
            "canaries": {"canaries": "bad", "exposure_max": "high"},
            "extraction": {"rate": 3, "extracted": [{"where": None}]},
        }
    }
    damaged["finetune"]["manifest"]["curation"] = {"pii": {"counts": None}}
    html = render_html(as_results(damaged))
    pv = html[html.index('id="privacy"') : html.index('id="finetune"')]
    assert '<mark title="">' not in pv and "<mark" in pv  # the one well-formed span
    assert "Canary exposure" in pv and "Verbatim extraction" in pv
