"""Language-modelling metrics over a split: perplexity, bits per byte, word perplexity.

Each is a ratio of sums over the whole split, not a mean of per-document values, as in
lm-evaluation-harness (``lm_eval/api/metrics.py``): ``weighted_perplexity`` is
exp(-sum(loglik) / sum(weight)) and ``bits_per_byte`` is -sum(loglik) / sum(bytes) / ln 2;
its rolling-loglikelihood tasks (wikitext) report ``word_perplexity`` with words as the
weight and ``bits_per_byte`` with UTF-8 bytes. ``perplexity`` here is the same weighted
form with tokens as the weight (tokenizer-dependent, so compare it only between models
that share a tokenizer; bits per byte and word perplexity do not have that limit).
Records carry ``loglik`` (natural log), ``n_tokens``, ``n_bytes`` and ``n_words``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.metrics.base import AggregateFn, Metric, Record, StatsFn, TaskInfo, register


def _stats(weight: str) -> StatsFn:
    def stats(records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo) -> np.ndarray:
        """One row per text: (log-likelihood, weight)."""
        rows = [(r["loglik"], r[weight]) for r in records]
        return np.asarray(rows, dtype=float).reshape(len(rows), 2)

    return stats


def _neg_mean(stats: np.ndarray) -> float:
    """-sum(loglik) / sum(weight); NaN for no rows or zero total weight."""
    total = stats[:, 1].sum() if len(stats) else 0.0
    return float(-stats[:, 0].sum() / total) if total > 0 else float("nan")


def _perplexity(output: str) -> AggregateFn:
    def aggregate(stats: np.ndarray, params: Mapping[str, Any], task: TaskInfo) -> dict[str, float]:
        with np.errstate(over="ignore"):  # a hopeless model gives inf, not an error
            return {output: float(np.exp(_neg_mean(stats)))}

    return aggregate


def _bits_per_byte(
    stats: np.ndarray, params: Mapping[str, Any], task: TaskInfo
) -> dict[str, float]:
    return {"bits_per_byte": _neg_mean(stats) / math.log(2)}


def _metric(name: str, weight: str, aggregate: AggregateFn, description: str) -> Metric:
    return Metric(
        name=name,
        kinds=frozenset({"perplexity"}),
        outputs=lambda params, task: [name],
        stats=_stats(weight),
        aggregate=aggregate,
        higher_is_better=False,
        description=description,
    )


register(
    _metric(
        "perplexity",
        "n_tokens",
        _perplexity("perplexity"),
        "Token perplexity exp(-sum loglik / sum n_tokens) over the split.",
    )
)
register(
    _metric(
        "bits_per_byte",
        "n_bytes",
        _bits_per_byte,
        "Bits per UTF-8 byte: -sum loglik / (sum n_bytes * ln 2), as lm-evaluation-harness.",
    )
)
register(
    _metric(
        "word_perplexity",
        "n_words",
        _perplexity("word_perplexity"),
        "Word perplexity exp(-sum loglik / sum n_words), as lm-evaluation-harness.",
    )
)
