"""`harness card`: a Hugging Face model card that huggingface_hub reads back, whose
model-index values are results.json's, and in which no text from data or a model can
start markup (a hostile prediction, suite name or fine-tune finding stays text)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.report.model_card import render_card
from tests.report.synthetic import as_results, make_results

huggingface_hub = pytest.importorskip("huggingface_hub")


def write_run(folder: Path, doc: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def split_card(text: str) -> tuple[str, str]:
    assert text.startswith("---\n")
    front, _, body = text[4:].partition("\n---\n")
    return front, body


def test_card_parses_back_and_its_model_index_is_results_json(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard, metadata_load

    doc = make_results(3, 40, seed=2)
    path = write_run(tmp_path / "run", doc)
    out = tmp_path / "README.md"
    assert main(["card", str(path), "--out", str(out), "--license", "apache-2.0"]) == 0

    meta = metadata_load(out)
    assert meta is not None
    assert meta["base_model"] == "/models/base" and meta["license"] == "apache-2.0"
    assert meta["datasets"][:3] == [d["path"] for d in doc["provenance"]["data"]]
    assert meta["library_name"] == "peft" and f"release-gate-{doc['verdict']}" in meta["tags"]

    card = ModelCard.load(out)
    results = card.data.eval_results
    want = {
        (task_id, output): m["value"]
        for task_id, t in doc["tasks"].items()
        for output, m in t["metrics"].items()
        if m["value"] is not None
    }
    got = {(r.task_name, r.metric_name): r.metric_value for r in results}
    assert got == want and len(results) == len(want)  # every value, exactly as stored
    kinds = {task_id: t["kind"] for task_id, t in doc["tasks"].items()}
    for r in results:
        want_type = (
            "text-classification" if kinds[r.task_name] == "classification" else "text-generation"
        )
        assert r.task_type == want_type
        assert r.metric_type == doc["tasks"][r.task_name]["metrics"][r.metric_name]["metric"]
        assert r.dataset_name == r.task_name

    body = card.text
    for g in doc["gates"]:  # every gate with its verdict
        escaped = g["metric"].replace("_", "\\_")
        assert re.search(rf"\| {re.escape(escaped)} \| .* {g['verdict']} \|", body)
    m = doc["tasks"]["clas0"]["metrics"]["accuracy"]
    assert f"[{m['ci_low']:.4g}, {m['ci_high']:.4g}]" in body  # CIs in the body
    for heading in ("## Gates", "## Metrics", "## Audit findings", "## Training data curation"):
        assert heading in body
    assert "## Provenance" in body and doc["provenance"]["suite"]["sha256"] in body
    assert "harness verify" in body


def test_hostile_text_stays_text(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    doc = make_results(3, 20, hostile=True)
    doc["suite"]["name"] = "evil\n---\nlicense: mit\n<script>alert(1)</script>"
    prediction = (
        "<script>document.title='PWNED'</script> [x](javascript:alert(1)) ![i](http://x/y.png)"
    )
    gen = next(t for t in doc["tasks"].values() if t["kind"] == "generation")
    gen["records"][0]["prediction"] = prediction
    text = render_card(as_results(doc), results_path="run/<b>results.json")
    front, body = split_card(text)
    assert front.count("\n---") == 0
    card = ModelCard(text)
    assert "license" not in card.data.to_dict()  # the name did not end the front matter
    # no raw HTML, link or image can start anywhere in the body
    assert "<script" not in body and "<img" not in body and "<svg" not in body
    assert "](" not in body.replace("\\](", "") and "![" not in body.replace("!\\[", "")
    assert "&lt;script&gt;document.title=" in body  # the payload is there, as text
    assert "\u202e" not in text and "\x00" not in text
    # the hostile prediction is shown (escaped) among the example outputs
    examples = body.split("## Example outputs", 1)[1].split("\n## ", 1)[0]
    assert "&lt;script&gt;document.title=" in examples and "javascript\\:alert\\(1\\)" in examples


def test_finetune_run_folder_gets_the_card(tmp_path: Path) -> None:
    """--finetune-run DIR: the fine-tune's own record (read by harness.results.finetune_record)
    goes into the card, and the card into DIR/README.md."""
    from huggingface_hub import metadata_load

    doc = make_results(3, 20, finetune=False)
    path = write_run(tmp_path / "run", doc)
    manifest = make_results(1, 4)["finetune"]["manifest"]
    manifest["data_files"] = [
        {"role": "train", "path": "data/train.jsonl", "sha256": "7" * 64},
        {"role": "eval", "path": "data/eval.jsonl", "sha256": "8" * 64},
    ]
    manifest["best_step"] = 120
    run = tmp_path / "adapter"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "history.jsonl").write_text('{"step": 1, "train_loss": 2.0}\n')
    assert main(["card", str(path), "--finetune-run", str(run)]) == 0
    text = (run / "README.md").read_text()
    meta = metadata_load(run / "README.md")
    assert meta is not None and "data/train.jsonl" in meta["datasets"]
    assert "data/eval.jsonl" not in meta["datasets"]  # what it was checked against, not trained on
    assert "## Training data curation" in text and "leakage" in text
    assert "7" * 64 in text and "| best\\_step | 120 |" in text


def test_a_folder_without_a_finetune_record_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_run(tmp_path / "run", make_results(1, 4))
    assert main(["card", str(path), "--finetune-run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no manifest.json or history.jsonl" in err and "Traceback" not in err


def test_card_to_stdout_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_run(tmp_path / "run", make_results(1, 4))
    assert main(["card", str(path)]) == 0
    assert capsys.readouterr().out.startswith("---\nbase_model: /models/base\n")


def test_not_a_results_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    assert main(["card", str(bad)]) == 2
    assert "not a results file" in capsys.readouterr().err
