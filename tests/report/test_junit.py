"""JUnit XML: one testcase per gate; fail -> <failure>, warn -> <skipped>, pass -> plain."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from harness.report.junit import render_junit
from tests.report.synthetic import make_results


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return make_results(3, 30, audits=False, finetune=False)


def props(el: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in el.findall("./properties/property")}


def test_one_testcase_per_gate_with_verdict_mapping(results: dict[str, Any]) -> None:
    root = ET.fromstring(render_junit(results))
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
    for el in (root, suite):
        assert (el.get("tests"), el.get("failures"), el.get("skipped"), el.get("errors")) == (
            "3",
            "1",
            "1",
            "0",
        )


def test_properties_carry_value_and_threshold(results: dict[str, Any]) -> None:
    root = ET.fromstring(render_junit(results))
    cases = root.findall("./testsuite/testcase")
    p = props(cases[0])
    gate = results["gates"][0]
    assert p["verdict"] == "pass" and p["severity"] == "fail"
    assert p["value"] == f"{gate['value']:.4g}" and p["threshold"] == "≥ 0.5"
    assert props(cases[2])["threshold"] == "≤ 1.5"
    suite_props = props(root.find("testsuite"))  # type: ignore[arg-type]
    assert suite_props["verdict"] == "fail"
    assert suite_props["model_fingerprint"] == results["provenance"]["model"]["fingerprint"]


def test_relative_gate_properties(results: dict[str, Any]) -> None:
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
    p = props(ET.fromstring(render_junit(r)).find("./testsuite/testcase"))  # type: ignore[arg-type]
    assert p["reference"] == "0.9" and p["p_value"] == "0.002"
    assert p["threshold"] == "drop ≤ 0.01, if significant (α=0.05)"


def test_no_gates_is_an_empty_suite(results: dict[str, Any]) -> None:
    r = {**results, "gates": [], "verdict": "pass"}
    root = ET.fromstring(render_junit(r))
    assert root.get("tests") == "0" and root.findall("./testsuite/testcase") == []
