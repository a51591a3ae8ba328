"""Validation accuracy over a label set: did the model learn the task, or only its form?

The validation loss is a mean cross-entropy per target token, and the targets of a
classification row are its label's tokens plus the end-of-sequence token, which is
trivially predictable: a model at chance on two labels scores about ln 2 / 2 = 0.35,
which looks like learning. So when the validation completions form a small label set
(``label_set``), every evaluation also scores each row the way the harness scores a
classification task: the log-likelihood of each label as a continuation of the prompt
(split as lm-eval splits context and continuation, finetune.train.encode.split_tokens, and
scored by harness.model.scoring.score_rows), the prediction is the argmax, and accuracy is
reported beside the two baselines a model must beat: the majority class (the best a
constant answer does on these rows) and chance (1/k).

``binomial_p`` is the one-sided binomial test the diagnosis uses: the probability that
a model no better than the majority baseline gets at least this many rows right.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finetune.data.examples import Example
from finetune.train.encode import split_tokens

# user-facing messages (tests assert them exactly)
NO_LABEL_SET = (
    "validation.metric is accuracy, but the validation completions are not a label set: "
    "{k} distinct completion(s) over {n} row(s){text_rows}; accuracy needs 2 to "
    "{max_labels} distinct completions, each seen twice on average, and prompts on every row"
)


@dataclass(frozen=True)
class LabelTask:
    """The validation rows as a classification task over their distinct completions."""

    labels: tuple[str, ...]
    """The distinct completions, most frequent first (ties: first seen first)."""
    gold: tuple[int, ...]
    """Index into ``labels`` of each row's completion."""
    rows: tuple[Any, ...]
    """harness.model.scoring.ScoreRow of each (row, label), row-major: ``len(labels)`` per row."""

    @property
    def n(self) -> int:
        return len(self.gold)

    @property
    def counts(self) -> list[int]:
        """Rows per label, in the order of ``labels``."""
        found = Counter(self.gold)
        return [found[i] for i in range(len(self.labels))]

    @property
    def majority(self) -> float:
        """Accuracy of always answering the most frequent label."""
        return max(self.counts) / self.n

    @property
    def chance(self) -> float:
        """Accuracy of a uniform random guess: 1 / k."""
        return 1.0 / len(self.labels)

    def describe(self) -> dict[str, Any]:
        """The label set and baselines, for the manifest."""
        return {
            "labels": list(self.labels),
            "counts": self.counts,
            "n": self.n,
            "majority": self.majority,
            "chance": self.chance,
        }


def label_set(examples: Sequence[Example], max_labels: int) -> list[str] | None:
    """The distinct completions (most frequent first) if they form a label set, else None.

    A label set: every row has a prompt, there are 2 to ``max_labels`` distinct
    completions, and at least twice as many rows as completions (so each is seen twice
    on average: free-text completions, all different, are not labels).
    """
    if not examples or any(not ex.prompt for ex in examples):
        return None
    counts = Counter(ex.target for ex in examples)
    if not 2 <= len(counts) <= max_labels or len(examples) < 2 * len(counts):
        return None
    return [label for label, _ in counts.most_common()]


def no_label_set_message(examples: Sequence[Example], max_labels: int) -> str:
    """Why ``label_set`` found none (for ``validation.metric: accuracy``)."""
    text_rows = sum(1 for ex in examples if not ex.prompt)
    return NO_LABEL_SET.format(
        k=len({ex.target for ex in examples}),
        n=len(examples),
        text_rows=f", {text_rows} without a prompt" if text_rows else "",
        max_labels=max_labels,
    )


def build_label_task(
    examples: Sequence[Example], labels: Sequence[str], tokenizer: Any, window: int
) -> LabelTask:
    """Score rows of every (example, label), split as the harness splits them and
    left-truncated to the model's ``window`` as the harness truncates them."""
    from harness.model.scoring import continuation_row

    index = {label: i for i, label in enumerate(labels)}
    rows = []
    for ex in examples:
        for label in labels:
            context, continuation = split_tokens(tokenizer, ex.prompt, label)
            rows.append(continuation_row(context, continuation, window))
    return LabelTask(
        labels=tuple(labels), gold=tuple(index[ex.target] for ex in examples), rows=tuple(rows)
    )


def choice_loglikelihoods(
    model: Any, task: LabelTask, *, batch_size: int, pad_id: int
) -> list[list[float]]:
    """Sum log-probability of each label given each row's prompt: (rows, labels).

    harness.model.scoring.score_rows computes them, so a label of one token reads the prompt's
    last position once for all labels, exactly as `harness run` does."""
    from harness.model.scoring import score_rows

    device = next(model.parameters()).device
    scores = score_rows(model, task.rows, batch_size=batch_size, pad_token=pad_id, device=device)
    k = len(task.labels)
    return [[s.logprob for s in scores[i * k : (i + 1) * k]] for i in range(task.n)]


def predictions(loglik: Sequence[Sequence[float]]) -> list[int]:
    """The argmax label of each row (the first of equal scores, as numpy's argmax)."""
    return [max(range(len(row)), key=lambda j: (row[j], -j)) for row in loglik]


def accuracy_metrics(
    model: Any, task: LabelTask, *, batch_size: int, pad_id: int
) -> dict[str, Any]:
    """{accuracy, correct, n, majority, chance} of ``model`` on the task's rows."""
    loglik = choice_loglikelihoods(model, task, batch_size=batch_size, pad_id=pad_id)
    correct = sum(p == g for p, g in zip(predictions(loglik), task.gold, strict=True))
    return {
        "accuracy": correct / task.n,
        "correct": correct,
        "n": task.n,
        "majority": task.majority,
        "chance": task.chance,
    }


def binomial_p(correct: int, n: int, baseline: float) -> float:
    """One-sided binomial test: P(X >= correct) for X ~ Binomial(n, baseline)."""
    from scipy.stats import binomtest

    return float(binomtest(correct, n, baseline, alternative="greater").pvalue)


def accuracy_rank(correct: int, loss: float | None) -> float:
    """One number that orders evaluations by accuracy, then by lower validation loss:
    ``correct - loss / (1 + loss)``. The loss part lies in [0, 1), so one more correct
    row always ranks higher, and at equal accuracy the lower loss does (the Trainer's
    best-checkpoint choice and early stopping compare a single number)."""
    if loss is None or not math.isfinite(loss) or loss < 0:
        return float(correct) - 0.999999
    return float(correct) - min(loss / (1.0 + loss), 0.999999)


def resolve_metric(
    metric: str, max_labels: int, examples: Sequence[Example]
) -> tuple[str, list[str] | None]:
    """(the metric in effect, the label set or None) for ``validation.metric``: auto is
    accuracy with a label set, else loss; accuracy without one is a UserError."""
    from harness.errors import UserError

    labels = label_set(examples, max_labels)
    if metric == "auto":
        metric = "accuracy" if labels is not None else "loss"
    if metric == "accuracy" and labels is None:
        raise UserError(no_label_set_message(examples, max_labels))
    return metric, labels
