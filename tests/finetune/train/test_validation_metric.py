"""Issue 24, defect 2: the fine-tuner's validation says whether the model learned the task.

The validation loss averages the label token and the end-of-sequence token, so a model
at chance on two labels scores about ln 2 / 2 and looked "ok". With a label set, each
evaluation now scores the labels as the harness scores a classification task, reports
accuracy beside the majority and chance baselines, picks the checkpoint and ranks search
trials by it, and the diagnosis says "not above chance" with a binomial test.

The runs fine-tune ``original_base`` (the tiny GPT-2 pretrained on the test corpus): on
a task whose label depends on a word three tokens back it learns the answers' form (the
validation loss falls from 0.51 to 0.43) but not the task within 24 steps; on one whose label
depends on the last prompt word it gets about 0.9 accuracy within 48 steps.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from finetune.config.diagnosis import Thresholds
from finetune.config.schema import load_config
from finetune.data.examples import Example
from finetune.search.trials import best_row, run_search
from finetune.train.diagnose import diagnose
from finetune.train.run import train
from finetune.train.validation import (
    NO_LABEL_SET,
    accuracy_rank,
    binomial_p,
    build_label_task,
    choice_loglikelihoods,
    label_set,
)
from harness.errors import UserError
from tests.finetune.conftest import write_config, write_jsonl

POSITIVE = ["great", "good", "fun", "loved"]
NEGATIVE = ["bad", "awful", "boring", "hated"]
NEUTRAL = ["the", "movie", "film", "story", "actor", "plot", "was", "is", "it", "this"]
LABELS = (" won", " lost")  # 2 and 3 tokens in the tiny tokenizer


def label_rows(n: int, seed: int, *, last_word: bool) -> list[dict[str, str]]:
    """Balanced rows: the label is " won" after a positive word, " lost" after a negative
    one; the word ends the prompt (``last_word``, easy) or is followed by a fixed
    "\\nsentiment:" (the model must look back)."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(rows) < n:
        positive = len(rows) % 2 == 0
        word = rng.choice(POSITIVE if positive else NEGATIVE)
        prompt = "review: " + " ".join(rng.choice(NEUTRAL) for _ in range(3)) + f" {word}"
        prompt += "" if last_word else "\nsentiment:"
        if prompt not in seen:
            seen.add(prompt)
            rows.append({"prompt": prompt, "completion": LABELS[0 if positive else 1]})
    return rows


def val_rows(last_word: bool) -> list[dict[str, str]]:
    """The 32 validation rows (16 of each label), none of them a training row."""
    return label_rows(96, 1, last_word=last_word)[64:]


def label_config(folder: Path, base: Path, *, last_word: bool, steps: int, **extra: Any) -> Path:
    rows = label_rows(96, 1, last_word=last_word)  # all prompts different
    write_jsonl(folder / "train.jsonl", rows[:64])
    write_jsonl(folder / "val.jsonl", val_rows(last_word))
    training = {"max_steps": steps, "epochs": 100, "lr": 0.03, "eval_steps": steps // 4}
    return write_config(
        folder,
        base,
        data={"train": ["train.jsonl"], "validation": "val.jsonl"},
        lora={"r": 8, "alpha": 16},
        training={**training, **extra.pop("training", {})},
        **extra,
    )


@pytest.fixture(scope="module")
def chance_run(original_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("chance")
    return train(load_config(label_config(folder, original_base, last_word=False, steps=24)))


@pytest.fixture(scope="module")
def learned_run(original_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("learned")
    return train(load_config(label_config(folder, original_base, last_word=True, steps=48)))


# ---------------------------------------------------------------- label sets


def examples(pairs: list[tuple[str, str]]) -> list[Example]:
    return [Example(p, t, "val.jsonl", i + 1) for i, (p, t) in enumerate(pairs)]


def test_a_label_set_is_a_few_repeated_completions_after_prompts() -> None:
    two = examples([(f"q{i}", LABELS[i % 3 == 0]) for i in range(9)])
    assert label_set(two, 20) == [" won", " lost"]  # most frequent first
    free_text = examples([(f"q{i}", f" answer {i}") for i in range(9)])
    assert label_set(free_text, 20) is None
    assert label_set(examples([("q", " a"), ("r", " b"), ("s", " c")]), 20) is None  # n < 2k
    assert label_set(examples([("", " won"), ("q", " lost")] * 3), 20) is None  # a text row
    many = examples([(f"q{i}", f" l{i % 21}") for i in range(84)])
    assert label_set(many, 20) is None and label_set(many, 21) is not None
    assert label_set(examples([("q", " won"), ("r", " won")]), 20) is None  # one label


def test_accuracy_without_a_label_set_is_an_error(tiny_gpt2: Path, new_task: Path) -> None:
    config = write_config(new_task, tiny_gpt2, validation={"metric": "accuracy"})
    with pytest.raises(UserError) as exc:
        train(load_config(config))
    assert exc.value.messages == [NO_LABEL_SET.format(k=8, n=8, text_rows="", max_labels=20)]
    assert not (new_task / "out").exists()  # refused before anything was written


# ---------------------------------------------------------------- the diagnosis rule


def history(val: list[float]) -> list[dict[str, float]]:
    return [
        {"step": 10 * (i + 1), "train_loss": v + 0.05, "val_loss": v} for i, v in enumerate(val)
    ]


def test_accuracy_at_the_majority_baseline_is_not_above_chance() -> None:
    falling = history([0.9, 0.6, 0.45, 0.42])  # the learning curves alone look fine
    assert diagnose(falling)["verdict"] == "ok"
    evidence = {"accuracy": 0.5, "correct": 16, "n": 32, "majority": 0.5, "chance": 0.5}
    d = diagnose(falling, validation=evidence)
    assert d["verdict"] == "not_above_chance"
    (finding,) = d["findings"]
    # P(X >= 16) for X ~ Binomial(32, 0.5), summed exactly
    p = sum(math.comb(32, i) for i in range(16, 33)) / 2**32
    assert finding["p_value"] == pytest.approx(p, rel=1e-9)
    assert finding["message"] == (
        "validation accuracy 0.5000 (16/32) is not above the majority-class baseline 0.5000 "
        f"(chance 0.5000): one-sided binomial p = {p:.3g} >= 0.05"
    )
    assert d["validation"]["above_chance"] is False


@pytest.mark.parametrize(
    ("correct", "n", "majority", "above"),
    [
        # P(X >= 22 | 32, 0.5) = 0.025 < 0.05; P(X >= 21) = 0.055
        (22, 32, 0.5, True),
        (21, 32, 0.5, False),
        # three labels, 60% of rows the majority one: 0.7 of 50 is not enough
        (35, 50, 0.6, False),
        (40, 50, 0.6, True),
        # below the majority baseline (a model that learned the wrong thing)
        (5, 32, 0.5, False),
    ],
)
def test_the_binomial_test_against_the_majority_baseline(
    correct: int, n: int, majority: float, above: bool
) -> None:
    exact = sum(
        math.comb(n, i) * majority**i * (1 - majority) ** (n - i) for i in range(correct, n + 1)
    )
    assert binomial_p(correct, n, majority) == pytest.approx(exact, rel=1e-9)
    evidence = {"accuracy": correct / n, "correct": correct, "n": n, "majority": majority}
    d = diagnose(history([0.9, 0.6, 0.45]), validation={**evidence, "chance": 1 / 3})
    assert (d["verdict"] != "not_above_chance") is above
    assert d["validation"]["above_chance"] is above
    # at a stricter level (recorded with the verdict) none of these is evidence enough
    strict = diagnose(
        history([0.9, 0.6]), Thresholds(alpha=1e-6), validation=evidence | {"chance": 1 / 3}
    )
    assert strict["verdict"] == "not_above_chance"
    assert strict["thresholds"]["alpha"] == 1e-6


def test_accuracy_rank_orders_by_accuracy_then_lower_loss() -> None:
    ranked = sorted(
        [(20, 0.3), (21, 5.0), (21, 0.4), (20, 0.1), (21, float("nan"))],
        key=lambda cl: accuracy_rank(*cl),
        reverse=True,
    )
    assert ranked[:2] == [(21, 0.4), (21, 5.0)]
    assert ranked[2][0] == 21 and math.isnan(ranked[2][1])
    assert ranked[3:] == [(20, 0.1), (20, 0.3)]


# ---------------------------------------------------------------- real runs


@pytest.mark.slow
def test_a_chance_level_run_is_diagnosed_not_above_chance(chance_run: Any) -> None:
    """The issue's case: the validation loss fell steadily and the curves look fine, while the checkpoint answers no better than the majority class."""
    m = chance_run.manifest
    assert m["saved_val_loss"] < 0.45 < chance_run.history[0]["val_loss"]
    assert m["saved_val_accuracy"] <= m["validation"]["majority"]
    assert m["diagnosis"]["verdict"] == "not_above_chance"
    finding = m["diagnosis"]["findings"][0]
    assert finding["rule"] == "binomial_vs_majority" and finding["n"] == 32
    assert finding["p_value"] >= 0.05


@pytest.mark.slow
def test_the_validation_loss_averages_the_label_and_the_eos_token(
    chance_run: Any, original_base: Path
) -> None:
    """What docs/finetune-config.md says: val_loss is the mean cross-entropy per target
    token, the targets being the label's tokens and the EOS. Only the label's first token
    decides between the labels; its other tokens and the EOS cost almost nothing once
    the form is learned, so the loss of a model at chance on that token is divided by
    the 3.5 target tokens of a row (by 2 with one-token labels: ln 2 / 2 = 0.35, the
    issue's figure)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(original_base)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(original_base), str(chance_run.output_dir)
    ).eval()
    first, rest, batches = [], [], []
    for start in range(0, 32, 8):  # the evaluation's batches: 8 rows in file order
        tokens = []
        for row in val_rows(last_word=False)[start : start + 8]:
            context = tok.encode(row["prompt"])
            target = tok.encode(row["prompt"] + row["completion"])[len(context) :]
            target.append(tok.eos_token_id)
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([context + target[:-1]])).logits[0]
            logp = torch.log_softmax(logits.float(), -1)
            ce = [-float(logp[len(context) - 1 + j, t]) for j, t in enumerate(target)]
            first.append(ce[0])
            rest += ce[1:]
            tokens += ce
        batches.append(sum(tokens) / len(tokens))
    # the mean per target token over the whole validation set
    every = [*first, *rest]
    assert chance_run.manifest["saved_val_loss"] == pytest.approx(sum(every) / len(every), abs=1e-5)
    # the deciding token is no better than a coin, the others are nearly free
    assert sum(first) / 32 > math.log(2) - 0.05
    assert sum(rest) / len(rest) < 0.1
    assert len(rest) == 32 * 2.5  # " won" is 2 tokens, " lost" 3, plus EOS each


@pytest.mark.slow
def test_history_and_manifest_carry_accuracy_and_baselines(chance_run: Any) -> None:
    m = chance_run.manifest
    assert m["validation_metric"] == "accuracy"  # auto, with a label set
    assert m["validation"] == {
        "labels": [" won", " lost"],
        "counts": [16, 16],
        "n": 32,
        "majority": 0.5,
        "chance": 0.5,
    }
    lines = (chance_run.output_dir / "history.jsonl").read_text().splitlines()
    points = [json.loads(line) for line in lines]
    assert [p["step"] for p in points] == [6, 12, 18, 24]
    for p in points:
        assert set(p) == {
            "step",
            "epoch",
            "train_loss",
            "val_loss",
            "val_accuracy",
            "val_majority",
            "val_chance",
        }
        assert (p["val_majority"], p["val_chance"]) == (0.5, 0.5)
        assert p["val_accuracy"] * 32 == round(p["val_accuracy"] * 32)


@pytest.mark.slow
def test_an_easy_task_is_learned_above_the_baseline(learned_run: Any) -> None:
    m = learned_run.manifest
    assert m["saved_val_accuracy"] >= 0.75 > m["validation"]["majority"]
    v = m["diagnosis"]["validation"]
    assert v["above_chance"] and v["p_value"] < 1e-3
    assert m["diagnosis"]["verdict"] != "not_above_chance"
    # the checkpoint kept is the most accurate one, the lower loss breaking ties
    h = learned_run.history
    best = max(h, key=lambda p: (p["val_accuracy"], -p["val_loss"]))
    assert m["best_step"] == best["step"]
    assert m["best_val_accuracy"] == m["saved_val_accuracy"] == best["val_accuracy"]


@pytest.mark.slow
def test_accuracy_equals_a_direct_transformers_computation(
    learned_run: Any, original_base: Path
) -> None:
    """The choice log-likelihoods of the saved adapter, computed one row at a time with
    plain transformers, give the accuracy the manifest records; finetune's batched
    scoring gives the same numbers, and so does the harness (`harness run` scoring)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.model.language_model import ModelSource, load_model

    tok = AutoTokenizer.from_pretrained(original_base)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(original_base), str(learned_run.output_dir)
    ).eval()
    rows = val_rows(last_word=True)
    direct = []
    for row in rows:
        scores = []
        for label in LABELS:
            context = tok.encode(row["prompt"])
            target = tok.encode(row["prompt"] + label)[len(context) :]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([context + target])).logits[0]
            logp = torch.log_softmax(logits.float(), -1)
            scores.append(sum(float(logp[len(context) - 1 + j, t]) for j, t in enumerate(target)))
        direct.append(scores)
    gold = [LABELS.index(r["completion"]) for r in rows]
    correct = sum(s.index(max(s)) == g for s, g in zip(direct, gold, strict=True))
    assert learned_run.manifest["saved_val_accuracy"] == correct / 32

    task = build_label_task(
        examples([(r["prompt"], r["completion"]) for r in rows]), LABELS, tok, 64
    )
    ours = choice_loglikelihoods(model, task, batch_size=8, pad_id=tok.eos_token_id)
    assert ours == [pytest.approx(s, abs=1e-4) for s in direct]
    lm = load_model(
        ModelSource(path=str(original_base), adapter=str(learned_run.output_dir), device="cpu")
    )
    scored = lm.loglikelihood([(r["prompt"], label) for r in rows for label in LABELS])
    harness = [[scored[2 * i][0], scored[2 * i + 1][0]] for i in range(32)]
    assert harness == [pytest.approx(s, abs=1e-4) for s in direct]


# ---------------------------------------------------------------- search


def test_search_by_accuracy_ranks_by_accuracy_not_loss() -> None:
    rows = [
        {"trial": 0, "metric": "accuracy", "best_val_accuracy": 0.5, "best_val_loss": 0.35},
        {"trial": 1, "metric": "accuracy", "best_val_accuracy": 0.9, "best_val_loss": 0.60},
        {"trial": 2, "metric": "accuracy", "best_val_accuracy": 0.9, "best_val_loss": 0.40},
    ]
    assert best_row(rows)["trial"] == 2
    by_loss = [{**r, "metric": "loss"} for r in rows]
    assert best_row(by_loss)["trial"] == 0


@pytest.mark.slow
def test_search_with_a_label_set_maximizes_accuracy(
    original_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    space = {"training.lr": {"choices": [1e-5, 0.03]}}
    search = {"space": space, "sampler": "grid", "trials": 2, "seed": 0}
    config = label_config(tmp_path, original_base, last_word=True, steps=32, search=search)
    result = run_search(load_config(config), progress=False)
    rows = result.trials
    assert [r["metric"] for r in rows] == ["accuracy", "accuracy"]  # auto, resolved once
    by_lr = {r["training.lr"]: r for r in rows}
    assert by_lr[0.03]["best_val_accuracy"] > by_lr[1e-5]["best_val_accuracy"]
    assert result.best is by_lr[0.03]
    for r in rows:
        manifest = json.loads((Path(r["output"]) / "manifest.json").read_text())
        assert manifest["best_val_accuracy"] == r["best_val_accuracy"]
        assert manifest["validation_metric"] == "accuracy"
    header = (tmp_path / "out" / "search" / "best.yaml").read_text().splitlines()[0]
    assert header == (
        f"# best of 2 trial(s): trial {by_lr[0.03]['trial']}, best validation accuracy "
        f"{by_lr[0.03]['best_val_accuracy']:.6f}"
    )
