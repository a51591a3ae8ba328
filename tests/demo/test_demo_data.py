"""The demo's committed data equals what its seeded generator writes."""

from __future__ import annotations

from pathlib import Path

from harness.demo.datagen import generate

COMMITTED = Path(__file__).resolve().parents[2] / "suites" / "demo"


def test_committed_demo_data_is_the_generators_output(tmp_path: Path) -> None:
    written = generate(tmp_path)
    for name, path in written.items():
        assert (COMMITTED / path.name).read_bytes() == path.read_bytes(), name


def test_training_split_is_biased_and_evaluation_split_balanced(tmp_path: Path) -> None:
    import json

    written = generate(tmp_path)

    def positive_rate(name: str, group: str) -> float:
        rows = [json.loads(x) for x in written[name].read_text().splitlines()]
        rows = [r for r in rows if r["group"] == group]
        return sum(r["label"] for r in rows) / len(rows)

    assert positive_rate("reviews_train", "f") > 0.7
    assert positive_rate("reviews_train", "m") < 0.3
    assert 0.35 < positive_rate("reviews_eval", "f") < 0.65
    assert 0.35 < positive_rate("reviews_eval", "m") < 0.65


def test_demo_suite_validates() -> None:
    from harness.config.suite import load_suite
    from harness.run.runner import prepare_suite

    suite = load_suite(COMMITTED.parent / "demo.yaml")
    assert [t.id for t in suite.tasks] == ["reviews", "original_qa", "original_lm", "restate"]
    assert sum(len(p.records) for p in prepare_suite(suite)) == 280


def test_no_training_review_repeats_or_leaks_into_evaluation(tmp_path: Path) -> None:
    import json

    written = generate(tmp_path)
    train = [json.loads(x)["text"] for x in written["reviews_train"].read_text().splitlines()]
    evaluation = [json.loads(x)["text"] for x in written["reviews_eval"].read_text().splitlines()]
    assert len(set(train)) == len(train) == 400
    assert len(set(evaluation)) == len(evaluation) == 200
    assert not set(train) & set(evaluation)
