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


TRACKER_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
    "WANDB_DIR",
    "WANDB_PROJECT",
    "WANDB_ENTITY",
    "WANDB_RUN_ID",
    "HARNESS_TENSORBOARD_DIR",
    "TENSORBOARD_LOGGING_DIR",
)


@pytest.fixture(autouse=True)
def _trackers_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No tracker setting of the machine leaks in, and nothing goes online: W&B offline,
    MLflow in a sqlite store under the test's folder (tests may point it elsewhere)."""
    for name in TRACKER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'default-mlflow.db'}")


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
