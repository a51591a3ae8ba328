"""BLEU / chrF / TER against sacrebleu's corpus functions, ROUGE against rouge_score,
exact match; on real WMT16 en-ro and XSum text."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from harness.metrics import TaskInfo, get
from harness.metrics.text import (
    BOOL_ERROR,
    NO_REFERENCES_ERROR,
    ROUGE_TYPES,
    TOKENIZE_ERROR,
    WORD_ORDER_ERROR,
)

GEN = TaskInfo("generation")
CORPUS: dict[str, Callable[..., Any]] = {
    "bleu": sacrebleu.corpus_bleu,
    "chrf": sacrebleu.corpus_chrf,
    "ter": sacrebleu.corpus_ter,
}


def perturb(line: str, rng: random.Random, drop: float) -> str:
    """A plausible system output: drop about ``drop`` of the words, swap a few pairs."""
    words = [w for w in line.split() if rng.random() > drop]
    for _ in range(max(1, len(words) // 20)):
        if len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


@pytest.fixture(scope="module")
def wmt(wmt_targets: list[str]) -> dict[str, list[str]]:
    rng = random.Random(2016)
    return {
        "ref": wmt_targets,
        "hyp": [perturb(t, rng, 0.1) for t in wmt_targets],
        "ref2": [perturb(t, rng, 0.05) for t in wmt_targets],
    }


def _score(name: str, records: list[dict[str, Any]], **params: Any) -> dict[str, float]:
    metric = get(name)
    merged = {**metric.params, **params}
    return metric.aggregate(metric.stats(records, merged, GEN), merged, GEN)


def _records(hyps: list[str], *streams: Sequence[str | None]) -> list[dict[str, Any]]:
    return [
        {"prediction": h, "references": [s[i] for s in streams if s[i] is not None]}
        for i, h in enumerate(hyps)
    ]


@pytest.mark.parametrize("name", ["bleu", "chrf", "ter"])
def test_one_reference_equals_sacrebleu(name: str, wmt: dict[str, list[str]]) -> None:
    n = 10 if name == "ter" else 20  # TER's shift search is slow on these long lines
    hyp, ref = wmt["hyp"][:n], wmt["ref"][:n]
    expected = CORPUS[name](hyp, [ref]).score
    assert _score(name, _records(hyp, ref)) == {name: pytest.approx(expected, abs=1e-9)}
    assert 0 < expected < 100


@pytest.mark.parametrize("name", ["bleu", "chrf", "ter"])
def test_two_and_variable_references_equal_sacrebleu(name: str, wmt: dict[str, list[str]]) -> None:
    n = 5 if name == "ter" else 20
    hyp, ref, ref2 = wmt["hyp"][:n], wmt["ref"][:n], wmt["ref2"][:n]
    expected = CORPUS[name](hyp, [ref, ref2]).score
    assert _score(name, _records(hyp, ref, ref2)) == {name: pytest.approx(expected, abs=1e-9)}
    # a second reference for every other example only: sacrebleu takes None padding
    some: list[str | None] = [r if i % 2 else None for i, r in enumerate(ref2)]
    expected = CORPUS[name](hyp, [ref, some]).score
    assert _score(name, _records(hyp, ref, some)) == {name: pytest.approx(expected, abs=1e-9)}


def test_bleu_params_reach_sacrebleu(wmt: dict[str, list[str]]) -> None:
    hyp = [h.upper() for h in wmt["hyp"]]
    records = _records(hyp, wmt["ref"])
    for params in ({"lowercase": True}, {"tokenize": "char"}):
        expected = sacrebleu.corpus_bleu(hyp, [wmt["ref"]], **params).score
        assert _score("bleu", records, **params) == {"bleu": pytest.approx(expected, abs=1e-9)}
    expected = sacrebleu.corpus_chrf(hyp, [wmt["ref"]], word_order=2).score
    assert _score("chrf", records, word_order=2) == {"chrf": pytest.approx(expected, abs=1e-9)}


def test_sacrebleu_signatures() -> None:
    version = sacrebleu.__version__
    assert (
        get("bleu").signature({}, GEN) == f"case:mixed|eff:no|tok:13a|smooth:exp|version:{version}"
    )
    assert (
        get("chrf").signature({}, GEN) == f"case:mixed|eff:yes|nc:6|nw:0|space:no|version:{version}"
    )
    ter = get("ter").signature({}, GEN)
    assert ter == f"case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:{version}"
    assert "case:lc" in get("bleu").signature({"lowercase": True}, GEN)
    assert not get("ter").higher_is_better and get("bleu").higher_is_better


@pytest.fixture(scope="module")
def xsum_records(xsum: list[dict[str, str]]) -> list[dict[str, Any]]:
    # System: the article's first line (a lead baseline); for rougeLsum the first three
    # lines keep their newlines, so summary-level LCS sees three sentences.
    return [
        {"prediction": "\n".join(d["document"].split("\n")[:3]), "references": [d["summary"]]}
        for d in xsum
    ]


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_equals_rouge_score(xsum_records: list[dict[str, Any]], use_stemmer: bool) -> None:
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    direct = [scorer.score(r["references"][0], r["prediction"]) for r in xsum_records]
    expected = {t: sum(s[t].fmeasure for s in direct) / len(direct) for t in ROUGE_TYPES}
    got = _score("rouge", xsum_records, use_stemmer=use_stemmer)
    assert list(got) == ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    assert got == {t: pytest.approx(v, abs=1e-12) for t, v in expected.items()}
    assert got["rougeLsum"] != got["rougeL"]  # the newlines matter


def test_rouge_multiple_references_take_the_best(xsum: list[dict[str, str]]) -> None:
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    records = []
    for d in xsum:
        first = d["document"].split("\n")[0]
        refs = [d["summary"], " ".join(first.split()[:8])]
        records.append({"prediction": first, "references": refs})
    expected = {
        t: sum(
            max(scorer.score(ref, r["prediction"])[t].fmeasure for ref in r["references"])
            for r in records
        )
        / len(records)
        for t in ROUGE_TYPES
    }
    assert _score("rouge", records) == {t: pytest.approx(v, abs=1e-12) for t, v in expected.items()}


def test_exact_match() -> None:
    records = [
        {"prediction": " Paris \n", "references": ["Paris"]},
        {"prediction": "paris", "references": ["Lyon", "Paris"]},
        {"prediction": "Rome", "references": ["Paris"]},
        {"prediction": "", "references": ["  "]},
    ]
    assert _score("exact_match", records) == {"exact_match": 0.5}
    assert _score("exact_match", records, ignore_case=True) == {"exact_match": 0.75}


def test_an_example_without_references_is_an_error() -> None:
    with pytest.raises(ValueError) as info:
        _score("bleu", [{"id": "q7", "prediction": "x", "references": []}])
    assert str(info.value) == NO_REFERENCES_ERROR.format(id="q7")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("rouge", {"use_stemmer": "yes"}, BOOL_ERROR.format(param="use_stemmer", value="yes")),
        ("exact_match", {"ignore_case": 1}, BOOL_ERROR.format(param="ignore_case", value=1)),
        ("bleu", {"lowercase": "no"}, BOOL_ERROR.format(param="lowercase", value="no")),
        ("chrf", {"word_order": -1}, WORD_ORDER_ERROR.format(value=-1)),
    ],
)
def test_bad_params(name: str, params: dict[str, Any], message: str) -> None:
    validate = get(name).validate_params
    assert validate is not None
    with pytest.raises(ValueError) as info:
        validate(params, GEN)
    assert str(info.value) == message


def test_bad_tokenizer_lists_the_allowed_ones() -> None:
    validate = get("bleu").validate_params
    assert validate is not None
    with pytest.raises(ValueError) as info:
        validate({"tokenize": "nope"}, GEN)
    allowed = ", ".join(sorted(sacrebleu.BLEU.TOKENIZERS))
    assert str(info.value) == TOKENIZE_ERROR.format(allowed=allowed, value="nope")
