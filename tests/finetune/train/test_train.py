"""finetune.train.run on tiny real models: the output folder, early stopping, schedules,
the learning-curve diagnosis of real runs, and the harness auditing the result."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from finetune.config.schema import load_config
from finetune.train.run import NO_CHECKPOINT, RUN_EXISTS, train
from harness.data.rows import sha256_file
from harness.errors import UserError
from harness.model.language_model import ModelSource, fingerprint_folder, load_model
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl
from tests.tiny_models import WORDS


@pytest.fixture(scope="module")
def run(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One ordinary run: 24 training / 8 validation rows, 4 epochs of 3 steps."""
    folder = tmp_path_factory.mktemp("run")
    write_jsonl(folder / "train.jsonl", new_task_rows(32))
    config = write_config(
        folder,
        tiny_gpt2,
        training={"epochs": 4, "eval_steps": 3, "early_stopping_patience": 2},
    )
    result = train(load_config(config))
    return {"folder": folder, "result": result, "base": tiny_gpt2}


def test_output_folder_holds_adapter_tokenizer_manifest_history(run: dict[str, Any]) -> None:
    out = run["folder"] / "out"
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= names
    assert {"manifest.json", "history.jsonl", "checkpoints"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt"))]


def test_manifest_records_what_was_trained_on_what(run: dict[str, Any]) -> None:
    out, folder = run["folder"] / "out", run["folder"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == run["result"].manifest
    assert (
        manifest["base_model"]["fingerprint"]
        == fingerprint_folder(run["base"], allow_pickle=False).digest
    )
    assert manifest["adapter"]["fingerprint"] == fingerprint_folder(out, allow_pickle=False).digest
    assert manifest["data_files"] == [
        {
            "role": "train",
            "path": str(folder / "train.jsonl"),
            "sha256": sha256_file(folder / "train.jsonl"),
        }
    ]
    assert manifest["config"]["training"]["lr"] == 0.01
    assert manifest["config"]["data"]["train"] == [str(folder / "train.jsonl")]  # resolved
    assert manifest["seed"] == 42
    assert {"python", "torch", "transformers", "peft"} <= set(manifest["libraries"])
    history = run["result"].history
    assert manifest["final_train_loss"] == history[-1]["train_loss"]
    assert manifest["final_val_loss"] == history[-1]["val_loss"]
    best = min(history, key=lambda h: h["val_loss"])
    assert (manifest["best_step"], manifest["best_val_loss"]) == (best["step"], best["val_loss"])
    assert manifest["curation"]["train_examples"] == 24
    assert manifest["curation"]["validation_examples"] == 8
    assert manifest["diagnosis"]["verdict"] in ("ok", "overfitting", "underfitting")


def test_history_has_one_line_per_evaluation(run: dict[str, Any]) -> None:
    lines = (run["folder"] / "out" / "history.jsonl").read_text().splitlines()
    points = [json.loads(line) for line in lines]
    assert all(set(p) == {"step", "epoch", "train_loss", "val_loss"} for p in points)
    steps = [p["step"] for p in points]
    assert steps == list(range(3, steps[-1] + 1, 3))
    assert steps[-1] == run["result"].manifest["global_steps"]
    assert [p["epoch"] for p in points] == [s / 3 for s in steps]
    assert all(
        isinstance(p["train_loss"], float) and isinstance(p["val_loss"], float) for p in points
    )


def test_the_harness_loads_and_scores_the_output_folder(run: dict[str, Any]) -> None:
    out = run["folder"] / "out"
    lm = load_model(ModelSource(path=str(run["base"]), adapter=str(out), device="cpu"))
    pairs = [("headline: team won\nsummary:", " team won")]
    (adapted,) = lm.loglikelihood(pairs)
    with lm.adapter_disabled():
        (base,) = lm.loglikelihood(pairs)
    assert adapted[0] != base[0]
    assert adapted[0] > base[0]  # the new task got likelier


def test_harness_run_audits_the_folder_with_adapter(
    run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.cli.main import main as harness_main

    monkeypatch.chdir(tmp_path)
    write_jsonl(
        tmp_path / "news.jsonl",
        [{"text": r["prompt"] + r["completion"]} for r in new_task_rows(6, seed=9)],
    )
    (tmp_path / "suite.yaml").write_text(
        f"schema_version: 1\nname: ft\nmodel: {{path: {run['base']}}}\n"
        "tasks:\n  - {id: lm, kind: perplexity, data: news.jsonl, text: text}\n"
        "bootstrap: {samples: 0}\n"
    )
    out = run["folder"] / "out"
    code = harness_main(
        ["run", "suite.yaml", "--adapter", str(out), "--out", "rep", "--no-progress"]
    )
    assert code == 0
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    manifest = run["result"].manifest
    assert results["provenance"]["adapter"]["fingerprint"] == manifest["adapter"]["fingerprint"]
    assert results["provenance"]["model"]["fingerprint"] == manifest["base_model"]["fingerprint"]


def test_an_existing_run_is_never_overwritten_silently(run: dict[str, Any]) -> None:
    config = load_config(run["folder"] / "config.yaml")
    with pytest.raises(UserError) as exc:
        train(config)
    assert exc.value.messages == [RUN_EXISTS.format(out=run["folder"] / "out")]


def test_resume_without_a_checkpoint(tiny_gpt2: Path, new_task: Path) -> None:
    config = load_config(write_config(new_task, tiny_gpt2))
    with pytest.raises(UserError) as exc:
        train(config, resume=True)
    out = new_task / "out"
    assert exc.value.messages == [NO_CHECKPOINT.format(out=out, folder=out / "checkpoints")]


def random_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Arbitrary prompts answered by 4 random words of 5: the word distribution
    generalizes, the particular answers can only be memorized."""
    rng = random.Random(seed)
    return [
        {
            "prompt": "id: " + " ".join(rng.choice(WORDS) for _ in range(3)) + "\nanswer:",
            "completion": " " + " ".join(rng.choice(WORDS[7:12]) for _ in range(4)),
        }
        for _ in range(n)
    ]


@pytest.mark.slow
def test_overfitting_run_is_diagnosed_and_early_stopping_keeps_the_best(
    original_base: Path, tmp_path: Path
) -> None:
    """4 training rows memorized: validation loss falls, then rises while training loss
    keeps falling; early stopping ends the run 4 evaluations after the best one."""
    write_jsonl(tmp_path / "train.jsonl", random_rows(4, seed=1))
    write_jsonl(tmp_path / "val.jsonl", random_rows(8, seed=2))
    config = write_config(
        tmp_path,
        original_base,
        data={"train": ["train.jsonl"], "validation": "val.jsonl", "add_eos": False},
        lora={"r": 16, "alpha": 32},
        training={"epochs": 40, "lr": 0.01, "eval_steps": 1, "early_stopping_patience": 4},
    )
    result = train(load_config(config))
    m = result.manifest
    assert m["diagnosis"]["verdict"] == "overfitting"
    assert [f["rule"] for f in m["diagnosis"]["findings"]] == ["val_rising", "gap"]
    assert m["stopped_early"] and m["global_steps"] == m["best_step"] + 4
    assert m["best_step"] > 1 and m["final_val_loss"] > m["best_val_loss"]
    steps = [h["step"] for h in result.history]
    assert steps == list(range(1, m["global_steps"] + 1))
    # the saved adapter is the best checkpoint: the harness's own scoring of the
    # validation completions gives the best validation loss
    lm = load_model(
        ModelSource(path=str(original_base), adapter=str(result.output_dir), device="cpu")
    )
    scored = lm.loglikelihood([(r["prompt"], r["completion"]) for r in random_rows(8, seed=2)])
    val_loss = -sum(s[0] for s in scored) / sum(s[2] for s in scored)
    assert val_loss == pytest.approx(m["best_val_loss"], abs=1e-5)
    assert m["saved_val_loss"] == pytest.approx(m["best_val_loss"], abs=1e-6)


@pytest.mark.slow
def test_underfitting_run_is_diagnosed(tiny_gpt2: Path, new_task: Path) -> None:
    config = write_config(
        new_task, tiny_gpt2, training={"max_steps": 6, "lr": 1e-6, "eval_steps": 2}
    )
    result = train(load_config(config))
    diagnosis = result.manifest["diagnosis"]
    assert diagnosis["verdict"] == "underfitting"
    assert diagnosis["findings"][0]["steps"] == [2, 4, 6]


@pytest.mark.slow
def test_step_schedule_decays_like_steplr(tiny_gpt2: Path, new_task: Path) -> None:
    config = write_config(
        new_task,
        tiny_gpt2,
        training={
            "max_steps": 6,
            "eval_steps": 1,
            "scheduler": "step",
            "step_size": 2,
            "step_gamma": 0.5,
        },
    )
    train(load_config(config))
    state = json.loads(
        (new_task / "out" / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text()
    )
    logged = [e["learning_rate"] for e in state["log_history"] if "learning_rate" in e]
    # expected: the rate torch's own StepLR(step_size=2, gamma=0.5) gives each step
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    steplr = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    expected = []
    for _ in range(6):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        steplr.step()
    assert logged == pytest.approx(expected)
    assert expected == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025])
