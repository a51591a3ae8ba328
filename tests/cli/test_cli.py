"""End to end through the CLI on a tiny real model: exit codes 0/1/2, results.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.main import main

REVIEWS = [
    ("the movie was great and fun", 1),
    ("awful boring plot", 0),
    ("loved it, really good", 1),
    ("hated the actor, bad film", 0),
    ("a good story", 1),
    ("not fun, very bad", 0),
    ("great great great", 1),
    ("boring and awful", 0),
    ("quite good really", 1),
    ("bad", 0),
]
NEWS = [
    ("the team won the game in the city today", "team won"),
    ("the market price rose and then fell", "market rose"),
    ("news today the team lost", "team lost"),
]


def write_suite(folder: Path, model: Path, gates: str, extra: str = "") -> Path:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "reviews.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in REVIEWS)
    )
    (data / "news.jsonl").write_text(
        "".join(json.dumps({"document": d, "summary": s}) + "\n" for d, s in NEWS)
    )
    (data / "wiki.jsonl").write_text(
        "".join(json.dumps({"text": f"{d}. {s}."}) + "\n" for d, s in NEWS)
    )
    suite = folder / "suite.yaml"
    suite.write_text(
        f"""schema_version: 1
name: e2e
model:
  path: {model}
tasks:
  - id: sentiment
    kind: classification
    data: data/reviews.jsonl
    prompt: "Review: {{{{ text }}}}\\nSentiment:"
    choices: [" negative", " positive"]
    label: label
    metrics: [accuracy, f1, {{name: f1, average: macro}}, ece]
  - id: summarize
    kind: generation
    data: data/news.jsonl
    prompt: "{{{{ document }}}}\\nSummary:"
    reference: summary
    max_new_tokens: 8
    stop: ["\\n"]
    metrics: [bleu, chrf, rouge, exact_match]
  - id: lm
    kind: perplexity
    data: data/wiki.jsonl
    text: text
    metrics: [perplexity, bits_per_byte]
seed: 7
bootstrap: {{samples: 200, confidence: 0.95}}
gates:
{gates}
{extra}"""
    )
    return suite


@pytest.fixture
def passing_suite(tmp_path: Path, tiny_gpt2: Path) -> Path:
    return write_suite(
        tmp_path,
        tiny_gpt2,
        "  - {metric: sentiment.accuracy, min: 0.0}\n"
        "  - {metric: lm.perplexity, max: 1.0e9}\n"
        "  - {metric: summarize.rougeL, min: 0.99, severity: warn}\n",
    )


@pytest.mark.slow
def test_run_passes_and_writes_results(passing_suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(passing_suite), "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["schema_version"] == 1
    assert results["verdict"] == "warn"
    assert [g["verdict"] for g in results["gates"]] == ["pass", "pass", "warn"]
    sent = results["tasks"]["sentiment"]
    assert sent["n_examples"] == len(REVIEWS)
    acc = sent["metrics"]["accuracy"]
    assert acc["ci_low"] <= acc["value"] <= acc["ci_high"]
    records = sent["records"]
    assert acc["value"] == pytest.approx(
        sum(r["pred"] == r["gold"] for r in records) / len(records)
    )
    assert {"f1", "f1_macro", "ece"} <= set(sent["metrics"])
    for rec in records:
        assert len(rec["loglik"]) == 2 and sum(rec["probs"]) == pytest.approx(1.0)
        assert rec["stats"]["accuracy"]
    assert {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match"} <= set(
        results["tasks"]["summarize"]["metrics"]
    )
    assert all("prediction" in r for r in results["tasks"]["summarize"]["records"])
    lm = results["tasks"]["lm"]
    nll = -sum(r["loglik"] for r in lm["records"]) / sum(r["n_tokens"] for r in lm["records"])
    assert lm["metrics"]["perplexity"]["value"] == pytest.approx(2.718281828459045**nll)
    prov = results["provenance"]
    assert len(prov["suite"]["sha256"]) == 64
    assert [d["task"] for d in prov["data"]] == ["sentiment", "summarize", "lm"]
    assert all(len(d["sha256"]) == 64 for d in prov["data"])
    assert any(f["name"] == "model.safetensors" for f in prov["model"]["files"])
    assert {"torch", "transformers", "peft", "harness"} <= set(prov["versions"])
    assert prov["seed"] == 7 and prov["device"] == "cpu"
    assert results["suite"]["name"] == "e2e"


@pytest.mark.slow
def test_failed_gate_exits_1(tmp_path: Path, tiny_gpt2: Path) -> None:
    suite = write_suite(tmp_path, tiny_gpt2, "  - {metric: lm.perplexity, max: 1.0}\n")
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress", "--limit", "3"]) == 1
    results = json.loads((out / "results.json").read_text())
    assert results["verdict"] == "fail"
    assert results["tasks"]["sentiment"]["n_examples"] == 3


@pytest.mark.slow
def test_results_identical_across_batch_sizes(passing_suite: Path, tmp_path: Path) -> None:
    runs = []
    for bs in (1, 7, 32):
        out = tmp_path / f"bs{bs}"
        assert (
            main(
                [
                    "run",
                    str(passing_suite),
                    "--out",
                    str(out),
                    "--no-progress",
                    "--batch-size",
                    str(bs),
                    "--no-cache",  # each batch size must really score
                ]
            )
            == 0
        )
        runs.append(json.loads((out / "results.json").read_text()))
    ref = runs[0]
    for other in runs[1:]:
        for task_id, task in ref["tasks"].items():
            for name, m in task["metrics"].items():
                o = other["tasks"][task_id]["metrics"][name]
                for key in ("value", "ci_low", "ci_high"):
                    if m[key] is None:
                        assert o[key] is None
                    else:
                        assert o[key] == pytest.approx(m[key], abs=1e-5), (task_id, name, key)
            for r1, r2 in zip(task["records"], other["tasks"][task_id]["records"], strict=True):
                if "loglik" in r1:
                    assert r2["loglik"] == pytest.approx(r1["loglik"], abs=1e-5)
                if "prediction" in r1:
                    assert r2["prediction"] == r1["prediction"]


def test_bad_suite_exits_2_with_located_message(
    tmp_path: Path, tiny_gpt2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, tiny_gpt2, "  - {metric: sentiment.accuracy, mni: 0.8}\n")
    code = main(["run", str(suite), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    line = next(i for i, text in enumerate(suite.read_text().splitlines(), 1) if "mni" in text)
    assert f"suite.yaml:{line}:" in err and "gates[0].mni" in err


def test_bad_data_row_exits_2(
    tmp_path: Path, tiny_gpt2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, tiny_gpt2, "  - {metric: sentiment.accuracy, min: 0.1}\n")
    with (tmp_path / "data" / "reviews.jsonl").open("a") as fh:
        fh.write('{"text": "no label here"}\n')
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    assert f"reviews.jsonl line {len(REVIEWS) + 1}: missing field 'label'" in err


def test_missing_model_exits_2_and_keeps_previous_output(
    tmp_path: Path, tiny_gpt2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, tiny_gpt2, "  - {metric: sentiment.accuracy, min: 0.1}\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("earlier run")
    code = main(
        ["run", str(suite), "--out", str(out), "--model", str(tmp_path / "absent"), "--no-progress"]
    )
    assert code == 2
    assert "absent" in capsys.readouterr().err
    assert (out / "results.json").read_text() == "earlier run"


def test_validate_ok(passing_suite: Path) -> None:
    assert main(["validate", str(passing_suite)]) == 0


def test_python_m_harness_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert "run" in proc.stdout and "validate" in proc.stdout


@pytest.mark.slow
def test_evaluate_plugin_metric_by_local_path(tmp_path: Path, tiny_gpt2: Path) -> None:
    """A suite names a local `evaluate` module as a metric; it is scored like a built-in."""
    pytest.importorskip("evaluate")
    from tests.metrics.test_metrics_plugin import write_module

    write_module(tmp_path, "same_label", dtype="int32")
    suite = write_suite(tmp_path, tiny_gpt2, "  - {metric: sentiment.same_label, min: 0.0}\n")
    text = suite.read_text().replace(
        "metrics: [accuracy, f1, {name: f1, average: macro}, ece]",
        "metrics: [accuracy, ./same_label.py]",
    )
    suite.write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "results.json").read_text())["tasks"]["sentiment"]["metrics"]
    # the module computes the share of predictions equal to the gold label: accuracy
    assert metrics["same_label"]["value"] == pytest.approx(metrics["accuracy"]["value"])
