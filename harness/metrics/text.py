"""Generation metrics: BLEU, chrF, TER (sacrebleu), ROUGE (rouge_score), exact match.

BLEU (Papineni et al. 2002), chrF (Popović 2015) and TER (Snover et al. 2006) are
corpus-level: per-example rows hold sacrebleu's sufficient statistics (n-gram matches
and totals, edit counts), and the aggregate sums them and lets sacrebleu compute the
score, so the value equals ``sacrebleu.corpus_bleu/corpus_chrf/corpus_ter`` on the same
data, on sacrebleu's 0-100 scale, and a bootstrap resample costs one sum (the method of
sacrebleu's own ``significance`` module, Koehn 2004). Examples may have different numbers
of references: sacrebleu takes reference streams padded with ``None``. The signature is
sacrebleu's, without ``nrefs`` (the count per example is in the records).

ROUGE (Lin 2004) is the F-measure of ``rouge_score``'s RougeScorer, scale 0-1, averaged
over examples; with several references each example keeps, per ROUGE type, the best
reference (``RougeScorer.score_multi``, the usual convention). rougeLsum splits
summaries into sentences on newlines only.

Every metric here compares an example's extracted, normalized ``answer`` with its
``gold_answers`` when the task sets ``extract`` or ``normalize`` (the records then hold
them), else its raw ``prediction`` with its ``references``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.metrics.base import (
    AggregateFn,
    Metric,
    Record,
    StatsFn,
    TaskInfo,
    mean_metric,
    register,
)

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

BOOL_ERROR = "{param} must be true or false (got {value!r})"
TOKENIZE_ERROR = "tokenize must be one of {allowed} (got {value!r})"
WORD_ORDER_ERROR = "word_order must be a whole number >= 0 (got {value!r})"
NO_REFERENCES_ERROR = "example {id!r} has no references"

# Params each sacrebleu metric exposes -> sacrebleu's default; the keyword names match
# the constructors of sacrebleu.metrics.BLEU / CHRF / TER.
_SACREBLEU_PARAMS: dict[str, dict[str, Any]] = {
    "bleu": {"tokenize": "13a", "lowercase": False},
    "chrf": {"word_order": 0, "lowercase": False},
    "ter": {"case_sensitive": False},
}


def _compared(record: Record) -> tuple[str, list[str]]:
    """(hypothesis, references) of one example: the extracted, normalized ``answer`` and
    ``gold_answers`` when the task extracts or normalizes answers
    (harness.tasks.answers), else the raw ``prediction`` and ``references``."""
    if "gold_answers" in record:
        hyp, refs = record.get("answer", ""), list(record["gold_answers"] or [])
    else:
        hyp, refs = record["prediction"], list(record.get("references") or [])
    if not refs:
        raise ValueError(NO_REFERENCES_ERROR.format(id=record.get("id")))
    return str(hyp), [str(r) for r in refs]


def _check_bool(params: Mapping[str, Any], *names: str) -> None:
    for name in names:
        if name in params and not isinstance(params[name], bool):
            raise ValueError(BOOL_ERROR.format(param=name, value=params[name]))


def _settings(name: str, params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The sacrebleu constructor keywords of ``name``, defaults filled in (hashable)."""
    return tuple((k, params.get(k, v)) for k, v in _SACREBLEU_PARAMS[name].items())


@functools.lru_cache(maxsize=32)
def _scorer(name: str, settings: tuple[tuple[str, Any], ...]) -> Any:
    from sacrebleu.metrics import BLEU, CHRF, TER

    cls = {"bleu": BLEU, "chrf": CHRF, "ter": TER}[name]
    return cls(**dict(settings))


def _width(name: str, scorer: Any) -> int:
    """Number of sufficient statistics per example."""
    if name == "bleu":
        return 2 + 2 * int(scorer.max_ngram_order)  # hyp len, ref len, matches, totals
    if name == "chrf":
        return 3 * int(scorer.order)  # (hyp, ref, match) per n-gram order
    return 2  # edits, average reference length


def _validate_sacrebleu(name: str) -> Callable[[Mapping[str, Any], TaskInfo], None]:
    def validate(params: Mapping[str, Any], task: TaskInfo) -> None:
        _check_bool(params, "lowercase", "case_sensitive")
        if name == "bleu":
            from sacrebleu.metrics import BLEU

            allowed = sorted(BLEU.TOKENIZERS)
            if params.get("tokenize", "13a") not in allowed:
                msg = TOKENIZE_ERROR.format(allowed=", ".join(allowed), value=params["tokenize"])
                raise ValueError(msg)
        word_order = params.get("word_order", 0)
        if isinstance(word_order, bool) or not isinstance(word_order, int) or word_order < 0:
            raise ValueError(WORD_ORDER_ERROR.format(value=word_order))

    return validate


def _sacrebleu_stats(name: str) -> StatsFn:
    def stats(records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo) -> np.ndarray:
        scorer = _scorer(name, _settings(name, params))
        if not records:
            return np.zeros((0, _width(name, scorer)))
        pairs = [_compared(r) for r in records]
        hyps, refs = [h for h, _ in pairs], [x for _, x in pairs]
        most = max(len(x) for x in refs)
        streams = [[x[j] if j < len(x) else None for x in refs] for j in range(most)]
        rows = scorer._extract_corpus_statistics(hyps, streams)
        return np.asarray(rows, dtype=float).reshape(len(records), -1)

    return stats


def _sacrebleu_aggregate(name: str) -> AggregateFn:
    def aggregate(stats: np.ndarray, params: Mapping[str, Any], task: TaskInfo) -> dict[str, float]:
        if len(stats) == 0:
            return {name: float("nan")}
        scorer = _scorer(name, _settings(name, params))
        sums = stats.sum(axis=0)
        # BLEU and chrF statistics are counts: give sacrebleu ints, as corpus_score does.
        totals = [float(x) for x in sums] if name == "ter" else [round(x) for x in sums]
        return {name: float(scorer._compute_score_from_stats(totals).score)}

    return aggregate


def _sacrebleu_signature(name: str) -> Callable[[Mapping[str, Any], TaskInfo], str]:
    def signature(params: Mapping[str, Any], task: TaskInfo) -> str:
        scorer = _scorer(name, _settings(name, params))
        sig = scorer._SIGNATURE_TYPE({**vars(scorer), "num_refs": 1})
        sig.update("nrefs", None)  # data-dependent; None drops it from the string
        return str(sig.format())

    return signature


def _sacrebleu_metric(name: str, higher_is_better: bool, description: str) -> Metric:
    return Metric(
        name=name,
        kinds=frozenset({"generation"}),
        outputs=lambda params, task: [name],
        stats=_sacrebleu_stats(name),
        aggregate=_sacrebleu_aggregate(name),
        params=dict(_SACREBLEU_PARAMS[name]),
        higher_is_better=higher_is_better,
        description=description,
        validate_params=_validate_sacrebleu(name),
        signature=_sacrebleu_signature(name),
    )


@functools.lru_cache(maxsize=2)
def _rouge_scorer(use_stemmer: bool) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)


def _rouge_stats(
    records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo
) -> np.ndarray:
    """One row per example: F-measure of each ROUGE type, best reference per type."""
    scorer = _rouge_scorer(bool(params.get("use_stemmer", True)))
    out = np.zeros((len(records), len(ROUGE_TYPES)))
    for i, r in enumerate(records):
        hyp, refs = _compared(r)
        best = scorer.score_multi(refs, hyp)
        out[i] = [best[t].fmeasure for t in ROUGE_TYPES]
    return out


def _column_means(names: Sequence[str]) -> AggregateFn:
    def aggregate(stats: np.ndarray, params: Mapping[str, Any], task: TaskInfo) -> dict[str, float]:
        if len(stats) == 0:
            return dict.fromkeys(names, float("nan"))
        return {n: float(v) for n, v in zip(names, stats.mean(axis=0), strict=True)}

    return aggregate


def _rouge_signature(params: Mapping[str, Any], task: TaskInfo) -> str:
    from importlib.metadata import version

    stem = "yes" if params.get("use_stemmer", True) else "no"
    return f"stemmer:{stem}|multiref:max|lsum_split:newline|version:{version('rouge-score')}"


def _exact_match_stats(
    records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo
) -> np.ndarray:
    fold = str.casefold if params.get("ignore_case", False) else str
    out = np.zeros((len(records), 1))
    for i, r in enumerate(records):
        hyp, refs = _compared(r)
        pred = fold(hyp.strip())
        out[i, 0] = float(any(pred == fold(ref.strip()) for ref in refs))
    return out


register(_sacrebleu_metric("bleu", True, "Corpus BLEU (sacrebleu, 0-100)."))
register(_sacrebleu_metric("chrf", True, "Corpus chrF (sacrebleu, 0-100); word_order=2 is chrF++."))
register(_sacrebleu_metric("ter", False, "Corpus translation edit rate (sacrebleu, 0-100)."))
register(
    Metric(
        name="rouge",
        kinds=frozenset({"generation"}),
        outputs=lambda params, task: list(ROUGE_TYPES),
        stats=_rouge_stats,
        aggregate=_column_means(ROUGE_TYPES),
        params={"use_stemmer": True},
        description="ROUGE-1/2/L/Lsum F-measure (rouge_score), mean over examples.",
        validate_params=lambda params, task: _check_bool(params, "use_stemmer"),
        signature=_rouge_signature,
    )
)
register(
    mean_metric(
        "exact_match",
        _exact_match_stats,
        frozenset({"generation"}),
        "Share of predictions equal to a reference after strip().",
        params={"ignore_case": False},
        validate_params=lambda params, task: _check_bool(params, "ignore_case"),
    )
)
