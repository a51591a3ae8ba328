"""JUnit XML: one testcase per gate, so any CI system lists the gates natively.

A failed gate is a ``<failure>``, a gate that only warns is ``<skipped>`` with its
message (CI shows it without failing the build), a passing gate is a plain testcase.
Each testcase carries its value, condition, reference and p-value as properties.
Text goes through ``safe_text.clean`` (XML 1.0 forbids most control characters) and
ElementTree escapes it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from harness.report.formatting import fmt
from harness.report.safe_text import clean, one_line
from harness.report.view import threshold_text

MESSAGE_LIMIT = 1000


def _prop(parent: ET.Element, name: str, value: Any) -> None:
    ET.SubElement(parent, "property", name=name, value=one_line(value, MESSAGE_LIMIT))


def render_junit(results: Mapping[str, Any]) -> str:
    suite = results.get("suite") or {}
    name = one_line(suite.get("name", "suite"), 200)
    gates = [g for g in results.get("gates") or [] if isinstance(g, Mapping)]
    failures = sum(g.get("verdict") == "fail" for g in gates)
    skipped = sum(g.get("verdict") == "warn" for g in gates)
    counts = {
        "tests": str(len(gates)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
    }
    root = ET.Element("testsuites", {"name": "harness gates", **counts})
    ts = ET.SubElement(root, "testsuite", {"name": f"gates.{name}", **counts})
    started = (results.get("provenance") or {}).get("started_at")
    if started:
        ts.set("timestamp", one_line(started, 64))
    props = ET.SubElement(ts, "properties")
    _prop(props, "verdict", results.get("verdict", ""))
    _prop(props, "harness_version", results.get("harness_version", ""))
    prov = results.get("provenance") or {}
    _prop(props, "model_fingerprint", (prov.get("model") or {}).get("fingerprint") or "")
    _prop(props, "adapter_fingerprint", (prov.get("adapter") or {}).get("fingerprint") or "")
    for g in gates:
        metric = one_line(g.get("metric", "?"), 300)
        case = ET.SubElement(ts, "testcase", classname=f"gates.{name}", name=metric, time="0")
        cprops = ET.SubElement(case, "properties")
        for key, value in (
            ("verdict", g.get("verdict", "")),
            ("severity", g.get("severity", "")),
            ("value", fmt(g.get("value"))),
            ("threshold", threshold_text(g)),
            ("reference", fmt(g.get("reference"))),
            ("p_value", fmt(g.get("p_value"), 3)),
        ):
            _prop(cprops, key, value)
        message = clean(g.get("message", ""), MESSAGE_LIMIT)
        detail = f"{metric}: {message}"
        if g.get("description"):
            detail += f"\n{clean(g['description'], MESSAGE_LIMIT)}"
        if g.get("verdict") == "fail":
            el = ET.SubElement(
                case, "failure", message=one_line(message, MESSAGE_LIMIT), type="gate"
            )
            el.text = detail
        elif g.get("verdict") == "warn":
            el = ET.SubElement(
                case, "skipped", message=f"warning: {one_line(message, MESSAGE_LIMIT)}"
            )
            el.text = detail
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
