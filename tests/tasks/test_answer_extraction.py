"""Answer extraction and normalization for generation tasks (issue 16 point 4), held to
lm-evaluation-harness, the reference implementation.

* ``extract_answer`` gives what lm-eval's ``regex`` filter (``RegexFilter``) gives, and
  ``normalize_answer`` on both sides decides an example as lm-eval's ``exact_match``
  (``exact_match_hf_evaluate``) does, on hand-written GSM8K-style outputs: numbers with
  commas and ``$``, trailing periods, no match, several matches, alternatives;
* a generation task with ``extract``/``normalize`` stores the raw generation, the
  answer and the gold answers, and judges the answer;
* end to end (slow): a GSM8K-shaped task run by lm-eval (a local task YAML with GSM8K's
  strict-match and flexible-extract filters and its exact_match options) and by the
  harness on the same rows and tiny model gives the same raw generations and the same
  exact match per example and per filter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.config.answers import Extract, Normalize
from harness.data.rows import Row
from harness.tasks import generation, prepare
from harness.tasks.answers import extract_answer, normalize_answer
from harness.tasks.stages import run

# GSM8K's two filters in lm-eval's gsm8k.yaml: (pattern, group_select)
STRICT = ("#### (\\-?[0-9\\.\\,]+)", 0)
FLEXIBLE = ("(-?[$0-9.,]{2,})|(-?[0-9]+)", -1)
# its exact_match options
GSM8K_IGNORE = [",", "\\$", "(?s).*#### ", "\\.$"]

OUTPUTS = [
    "Janet sells 16 - 3 - 4 = 9 eggs a day.\n#### 18",
    "#### 1,234",
    "The answer is $1,234.50.",
    "#### -7.",
    "no number here",
    "#### 3 and later #### 5",
    "",
    "  ####   42  ",
    "It is 5 apples and 6 pears: 11 in all.",
    "$ 12 or $13, so 13.",
    "####",
    "#### .",
    "He has 7",
]
PATTERNS = [
    STRICT,
    FLEXIBLE,
    ("#### (\\-?[0-9\\.\\,]+)", -1),
    ("(-?[$0-9.,]{2,})|(-?[0-9]+)", 0),
    ("[0-9]+", 0),  # no group: the whole match
    ("[0-9]+", -1),
    ("(\\$)?([0-9]+)", -1),  # two groups, the first often absent
    ("#(#*) ?([0-9]*)", 0),  # groups that match empty
    ("(x?)([0-9]+)", 0),
    ("(\\d*)\\.", 0),  # one group that may match empty: lm-eval keeps ""
]


def _lmeval_filter(pattern: str, select: int, outputs: Sequence[str]) -> list[str]:
    from lm_eval.filters.extraction import RegexFilter

    out = RegexFilter(regex_pattern=pattern, group_select=select, fallback="[invalid]").apply(
        [[o] for o in outputs], [{} for _ in outputs]
    )
    return [resps[0] for resps in out]


@pytest.mark.parametrize(("pattern", "select"), PATTERNS)
def test_extraction_equals_lmevals_regex_filter(pattern: str, select: int) -> None:
    cfg = Extract(regex=pattern, select="first" if select == 0 else "last")
    ours = [extract_answer(o, cfg) for o in OUTPUTS]
    assert ours == _lmeval_filter(pattern, select, OUTPUTS)


def test_extraction_examples() -> None:
    """What the GSM8K filters make of a few outputs (the values lm-eval gives too)."""
    strict = Extract(regex=STRICT[0])
    flexible = Extract(regex=FLEXIBLE[0], select="last")
    assert [extract_answer(o, strict) for o in OUTPUTS[:6]] == [
        "18",
        "1,234",
        "[invalid]",
        "-7.",
        "[invalid]",
        "3",
    ]
    assert [extract_answer(o, flexible) for o in OUTPUTS[:6]] == [
        "18",
        "1,234",
        "$1,234.50.",
        "-7.",
        "[invalid]",
        "5",
    ]


def test_group_index_and_fallback() -> None:
    """Beyond lm-eval: a group index (the whole match with 0), another fallback."""
    text = "price: $12, total: $30"
    assert extract_answer(text, Extract(regex="\\$([0-9]+)", group=0)) == "$12"
    assert extract_answer(text, Extract(regex="(\\$)([0-9]+)", group=2, select="last")) == "30"
    # the chosen group is empty in the match: the first non-empty group, as lm-eval
    assert extract_answer("7", Extract(regex="(\\$)?([0-9]+)", group=1)) == "7"
    assert extract_answer("none", Extract(regex="[0-9]", fallback="")) == ""


# (prediction, reference) pairs for the exact_match options
PAIRS = [
    ("18", "Janet sells 16 - 3 - 4 = 9 eggs.\n#### 18"),
    ("1,234", "So 1000 + 234 = 1234.\n#### 1,234"),
    ("$1,234.50.", "#### 1234.50"),
    ("-7.", "#### -7"),
    ("[invalid]", "#### 6"),
    ("FIVE", "#### five"),
    ("five!", "#### Five"),
    (" 42", "#### 42"),
    ("3.", "#### 3.0"),
    ("$$5", "$5"),
]
OPTIONS = [
    {"regexes_to_ignore": GSM8K_IGNORE, "ignore_case": True, "ignore_punctuation": False},
    {"regexes_to_ignore": GSM8K_IGNORE, "ignore_case": False, "ignore_punctuation": True},
    {"regexes_to_ignore": None, "ignore_case": True, "ignore_punctuation": True},
    {"regexes_to_ignore": ["(?s).*#### "], "ignore_case": False, "ignore_punctuation": False},
    {"regexes_to_ignore": None, "ignore_case": False, "ignore_punctuation": False},
]


def _as_normalize(options: dict[str, Any]) -> Normalize:
    return Normalize(
        remove=options["regexes_to_ignore"] or [],
        lower=options["ignore_case"],
        punctuation=options["ignore_punctuation"],
    )


@pytest.mark.parametrize("options", OPTIONS)
def test_normalized_equality_equals_lmevals_exact_match(options: dict[str, Any]) -> None:
    from lm_eval.api.metrics import exact_match_hf_evaluate

    cfg = _as_normalize(options)
    for pred, ref in PAIRS:
        want = exact_match_hf_evaluate(predictions=[pred], references=[ref], **options)
        got = normalize_answer(pred, cfg) == normalize_answer(ref, cfg)
        assert float(got) == want["exact_match"], (pred, ref, options)


def test_normalize_steps_in_order() -> None:
    every = Normalize(remove=["\\$"], lower=True, punctuation=True, commas=True, strip=True)
    assert normalize_answer("  $1,234.50 USD! ", every) == "123450 usd"
    assert normalize_answer(" 1,234 ", Normalize(commas=True)) == " 1234 "
    # removal comes before lower case, as in lm-eval: a case-sensitive pattern sees the
    # original text
    assert normalize_answer("Answer: 7", Normalize(remove=["^answer: "], lower=True)) == (
        "answer: 7"
    )


# --- the task kind ----------------------------------------------------------------------


class _FixedOutputs:
    """A model whose generations are given in advance (the one call a generation task
    makes)."""

    def __init__(self, outputs: Sequence[str]) -> None:
        self.outputs = list(outputs)
        self.stops: list[list[str]] = []

    def generate(self, prompts: Sequence[str], **kw: Any) -> list[str]:
        self.stops.append(list(kw["stop"]))
        return self.outputs[: len(prompts)]


def _task(**kw: Any) -> SimpleNamespace:
    base: dict[str, Any] = {
        "kind": "generation",
        "prompt": "Question: {{ question }}\nAnswer:",
        "reference": ["answer"],
        "id_field": None,
        "max_new_tokens": 8,
        "stop": ["Question:", "\n\n"],
        "extract": Extract(regex=STRICT[0]),
        "normalize": Normalize(remove=GSM8K_IGNORE, lower=True),
    }
    return SimpleNamespace(**{**base, **kw})


ROWS = [
    Row(line=1, fields={"question": "2 + 2?", "answer": "2 + 2 = 4\n#### 4"}),
    Row(line=2, fields={"question": "1000 + 234?", "answer": "1000 + 234 = 1234\n#### 1,234"}),
    Row(line=3, fields={"question": "3 * 3?", "answer": "3 * 3 = 9\n#### 9"}),
]
GENERATED = ["2 and 2 make 4.\n#### 4.", "#### 1,234 dollars", "I think 9"]


def test_records_keep_the_raw_generation_beside_the_answer() -> None:
    task = _task()
    records = prepare(task, ROWS, "gsm.jsonl")
    assert list(records[0]) == ["id", "line", "input", "prompt", "references", "gold_answers"]
    assert [r["gold_answers"] for r in records] == [["4"], ["1234"], ["9"]]
    run(task, records, _FixedOutputs(GENERATED), batch_size=2)  # type: ignore[arg-type]
    assert [r["prediction"] for r in records] == GENERATED
    assert [r["answer"] for r in records] == ["4", "1234", "[invalid]"]
    assert list(records[0])[-2:] == ["prediction", "answer"]
    kind = generation.GENERATION
    assert [kind.correct(r) for r in records] == [True, True, False]
    assert kind.metric_inputs(records[1]) == ("1234", "1234")
    # re-running on another model keeps what prepare made, gold answers included
    assert kind.clear_outputs(records[0]) == prepare(task, ROWS[:1], "gsm.jsonl")[0]


def test_normalize_alone_applies_to_the_whole_generation() -> None:
    task = _task(extract=None, normalize=Normalize(lower=True, strip=True))
    records = prepare(task, ROWS[:1], "gsm.jsonl")
    run(task, records, _FixedOutputs([" 2 AND 2\n#### 4 "]), batch_size=1)  # type: ignore[arg-type]
    assert records[0]["answer"] == "2 and 2\n#### 4"
    assert records[0]["gold_answers"] == ["2 + 2 = 4\n#### 4"]


def test_tasks_without_answer_settings_store_no_answers() -> None:
    task = _task(extract=None, normalize=None)
    records = prepare(task, ROWS[:1], "gsm.jsonl")
    run(task, records, _FixedOutputs(["#### 4"]), batch_size=1)  # type: ignore[arg-type]
    assert list(records[0]) == ["id", "line", "input", "prompt", "references", "prediction"]
    assert generation.GENERATION.metric_inputs(records[0]) == ("#### 4", "2 + 2 = 4\n#### 4")


# --- end to end against lm-eval (slow) ---------------------------------------------------

QUESTIONS = [
    ("Tom has 3 apples and buys 4 more. How many apples does he have?", "3 + 4 = 7\n#### 7"),
    ("A pen costs $2. What do 5 pens cost?", "5 * 2 = 10\n#### 10"),
    ("There are 1,000 seats and 250 are taken. How many are free?", "#### 750"),
    ("Sam reads 12 pages a day for 3 days. How many pages?", "12 * 3 = 36\n#### 36"),
    ("What is 9 minus 12?", "9 - 12 = -3\n#### -3"),
    ("A box holds 6 eggs. How many eggs are in 4 boxes?", "6 * 4 = 24.\n#### 24"),
    ("Write twelve sevens.", "#### 777,777,777,777"),  # what the "sevens" model answers
]
MAX_GEN_TOKS = 12
UNTIL = ["Question:", "\n\n"]
LM_EVAL_FILTERS = {"strict-match": STRICT, "flexible-extract": FLEXIBLE}


def _suite(folder: Path, model: Path, data: Path) -> Path:
    """Our suite of the same task: one generation task per lm-eval filter."""
    normalize = {"remove": GSM8K_IGNORE, "lower": True}
    tasks = []
    for name, (pattern, select) in LM_EVAL_FILTERS.items():
        tasks.append(
            {
                "id": name.replace("-", "_"),
                "kind": "generation",
                "data": str(data),
                "prompt": "Question: {{ question }}\nAnswer:",
                "reference": "answer",
                "max_new_tokens": MAX_GEN_TOKS,
                "stop": UNTIL,
                "extract": {"regex": pattern, "select": "first" if select == 0 else "last"},
                "normalize": normalize,
                "metrics": ["exact_match"],
            }
        )
    suite = {
        "schema_version": 1,
        "name": "gsm8k-shaped",
        "model": {"path": str(model), "device": "cpu"},
        "bootstrap": {"samples": 0},
        "tasks": tasks,
    }
    path = folder / "suite.yaml"
    path.write_text(json.dumps(suite, indent=1), encoding="utf-8")  # JSON is YAML
    return path


def _always(src: Path, dst: Path, text: str) -> Path:
    """A copy of the tiny GPT-2 that writes the one token ``text`` at every step,
    whatever the prompt: the final layer norm outputs that token's embedding (made the
    largest), and the output layer is tied to the embeddings. A random model writes
    junk that no regex matches; this one makes the filters match (or the stop strings
    cut) so that both sides are compared on those paths too."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.copytree(src, dst)
    (token,) = AutoTokenizer.from_pretrained(dst).encode(text, add_special_tokens=False)
    model = AutoModelForCausalLM.from_pretrained(dst)
    with torch.no_grad():
        embeddings = model.transformer.wte.weight
        embeddings[token] *= 10
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(embeddings[token])
    model.save_pretrained(dst)
    return dst


# model -> (exact match under strict-match, under flexible-extract), the same on both sides
MODELS = {"random": (0.0, 0.0), "sevens": (0.0, 1 / 7), "newlines": (0.0, 0.0)}


@pytest.fixture(scope="module")
def gsm_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base: Path = request.getfixturevalue("tiny_gpt2")
    folder = tmp_path_factory.mktemp("always")
    if request.param == "sevens":
        return _always(base, folder / "sevens", "7")
    if request.param == "newlines":
        return _always(base, folder / "newlines", "\n")
    return base


@pytest.mark.slow
@pytest.mark.parametrize("gsm_model", list(MODELS), indirect=True)
def test_gsm8k_shaped_task_equals_lmeval(
    gsm_model: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from harness.config.suite import load_suite
    from harness.run.runner import run_suite
    from tests import lmeval_peer as peer

    tiny_gpt2 = gsm_model
    expected = MODELS[request.node.callspec.params["gsm_model"]]

    rows = [{"question": q, "answer": a} for q, a in QUESTIONS]
    data = peer.write_jsonl(tmp_path / "gsm.jsonl", rows)
    task_dir = tmp_path / "tasks"
    peer.write_generation_task(
        task_dir,
        "gsm_local",
        data,
        doc_to_text="Question: {{question}}\nAnswer:",
        doc_to_target="{{answer}}",
        until=UNTIL,
        max_gen_toks=MAX_GEN_TOKS,
        filters={name: (p, s) for name, (p, s) in LM_EVAL_FILTERS.items()},
        exact_match={
            "ignore_case": True,
            "ignore_punctuation": False,
            "regexes_to_ignore": GSM8K_IGNORE,
        },
    )
    out = peer.simple_evaluate_local(tiny_gpt2, task_dir, ["gsm_local"], batch_size=4)
    theirs = peer.samples(out, "gsm_local")

    results = run_suite(load_suite(_suite(tmp_path, tiny_gpt2, data)), show_progress=False)
    doc = results.document()
    for name in LM_EVAL_FILTERS:
        samples = [s for s in theirs if s["filter"] == name]
        records = doc["tasks"][name.replace("-", "_")]["records"]
        assert len(samples) == len(records) == len(rows)
        # the same greedy generation, cut at the same stop strings
        assert [r["prediction"] for r in records] == [s["resps"][0][0] for s in samples]
        # the same extracted answer (before normalization: lm-eval's filtered response)
        assert [r["answer"] for r in records] == [
            normalize_answer(s["filtered_resps"][0], Normalize(remove=GSM8K_IGNORE, lower=True))
            for s in samples
        ]
        assert [r["stats"]["exact_match"][0] for r in records] == [
            float(s["exact_match"]) for s in samples
        ]
        assert doc["tasks"][name.replace("-", "_")]["metrics"]["exact_match"][
            "value"
        ] == pytest.approx(peer.metric(out, "gsm_local", "exact_match", name))
    got = tuple(peer.metric(out, "gsm_local", "exact_match", name) for name in LM_EVAL_FILTERS)
    assert got == pytest.approx(expected)
