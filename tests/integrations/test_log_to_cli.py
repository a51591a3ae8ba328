"""`harness run --log-to` end to end on a tiny model: a missing package stops the command
before the run (exit 2), a tracker that fails after the run leaves the outputs and the
gates' exit code, and the trackers hold the results.json the run wrote."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.integrations.available import MISSING_EXTRA, UNKNOWN_TRACKER
from harness.integrations.trackers import NOT_LOGGED
from harness.results.store import load_results
from tests.cli.test_cli import write_suite
from tests.integrations.test_trackers import _tensorboard, _wandb_run, expected_metrics

FAILING = "  - {metric: sentiment.accuracy, min: 0.0}\n  - {metric: lm.perplexity, max: 1.0}\n"


def test_missing_package_is_one_error_before_the_run(
    tmp_path: Path,
    tiny_gpt2: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    suite = write_suite(tmp_path, tiny_gpt2, FAILING)
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    out = tmp_path / "out"
    argv = ["run", str(suite), "--out", str(out), "--log-to", "tensorboard,wandb"]
    assert main([*argv, "--log-to", "nosuch"]) == 2
    reason = "import of wandb halted; None in sys.modules"
    assert capsys.readouterr().err.splitlines() == [
        "error: " + MISSING_EXTRA.format(option="--log-to", name="wandb", reason=reason),
        "error: " + UNKNOWN_TRACKER.format(option="--log-to", name="nosuch"),
    ]
    assert not out.exists()  # nothing ran, nothing was written
    assert "pip install 'llm-release-harness[trackers]'" in MISSING_EXTRA


@pytest.mark.slow
def test_log_to_after_the_run(
    tmp_path: Path,
    tiny_gpt2: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    suite = write_suite(tmp_path, tiny_gpt2, FAILING)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    # MLflow down (its store cannot be opened): a warning, the outputs and exit 1 remain
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a-file' / 'x.db'}")
    argv = ["run", str(suite), "--out", str(out), "--no-progress"]
    assert main([*argv, "--log-to", "mlflow"]) == 1
    err = capsys.readouterr().err
    warning = NOT_LOGGED.format(name="mlflow", error="@", out=out).split("@")
    assert warning[0] in err and warning[1].strip() in " ".join(err.split())
    results = load_results(out / "results.json")
    assert results.verdict == "fail"
    assert {p.name for p in out.iterdir()} >= {"results.json", "report.html", "junit.xml"}

    # every tracker up (the answers come from the response cache): each holds the run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WANDB_MODE", "offline")
    logged = ["--log-to", "mlflow,wandb", "--log-to", "tensorboard"]
    assert main([*argv, *logged]) == 1
    err = capsys.readouterr().err
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("logged to")] == [
        "logged to mlflow",
        "logged to wandb",
        "logged to tensorboard",
    ]
    results = load_results(out / "results.json")
    expected = expected_metrics(results)
    assert expected["verdict"] == 0.0 and "sentiment/accuracy_ci_high" in expected

    from mlflow.tracking import MlflowClient

    (run,) = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(["0"])
    assert run.data.metrics == pytest.approx(expected)
    assert run.data.params["suite.sha256"] == results.provenance.suite.sha256  # type: ignore[union-attr]
    (folder,) = (out / "tensorboard").iterdir()
    assert _tensorboard(folder)[0] == expected
    history = _wandb_run(out)[1]["history"]
    assert {k: v for k, v in history.items() if not k.startswith("_")} == pytest.approx(expected)
