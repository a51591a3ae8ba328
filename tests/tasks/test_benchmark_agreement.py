"""Issue 16 acceptance: the benchmarks users run, written as OUR suite YAML, score what
lm-evaluation-harness scores.

For five benchmark shapes (HellaSwag, MMLU 5-shot first_n, ARC, Winogrande with partial
scoring, TruthfulQA-MC1) a few rows in the benchmark's own row format (the column names
and value types of its HF dataset; ``benchmark_shapes``) are written to local jsonl
files and run twice on the same tiny GPT-2: through lm-eval (a local task file laid out as
lm-eval's own task for that benchmark, our copy of its layout, not its file) and
through ``run_suite`` on a suite with per-example choices, label expressions,
description, few-shot and partial scoring, and once more as a ``kind: lm_eval`` task
over the same local lm-eval task folder (ids ending ``_via_lm_eval``). Then, per shape
and for both of our forms:

* the prompts are byte-identical: each record's scored (context, continuation) pairs
  (``scored_pairs``) equal lm-eval's request ``arguments`` (with MMLU this is the
  5-shot first_n prompt, description included);
* each choice's log-likelihood agrees within 1e-5;
* acc is equal, per example and in total; acc_norm (log-likelihood over the choice's
  length in characters, first on ties) computed from our records is equal per example,
  and so is our ``accuracy_norm`` metric's per-example value.

The 64-token window of the tiny model cuts the longer prompts (5-shot MMLU, the
TruthfulQA primer) from the left, so the truncation of both sides is compared too.
lm-eval runs once for all five tasks; ours runs one suite per task (a task the harness
refuses fails its own tests only) on one model loaded once for the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import lmeval_peer as peer
from tests.tasks.benchmark_shapes import (
    ARC,
    ARC_OWN_SHOTS,
    HELLASWAG,
    MMLU,
    TRUTHFULQA,
    WINOGRANDE,
    WINOGRANDE_SHOTS,
    Shape,
)

pytestmark = pytest.mark.slow

LOGLIK_TOL = 1e-5


SHAPES = {
    s.name: s
    for s in (HELLASWAG, MMLU, ARC, WINOGRANDE, TRUTHFULQA, ARC_OWN_SHOTS, WINOGRANDE_SHOTS)
}

# Our tasks, by id: each shape written in our suite YAML, and each shape run as
# `kind: lm_eval` from the same local lm-eval task folder the reference runs.
LM_EVAL_KIND = "_via_lm_eval"
OURS: dict[str, tuple[Shape, dict[str, Any]]] = {
    **{name: (shape, shape.ours) for name, shape in SHAPES.items()},
    **{name + LM_EVAL_KIND: (shape, {"kind": "lm_eval"}) for name, shape in SHAPES.items()},
}


def our_ids() -> list[Any]:
    """The task ids to parametrize over."""
    return list(OURS)


def accuracy_norm_registered() -> bool:
    from harness.metrics import base

    try:
        base.get("accuracy_norm")
    except KeyError:
        return False
    return True


def acc_norm_hits(records: list[dict[str, Any]]) -> list[float]:
    """lm-eval's acc_norm per example: argmax of log-likelihood / len(choice) in
    characters (the first on ties), compared with the gold index."""
    hits = []
    for rec in records:
        normed = [ll / len(c) for ll, c in zip(rec["loglik"], rec["choices"], strict=True)]
        pred = max(range(len(normed)), key=lambda i: (normed[i], -i))
        hits.append(float(pred == rec["gold"]))
    return hits


@dataclass
class Runs:
    """Both sides' outputs: lm-eval's for every shape, ours per task (one suite each,
    so that a task our harness refuses fails its own tests only)."""

    lmeval: dict[str, Any]
    ours: dict[str, Any]  # task id -> Results, or the UserError its suite raised
    norm_metric: bool
    window: int
    """The model's window in tokens."""
    longest: dict[str, int]
    """Per lm-eval task, the most tokens of a scored context + continuation."""

    def task(self, name: str) -> Any:
        """Our TaskResult of task ``name`` (raises the error its suite raised)."""
        result = self.ours[name]
        if isinstance(result, Exception):
            raise result
        return result.tasks[name]

    def records(self, name: str) -> list[dict[str, Any]]:
        return list(self.task(name).records)

    def reference(self, name: str) -> str:
        """The lm-eval task our task ``name`` is compared with."""
        return OURS[name][0].name


@pytest.fixture(scope="module")
def runs(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    from harness.config.suite import load_suite
    from harness.errors import UserError
    from harness.model.language_model import ModelSource, load_model
    from harness.run.runner import run_suite

    root = tmp_path_factory.mktemp("benchmarks")
    norm_metric = accuracy_norm_registered()
    lmeval_metrics = [
        {"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")
    ]
    for shape in SHAPES.values():
        files = {"test": peer.write_jsonl(root / f"{shape.name}.jsonl", shape.rows)}
        if shape.dev:
            files["dev"] = peer.write_jsonl(root / f"{shape.name}_dev.jsonl", shape.dev)
        config = {
            "output_type": "multiple_choice",
            "test_split": "test",
            "num_fewshot": 0,
            **shape.lmeval,
            "metric_list": lmeval_metrics,
        }
        # one folder per task: the folder's .py files belong to its task
        peer.write_task(
            root / "lmeval" / shape.name, shape.name, files, config, modules=shape.modules
        )
    ref_lm = peer.hf_lm(tiny_gpt2, batch_size=16)
    out = peer.simple_evaluate_local(ref_lm, root / "lmeval", list(SHAPES), batch_size=16)
    assert peer.is_offline()
    del ref_lm

    lm = load_model(ModelSource(path=str(tiny_gpt2), device="cpu", dtype="float32"))
    our_metrics = ["accuracy", *(["accuracy_norm"] if norm_metric else [])]
    ours: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as mp:  # every suite's model is the one loaded here
        mp.setattr("harness.model.language_model.load_model", lambda source, **_: lm)
        for name, (shape, task) in OURS.items():
            if task.get("kind") == "lm_eval":
                folder = str(root / "lmeval" / shape.name)
                entry = {"id": name, "kind": "lm_eval", "task": shape.name,
                         "include_path": folder, "metrics": our_metrics}  # fmt: skip
            else:
                entry = {
                    "id": name,
                    "kind": "classification",
                    "data": f"{shape.name}.jsonl",
                    **task,
                    "metrics": our_metrics,
                }
            suite_file = write_suite(root / f"{name}.yaml", tiny_gpt2, entry)
            try:
                ours[name] = run_suite(load_suite(suite_file), show_progress=False)
            except UserError as exc:
                ours[name] = exc
    longest = {
        name: max(len(lm.encode(c + x)) for doc in peer.request_pairs(out, name) for c, x in doc)
        for name in SHAPES
    }
    yield Runs(out, ours, norm_metric, lm.max_length, longest)


def write_suite(path: Path, model: Path, task: dict[str, Any]) -> Path:
    suite = {
        "schema_version": 1,
        "name": "benchmark-agreement",
        "model": {"path": str(model), "device": "cpu", "dtype": "float32"},
        "tasks": [task],
        "batch_size": 16,
        "bootstrap": {"samples": 0},
        "cache": False,
    }
    path.write_text(yaml.safe_dump(suite, sort_keys=False, allow_unicode=True), "utf-8")
    return path


@pytest.mark.parametrize("name", our_ids())
def test_prompts_are_byte_identical(runs: Runs, name: str) -> None:
    from harness.tasks.classification import scored_pairs

    records = runs.records(name)
    assert len(records) == len(OURS[name][0].rows)
    ours = [scored_pairs(rec) for rec in records]  # type: ignore[arg-type]
    assert ours == peer.request_pairs(runs.lmeval, runs.reference(name))


def test_mmlu_prompt_is_description_then_five_first_shots(runs: Runs) -> None:
    """The 5-shot first_n context spelled out, so that one layout wrong on both sides
    would show."""
    from harness.tasks.classification import scored_pairs

    def question(row: dict[str, Any]) -> str:
        listed = "".join(f"\n{k}. {c}" for k, c in zip("ABCD", row["choices"], strict=True))
        return f"{row['question'].strip()}{listed}\nAnswer:"

    head = "The following are multiple choice questions (with answers) about high school biology."
    shots = [f"{question(row)} {'ABCD'[row['answer']]}" for row in MMLU.dev[:5]]
    # 5 shots overflow the tiny model's window: both sides cut the same tokens from the left
    assert runs.longest["mmlu"] > 5 * runs.window
    for rec, row in zip(runs.records("mmlu"), MMLU.rows, strict=True):
        assert rec["prompt"] == "\n\n".join([head, *shots, question(row)])
        assert scored_pairs(rec) == [(rec["prompt"], f" {c}") for c in "ABCD"]  # type: ignore[arg-type]


def test_shots_from_own_rows_leave_the_example_out(runs: Runs) -> None:
    def solved(row: dict[str, Any]) -> str:
        gold = row["choices"]["label"].index(row["answerKey"])
        return f"Question: {row['question']}\nAnswer: {row['choices']['text'][gold]}\n\n"

    rows = ARC_OWN_SHOTS.rows
    for k, rec in enumerate(runs.records("arc_2shot_own")):
        others = [row for j, row in enumerate(rows) if j != k][:2]
        own = f"Question: {rows[k]['question']}\nAnswer:"
        assert rec["prompt"] == "".join(solved(row) for row in others) + own


def test_winogrande_shots_are_filled_with_the_gold_option(runs: Runs) -> None:
    def solved(row: dict[str, Any]) -> str:
        blank = row["sentence"].index("_")
        option = row["option1"] if row["answer"] == "1" else row["option2"]
        return f"{row['sentence'][:blank]}{option} {row['sentence'][blank + 1 :].strip()}\n\n"

    head = "".join(solved(row) for row in WINOGRANDE_SHOTS.dev[:2])
    for rec in runs.records("winogrande_2shot"):
        assert rec["prompt"] == head
        assert [c for c, _ in scored_pairs_of(rec)] == [head + x for x in rec["contexts"]]


def scored_pairs_of(rec: dict[str, Any]) -> list[tuple[str, str]]:
    from harness.tasks.classification import scored_pairs

    return scored_pairs(rec)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", our_ids())
def test_choice_logliks_agree(runs: Runs, name: str) -> None:
    ours = [rec["loglik"] for rec in runs.records(name)]
    ref = peer.choice_logliks(runs.lmeval, runs.reference(name))
    assert [len(x) for x in ours] == [len(x) for x in ref]
    diff = max(
        abs(a - b) for xs, ys in zip(ours, ref, strict=True) for a, b in zip(xs, ys, strict=True)
    )
    assert diff < LOGLIK_TOL, f"{name}: max |loglik diff| {diff:.3g}"


@pytest.mark.parametrize("name", our_ids())
def test_acc_and_acc_norm_equal(runs: Runs, name: str) -> None:
    ref = runs.reference(name)
    records = runs.records(name)
    hits = [float(rec["pred"] == rec["gold"]) for rec in records]
    assert hits == peer.per_doc(runs.lmeval, ref, "acc")
    assert runs.task(name).metrics["accuracy"].value == peer.metric(runs.lmeval, ref, "acc")
    assert acc_norm_hits(records) == peer.per_doc(runs.lmeval, ref, "acc_norm")


@pytest.mark.parametrize("name", our_ids())
def test_accuracy_norm_metric_equals_acc_norm(runs: Runs, name: str) -> None:
    assert runs.norm_metric
    ref = runs.reference(name)
    task = runs.task(name)
    per_example = [rec["stats"]["accuracy_norm"][0] for rec in task.records]
    assert per_example == peer.per_doc(runs.lmeval, ref, "acc_norm")
    assert task.metrics["accuracy_norm"].value == peer.metric(runs.lmeval, ref, "acc_norm")


def test_truncation_counts_the_tokens_the_window_drops(runs: Runs, tiny_gpt2: Path) -> None:
    """5-shot MMLU overflows the 64-token window: every example is counted as cut, with
    the characters it loses, although its text is short enough that nothing is cut
    before tokenizing. Shorter examples (some ARC questions) are not marked."""
    mmlu = runs.task("mmlu")
    assert runs.longest["mmlu"] > 5 * runs.window
    assert mmlu.n_truncated == len(mmlu.records)
    for rec in mmlu.records:
        assert 0 < rec["truncated_chars"] < len(rec["prompt"])
    from transformers import AutoTokenizer

    from harness.tasks.classification import scored_pairs

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    uncut = 0
    for name in SHAPES:
        task = runs.task(name)
        for rec in task.records:
            tokens = max(len(tok.encode(c + x)) for c, x in scored_pairs(rec))  # type: ignore[arg-type]
            assert ("truncated_chars" in rec) == (tokens > runs.window + 1), (name, rec["id"])
        marked = [r for r in task.records if "truncated_chars" in r]
        assert task.n_truncated == len(marked)
        uncut += len(task.records) - len(marked)
    assert uncut > 0  # the count is per example, not per task
