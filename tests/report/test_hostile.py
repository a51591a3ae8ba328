"""Hostile content (issue 8, point 2): HTML/JS/CSS payloads, bidi controls, NUL bytes and
very long tokens in data, generations, ids, group names, gate text and manifests render
as inert text in HTML, JUnit XML and Markdown. The browser half is test_browser.py."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from harness.report.html import render_compare_html, render_html
from harness.report.junit import render_junit
from harness.report.markdown import render_compare_markdown, render_markdown
from harness.report.safe_text import BIDI_CONTROLS, REPLACEMENT, clean, md_escape
from tests.report.synthetic import HOSTILE, LONG_TOKEN, as_results, make_results
from tests.report.test_html import parse

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f" + BIDI_CONTROLS + "]")


@pytest.fixture(scope="module")
def hostile() -> dict[str, Any]:
    results = make_results(3, 30, hostile=True)
    for g in results["gates"]:  # gate text is only as trusted as the results file
        g["description"] = HOSTILE
        g["message"] = HOSTILE
    results["gates"][0]["metric"] = "clas0.<b>x</b>|y\u202e"
    results["suite"]["name"] = "</title><script>alert(1)</script>"
    return results


def test_clean_replaces_controls_and_cuts_long_text() -> None:
    text = clean("a\x00b\u202ec\u2066d\x1be\ud800f", limit=None)
    assert text == f"a{REPLACEMENT}b{REPLACEMENT}c{REPLACEMENT}d{REPLACEMENT}e{REPLACEMENT}f"
    assert clean("x\ty\nz") == "x\ty\nz"  # tab and newline are kept
    cut = clean(LONG_TOKEN, limit=100)
    assert cut.startswith("A" * 100) and cut.endswith("… [+9900 characters]")


# Expected Markdown for payloads (CommonMark backslash escapes; <, >, & as entities)
MD_CASES = [
    ("<script>alert(1)</script>", "&lt;script&gt;alert\\(1\\)&lt;/script&gt;"),
    ("[x](javascript:alert(1))", "\\[x\\]\\(javascript\\:alert\\(1\\)\\)"),
    ("![i](http://e/p.png)", "\\!\\[i\\]\\(http\\://e/p.png\\)"),
    ("a | b", "a \\| b"),
    ("*em* _u_ `c` ~s~", "\\*em\\* \\_u\\_ \\`c\\` \\~s\\~"),
    ("# h", "\\# h"),
    ("@team $x$", "\\@team \\$x\\$"),
    ("a &amp; b", "a &amp;amp; b"),
    ("line1\nline2\r\n", "line1 line2 "),
    ("x\u202ey\x00z", f"x{REPLACEMENT}y{REPLACEMENT}z"),
    ("back\\slash", "back\\\\slash"),
]


@pytest.mark.parametrize(("raw", "expected"), MD_CASES)
def test_md_escape(raw: str, expected: str) -> None:
    assert md_escape(raw) == expected


def test_html_payloads_are_text(hostile: dict[str, Any]) -> None:
    html = render_html(as_results(hostile))
    tags = parse(html)
    names = [t for t, _ in tags.tags]
    assert "script" not in names and "img" not in names and "textarea" not in names
    assert names.count("style") == 1 and names.count("title") == 1
    for tag, attrs in tags.tags:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
        assert not any("javascript:" in (v or "") for v in attrs.values()), (tag, attrs)
        style = attrs.get("style")
        # inline styles are only the attribution shades computed from numbers
        assert (
            style is None
            or re.fullmatch(r"background-color:rgba\([\d,.]+\)|", style)
            or (tag in {"path", "text", "g", "use", "rect", "clipPath"})
        ), (tag, style)
    text = "".join(tags.text)
    assert "<script>document.title='PWNED'" in text  # shown, as text
    assert "</style><style>body{display:none}</style>" in text
    assert not CONTROL.search(html)
    longest = max(len(m) for m in re.findall("A+", html))
    assert longest < 1000  # the 10,000-character token is cut
    assert "[+" in html and "characters]" in html


def test_html_svg_labels_are_escaped(hostile: dict[str, Any]) -> None:
    html = render_html(as_results(hostile))
    for svg in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        assert "<script" not in svg and "onerror" not in svg.replace("onerror=&quot;", "")
        assert "<img" not in svg


def test_junit_payloads_are_text(hostile: dict[str, Any]) -> None:
    xml = render_junit(as_results(hostile))
    assert not CONTROL.search(xml.replace("\n", "").replace("\t", ""))
    root = ET.fromstring(xml.encode("utf-8"))  # well-formed despite the payloads
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(hostile["gates"])
    assert cases[0].get("name") == f"clas0.<b>x</b>|y{REPLACEMENT}"
    failure = root.find(".//failure")
    assert failure is not None and "<script>" in (failure.get("message") or "")
    assert root.find(".//script") is None and root.find(".//img") is None
    assert max(len(m) for m in re.findall("A+", xml)) <= 1000  # the long token is cut


def test_markdown_payloads_are_inert(hostile: dict[str, Any]) -> None:
    md = render_markdown(hostile)
    assert not CONTROL.search(md.replace("\n", ""))
    assert "<" not in md and ">" not in md.replace("&gt;", "")  # no raw HTML at all
    assert "](" not in md.replace("\\](", "").replace("\\]\\(", "")  # no link or image
    assert max(len(m) for m in re.findall("A+", md)) <= 200  # the long token is cut
    # every row of each table has as many cell separators as its header
    lines = md.splitlines()
    separators = re.compile(r"(?<!\\)\|")
    for i, line in enumerate(lines):
        if line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("| ---"):
            width = len(separators.findall(line))
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(row)
            assert rows and all(len(separators.findall(r)) == width for r in rows)


def test_compare_outputs_are_inert(hostile: dict[str, Any]) -> None:
    from harness.results.compare import compare

    new = copy.deepcopy(hostile)
    for r in new["tasks"]["clas0"]["records"][:8]:
        r["pred"] = 1 - r["pred"]
    comparison = compare(as_results(hostile), as_results(new))
    md = render_compare_markdown(comparison)
    assert "<" not in md and not CONTROL.search(md.replace("\n", ""))
    html = render_compare_html(comparison)
    assert "<script" not in html.replace("&lt;script", "") and not CONTROL.search(html)
