"""`--log-to mlflow,wandb,tensorboard`: each tracker, read back with its own reader, holds
what results.json says (issue 21). Expected values come from the loaded ``Results``,
never typed by hand; the names are the contract of harness.integrations.trackers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.integrations import trackers
from harness.integrations.trackers import SCORES, gate_keys, log_outputs, metric_key, tracked
from harness.results.schema import Results

ARTIFACTS = ["results.json", "report.html", "junit.xml", "summary.md", "digests.json"]


def expected_metrics(results: Results) -> dict[str, float]:
    """Every metric with its CI bounds, every gate and the verdict, from ``results``."""
    out: dict[str, float] = {}
    for task_id, task in results.tasks.items():
        for output, m in task.metrics.items():
            key = metric_key(task_id, output)
            for suffix, value in (("", m.value), ("_ci_low", m.ci_low), ("_ci_high", m.ci_high)):
                if value is not None:
                    out[key + suffix] = value
    for key, gate in zip(gate_keys(results), results.gates, strict=True):
        out[f"gate/{key}"] = {"pass": 1.0, "warn": 0.5, "fail": 0.0}[gate.verdict]
        if gate.value is not None:
            out[f"gate/{key}_value"] = gate.value
    out["verdict"] = {"pass": 1.0, "warn": 0.5, "fail": 0.0}[results.verdict]
    return out


def expected_digests(results: Results) -> dict[str, str]:
    prov = results.provenance
    assert prov is not None and prov.suite and prov.model and prov.adapter
    digests = {
        "suite.sha256": prov.suite.sha256,
        "model.fingerprint": prov.model.fingerprint,
        "adapter.fingerprint": prov.adapter.fingerprint,
        "fingerprint": prov.fingerprint,
    }
    digests.update({f"data.{d.task}.sha256": d.sha256 for d in prov.data})
    return {k: str(v) for k, v in digests.items()}


def expected_tags(results: Results) -> dict[str, str]:
    tags = {
        f"harness.gate.{k}": g.verdict
        for k, g in zip(gate_keys(results), results.gates, strict=True)
    }
    return {**tags, "harness.verdict": results.verdict, "harness.suite": results.suite.name}


def test_names_and_values_follow_results(results: Results) -> None:
    run = tracked(results)
    assert run.metrics == pytest.approx(expected_metrics(results))
    assert expected_digests(results).items() <= run.params.items()
    assert run.tags == expected_tags(results)
    # names every tracker accepts: brackets become a dot; a second gate on a value: _2
    assert run.metrics["clas0/f1.negative"] == results.tasks["clas0"].metrics["f1[negative]"].value
    assert gate_keys(results) == [
        "clas0.accuracy",
        "clas0.f1",
        "perp2.perplexity",
        "clas0.accuracy_2",
    ]
    assert run.name == "synthetic-adapter"
    assert set(SCORES) == {"pass", "warn", "fail"}


@pytest.mark.parametrize(
    ("raw", "safe"),
    [("f1[negative]", "f1.negative"), ("a:b@c", "a_b_c"), ("../x", "x"), ("/", "_")],
)
def test_safe_name(raw: str, safe: str) -> None:
    assert trackers.safe_name(raw) == safe


def test_redact_hides_url_credentials() -> None:
    text = "ConnectionError: https://user:s3cret@mlflow.example/api failed"
    assert trackers.redact(text) == "ConnectionError: https://***@mlflow.example/api failed"


def _log(names: list[str], paths: dict[str, Path]) -> list[str]:
    warnings: list[str] = []
    done = log_outputs(names, paths, warnings.append)
    assert warnings == [] and len(done) == len(names), (warnings, done)
    return done


def test_mlflow_run_reads_back(
    written_run: dict[str, Path], results: Results, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the sqlite store's artifacts go to ./mlruns
    _log(["mlflow"], written_run)
    client = MlflowClient(uri)
    (run,) = client.search_runs(experiment_ids=["0"])
    assert run.data.metrics == pytest.approx(expected_metrics(results))
    assert expected_digests(results).items() <= run.data.params.items()
    assert run.data.params["harness_version"] == results.harness_version
    ours = {k: v for k, v in run.data.tags.items() if k.startswith("harness.")}
    assert ours == expected_tags(results)
    assert run.info.run_name == "synthetic-adapter"
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == sorted(ARTIFACTS)
    local = Path(client.download_artifacts(run.info.run_id, "results.json", str(tmp_path)))
    assert local.read_bytes() == written_run["results"].read_bytes()


def _tensorboard(folder: Path) -> tuple[dict[str, float], dict[str, str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    scalars: dict[str, float] = {}
    texts: dict[str, str] = {}
    for tag in acc.Tags()["tensors"]:
        (event,) = acc.Tensors(tag)
        assert event.step == 0
        value: Any = tensor_util.make_ndarray(event.tensor_proto).item()
        if isinstance(value, bytes):
            texts[tag] = value.decode("utf-8")
        else:
            scalars[tag] = value
    return scalars, texts


def test_tensorboard_events_read_back(written_run: dict[str, Path], results: Results) -> None:
    (line,) = _log(["tensorboard"], written_run)
    out = written_run["results"].parent
    (folder,) = (out / "tensorboard").iterdir()
    assert line == f"logged to tensorboard: {folder}"
    scalars, texts = _tensorboard(folder)
    assert scalars == expected_metrics(results)  # float64 tensors: exactly the stored numbers
    params = {k.removeprefix("params/"): v for k, v in texts.items() if k.startswith("params/")}
    assert expected_digests(results).items() <= params.items()
    tags = {k.removeprefix("tags/"): v for k, v in texts.items() if k.startswith("tags/")}
    assert tags == expected_tags(results)
    assert texts["summary"] == written_run["md"].read_text(encoding="utf-8")


def test_tensorboard_dir_from_environment(
    written_run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_TENSORBOARD_DIR", str(tmp_path / "tb"))
    _log(["tensorboard"], written_run)
    (folder,) = (tmp_path / "tb").iterdir()
    assert folder.name == "synthetic-adapter-20250101T000000"  # the run and its start
    assert not (written_run["results"].parent / "tensorboard").exists()


def _wandb_run(root: Path) -> tuple[Path, dict[str, Any]]:
    from tests.integrations.wandb_file import run_contents

    (folder,) = (root / "wandb").glob("offline-run-*")
    (file,) = folder.glob("run-*.wandb")
    return folder, run_contents(file)


def test_wandb_offline_run_holds_the_metrics(
    written_run: dict[str, Path], results: Results, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    _log(["wandb"], written_run)
    out = written_run["results"].parent
    folder, found = _wandb_run(out)  # WANDB_DIR unset: the output folder's wandb/
    history = {k: v for k, v in found["history"].items() if not k.startswith("_")}
    assert history == pytest.approx(expected_metrics(results))
    assert expected_digests(results).items() <= found["config"].items()
    assert expected_tags(results).items() <= found["summary"].items()
    assert f"verdict:{results.verdict}" in found["tags"]
    assert set(ARTIFACTS) <= set(found["files"])
    for name in ARTIFACTS:  # copies, not links: a later run in `out` changes none
        saved = folder / "files" / name
        assert not saved.is_symlink() and saved.read_bytes() == (out / name).read_bytes()


def test_no_secret_reaches_any_tracker(
    written_run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {"WANDB_API_KEY": "wk" + "7" * 38, "MLFLOW_TRACKING_TOKEN": "mlflow-token-4242"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    _log(["mlflow", "wandb", "tensorboard"], written_run)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len(written) > 10
    for path in written:
        data = path.read_bytes()
        for value in secrets.values():
            assert value.encode() not in data, path


def test_failing_tracker_is_a_warning_and_the_others_still_log(
    written_run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(run: Any, out: Path) -> str:
        raise ConnectionError("https://bot:hunter2@mlflow.example/api: connection refused")

    monkeypatch.setattr("harness.integrations.mlflow_log.log", down)
    warnings: list[str] = []
    done = log_outputs(["mlflow", "tensorboard"], written_run, warnings.append)
    out = written_run["results"].parent
    assert warnings == [
        trackers.NOT_LOGGED.format(
            name="mlflow",
            error="ConnectionError: https://***@mlflow.example/api: connection refused",
            out=out,
        )
    ]
    assert [line.split(":")[0] for line in done] == ["logged to tensorboard"]


def test_relogging_a_folder(
    written_run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = written_run["results"].parent
    assert trackers.main([str(out), "tensorboard"]) == 0
    assert capsys.readouterr().out.startswith("logged to tensorboard: ")
    assert trackers.main([str(out), "nosuch"]) == 2
    assert capsys.readouterr().err == (
        "error: --log-to: unknown tracker 'nosuch'; choose from mlflow, wandb, tensorboard\n"
    )
    assert trackers.main([str(out / "missing"), "tensorboard"]) == 2
    assert trackers.main([str(out)]) == 2
