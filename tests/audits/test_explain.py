"""Explanations: a model that decides on the group word puts it at the top of the SHAP
and LIME rankings (and a fair one does not); one batched probability function, its
calls counted; budgets bound the cost; word merging and stratified sampling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.audits.explain import stratified_sample, summarize, words_from_tokens
from harness.cli.main import main
from tests.audits.conftest import BIASED, FAIR, write_suite

EXPLAIN = """  explain:
    task: sentiment
    samples: 8
    max_evals: 60
    sensitive_terms: [he, she]
    group: group
"""
GATES = "  - {metric: explain.sentiment.sensitive_share, max: 0.3}\n"


def explain(folder: Path, weights: dict[str, float], fake_model: Any) -> tuple[int, Any, Any]:
    lm = fake_model(weights)
    suite = write_suite(folder, audits=EXPLAIN, gates=GATES)
    code = main(["run", str(suite), "--out", str(folder / "out"), "--no-progress"])
    return code, json.loads((folder / "out" / "results.json").read_text()), lm


@pytest.mark.slow
def test_group_word_tops_shap_and_lime_rankings_of_a_biased_model(
    tmp_path: Path, fake_model: Any
) -> None:
    code, results, lm = explain(tmp_path / "biased", BIASED, fake_model)
    section = results["audits"]["explain"]
    assert code == 1 and results["gates"][0]["verdict"] == "fail"
    assert section["field"] == "text" and section["samples"] == 8
    for method in ("shap", "lime"):
        m = section["methods"][method]
        top = [r["term"] for r in m["ranking"][:2]]
        assert set(top) == {"he", "she"}, (method, m["ranking"][:4])
        assert m["sensitive_share"] > 0.5, method
    assert section["sensitive_share"] == pytest.approx(
        np.mean([section["methods"][m]["sensitive_share"] for m in ("shap", "lime")])
    )
    # samples stratified by group and label: 2 of each (group, label) pair
    pairs = [(e["group"], e["label"]) for e in section["examples"]]
    assert sorted(set(pairs)) == [
        ("he", "negative"), ("he", "positive"), ("she", "negative"), ("she", "positive"),
    ]  # fmt: skip
    assert all(pairs.count(p) == 2 for p in set(pairs))

    code, results, _ = explain(tmp_path / "fair", FAIR, fake_model)
    section = results["audits"]["explain"]
    assert code == 0
    for method in ("shap", "lime"):
        m = section["methods"][method]
        assert m["ranking"][0]["term"] in {"great", "good", "fun", "loved", "awful", "bad",
                                           "boring", "hated"}  # fmt: skip
        assert m["sensitive_share"] < 0.05, method


@pytest.mark.slow
def test_one_batched_probability_function_with_counted_calls(
    tmp_path: Path, fake_model: Any
) -> None:
    _, results, lm = explain(tmp_path, BIASED, fake_model)
    section = results["audits"]["explain"]
    shap_, lime_ = section["methods"]["shap"], section["methods"]["lime"]
    # every text either explainer asked about went through the same batched function
    # and each of its calls is one lm.loglikelihood call (2 choices per text)
    task_calls = 1  # the task itself scored all examples in one call
    assert lm.calls == task_calls + shap_["calls"] + lime_["calls"]
    assert lm.rows == 2 * (80 + shap_["texts"] + lime_["texts"])
    # budgets: LIME asks for num_samples = max_evals texts in one call per example;
    # SHAP stays within max_evals (+ the unmasked text) per example
    assert lime_["calls"] == 8 and lime_["texts"] == 8 * 60
    assert shap_["texts"] <= 8 * 61
    assert shap_["calls"] < shap_["texts"]  # batches, not one text at a time
    assert shap_["forward_passes"] is None  # the fake has no torch model to count
    for m in (shap_, lime_):
        assert 0 <= m["model_time_s"] <= m["wall_time_s"]
    example = section["examples"][0]
    assert "".join(t for t, _ in example["shap"]["tokens"]).strip() == example_text(results)
    assert [w for w, _ in example["shap"]["words"]] == example_text(results).split()
    assert {w for w, _ in example["lime"]["words"]} == set(example_text(results).split())


def example_text(results: dict[str, Any]) -> str:
    first = results["audits"]["explain"]["examples"][0]["id"]
    rec = next(r for r in results["tasks"]["sentiment"]["records"] if r["id"] == first)
    return str(rec["input"]["text"])


@pytest.mark.parametrize(
    ("tokens", "values", "words"),
    [
        # GPT-2 style: a space starts a word; pieces inside a word are summed
        (
            ["t", "he", " m", "ov", "ie"],
            [0.5, 0.25, 1.0, 0.5, 0.25],
            [["the", 0.75], ["movie", 1.75]],
        ),
        # BERT/shap style: a trailing space ends a word
        (["the ", "mo", "vie "], [1.0, 2.0, 3.0], [["the", 1.0], ["movie", 5.0]]),
        # a whitespace-only token goes to the next word
        (["he", " ", "won"], [1.0, 0.5, 2.0], [["he", 1.0], ["won", 2.5]]),
        (["a", "."], [1.0, 1.0], [["a.", 2.0]]),
    ],
)
def test_words_from_tokens(tokens: list[str], values: list[float], words: list[Any]) -> None:
    assert words_from_tokens(tokens, values) == words


def test_summarize_ranks_by_mean_abs_and_measures_the_sensitive_share() -> None:
    per_example = [
        [["He", 0.6], ["said", -0.1], ["great.", 0.3]],
        [["she", -0.4], ["said", 0.1], ["bad", -0.5]],
    ]
    ranking, share = summarize(per_example, {"he", "she"})
    assert ranking[0] == {"term": "he", "mean_abs": 0.3, "n_examples": 1}
    assert [r["term"] for r in ranking] == ["he", "bad", "she", "great", "said"]
    assert next(r for r in ranking if r["term"] == "said") == {
        "term": "said",
        "mean_abs": pytest.approx(0.1),
        "n_examples": 2,
    }
    assert share == pytest.approx(1.0 / 2.0)
    assert summarize(per_example, set())[1] is None


def test_stratified_sample_covers_every_stratum() -> None:
    records = [
        {"input": {"group": g}, "gold": y, "id": str(i)}
        for i, (g, y) in enumerate([("a", 0)] * 10 + [("a", 1)] * 10 + [("b", 0)] * 2 + [("b", 1)])
    ]
    picked = stratified_sample(records, 5, ["group"], seed=1)
    strata = [(r["input"]["group"], r["gold"]) for r in picked]
    assert {("a", 0), ("a", 1), ("b", 0), ("b", 1)} <= set(strata)
    assert [int(r["id"]) for r in picked] == sorted(int(r["id"]) for r in picked)
    assert stratified_sample(records, 5, ["group"], seed=1) == picked
    assert len(stratified_sample(records, 100, [], seed=0)) == len(records)
