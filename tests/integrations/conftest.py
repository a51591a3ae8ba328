"""A written run to log: the synthetic results of tests/golden/results.json (three task
kinds, gates that pass, warn and fail, every provenance digest), with a metric whose
name trackers refuse as it is and a second gate on one value, published as `harness
run` publishes (results.json, report.html, junit.xml, summary.md, digests.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.report.render import publish
from harness.results.schema import Results
from harness.results.store import load_results

SYNTHETIC = Path(__file__).parents[1] / "golden" / "results.json"


@pytest.fixture
def written_run(tmp_path: Path) -> dict[str, Path]:
    doc = json.loads(SYNTHETIC.read_text(encoding="utf-8"))
    clas = doc["tasks"]["clas0"]["metrics"]
    clas["f1[negative]"] = {**clas["f1"], "value": 0.25, "ci_low": 0.125, "ci_high": 0.5}
    doc["gates"].append({**doc["gates"][0], "min": 0.1, "value": clas["accuracy"]["value"]})
    results = Results.model_validate(doc)
    return publish(results, tmp_path / "out")


@pytest.fixture
def results(written_run: dict[str, Path]) -> Results:
    return load_results(written_run["results"])
