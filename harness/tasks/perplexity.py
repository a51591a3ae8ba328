"""Perplexity: the rolling log-likelihood of each whole text (never cut to the window:
the model scores it in pieces).

A task may read conversations (``messages``) instead of texts: each is rendered with
the chat template and scored whole (``score: all``), or only its assistant turns are
scored, each after the conversation before it (``score: assistant``; the record keeps
their character ``spans`` in the rendered text)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.errors import UserError, row_error
from harness.tasks.base import Advance, FieldPath, TaskKind, register, require
from harness.tasks.records import PerplexityRecord

if TYPE_CHECKING:
    from harness.model.api import ScoringModel

_WHITESPACE = re.compile(r"\s+")


class Perplexity(TaskKind[PerplexityRecord]):
    name = "perplexity"
    has_prompt = False
    prepared_fields = ("text", "spans")

    def data_fields(self, task: Any) -> list[tuple[FieldPath, str]]:
        if getattr(task, "messages", None):
            return [(("messages",), task.messages)]
        return [(("text",), task.text)]

    def prepare_fields(
        self, task: Any, fields: dict[str, Any], file: str, line: int
    ) -> dict[str, Any]:
        if getattr(task, "messages", None):
            return _conversation(task, fields, file, line)
        text = require(fields, task.text, file, line)
        if not isinstance(text, str) or not text:
            raise UserError(row_error(file, line, f"field '{task.text}' must be non-empty text"))
        return {"text": text}

    def run(
        self,
        task: Any,
        records: Sequence[PerplexityRecord],
        lm: ScoringModel,
        *,
        batch_size: int,
        advance: Advance | None = None,
    ) -> None:
        if records and "spans" in records[0]:
            _score_turns(records, lm, batch_size=batch_size, advance=advance)
            return
        scored = lm.rolling_loglikelihood(
            [r["text"] for r in records], batch_size=batch_size, advance=advance
        )
        for rec, (loglik, n_tokens) in zip(records, scored, strict=True):
            rec["loglik"] = loglik
            rec["n_tokens"] = n_tokens
            rec["n_bytes"] = len(rec["text"].encode("utf-8"))
            # words counted as lm-eval does (leading/trailing whitespace adds a word)
            rec["n_words"] = len(_WHITESPACE.split(rec["text"]))


def _conversation(task: Any, fields: dict[str, Any], file: str, line: int) -> dict[str, Any]:
    """A conversation's record: the rendered text and, to score the assistant turns
    only, their spans in it."""
    from harness.tasks import chat, context

    ctx = context.chat_of(task)
    if ctx is None:
        raise UserError(row_error(file, line, "`messages` needs chat formatting"))
    assistant = task.score == "assistant"
    messages = context.conversation_of(task, fields, file, line, needs_assistant=assistant)
    if assistant:
        text, spans = chat.assistant_spans(ctx.template, messages)
        return {"text": text, "spans": [[a, b] for a, b in spans]}
    return {"text": ctx.template.render(messages, add_generation_prompt=False)}


def _score_turns(
    records: Sequence[PerplexityRecord],
    lm: ScoringModel,
    *,
    batch_size: int,
    advance: Advance | None = None,
) -> None:
    """Each assistant turn scored after the conversation before it; a record's values
    are the sums over its turns (bytes and words of the turns' text)."""
    pairs = [(r["text"][:a], r["text"][a:b]) for r in records for a, b in r["spans"]]
    scored = lm.loglikelihood(pairs, batch_size=batch_size)
    k = 0
    for rec in records:
        n = len(rec["spans"])
        chunk, turns = scored[k : k + n], pairs[k : k + n]
        k += n
        rec["loglik"] = sum(s[0] for s in chunk)
        rec["n_tokens"] = sum(s[2] for s in chunk)
        rec["n_bytes"] = sum(len(t.encode("utf-8")) for _, t in turns)
        rec["n_words"] = sum(len(_WHITESPACE.split(t.strip())) for _, t in turns)
    if advance is not None:
        advance(len(records))


PERPLEXITY = register(Perplexity())
