"""finetune.active.select: uncertainty ranking, the pool, and `finetune select` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from finetune.active import select as sel
from finetune.cli import build_parser, main
from harness.config.suite import ClassificationTask
from harness.data.rows import Row
from harness.errors import UserError
from tests.finetune.conftest import write_jsonl

# -- ranking ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "probs",
    [
        [0.5, 0.5],
        [0.9, 0.1],
        [1.0, 0.0],  # 0 log 0 = 0
        [0.2, 0.3, 0.5],
        [0.25, 0.25, 0.25, 0.25],
        [1e-12, 1.0 - 1e-12],
    ],
)
def test_entropy_matches_scipy(probs: list[float]) -> None:
    # reference: scipy.stats.entropy (natural log, nats)
    assert sel.entropy(np.array([probs]))[0] == pytest.approx(scipy.stats.entropy(probs), abs=1e-12)


@pytest.mark.parametrize(
    ("probs", "expected"),
    [
        # hand-computed: p(top 1) - p(top 2)
        ([0.5, 0.5], 0.0),
        ([0.9, 0.1], 0.8),
        ([0.1, 0.7, 0.2], 0.5),
        ([0.4, 0.3, 0.3], 0.1),
    ],
)
def test_margin_is_the_gap_between_the_top_two(probs: list[float], expected: float) -> None:
    assert sel.margin(np.array([probs]))[0] == pytest.approx(expected, abs=1e-12)


def test_entropy_and_margin_disagree_from_three_choices_on() -> None:
    # row 0: entropy ln 2 = 0.693, margin 0; row 1: entropy 1.089, margin 0.1
    probs = np.array([[0.5, 0.5, 0.0], [0.4, 0.3, 0.3], [0.98, 0.01, 0.01]])
    assert [i for i, _ in sel.choose("entropy", probs, 3, n_rows=3, seed=0)] == [1, 0, 2]
    assert [i for i, _ in sel.choose("margin", probs, 3, n_rows=3, seed=0)] == [0, 1, 2]


def test_with_two_choices_entropy_and_margin_agree() -> None:
    p = np.random.default_rng(3).random(50)
    probs = np.stack([p, 1 - p], axis=1)
    by_entropy = [i for i, _ in sel.choose("entropy", probs, 50, n_rows=50, seed=0)]
    by_margin = [i for i, _ in sel.choose("margin", probs, 50, n_rows=50, seed=0)]
    assert by_entropy == by_margin


def test_ties_keep_the_pool_order() -> None:
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9], [0.5, 0.5]])
    assert sel.choose("entropy", probs, 4, n_rows=4, seed=0) == [
        (1, pytest.approx(math.log(2))),
        (3, pytest.approx(math.log(2))),
        (0, pytest.approx(scipy.stats.entropy([0.9, 0.1]))),
        (2, pytest.approx(scipy.stats.entropy([0.9, 0.1]))),
    ]


def test_random_is_seeded_and_needs_no_probabilities() -> None:
    first = sel.choose("random", None, 5, n_rows=100, seed=11)
    assert sel.choose("random", None, 5, n_rows=100, seed=11) == first
    assert sel.choose("random", None, 5, n_rows=100, seed=12) != first
    scores = [s for _, s in first]
    assert scores == sorted(scores, reverse=True)
    assert len({i for i, _ in first}) == 5


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (0, "--budget: must be >= 1, got 0"),
        (-3, "--budget: must be >= 1, got -3"),
        (5, "--budget: must be <= the pool's 4 rows, got 5"),
    ],
)
def test_budget_out_of_range(budget: int, message: str) -> None:
    with pytest.raises(UserError) as err:
        sel.choose("random", None, budget, n_rows=4, seed=0)
    assert err.value.messages == [message]


def test_unknown_strategy() -> None:
    with pytest.raises(UserError) as err:
        sel.choose("least-confident", np.ones((2, 2)) / 2, 1, n_rows=2, seed=0)
    assert err.value.messages == [
        "--strategy: unknown strategy 'least-confident'; available: entropy, margin, random, "
        "balanced, cluster-margin, badge, typical"
    ]


def test_cli_offers_exactly_the_strategies() -> None:
    sub = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    strategy = next(a for a in sub.choices["select"]._actions if a.dest == "strategy")
    assert tuple(strategy.choices) == sel.STRATEGIES


# -- the pool -----------------------------------------------------------------------

TASK = ClassificationTask(
    id="sentiment",
    kind="classification",
    data="unused.jsonl",
    prompt="Review: {{ text }}\nSentiment:",
    choices=[" negative", " positive"],
    label="label",
)


def test_prompts_are_rendered_as_the_harness_renders_them() -> None:
    rows = [Row(1, {"text": "a fine film", "id": 7}), Row(2, {"text": "dull"})]
    assert sel.prompts_for(TASK, rows, "pool.jsonl") == [
        "Review: a fine film\nSentiment:",
        "Review: dull\nSentiment:",
    ]


def test_bad_pool_rows_are_located() -> None:
    rows = [
        Row(1, {"text": "fine"}),
        Row(2, {"review": "no text field"}),
        Row(3, {"text": None}),
        Row(5, {"text": "ok", "score": 3}),
    ]
    with pytest.raises(UserError) as err:
        sel.prompts_for(TASK, rows, "pool.jsonl")
    assert err.value.messages == [
        "pool.jsonl line 2: missing field 'text' (the prompt of task 'sentiment' reads it)",
        "pool.jsonl line 3: missing field 'text' (the prompt of task 'sentiment' reads it)",
        "pool.jsonl line 5: field 'score' would be overwritten by the selection's output; "
        "rename it",
    ]


# -- the command, on a tiny real model -------------------------------------------------

POOL = [
    {"id": f"r{i}", "text": t}
    for i, t in enumerate(
        [
            "a great film",
            "boring and awful",
            "the plot was not good",
            "loved it",
            "the actor was fun but the story was bad",
            "quite a movie",
            "hated this film",
            "really very good",
        ]
    )
]


def write_select_suite(folder: Path, model: Path) -> Path:
    write_jsonl(folder / "dev.jsonl", [{"text": "good", "label": 1}, {"text": "bad", "label": 0}])
    suite = folder / "suite.yaml"
    suite.write_text(
        f"""schema_version: 1
name: select-test
model: {{path: {model}}}
seed: 5
tasks:
  - id: sentiment
    kind: classification
    data: dev.jsonl
    prompt: "Review: {{{{ text }}}}\\nSentiment:"
    choices: [" negative", " positive"]
    label: label
  - id: lm
    kind: perplexity
    data: dev.jsonl
    text: text
"""
    )
    return suite


@pytest.fixture
def setup(tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_select_suite(tmp_path, tiny_gpt2)
    write_jsonl(tmp_path / "pool.jsonl", POOL)
    return tmp_path


def reference_probs(model: Path, texts: list[str]) -> np.ndarray:
    """Choice probabilities straight from the model's log-likelihoods."""
    from harness.model.language_model import ModelSource, load_model

    lm = load_model(ModelSource(path=str(model), device="cpu"))
    pairs = [(f"Review: {t}\nSentiment:", c) for t in texts for c in (" negative", " positive")]
    loglik = np.array([s[0] for s in lm.loglikelihood(pairs)]).reshape(len(texts), 2)
    return np.exp(loglik - np.logaddexp.reduce(loglik, axis=1, keepdims=True))


@pytest.mark.parametrize("strategy", ["entropy", "margin"])
def test_select_writes_the_most_uncertain_rows(setup: Path, tiny_gpt2: Path, strategy: str) -> None:
    args = ["select", "--suite", "suite.yaml", "--pool", "pool.jsonl", "--budget", "3"]
    assert main([*args, "--strategy", strategy, "--out", "chosen.jsonl", "--no-progress"]) == 0
    rows = [json.loads(x) for x in (setup / "chosen.jsonl").read_text().splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert {r["strategy"] for r in rows} == {strategy}
    by_id = {r["id"]: r for r in POOL}
    assert all({k: r[k] for k in ("id", "text")} == by_id[r["id"]] for r in rows)
    probs = reference_probs(tiny_gpt2, [r["text"] for r in POOL])
    if strategy == "entropy":
        expected = scipy.stats.entropy(probs, axis=1)
        order = np.argsort(-expected, kind="stable")[:3]
    else:
        expected = np.abs(probs[:, 0] - probs[:, 1])
        order = np.argsort(expected, kind="stable")[:3]
    assert [r["id"] for r in rows] == [POOL[i]["id"] for i in order]
    assert [r["score"] for r in rows] == pytest.approx(list(expected[order]), abs=1e-6)


def test_random_selection_is_reproducible_and_the_default_out(setup: Path) -> None:
    args = ["select", "--suite", "suite.yaml", "--pool", "pool.jsonl", "--budget", "4"]
    assert main([*args, "--strategy", "random", "--no-progress"]) == 0
    first = (setup / "pool.random.jsonl").read_text()
    assert main([*args, "--strategy", "random", "--no-progress"]) == 0  # seed 5, the suite's
    assert (setup / "pool.random.jsonl").read_text() == first
    assert main([*args, "--strategy", "random", "--seed", "6", "--no-progress"]) == 0
    assert (setup / "pool.random.jsonl").read_text() != first
    assert len(first.splitlines()) == 4


@pytest.mark.parametrize(
    ("extra", "pool", "message"),
    [
        ([], "missing.jsonl", "missing.jsonl: file not found"),
        ([], "nofield.jsonl", "nofield.jsonl line 2: missing field 'text' (the prompt of task "
         "'sentiment' reads it)"),
        (["--budget", "0"], "pool.jsonl", "--budget: must be >= 1, got 0"),
        (["--budget", "9"], "pool.jsonl", "--budget: must be <= the pool's 8 rows, got 9"),
        (["--task", "lm"], "pool.jsonl",
         "--task: task 'lm' is a perplexity task; select needs a classification task"),
        (["--task", "nope"], "pool.jsonl",
         "--task: no task 'nope' in suite.yaml; classification tasks: sentiment"),
        (["--out", "pool.jsonl"], "pool.jsonl",
         "--out: pool.jsonl is the pool itself; write the selection to another file"),
        (["--adapter", "./no-adapter"], "pool.jsonl", "--adapter: folder not found: {cwd}/no-adapter"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_located_message(
    setup: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    pool: str,
    message: str,
) -> None:
    write_jsonl(setup / "nofield.jsonl", [{"text": "ok"}, {"review": "no text"}])
    args = ["select", "--suite", "suite.yaml", "--pool", pool, "--budget", "2", *extra]
    assert main([*args, "--no-progress"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {message.format(cwd=setup)}"]
    assert not (setup / "pool.entropy.jsonl").exists()


def test_unknown_strategy_is_exit_2(setup: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["select", "--suite", "suite.yaml", "--pool", "pool.jsonl", "--budget", "2"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--strategy", "confidence"])
    assert exc.value.code == 2
    assert "argument --strategy: invalid choice: 'confidence'" in capsys.readouterr().err


# -- hidden states, reasons, the new strategies end to end -------------------------------


def test_prompt_states_are_the_last_hidden_state_at_the_prompts_end(tiny_gpt2: Path) -> None:
    import torch

    from finetune.active.embed import context_tokens, prompt_states
    from harness.model.language_model import ModelSource, load_model

    lm = load_model(ModelSource(path=str(tiny_gpt2), device="cpu"))
    prompts = [f"Review: {r['text']}\nSentiment:" for r in POOL]
    states = prompt_states(lm, prompts, " negative", batch_size=3)  # padded batches
    assert states.shape == (len(POOL), lm.model.config.n_embd)
    for prompt, got in zip(prompts, states, strict=True):
        tokens = context_tokens(lm, prompt, " negative")
        assert tokens == lm.encode_pair(prompt, " negative")[0]  # as the harness splits it
        with torch.inference_mode():
            out = lm.model(torch.tensor([tokens]), output_hidden_states=True)
        assert got == pytest.approx(out.hidden_states[-1][0, -1].numpy(), abs=1e-5)


@pytest.mark.parametrize("strategy", ["balanced", "cluster-margin", "badge", "typical"])
def test_every_row_says_why_it_was_chosen(setup: Path, strategy: str) -> None:
    args = ["select", "--suite", "suite.yaml", "--pool", "pool.jsonl", "--budget", "3"]
    assert main([*args, "--strategy", strategy, "--no-progress"]) == 0
    first = (setup / f"pool.{strategy}.jsonl").read_text()
    rows = [json.loads(x) for x in first.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert {r["strategy"] for r in rows} == {strategy}
    assert len({r["id"] for r in rows}) == 3
    for r in rows:
        why = r["why"]
        assert why["reason"]
        assert (why["cluster"] is not None) == (strategy in ("cluster-margin", "typical"))
        if strategy == "typical":  # the cold start reads no confidence
            assert "predicted" not in why
        else:
            assert why["predicted"] in (" negative", " positive")
            assert 0.5 <= why["p_predicted"] <= 1
    assert main([*args, "--strategy", strategy, "--no-progress"]) == 0  # same seed, same rows
    assert (setup / f"pool.{strategy}.jsonl").read_text() == first


def test_a_pool_row_with_a_why_field_is_refused() -> None:
    with pytest.raises(UserError) as err:
        sel.prompts_for(TASK, [Row(4, {"text": "ok", "why": "because"})], "pool.jsonl")
    assert err.value.messages == [
        "pool.jsonl line 4: field 'why' would be overwritten by the selection's output; rename it"
    ]
