"""Perplexity: the rolling log-likelihood of each whole text (never cut to the window:
the model scores it in pieces)."""

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
    prepared_fields = ("text",)

    def data_fields(self, task: Any) -> list[tuple[FieldPath, str]]:
        return [(("text",), task.text)]

    def prepare_fields(
        self, task: Any, fields: dict[str, Any], file: str, line: int
    ) -> dict[str, Any]:
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
        scored = lm.rolling_loglikelihood(
            [r["text"] for r in records], batch_size=batch_size, advance=advance
        )
        for rec, (loglik, n_tokens) in zip(records, scored, strict=True):
            rec["loglik"] = loglik
            rec["n_tokens"] = n_tokens
            rec["n_bytes"] = len(rec["text"].encode("utf-8"))
            # words counted as lm-eval does (leading/trailing whitespace adds a word)
            rec["n_words"] = len(_WHITESPACE.split(rec["text"]))


PERPLEXITY = register(Perplexity())
