"""JUnit XML: one testcase per gate; fail -> <failure>, warn -> <skipped>, pass -> plain.
Validity against the CI schemas and a real consumer: test_junit_schema.py."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from harness.report.junit import render_junit
from tests.report.synthetic import as_results, make_results


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return make_results(3, 30, audits=False, finetune=False)


def props(el: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in el.findall("./properties/property")}


def test_one_testcase_per_gate_with_verdict_mapping(results: dict[str, Any]) -> None:
    root = ET.fromstring(render_junit(as_results(results)))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "gates.synthetic"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [g["metric"] for g in results["gates"]]
    assert [g["verdict"] for g in results["gates"]] == ["pass", "warn", "fail"]
    passed, warned, failed = cases
    assert passed.find("failure") is None and passed.find("skipped") is None
    skipped = warned.find("skipped")
    assert skipped is not None and warned.find("failure") is None
    assert skipped.get("message") == f"warning: {results['gates'][1]['message']}"
    failure = failed.find("failure")
    assert failure is not None and failure.get("type") == "gate"
    assert failure.get("message") == results["gates"][2]["message"]
    counts = (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors"))
    assert counts == ("3", "1", "1", "0")
    assert root.attrib == {}  # Ant's schema allows no attribute on <testsuites>


def details(xml: str) -> list[str]:
    """The suite's <system-out>: one line per gate."""
    out = ET.fromstring(xml).find("./testsuite/system-out")
    assert out is not None
    return (out.text or "").splitlines()


def test_details_carry_value_and_threshold(results: dict[str, Any]) -> None:
    xml = render_junit(as_results(results))
    root = ET.fromstring(xml)
    gate = results["gates"][0]
    lines = details(xml)
    assert lines[0] == (
        f"PASS clas0.accuracy: {gate['message']} (condition ≥ 0.5; value {gate['value']:.4g}; "
        "reference –; p-value –; severity fail)"
    )
    assert "condition ≤ 1.5" in lines[2]
    failure = root.find("./testsuite/testcase/failure")
    assert failure is not None and "condition ≤ 1.5" in (failure.text or "")
    suite_props = props(root.find("testsuite"))  # type: ignore[arg-type]
    assert suite_props["verdict"] == "fail"
    assert suite_props["model_fingerprint"] == results["provenance"]["model"]["fingerprint"]
    assert root.find("./testsuite/testcase/properties") is None  # not allowed there


def test_relative_gate_details(results: dict[str, Any]) -> None:
    r = copy.deepcopy(results)
    r["gates"] = [
        {
            "metric": "clas0.accuracy",
            "max_drop": 0.01,
            "significant": True,
            "alpha": 0.05,
            "severity": "fail",
            "value": 0.8,
            "reference": 0.9,
            "p_value": 0.002,
            "verdict": "fail",
            "message": "drop 0.1 vs baseline 0.9 > max_drop 0.01, p=0.002",
        }
    ]
    (line,) = details(render_junit(as_results(r)))
    assert line.endswith(
        "(condition drop ≤ 0.01, if significant (α=0.05); value 0.8; reference 0.9; "
        "p-value 0.002; severity fail)"
    )


def test_suite_time_and_timestamp(results: dict[str, Any]) -> None:
    suite = ET.fromstring(render_junit(as_results(results))).find("testsuite")
    assert suite is not None
    assert (suite.get("time"), suite.get("timestamp"), suite.get("hostname")) == (
        "12.000",
        "2025-01-01T00:00:00",
        "localhost",
    )
    r = copy.deepcopy(results)
    r["provenance"]["started_at"] = "2025-01-01T02:30:00+02:00"  # written in UTC
    suite = ET.fromstring(render_junit(as_results(r))).find("testsuite")
    assert suite is not None and suite.get("timestamp") == "2025-01-01T00:30:00"


def test_no_gates_is_an_empty_suite(results: dict[str, Any]) -> None:
    r = {**results, "gates": [], "verdict": "pass"}
    root = ET.fromstring(render_junit(as_results(r)))
    assert root.find("testsuite").get("tests") == "0"  # type: ignore[union-attr]
    assert root.findall("./testsuite/testcase") == []
