"""All three audits in one run on a tiny real model with a LoRA adapter: the results
sections have the documented shape (docs/results.md), every documented gate name
resolves, and a second run takes everything (SHAP and LIME included) from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config.suite import load_suite
from harness.run.runner import run_suite
from tests.audits.conftest import reviews, write_jsonl, write_suite
from tests.model.test_cache import comparable, forward_counter
from tests.tiny_models import corpus

pytestmark = pytest.mark.slow

AUDITS = """  forgetting:
    tasks: [lm, sentiment]
  fairness:
    task: sentiment
    group: group
    positive: " positive"
    min_group_size: 10
    counterfactual:
      swaps: {he: she}
    pairs: pairs.csv
  explain:
    task: sentiment
    methods: [shap, lime]
    samples: 4
    max_evals: 40
    sensitive_terms: [he, she]
"""
GATES = """  - {metric: forgetting.lm.perplexity, max_increase: 0.5, relative: true}
  - {metric: forgetting.sentiment.accuracy.delta, min: -1}
  - {metric: fairness.sentiment.demographic_parity_ratio, min: 0}
  - {metric: fairness.sentiment.worst_group.tpr, min: 0}
  - {metric: fairness.sentiment.counterfactual.mean_abs_prob_change, max: 1}
  - {metric: fairness.sentiment.pairs.stereotype_score, max: 1}
  - {metric: 'fairness.sentiment.pairs.stereotype_score[gender]', max: 1}
  - {metric: explain.sentiment.sensitive_share, max: 1}
  - {metric: explain.sentiment.lime.sensitive_share, max: 1}
"""
INTERVAL = {"value", "ci_low", "ci_high", "n"}


def test_all_audits_on_a_tiny_real_model(
    tmp_path: Path, trained_gpt2: Path, harmless_adapter: Path
) -> None:
    (tmp_path / "pairs.csv").write_text(
        ",sent_more,sent_less,bias_type\n"
        "0,he was good at the game,she was good at the game,gender\n"
        "1,she loved the film,he loved the film,gender\n"
        '2,"the old actor was boring","the young actor was boring",age\n'
    )
    write_jsonl(tmp_path / "data" / "wiki.jsonl", [{"text": t} for t in corpus(20, seed=5)])
    lm_task = "  - {id: lm, kind: perplexity, data: data/wiki.jsonl, text: text}\n"
    suite = load_suite(
        write_suite(
            tmp_path,
            model=trained_gpt2,
            adapter=harmless_adapter,
            rows=reviews(n_per_group=12),
            extra_tasks=lm_task,
            audits=AUDITS,
            gates=GATES,
        )
    )
    calls: list[list[int]] = []
    first = run_suite(suite, show_progress=False, on_model_loaded=lambda lm: calls.append(forward_counter(lm))).document()  # fmt: skip
    json.dumps(first, allow_nan=False)  # strict JSON
    assert [g["verdict"] for g in first["gates"]] == ["pass"] * 9, first["gates"]
    audits = first["audits"]
    assert list(audits) == ["forgetting", "fairness", "explain"]

    f = audits["forgetting"]
    assert set(f) == {"baseline", "tasks", "time_s"}
    assert set(f["baseline"]) == {"kind", "path", "fingerprint"}
    for task in f["tasks"].values():
        assert set(task) == {"kind", "n_examples", "metrics", "flips", "examples"}
        for m in task["metrics"].values():
            assert set(m) == {
                "metric", "higher_is_better", "base", "checkpoint", "delta", "delta_ci_low",
                "delta_ci_high", "p_value", "relative_change", "n",
            }  # fmt: skip
            assert set(m["base"]) == set(m["checkpoint"]) == INTERVAL

    fair = audits["fairness"]
    assert set(fair) == {
        "task", "group_fields", "positive", "min_group_size", "n_examples", "overall", "groups",
        "excluded_groups", "disparity", "worst_group", "note", "counterfactual", "pairs",
        "time_s",
    }  # fmt: skip
    assert set(fair["overall"]) == {"accuracy", "f1", "selection_rate", "tpr", "fpr", "count"}
    for g in fair["groups"]:
        assert set(g) == {"group", "fields", "count", "gated", "accuracy", "f1",
                          "selection_rate", "tpr", "fpr"}  # fmt: skip
        assert set(g["tpr"]) == INTERVAL
    assert set(fair["worst_group"]) == {"group", "accuracy", "f1", "selection_rate", "tpr", "fpr"}
    assert set(fair["counterfactual"]) == {
        "swaps", "bidirectional", "fields", "n_changed", "n_flipped", "flip_rate",
        "mean_prob_change", "mean_abs_prob_change", "flipped",
    }  # fmt: skip
    assert fair["counterfactual"]["n_changed"] == 24
    assert set(fair["pairs"]) == {
        "path", "sha256", "n_pairs", "stereotype_score", "likelihood_diff", "by_bias_type",
    }  # fmt: skip
    assert fair["pairs"]["path"] == "pairs.csv" or fair["pairs"]["path"].endswith("pairs.csv")
    assert len(fair["pairs"]["sha256"]) == 64
    assert fair["pairs"]["n_pairs"] == 3 and set(fair["pairs"]["by_bias_type"]) == {"age", "gender"}

    ex = audits["explain"]
    assert set(ex) == {
        "task", "field", "explained_class", "samples", "max_evals", "sensitive_terms",
        "sensitive_share", "methods", "examples", "time_s",
    }  # fmt: skip
    for m in ex["methods"].values():
        assert set(m) == {"ranking", "sensitive_share", "calls", "texts", "forward_passes",
                          "model_time_s", "wall_time_s", "setup_s"}  # fmt: skip
        assert m["forward_passes"] > 0 and m["calls"] > 0
        assert set(m["ranking"][0]) == {"term", "mean_abs", "n_examples"}
    assert len(ex["examples"]) == 4
    assert set(ex["examples"][0]) == {"id", "line", "group", "label", "pred", "prob", "shap",
                                      "lime"}  # fmt: skip

    second = run_suite(suite, show_progress=False, on_model_loaded=lambda lm: calls.append(forward_counter(lm))).document()  # fmt: skip
    assert len(calls[0]) > 0 and len(calls[1]) == 0  # tasks, base runs, swaps, pairs, SHAP, LIME
    assert second["audits"]["explain"]["methods"]["shap"]["forward_passes"] == 0
    assert comparable(first) == comparable(second)
