"""Issue 17 acceptance: a chat-formatted classification task scores what
lm-evaluation-harness scores with ``--apply_chat_template --system_instruction ...``,
with few-shot examples folded into the user turn and with ``--fewshot_as_multiturn``.

On both tiny chat models (a ChatML GPT-2 without BOS; a Llama-3-style Llama whose
tokenizer adds a BOS and whose template writes one too) one task, a system prompt, a
description and two first_n shots from a dev file, runs through our suite and through
lm-eval on the same rows, once per few-shot layout. Then:

(a) each record's prompt is ``tokenizer.apply_chat_template(messages, tokenize=False,
    add_generation_prompt=True)`` of the messages lm-eval builds (recorded as lm-eval
    renders them, and spelled out here so that one layout wrong on both sides shows);
(b) our scored (context, continuation) pairs equal lm-eval's request arguments;
(c) per-choice log-likelihoods agree within 1e-5 and acc is equal;
(d) exactly one BOS starts every encoded context of the Llama-3-style model, through
    our ``LanguageModel.encode_pair`` and lm-eval's ``tok_encode``, while the raw
    ``tokenizer.encode`` of the rendered text has two (so a regression would show).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import lmeval_peer as peer

pytestmark = pytest.mark.slow

LOGLIK_TOL = 1e-5
WINDOW = 256  # positions of both tiny chat models (tests/conftest.py)
MODELS = ("chatml_gpt2", "llama3_chat")
LAYOUTS = {"folded": False, "multiturn": True}  # name -> fewshot_as_multiturn

SYSTEM = "You are a careful film critic."
DESCRIPTION = "Say whether each review is positive or negative."
PROMPT = "Review: {{ text }}\nSentiment:"
CHOICES = ["negative", "positive"]
ROWS: list[dict[str, Any]] = [
    {"text": "the movie was great and fun", "label": 1},
    {"text": "a boring plot and a bad actor", "label": 0},
    {"text": "she loved the story", "label": 1},
    {"text": "the film was awful", "label": 0},
]
DEV: list[dict[str, Any]] = [
    {"text": "a really good film", "label": 1},
    {"text": "they hated it", "label": 0},
    {"text": "a dev row that first_n must leave out", "label": 1},
]
N_SHOTS = 2


def question(row: dict[str, Any]) -> str:
    return f"Review: {row['text']}\nSentiment:"


def expected_messages(row: dict[str, Any], multiturn: bool) -> list[dict[str, str]]:
    """lm-eval's messages for ``row``, written out: the system prompt and the
    description (joined by the few-shot delimiter) as the system turn; the shots as
    user/assistant turns, or folded with the question into one user turn."""
    messages = [{"role": "system", "content": f"{SYSTEM}\n\n{DESCRIPTION}"}]
    shots = [(question(d), CHOICES[d["label"]]) for d in DEV[:N_SHOTS]]
    if multiturn:
        for q, a in shots:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        messages.append({"role": "user", "content": question(row)})
    else:
        folded = "".join(f"{q} {a}\n\n" for q, a in shots) + question(row)
        messages.append({"role": "user", "content": folded})
    return messages


@dataclass
class Side:
    """One model and layout, run on both sides."""

    model: Path
    multiturn: bool
    lmeval: dict[str, Any]
    rendered: list[list[dict[str, str]]]
    """The conversations lm-eval handed to the chat template, in call order."""
    records: list[dict[str, Any]]
    accuracy: float


def _write_suite(root: Path, model: Path, multiturn: bool) -> Path:
    task = {
        "id": "reviews",
        "kind": "classification",
        "data": "reviews.jsonl",
        "description": DESCRIPTION,
        "prompt": PROMPT,
        "choices": CHOICES,
        "label": "label",
        "target_delimiter": " ",
        "fewshot": {"n": N_SHOTS, "data": "reviews_dev.jsonl", "sampler": "first_n"},
        "metrics": ["accuracy"],
    }
    suite = {
        "schema_version": 1,
        "name": "chat-agreement",
        "model": {"path": str(model), "device": "cpu", "dtype": "float32"},
        "chat": {"system": SYSTEM, "fewshot_as_multiturn": multiturn},
        "tasks": [task],
        "batch_size": 8,
        "bootstrap": {"samples": 0},
        "cache": False,
    }
    path = root / f"suite-{'multi' if multiturn else 'folded'}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), "utf-8")
    return path


def _run(model: Path, root: Path, multiturn: bool) -> Side:
    from harness.config.suite import load_suite
    from harness.run.runner import run_suite

    files = {
        "test": peer.write_jsonl(root / "reviews.jsonl", ROWS),
        "dev": peer.write_jsonl(root / "reviews_dev.jsonl", DEV),
    }
    config = {
        "output_type": "multiple_choice",
        "test_split": "test",
        "fewshot_split": "dev",
        "num_fewshot": N_SHOTS,
        "fewshot_config": {"sampler": "first_n"},
        "description": DESCRIPTION,
        "doc_to_text": "Review: {{text}}\nSentiment:",
        "doc_to_choice": CHOICES,
        "doc_to_target": "label",
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    peer.write_task(root / "lmeval", "reviews_local", files, config)
    lm = peer.hf_lm(model, batch_size=8)
    rendered: list[list[dict[str, str]]] = []
    render = lm.apply_chat_template

    def recording(chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        rendered.append([dict(m) for m in chat_history])
        return str(render(chat_history, add_generation_prompt=add_generation_prompt))

    lm.apply_chat_template = recording
    out = peer.simple_evaluate_local(
        lm,
        root / "lmeval",
        ["reviews_local"],
        batch_size=8,
        apply_chat_template=True,
        system_instruction=SYSTEM,
        fewshot_as_multiturn=multiturn,
    )
    assert peer.is_offline()
    result = run_suite(load_suite(_write_suite(root, model, multiturn)), show_progress=False)
    task = result.tasks["reviews"]
    records = [dict(r) for r in task.records]
    accuracy = task.metrics["accuracy"].value
    assert accuracy is not None
    return Side(model, multiturn, out, rendered, records, float(accuracy))


Sides = Callable[[str, str], Side]


@pytest.fixture(scope="module")
def sides(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Sides:
    """``sides(model fixture, layout)``: that model and layout run on both sides, once."""
    done: dict[tuple[str, str], Side] = {}

    def get(name: str, layout: str) -> Side:
        if (name, layout) not in done:
            model = request.getfixturevalue(name)
            root = tmp_path_factory.mktemp(f"{name}-{layout}")
            done[name, layout] = _run(model, root, LAYOUTS[layout])
        return done[name, layout]

    return get


CASES = [(m, layout) for m in MODELS for layout in LAYOUTS]


@pytest.mark.parametrize(("name", "layout"), CASES)
def test_prompt_is_the_chat_template_of_lmevals_messages(
    sides: Sides, name: str, layout: str
) -> None:
    from transformers import AutoTokenizer

    side = sides(name, layout)
    tok = AutoTokenizer.from_pretrained(side.model)
    expected = [expected_messages(row, side.multiturn) for row in ROWS]
    assert side.rendered == expected  # lm-eval renders one conversation per document
    for rec, messages in zip(side.records, expected, strict=True):
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert rec["prompt"] == prompt
    if name == "llama3_chat":  # the template itself writes the BOS, once
        assert all(r["prompt"].startswith("<|begin_of_text|><|start_header_id|>system")
                   for r in side.records)  # fmt: skip
        assert all(r["prompt"].count("<|begin_of_text|>") == 1 for r in side.records)
    else:
        assert all(r["prompt"].startswith("<|im_start|>system\n") for r in side.records)


@pytest.mark.parametrize(("name", "layout"), CASES)
def test_scored_pairs_are_lmevals_requests(sides: Sides, name: str, layout: str) -> None:
    from harness.tasks.classification import scored_pairs

    side = sides(name, layout)
    ours = [scored_pairs(rec) for rec in side.records]  # type: ignore[arg-type]
    assert ours == peer.request_pairs(side.lmeval, "reviews_local")
    # each choice starts the assistant's reply right after the generation prompt
    assert all(pairs == [(r["prompt"], c) for c in CHOICES]
               for pairs, r in zip(ours, side.records, strict=True))  # fmt: skip


@pytest.mark.parametrize(("name", "layout"), CASES)
def test_choice_logliks_and_acc_agree(sides: Sides, name: str, layout: str) -> None:
    from transformers import AutoTokenizer

    side = sides(name, layout)
    tok = AutoTokenizer.from_pretrained(side.model)
    longest = max(
        len(tok.encode(c + x, add_special_tokens=False))
        for pairs in peer.request_pairs(side.lmeval, "reviews_local")
        for c, x in pairs
    )
    assert longest <= WINDOW  # nothing cut: the system turn and the BOS are scored
    ours = [rec["loglik"] for rec in side.records]
    ref = peer.choice_logliks(side.lmeval, "reviews_local")
    diff = max(
        abs(a - b) for xs, ys in zip(ours, ref, strict=True) for a, b in zip(xs, ys, strict=True)
    )
    assert diff < LOGLIK_TOL, f"{name}/{layout}: max |loglik diff| {diff:.3g}"
    hits = [float(rec["pred"] == rec["gold"]) for rec in side.records]
    assert hits == peer.per_doc(side.lmeval, "reviews_local", "acc")
    assert side.accuracy == peer.metric(side.lmeval, "reviews_local", "acc")


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_one_bos_in_every_llama3_context(sides: Sides, layout: str) -> None:
    from harness.model.language_model import ModelSource, load_model

    side = sides("llama3_chat", layout)
    lm = load_model(ModelSource(path=str(side.model), device="cpu", dtype="float32"))
    tok = lm.tokenizer
    bos = tok.bos_token_id
    assert bos == tok.convert_tokens_to_ids("<|begin_of_text|>")
    ref = peer.hf_lm(side.model, batch_size=8)
    for pairs in peer.request_pairs(side.lmeval, "reviews_local"):
        for context, continuation in pairs:
            # the trap: the rendered text holds a BOS and the tokenizer adds another
            raw = tok.encode(context)
            assert raw[:2] == [bos, bos]
            theirs = ref.tok_encode(context)  # lm-eval's encoding of a whole text
            assert theirs[0] == bos and theirs.count(bos) == 1
            assert lm.encode(context) == theirs == raw[1:]
            # the scored pair (trailing whitespace of the context moved to the choice)
            ours = lm.encode_pair(context, continuation)
            assert ours == ref._encode_pair(context, continuation)
            assert ours[0][0] == bos and (ours[0] + ours[1]).count(bos) == 1
