"""Task kinds: rows -> per-example records -> model requests -> predictions.

One module per kind (classification, generation, perplexity) registers its TaskKind;
``get(kind)`` looks one up. ``stages`` runs any task through its kind.
"""

from harness.tasks import classification, generation, perplexity
from harness.tasks.base import TaskKind, available, find, get, kind_of, register, render
from harness.tasks.classification import resolve_label, score_choices, softmax
from harness.tasks.records import (
    AnyRecord,
    BaseRecord,
    ChoiceRequest,
    ClassificationRecord,
    GenerationRecord,
    PerplexityRecord,
)
from harness.tasks.stages import field_typos, mark_truncation, prepare, run

__all__ = [
    "AnyRecord",
    "BaseRecord",
    "ChoiceRequest",
    "ClassificationRecord",
    "GenerationRecord",
    "PerplexityRecord",
    "TaskKind",
    "available",
    "classification",
    "field_typos",
    "find",
    "generation",
    "get",
    "kind_of",
    "mark_truncation",
    "perplexity",
    "prepare",
    "register",
    "render",
    "resolve_label",
    "run",
    "score_choices",
    "softmax",
]
