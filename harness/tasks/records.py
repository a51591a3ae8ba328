"""Per-example records, one type per task kind (docs/results.md, "Per-example records").

A record is born in ``prepare`` (id, line, input and the kind's prepared fields), gets
its model outputs from the kind's ``run``, then ``truncated_chars`` (only when the
prompt was cut) and ``stats`` from the runner, and is stored in results.json as is.

Why ``TypedDict`` and not dataclasses: the record *is* the JSON object that
results.json stores, key order included. The keys appear in the order the stages add
them, and the optional ones (``truncated_chars``, the outputs before ``run``) are
absent rather than null. A TypedDict is a plain dict at run time, so the stored JSON
stays byte-identical with no conversion step, metrics (which take any
``Mapping[str, Any]``) read it unchanged, and readers of an existing results.json get
the same shape back; mypy still checks every key and value type. A dataclass would
need an ``as_dict`` that re-creates that order and omits unset fields: a second
description of the same document, which could drift from the first.

Fields a later stage adds are ``NotRequired``; the ones ``prepare`` sets are required.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class BaseRecord(TypedDict):
    """The fields every kind's record has."""

    id: str
    """Unique in the task: the ``id_field`` value or the row number."""
    line: int
    """1-based line/row of the data file."""
    input: dict[str, Any]
    """The data row's fields."""
    truncated_chars: NotRequired[int]
    """Only when the prompt was cut to the model's window: characters of its start the
    model did not see (cut before tokenizing, or dropped as tokens by the window)."""
    stats: NotRequired[dict[str, list[float]]]
    """{metric name: per-example statistics}, filled by the runner."""


class ClassificationRecord(BaseRecord):
    """A multiple-choice example: every choice scored after the prompt."""

    prompt: str
    """The context the choices are scored after: description, shots and the rendered
    prompt (with partial scoring, description and shots only)."""
    choices: list[str]
    """This example's choices (the task's fixed list, or the row's own)."""
    gold: int
    target_delimiter: NotRequired[str]
    """Only when not "": scored between the context and each choice (or continuation)."""
    contexts: NotRequired[list[str]]
    """Partial scoring only: the prompt rendered with each choice; choice i is scored as
    ``continuation`` after ``prompt + contexts[i]``."""
    continuation: NotRequired[str]
    """Partial scoring only: the text scored after each choice's context."""
    loglik: NotRequired[list[float]]
    """Sum log-prob of each choice's continuation tokens given the prompt."""
    n_tokens: NotRequired[list[int]]
    probs: NotRequired[list[float]]
    """Softmax of ``loglik`` over the choices."""
    pred: NotRequired[int]
    """Argmax of ``loglik`` (the first choice on ties)."""
    loglik_unconditional: NotRequired[list[float]]
    """Only for ``accuracy_mutual_info``: each choice's continuation scored after an
    empty context."""


class GenerationRecord(BaseRecord):
    """A free-text example: greedy generation compared with its references."""

    prompt: str
    references: list[str]
    gold_answers: NotRequired[list[str]]
    """Only when the task sets ``extract`` or ``normalize``: the references normalized,
    what metrics compare the answer with."""
    prediction: NotRequired[str]
    """The generation, cut before the first stop string (raw, never extracted)."""
    answer: NotRequired[str]
    """Only when the task sets ``extract`` or ``normalize``: the answer extracted from
    ``prediction`` and normalized (harness.tasks.answers), what metrics compare."""


class PerplexityRecord(BaseRecord):
    """A text scored whole by rolling log-likelihood."""

    text: str
    spans: NotRequired[list[list[int]]]
    """Only for a conversation scored on its assistant turns: their [start, end)
    character spans in ``text``, each scored after the text before it."""
    loglik: NotRequired[float]
    n_tokens: NotRequired[int]
    n_bytes: NotRequired[int]
    n_words: NotRequired[int]


class ChoiceRequest(TypedDict):
    """What ``score_choices`` needs of a record (a classification record is one)."""

    prompt: str
    choices: list[str]
    target_delimiter: NotRequired[str]
    contexts: NotRequired[list[str]]
    continuation: NotRequired[str]
    loglik: NotRequired[list[float]]
    n_tokens: NotRequired[list[int]]
    probs: NotRequired[list[float]]
    pred: NotRequired[int]
    loglik_unconditional: NotRequired[list[float]]


AnyRecord = ClassificationRecord | GenerationRecord | PerplexityRecord
"""The record of a task of any built-in kind."""
