"""harness.tasks.base: the TaskKind registry matches the suite schema, and the task stage
dispatches to the registered kind (not to a string compare)."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, get_args

import pytest

from harness import tasks
from harness.config import suite as schema
from harness.data.rows import Row
from harness.model.tokenized import TokenizedModel
from harness.tasks import base
from harness.tasks.classification import Classification


def schema_kinds() -> set[str]:
    """The ``kind`` values the suite's discriminated union of task models accepts."""
    union = get_args(schema.Task)[0]
    kinds: set[str] = set()
    for model in get_args(union):
        kinds.update(get_args(model.model_fields["kind"].annotation))
    return kinds


# kinds the schema accepts that score as another kind (an lm_eval task scores as the kind
# its lm-eval output type names: its config's `scored_kind`)
DELEGATING = {"lm_eval"}


def test_every_kind_the_schema_accepts_is_registered_and_vice_versa() -> None:
    scored = set(schema.TASK_CLASSES) - DELEGATING
    assert schema_kinds() - DELEGATING == set(tasks.available()) == scored


@pytest.mark.parametrize("name", sorted(schema_kinds() - DELEGATING))
def test_a_kind_is_registered_under_its_own_name(name: str) -> None:
    kind = tasks.get(name)
    assert isinstance(kind, base.TaskKind)
    assert kind.name == name
    assert tasks.find(name) is kind


def test_a_duplicate_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="'classification' is already registered"):
        base.register(Classification())


def test_unknown_kinds_are_not_found() -> None:
    assert tasks.find("ranking") is None
    assert tasks.find(None) is None
    with pytest.raises(KeyError):
        tasks.get("ranking")


# kind facts other stages read instead of the kind's name
FACTS = [
    # (kind, has_choices, generates, has_prompt)
    ("classification", True, False, True),
    ("generation", False, True, True),
    ("perplexity", False, False, False),
]


@pytest.mark.parametrize(("name", "choices", "generates", "prompt"), FACTS)
def test_kind_facts(name: str, choices: bool, generates: bool, prompt: bool) -> None:
    kind = tasks.get(name)
    assert (kind.has_choices, kind.generates, kind.has_prompt) == (choices, generates, prompt)


class WindowLM:
    """A model whose tokens are characters and whose window is ``window`` tokens: a
    context is cut to what the window keeps of it and one (its last ``window + 1``
    characters), as the real backends cut."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.max_length = window
        self.tokenizer = SimpleNamespace(
            decode=lambda ids, skip_special_tokens=True: "".join(map(chr, ids))
        )

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return self.encode(context), self.encode(continuation)

    def context_tail(self, context: str) -> tuple[str, int]:
        cut = max(0, len(context) - self.window - 1)
        return context[cut:], cut

    def prompt_tail(self, prompt: str, max_new_tokens: int) -> tuple[str, int]:
        return self.context_tail(prompt)


class SpyKind(Classification):
    """The classification kind, recording which of its methods the stage called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def prepare_fields(
        self, task: Any, fields: dict[str, Any], file: str, line: int
    ) -> dict[str, Any]:
        self.calls.append("prepare_fields")
        return super().prepare_fields(task, fields, file, line)

    def run(self, task: Any, records: Sequence[Any], lm: Any, **kw: Any) -> None:
        self.calls.append("run")
        for rec in records:
            rec["pred"] = 0

    def truncated_chars(self, task: Any, records: Sequence[Any], lm: Any) -> list[int]:
        self.calls.append("truncated_chars")
        return super().truncated_chars(task, records, lm)


def clf_task() -> SimpleNamespace:
    return SimpleNamespace(
        kind="classification",
        prompt="{{ text }}",
        choices=[" no", " yes"],
        label="label",
        id_field=None,
    )


def test_the_task_stage_dispatches_to_the_registered_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SpyKind()
    monkeypatch.setitem(base._REGISTRY, "classification", spy)
    task = clf_task()
    rows = [Row(line=1, fields={"text": "short", "label": 0})]
    records = tasks.prepare(task, rows, "data.jsonl")
    tasks.run(task, records, WindowLM(10), batch_size=1)
    tasks.mark_truncation(task, records, WindowLM(10))
    assert spy.calls == ["prepare_fields", "run", "truncated_chars"]


def test_truncation_is_the_kinds() -> None:
    """Prompts are cut per kind: a classification prompt to the window, a perplexity
    text never (the default of TaskKind.truncated_chars)."""
    task = clf_task()
    rows = [
        Row(line=1, fields={"text": "x" * 25, "label": 0}),
        Row(line=2, fields={"text": "short", "label": 1}),
    ]
    records = tasks.prepare(task, rows, "data.jsonl")
    assert tasks.mark_truncation(task, records, WindowLM(10)) == 1
    # 25 characters and " yes": 14 cut before tokenizing (11 kept), then 4 more so that
    # context and continuation fit the 11 positions
    assert records[0].get("truncated_chars") == 18
    assert "truncated_chars" not in records[1]

    ppl = SimpleNamespace(kind="perplexity", text="text", id_field=None)
    texts = tasks.prepare(ppl, rows, "data.jsonl")
    assert tasks.mark_truncation(ppl, texts, WindowLM(10)) == 0
    assert all("truncated_chars" not in r for r in texts)


def test_clear_outputs_keeps_what_prepare_made() -> None:
    task = clf_task()
    (rec,) = tasks.prepare(task, [Row(line=3, fields={"text": "a", "label": 1})], "d.jsonl")
    prepared = dict(rec)
    filled = {**rec, "loglik": [0.0, 1.0], "pred": 1, "truncated_chars": 2, "stats": {}}
    again = tasks.get("classification").clear_outputs(filled)
    assert again == prepared
    assert list(again) == list(prepared)  # same key order: same JSON


class NoTokenizerLM(WindowLM):
    """A model that must not tokenize: what a re-run answered from the cache sees."""

    surely_fits = TokenizedModel.surely_fits  # the bytes bound (no tokenizer.json)
    tokenizer_file = None

    def encode(self, text: str) -> list[int]:
        raise AssertionError("tokenized a text that cannot reach the window")

    def context_tail(self, context: str) -> tuple[str, int]:
        raise AssertionError("cut a context that cannot reach the window")


def test_short_examples_are_not_tokenized_to_check_truncation() -> None:
    """Texts whose UTF-8 bytes (plus a spare) fit the window cannot be truncated: the
    check answers without a tokenizer; a longer text is still measured."""
    task = clf_task()
    short = [Row(line=1, fields={"text": "é" * 20, "label": 0})]  # 40 bytes + " yes"
    records = tasks.prepare(task, short, "data.jsonl")
    assert tasks.mark_truncation(task, records, NoTokenizerLM(70)) == 0
    near = [Row(line=1, fields={"text": "é" * 30, "label": 0})]  # 60 bytes: may not fit
    records = tasks.prepare(task, near, "data.jsonl")
    with pytest.raises(AssertionError, match="window"):
        tasks.mark_truncation(task, records, NoTokenizerLM(70))
