"""Forgetting: a checkpoint that damaged the original task fails the gate (a harmless
one passes); base numbers come from the same model with the adapter disabled and, on a
second run, from the response cache; paired deltas; another model as the baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.audits.forgetting import _flips
from harness.cli.main import main
from tests.audits.conftest import reviews, write_jsonl, write_suite
from tests.tiny_models import corpus

LM_TASK = """  - id: lm
    kind: perplexity
    data: data/wiki.jsonl
    text: text
    metrics: [perplexity, bits_per_byte]
"""
FORGETTING = "  forgetting:\n    tasks: [lm, sentiment]\n"
GATES = """  - {metric: forgetting.lm.perplexity, max_increase: 0.10, relative: true}
  - {metric: forgetting.lm.perplexity.delta, max: 5.0, severity: warn}
"""


def suite_for(
    folder: Path, model: Path, adapter: Path | None, audits: str = FORGETTING, gates: str = GATES
) -> Path:
    write_jsonl(folder / "data" / "wiki.jsonl", [{"text": t} for t in corpus(60, seed=5)])
    return write_suite(
        folder,
        model=model,
        adapter=adapter,
        extra_tasks=LM_TASK,
        audits=audits,
        gates=gates,
        rows=reviews(n_per_group=15),
    )


def run_cli(suite: Path, out: Path) -> tuple[int, dict[str, Any]]:
    code = main(["run", str(suite), "--out", str(out), "--no-progress"])
    return code, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_damaged_checkpoint_fails_the_forgetting_gate(
    tmp_path: Path,
    trained_gpt2: Path,
    damaging_adapter: Path,
    harmless_adapter: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import harness.model.language_model

    loads: list[Any] = []
    real_load = harness.model.language_model.load_model
    monkeypatch.setattr(
        harness.model.language_model, "load_model", lambda s: loads.append(s) or real_load(s)
    )
    code, results = run_cli(suite_for(tmp_path, trained_gpt2, damaging_adapter), tmp_path / "d")
    assert code == 1
    assert len(loads) == 1  # the base numbers come from the same loaded model
    gate = results["gates"][0]
    assert gate["verdict"] == "fail" and gate["metric"] == "forgetting.lm.perplexity"
    section = results["audits"]["forgetting"]
    assert section["baseline"]["kind"] == "adapter_disabled"
    assert section["baseline"]["fingerprint"] == results["provenance"]["model"]["fingerprint"]
    ppl = section["tasks"]["lm"]["metrics"]["perplexity"]
    # the checkpoint's value is the task's own, the base value the adapter-off run's
    assert ppl["checkpoint"]["value"] == results["tasks"]["lm"]["metrics"]["perplexity"]["value"]
    assert ppl["checkpoint"]["value"] > 1.3 * ppl["base"]["value"]
    assert ppl["delta"] == pytest.approx(ppl["checkpoint"]["value"] - ppl["base"]["value"])
    assert ppl["relative_change"] == pytest.approx(ppl["delta"] / ppl["base"]["value"])
    assert ppl["delta_ci_low"] > 0 and ppl["p_value"] < 0.01
    assert ppl["higher_is_better"] is False and ppl["n"] == 60
    assert gate["reference"] == ppl["base"]["value"] and gate["p_value"] == ppl["p_value"]
    moved = section["tasks"]["lm"]["examples"]["perplexity"]
    assert moved["n_worse"] > 50 and moved["n_worse"] + moved["n_better"] + moved["n_same"] == 60
    worst = moved["most_worse"]
    assert worst[0]["delta"] == max(w["delta"] for w in worst) > 0
    sentiment = section["tasks"]["sentiment"]
    assert sentiment["examples"] is None
    flips = sentiment["flips"]
    acc = sentiment["metrics"]["accuracy"]
    n = sentiment["n_examples"]
    assert (flips["n_wrong_to_correct"] - flips["n_correct_to_wrong"]) / n == pytest.approx(
        acc["delta"]
    )

    code, results = run_cli(suite_for(tmp_path, trained_gpt2, harmless_adapter), tmp_path / "h")
    assert code == 0
    ppl = results["audits"]["forgetting"]["tasks"]["lm"]["metrics"]["perplexity"]
    assert abs(ppl["relative_change"]) < 1e-3
    assert results["audits"]["forgetting"]["tasks"]["sentiment"]["flips"]["n_correct_to_wrong"] == 0


@pytest.mark.slow
def test_base_results_come_from_the_cache_on_the_next_checkpoint(
    tmp_path: Path, trained_gpt2: Path, damaging_adapter: Path, harmless_adapter: Path
) -> None:
    """CI evaluates each new checkpoint of a base: the base model runs once."""
    from harness.config.suite import load_suite
    from harness.run.runner import run_suite

    calls: list[dict[str, int]] = []

    def count(lm: Any) -> None:
        seen = {"base": 0, "checkpoint": 0}
        calls.append(seen)
        inner = lm.model.get_base_model()

        def hook(*_: Any) -> None:
            seen["base" if lm._adapter_off else "checkpoint"] += 1

        inner.register_forward_hook(hook)

    runs = []
    for adapter in (damaging_adapter, harmless_adapter, harmless_adapter):
        suite = load_suite(suite_for(tmp_path, trained_gpt2, adapter))
        runs.append(run_suite(suite, show_progress=False, on_model_loaded=count).document())
    first, second, third = calls
    assert first["base"] > 0 and first["checkpoint"] > 0
    assert second["base"] == 0 and second["checkpoint"] > 0  # base answers: all cached
    assert third == {"base": 0, "checkpoint": 0}
    base = [r["audits"]["forgetting"]["tasks"]["lm"]["metrics"]["perplexity"]["base"] for r in runs]
    assert base[0] == base[1] == base[2]


@pytest.mark.slow
def test_another_model_as_the_baseline(tmp_path: Path, tiny_gpt2: Path, trained_gpt2: Path) -> None:
    audits = f"  forgetting:\n    tasks: [lm]\n    baseline: {trained_gpt2}\n"
    code, results = run_cli(suite_for(tmp_path, tiny_gpt2, None, audits), tmp_path / "o")
    assert code == 1  # random weights vs the trained model: far worse
    section = results["audits"]["forgetting"]
    assert section["baseline"]["kind"] == "model"
    assert section["baseline"]["path"] == str(trained_gpt2)
    _, alone = run_cli(suite_for(tmp_path / "b", trained_gpt2, None, "  {}", ""), tmp_path / "a")
    ppl = section["tasks"]["lm"]["metrics"]["perplexity"]
    assert ppl["base"]["value"] == pytest.approx(
        alone["tasks"]["lm"]["metrics"]["perplexity"]["value"], rel=1e-9
    )
    assert ppl["checkpoint"]["value"] == results["tasks"]["lm"]["metrics"]["perplexity"]["value"]


@pytest.mark.slow
def test_paired_delta_is_the_metrics_paired_bootstrap(
    tmp_path: Path, trained_gpt2: Path, damaging_adapter: Path
) -> None:
    from harness.metrics import get, paired_bootstrap
    from harness.model.language_model import ModelSource, load_model

    _, results = run_cli(suite_for(tmp_path, trained_gpt2, damaging_adapter), tmp_path / "d")
    lm = load_model(ModelSource(path=str(trained_gpt2), adapter=str(damaging_adapter)))
    texts = [r["text"] for r in results["tasks"]["lm"]["records"]]
    ckpt = lm.rolling_loglikelihood(texts)
    with lm.adapter_disabled():
        base = lm.rolling_loglikelihood(texts)
    metric = get("perplexity")
    info = type("Info", (), {"kind": "perplexity", "choices": ()})()
    expected = paired_bootstrap(
        metric, np.asarray(base), np.asarray(ckpt), {}, info, samples=200, seed=3
    )["perplexity"]
    got = results["audits"]["forgetting"]["tasks"]["lm"]["metrics"]["perplexity"]
    assert got["delta"] == pytest.approx(expected["delta"], rel=1e-6)
    assert got["p_value"] == pytest.approx(expected["p_value"])
    assert got["delta_ci_low"] == pytest.approx(expected["ci_low"], rel=1e-6)
    assert got["delta_ci_high"] == pytest.approx(expected["ci_high"], rel=1e-6)


def test_flips_list_both_directions() -> None:
    def rec(i: int, gold: int, pred: int) -> dict[str, Any]:
        probs = [0.8, 0.2] if pred == 0 else [0.3, 0.7]
        return {"id": str(i), "line": i, "choices": [" no", " yes"], "gold": gold, "pred": pred,
                "probs": probs}  # fmt: skip

    base = [rec(1, 1, 1), rec(2, 0, 1), rec(3, 0, 0), rec(4, 1, 1)]
    ckpt = [rec(1, 1, 0), rec(2, 0, 0), rec(3, 0, 0), rec(4, 1, 1)]
    flips = _flips(base, ckpt)
    assert flips["n_correct_to_wrong"] == 1 and flips["n_wrong_to_correct"] == 1
    assert flips["correct_to_wrong"] == [
        {"id": "1", "line": 1, "gold": "yes", "base_pred": "yes", "pred": "no",
         "base_prob": 0.7, "prob": 0.2},
    ]  # fmt: skip
    assert flips["wrong_to_correct"][0]["id"] == "2"


def test_generation_tasks_list_the_examples_that_moved_most() -> None:
    from types import SimpleNamespace

    from harness.audits.base import AuditContext
    from harness.audits.forgetting import compare_task
    from harness.config.suite import GenerationTask

    task = GenerationTask.model_validate(
        {"id": "gen", "kind": "generation", "data": "x.jsonl", "prompt": "{{ d }}",
         "reference": "r", "metrics": ["exact_match", "rouge"]}
    )  # fmt: skip
    refs = ["the team won", "prices rose", "the game ended", "rain fell"]
    base_out = ["the team won", "prices rose", "the game ended", "sun"]
    ckpt_out = ["the team won", "prices fell", "game over", "rain fell"]
    base = [{"id": str(i), "line": i + 1, "prediction": p, "references": [r]}
            for i, (p, r) in enumerate(zip(base_out, refs, strict=True))]  # fmt: skip
    ckpt = [{**b, "prediction": p} for b, p in zip(base, ckpt_out, strict=True)]
    suite = SimpleNamespace(
        bootstrap=SimpleNamespace(samples=100, confidence=0.95), seed=0, resolve=Path
    )
    ctx = AuditContext(suite=suite, config=None, lm=None, prepared={}, task_results={})
    out = compare_task(ctx, SimpleNamespace(task=task, records=ckpt), base)
    assert out["flips"] is None and out["kind"] == "generation"
    em = out["metrics"]["exact_match"]
    assert (em["base"]["value"], em["checkpoint"]["value"], em["delta"]) == (0.75, 0.5, -0.25)
    moved = out["examples"]["exact_match"]
    assert (moved["n_worse"], moved["n_better"], moved["n_same"]) == (2, 1, 1)
    assert [w["id"] for w in moved["most_worse"]] == ["1", "2"]
    assert moved["mean_delta"] == pytest.approx(-0.25)
    assert set(out["examples"]) == {"exact_match", "rouge1", "rouge2", "rougeL", "rougeLsum"}
