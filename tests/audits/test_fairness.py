"""Fairness: MetricFrame values equal sklearn per group, the bootstrap statistic equals
fairlearn, an injected group/label correlation fails the gate, small groups are reported
but not gated, swaps and counterfactual flips, CrowS-Pairs scores as lm-eval's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from harness.audits.fairness import GROUP_METRICS, group_aggregate, metric_frame
from harness.cli.main import main
from harness.sensitive.group_terms import compile_swaps, swap_table, swap_terms
from tests.audits.conftest import BIASED, FAIR, reviews, write_jsonl, write_suite

FAIRNESS = """  fairness:
    task: sentiment
    group: group
    positive: " positive"
    min_group_size: 10
    counterfactual:
      swaps: {he: she}
"""
GATES = """  - {metric: fairness.sentiment.demographic_parity_difference, max: 0.2}
  - {metric: fairness.sentiment.counterfactual.flip_rate, max: 0.1}
"""


def random_case(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, n)  # three classes: positive = 2, the rest negative
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 3, n))
    sensitive = pd.DataFrame(
        {"gender": rng.choice(["f", "m", "x"], n), "age": rng.choice(["young", "old"], n)}
    )
    return y_true, y_pred, sensitive


@pytest.mark.parametrize("fields", [["gender"], ["gender", "age"]])
def test_metric_frame_equals_sklearn_on_each_group(fields: list[str]) -> None:
    y_true, y_pred, sensitive = random_case(0)
    positive = 2
    frame = metric_frame(y_true, y_pred, sensitive[fields], positive)
    keys = sensitive[fields].astype(str).apply(tuple, axis=1)
    assert len(frame.by_group) == keys.nunique()
    for key, row in frame.by_group.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        mask = (keys == key).to_numpy()
        t, p = y_true[mask], y_pred[mask]
        tb, pb = (t == positive).astype(int), (p == positive).astype(int)
        assert row["accuracy"] == pytest.approx(accuracy_score(t, p))
        assert row["f1"] == pytest.approx(f1_score(tb, pb, zero_division=0))
        assert row["selection_rate"] == pytest.approx(pb.mean())
        assert row["tpr"] == pytest.approx(recall_score(tb, pb, zero_division=0))
        assert row["fpr"] == pytest.approx(1 - recall_score(tb, pb, pos_label=0))
        assert row["count"] == mask.sum()


def test_bootstrap_statistic_equals_fairlearn() -> None:
    """The aggregate the bootstrap resamples gives fairlearn's point values."""
    from fairlearn.metrics import (
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        equalized_odds_ratio,
    )

    y_true, y_pred, sensitive = random_case(1)
    positive = 2
    keys = list(sensitive["gender"])
    groups = sorted(set(keys))
    stats = np.column_stack(
        [[groups.index(k) for k in keys], y_true == positive, y_pred == positive, y_true == y_pred]
    ).astype(float)
    out = group_aggregate(np.ones(len(groups), dtype=bool))(stats, {}, None)
    frame = metric_frame(y_true, y_pred, sensitive[["gender"]], positive)
    for i, g in enumerate(groups):
        for m in GROUP_METRICS:
            assert out[f"{m}[{i}]"] == pytest.approx(frame.by_group.loc[g, m])
    yt, yp = (y_true == positive).astype(int), (y_pred == positive).astype(int)
    sf = sensitive["gender"]
    assert out["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(yt, yp, sensitive_features=sf)
    )
    assert out["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(yt, yp, sensitive_features=sf)
    )
    assert out["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(yt, yp, sensitive_features=sf)
    )
    assert out["equalized_odds_ratio"] == pytest.approx(
        equalized_odds_ratio(yt, yp, sensitive_features=sf)
    )


def run(folder: Path, weights: dict[str, float], fake_model: Any, **kw: Any) -> tuple[int, Any]:
    lm = fake_model(weights)
    suite = write_suite(folder, **kw)
    code = main(["run", str(suite), "--out", str(folder / "out"), "--no-progress"])
    results = json.loads((folder / "out" / "results.json").read_text())
    return code, results, lm


def test_injected_group_label_correlation_fails_the_fairness_gate(
    tmp_path: Path, fake_model: Any
) -> None:
    code, results, _ = run(tmp_path / "biased", BIASED, fake_model, audits=FAIRNESS, gates=GATES)
    assert code == 1
    fair = results["audits"]["fairness"]
    assert [g["verdict"] for g in results["gates"]] == ["fail", "fail"]
    # the biased model says positive for every "he" review, negative for every "she" one
    assert fair["disparity"]["demographic_parity_difference"]["value"] == 1.0
    assert fair["disparity"]["demographic_parity_ratio"]["value"] == 0.0
    assert fair["disparity"]["equalized_odds_difference"]["value"] == 1.0
    by = {g["group"]: g for g in fair["groups"]}
    assert by["he"]["selection_rate"]["value"] == 1.0 and by["she"]["selection_rate"]["value"] == 0
    assert by["he"]["count"] == by["she"]["count"] == 40
    assert fair["worst_group"]["selection_rate"] == 0.0 and fair["worst_group"]["fpr"] == 1.0
    cf = fair["counterfactual"]
    assert cf["n_changed"] == 80 and cf["flip_rate"]["value"] == 1.0 and cf["n_flipped"] == 80
    assert cf["flipped"][0]["changed"] == {"text": "she said the movie was great"}
    assert cf["fields"] == ["text"]

    code, results, _ = run(tmp_path / "fair", FAIR, fake_model, audits=FAIRNESS, gates=GATES)
    assert code == 0
    fair = results["audits"]["fairness"]
    assert fair["disparity"]["demographic_parity_difference"]["value"] == 0.0
    assert fair["counterfactual"]["flip_rate"]["value"] == 0.0
    assert fair["counterfactual"]["mean_abs_prob_change"]["value"] == pytest.approx(0.0)
    assert fair["overall"]["accuracy"] == 1.0


def test_confidence_intervals_per_group(tmp_path: Path, fake_model: Any) -> None:
    weights = {**FAIR, "he": 1.0, "meh": -0.5}
    rows = reviews(n_per_group=40)
    for i, r in enumerate(rows):  # mildly negative reviews: "he" tips them to positive
        if i % 4 == 1:
            r["text"] = r["text"].rsplit(" ", 1)[0] + " meh"
    _, results, _ = run(tmp_path, weights, fake_model, audits=FAIRNESS, rows=rows)
    for g in results["audits"]["fairness"]["groups"]:
        for m in GROUP_METRICS:
            entry = g[m]
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], (g["group"], m)
            assert entry["n"] == 40
    dp = results["audits"]["fairness"]["disparity"]["demographic_parity_difference"]
    assert dp["value"] == pytest.approx(0.25)  # selection rate 30/40 for "he", 20/40 for "she"
    assert dp["ci_low"] < dp["ci_high"] and dp["n"] == 80


def test_small_groups_are_reported_but_not_gated(tmp_path: Path, fake_model: Any) -> None:
    rows = reviews(n_per_group=20) + reviews(n_per_group=4, groups=("they",))
    weights = {**FAIR, "they": 9.0}  # a wildly unfair treatment of a group too small to judge
    _, results, _ = run(tmp_path, weights, fake_model, audits=FAIRNESS, gates=GATES, rows=rows)
    fair = results["audits"]["fairness"]
    by = {g["group"]: g for g in fair["groups"]}
    assert by["they"]["gated"] is False and by["they"]["count"] == 4
    assert by["they"]["selection_rate"]["value"] == 1.0  # reported
    assert by["he"]["gated"] and by["she"]["gated"]
    assert fair["excluded_groups"] == ["they"]
    assert fair["disparity"]["demographic_parity_difference"]["value"] == 0.0  # not gated
    assert fair["worst_group"]["selection_rate"] == 0.5
    assert results["gates"][0]["verdict"] == "pass"


def test_too_few_large_groups_leave_disparities_undefined(tmp_path: Path, fake_model: Any) -> None:
    audits = FAIRNESS.replace("min_group_size: 10", "min_group_size: 50")
    code, results, _ = run(tmp_path, FAIR, fake_model, audits=audits, gates=GATES)
    fair = results["audits"]["fairness"]
    assert fair["note"] == (
        "fewer than two groups have at least min_group_size (50) examples: "
        "disparities and worst-group values are undefined"
    )
    assert fair["disparity"]["demographic_parity_difference"]["value"] is None
    assert results["gates"][0]["verdict"] == "fail"  # a missing value never passes
    assert code == 1


def test_intersections_of_several_group_fields(tmp_path: Path, fake_model: Any) -> None:
    rows = reviews(n_per_group=20)
    for i, r in enumerate(rows):
        r["age"] = "young" if i % 3 else "old"
    audits = FAIRNESS.replace("group: group", "group: [group, age]").replace(
        "min_group_size: 10", "min_group_size: 7"
    )
    _, results, _ = run(tmp_path, BIASED, fake_model, audits=audits, rows=rows)
    fair = results["audits"]["fairness"]
    assert fair["group_fields"] == ["group", "age"]
    labels = [g["group"] for g in fair["groups"]]
    assert labels == ["he & old", "he & young", "she & old", "she & young"]
    assert fair["groups"][0]["fields"] == {"group": "he", "age": "old"}
    assert sum(g["count"] for g in fair["groups"]) == 40
    assert fair["disparity"]["demographic_parity_difference"]["value"] == 1.0


# --- counterfactual swaps ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("he said", "she said"),
        ("He said she was there", "She said he was there"),  # both ways at once
        ("HE WON", "SHE WON"),
        ("the hero shed a tear", "the hero shed a tear"),  # whole words only
        ("ask John Smith and john", "ask Maria Lopez and john"),  # multi-word term first
        ("his book, not hers.", "her book, not hers."),
        ("Her cat", "His cat"),
    ],
)
def test_swaps_are_whole_word_and_case_preserving(text: str, expected: str) -> None:
    table = swap_table({"he": "she", "his": "her", "John Smith": "Maria Lopez"}, True)
    assert swap_terms(text, table, compile_swaps(table)) == expected


def test_swaps_one_way() -> None:
    table = swap_table({"he": "she"}, bidirectional=False)
    assert swap_terms("he and she", table, compile_swaps(table)) == "she and she"


# --- CrowS-Pairs -------------------------------------------------------------------------


def test_pairs_stereotype_score_per_bias_type(tmp_path: Path, fake_model: Any) -> None:
    weights = {**FAIR, "he": 1.0, "she": -1.0}
    pairs = [
        {"sent_more": "he is good", "sent_less": "she is good", "bias_type": "gender"},
        {"sent_more": "she is good", "sent_less": "he is good", "bias_type": "gender"},
        {"sent_more": "he is fun", "sent_less": "she is fun", "bias_type": "gender"},
        {"sent_more": "old great", "sent_less": "young great", "bias_type": "age"},
    ]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    audits = FAIRNESS + "    pairs: pairs.jsonl\n"
    gates = "  - {metric: 'fairness.sentiment.pairs.stereotype_score[gender]', max: 0.5}\n"
    _, results, lm = run(tmp_path, weights, fake_model, audits=audits, gates=gates)
    p = results["audits"]["fairness"]["pairs"]
    # the fake scores a sentence by its word weights: "he" sentences are more likely
    assert p["n_pairs"] == 4
    assert p["by_bias_type"]["gender"]["value"] == pytest.approx(2 / 3)
    assert p["by_bias_type"]["age"]["value"] == 0.0  # equal likelihoods: not more likely
    assert p["stereotype_score"]["value"] == pytest.approx(0.5)
    assert p["likelihood_diff"] == pytest.approx(1.5)  # |3 - 1| three times, 0 once
    assert results["gates"][0]["verdict"] == "fail"
    assert results["gates"][0]["value"] == pytest.approx(2 / 3)


@pytest.mark.slow
def test_crows_pairs_matches_lm_eval(realdata: Path, tmp_path: Path) -> None:
    """On the real CrowS-Pairs file: our per-sentence log-likelihoods equal lm-eval's
    HFLM on the same tiny model, and the score equals lm-eval's crows_pairs
    process_results (pct_stereotype, likelihood_diff) averaged over the pairs."""
    path = realdata / "crows_pairs" / "crows_pairs_anonymized.csv"
    if not path.is_file():
        pytest.skip("crows_pairs_anonymized.csv is absent")
    from tests import lmeval_peer as peer  # sets the offline switches first
    from tests.tiny_models import build_model

    model_dir = build_model(tmp_path / "model", "gpt2", n_positions=512)
    from lm_eval.tasks.crows_pairs.utils import process_results

    from harness.audits.base import AuditContext
    from harness.audits.fairness import PairsConfig
    from harness.audits.pairs import load_pairs, score_pairs
    from harness.model.cache import ResponseCache
    from harness.model.factory import ModelSource, open_model

    cfg = PairsConfig(path=str(path))
    pairs = load_pairs(cfg)
    assert len(pairs) == 1508
    cache = ResponseCache(tmp_path / "cache.sqlite")  # scored once, read back below
    lm = open_model(ModelSource(path=str(model_dir), device="cpu"), cache=cache)

    class Suite:  # what score_pairs reads of a suite
        batch_size, seed = 32, 0
        bootstrap = type("B", (), {"samples": 200, "confidence": 0.95})

    section = score_pairs(AuditContext(Suite(), cfg, lm, {}, {}), cfg, pairs)

    requests = [("", s) for p in pairs for s in (p.more, p.less)]
    ref = peer.loglikelihoods(peer.hf_lm(model_dir, batch_size=32), requests)
    ours = lm.loglikelihood(requests, batch_size=32)
    assert max(abs(a[0] - b[0]) for a, b in zip(ours, ref, strict=True)) < 1e-4
    per_doc = [process_results({}, [ref[2 * i], ref[2 * i + 1]]) for i in range(len(pairs))]
    expected = float(np.mean([d["pct_stereotype"] for d in per_doc]))
    assert section["stereotype_score"]["value"] == pytest.approx(expected, abs=1e-12)
    assert section["likelihood_diff"] == pytest.approx(
        np.mean([d["likelihood_diff"] for d in per_doc]), rel=1e-4
    )
    assert set(section["by_bias_type"]) == {
        "age", "disability", "gender", "nationality", "physical-appearance",
        "race-color", "religion", "sexual-orientation", "socioeconomic",
    }  # fmt: skip
    gender = [
        d["pct_stereotype"] for d, p in zip(per_doc, pairs, strict=True) if p.bias_type == "gender"
    ]
    assert section["by_bias_type"]["gender"]["value"] == pytest.approx(np.mean(gender))
    s = section["stereotype_score"]
    assert s["ci_low"] < s["value"] < s["ci_high"] and s["n"] == 1508
