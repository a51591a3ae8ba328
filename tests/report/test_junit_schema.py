"""junit.xml is valid for the schemas CI systems check it against, and a real consumer
reads it as we mean it (issue #24 defect 4).

Validator: the ``xmlschema`` package. Schemas: the two fixtures in ``junit_schemas/``,
written for this project from the documented constraints of the Jenkins xunit plugin's
``junit-10.xsd`` and of the common Ant ``JUnit.xsd`` (their element and attribute sets,
required attributes, child order and counts, value types): no PyPI package ships either
file as package data (looked for in junit2html, unittest-xml-reporting, junitparser,
xunitparserx, junit-xml and TempestParser), and files of other projects are not copied
here. Each fixture's header lists what it enforces; the first tests show that each
rejects the shapes the defect report named. Consumer: ``junitparser``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import junitparser
import pytest
import xmlschema

from harness.report.junit import render_junit
from tests.report.synthetic import HOSTILE, as_results, make_results

SCHEMAS = Path(__file__).parent / "junit_schemas"
JENKINS = xmlschema.XMLSchema(SCHEMAS / "jenkins-xunit-junit-10.xsd")
ANT = xmlschema.XMLSchema(SCHEMAS / "ant-junit.xsd")
BOTH = pytest.mark.parametrize("schema", [JENKINS, ANT], ids=["junit-10", "ant"])

VALID = """<testsuites><testsuite name="s" package="s" id="0" tests="1" failures="0"
 errors="0" skipped="0" time="0" timestamp="2024-01-02T03:04:05" hostname="localhost">
<properties><property name="a" value="b"/></properties>
<testcase name="t" classname="s" time="0">{case}</testcase>
<system-out>x</system-out><system-err/></testsuite></testsuites>"""


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return make_results(3, 30, audits=False, finetune=False)


# --- the fixtures reject what the defect report found ---------------------------------


@BOTH
def test_fixture_accepts_a_plain_report(schema: xmlschema.XMLSchema) -> None:
    for case in ("", '<failure type="gate" message="m">text</failure>', '<skipped message="m"/>'):
        schema.validate(VALID.format(case=case))


@BOTH
def test_fixture_rejects_properties_inside_a_testcase(schema: xmlschema.XMLSchema) -> None:
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        schema.validate(
            VALID.format(case='<properties><property name="a" value="b"/></properties>')
        )


@BOTH
def test_fixture_rejects_skipped_on_testsuites(schema: xmlschema.XMLSchema) -> None:
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        schema.validate(VALID.format(case="").replace("<testsuites>", '<testsuites skipped="1">'))


def test_ant_fixture_requires_what_ant_requires() -> None:
    doc = VALID.format(case="")
    for broken in (
        doc.replace("<testsuites>", '<testsuites name="x">'),  # no attributes on testsuites
        doc.replace(' hostname="localhost"', ""),
        doc.replace("2024-01-02T03:04:05", "2024-01-02T03:04:05+00:00"),  # no time zone
        doc.replace("<system-out>x</system-out>", ""),
        doc.replace(' classname="s"', ""),
        doc.replace(' package="s"', ""),
    ):
        with pytest.raises(xmlschema.XMLSchemaValidationError):
            ANT.validate(broken)


# --- our output ------------------------------------------------------------------------


def variants(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    no_gates = {**results, "gates": [], "verdict": "pass"}
    hostile = copy.deepcopy(results)
    for g in hostile["gates"]:
        g["metric"] = f"{g['metric']}[negative] {HOSTILE}"
        g["message"] = HOSTILE
        g["description"] = HOSTILE
    hostile["suite"]["name"] = HOSTILE
    bare = copy.deepcopy(results)
    bare["provenance"] = {}
    bare["suite"] = {}
    return {"gates": results, "no_gates": no_gates, "hostile": hostile, "bare": bare}


@BOTH
@pytest.mark.parametrize("variant", ["gates", "no_gates", "hostile", "bare"])
def test_output_is_valid(
    results: dict[str, Any], schema: xmlschema.XMLSchema, variant: str
) -> None:
    schema.validate(render_junit(as_results(variants(results)[variant])))


def test_junitparser_reads_verdicts(results: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(render_junit(as_results(results)), encoding="utf-8")
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped) == (
        "gates.synthetic",
        3,
        1,
        0,
        1,
    )
    cases = list(suite)
    assert [c.name for c in cases] == [g["metric"] for g in results["gates"]]
    passed, warned, failed = cases
    assert passed.is_passed and not passed.result
    assert warned.is_skipped and isinstance(warned.result[0], junitparser.Skipped)
    assert warned.result[0].message == f"warning: {results['gates'][1]['message']}"
    assert isinstance(failed.result[0], junitparser.Failure)
    assert failed.result[0].message == results["gates"][2]["message"]
    assert failed.result[0].type == "gate"
    assert (xml.tests, xml.failures, xml.skipped) == (3, 1, 1)  # totals from the suites
    assert suite.hostname == "localhost" and suite.timestamp == "2025-01-01T00:00:00"
    # every gate's condition and value, passing ones too, in the suite's output
    out = suite.child(junitparser.SystemOut)
    lines = (out.text or "").splitlines() if out is not None else []
    assert [line.split(":")[0] for line in lines] == [
        f"{g['verdict'].upper()} {g['metric']}" for g in results["gates"]
    ]
    assert "(condition ≥ 0.5; value 0.8; reference –; p-value –; severity fail)" in lines[0]
