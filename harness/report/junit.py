"""JUnit XML: one testcase per gate, so any CI system lists the gates natively.

A failed gate is a ``<failure>``; a gate that only warns is ``<skipped>`` with the
message ``warning: ...`` (JUnit has no "passed with a warning": a skipped test is shown
by CI without failing the build; docs/gates.md, "CI"); a passing gate is a plain
testcase. Each failure or warning carries the gate's condition, value, reference and
p-value in its text, and the suite's ``<system-out>`` lists every gate, passing ones
too, one line each.

The document is valid for both schemas CI tools check JUnit XML against: the Jenkins
xunit plugin's junit-10.xsd and the Ant JUnit.xsd (tests/report/test_junit_schema.py).
Where they differ the stricter one rules: no attributes on ``<testsuites>``; in the
``<testsuite>`` exactly one ``<properties>`` first, then the testcases, then one
``<system-out>`` and one ``<system-err>``; ``package``, ``id``, ``hostname`` and
``time`` on the testsuite; ``timestamp`` to the second without a time zone (UTC); no
``<properties>`` inside a testcase.

Text goes through ``safe_text.clean`` (XML 1.0 forbids most control characters) and
ElementTree escapes it.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from harness.report.formatting import fmt
from harness.report.safe_text import clean, one_line
from harness.report.view import threshold_text
from harness.results.schema import GateResult, Results

MESSAGE_LIMIT = 1000
HOSTNAME = "localhost"  # the run does not record its host; Ant's schema asks for this then
TIMESTAMP = "%Y-%m-%dT%H:%M:%S"
UNKNOWN_TIME = "1970-01-01T00:00:00"


def _prop(parent: ET.Element, name: str, value: Any) -> None:
    ET.SubElement(parent, "property", name=name, value=one_line(value, MESSAGE_LIMIT))


def _timestamp(started: Any) -> str:
    """``started_at`` in UTC to the second, without a time zone (as Ant's schema wants).
    The attribute is required there, so a results file without a readable start time
    (edited by hand: the runner always records one) gets the epoch, plainly not a time."""
    try:
        when = datetime.fromisoformat(str(started))
    except ValueError:
        return UNKNOWN_TIME
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.strftime(TIMESTAMP)


def _seconds(value: Any) -> str:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return f"{max(float(value), 0.0):.3f}" if ok else "0"


def _details(g: GateResult) -> str:
    """The gate's condition and numbers, one line."""
    return (
        f"condition {threshold_text(g.model_dump())}; value {fmt(g.value)}; "
        f"reference {fmt(g.reference)}; p-value {fmt(g.p_value, 3)}; "
        f"severity {one_line(g.severity, 20)}"
    )


def render_junit(results: Results) -> str:
    name = one_line(results.suite.name or "suite", 200).strip() or "suite"
    prov = results.provenance
    timings = prov.timings if prov else None
    gates = results.gates
    verdicts = [g.verdict for g in gates]
    attrs = {
        "name": f"gates.{name}",
        "package": f"gates.{name}",
        "id": "0",
        "tests": str(len(gates)),
        "failures": str(sum(v == "fail" for v in verdicts)),
        "errors": "0",
        "skipped": str(sum(v == "warn" for v in verdicts)),
        "time": _seconds(timings.total_s if timings else None),
        "timestamp": _timestamp(prov.started_at if prov else None),
        "hostname": HOSTNAME,
    }
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", attrs)
    props = ET.SubElement(ts, "properties")
    given = results.model_fields_set
    _prop(props, "verdict", results.verdict if "verdict" in given else "")
    _prop(props, "harness_version", results.harness_version if "harness_version" in given else "")
    model, adapter = (prov.model, prov.adapter) if prov else (None, None)
    _prop(props, "model_fingerprint", (model.fingerprint if model else None) or "")
    _prop(props, "adapter_fingerprint", (adapter.fingerprint if adapter else None) or "")
    lines = []
    for g in gates:
        metric = one_line(g.metric, 300)
        message = clean(g.message, MESSAGE_LIMIT)
        verdict = one_line(g.verdict, 20)
        lines.append(f"{verdict.upper()} {metric}: {one_line(message)} ({_details(g)})")
        case = ET.SubElement(ts, "testcase", classname=f"gates.{name}", name=metric, time="0")
        detail = f"{metric}: {message}\n{_details(g)}"
        if g.description:
            detail += f"\n{clean(g.description, MESSAGE_LIMIT)}"
        if verdict == "fail":
            el = ET.SubElement(
                case, "failure", message=one_line(message, MESSAGE_LIMIT), type="gate"
            )
            el.text = detail
        elif verdict == "warn":
            el = ET.SubElement(
                case, "skipped", message=f"warning: {one_line(message, MESSAGE_LIMIT)}"
            )
            el.text = detail
    ET.SubElement(ts, "system-out").text = "\n".join(lines)
    ET.SubElement(ts, "system-err").text = ""
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
