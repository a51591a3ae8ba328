"""Leakage check: training examples that overlap the evaluation data.

A model trained on its test items scores well for the wrong reason, so every trained-on
example (training data and replay data) is compared with every evaluation example
before training. Texts are compared after ``finetune.data.examples.normalize`` (case, Unicode,
punctuation, whitespace), as word sequences:

- exact: the training example (prompt + target, or its prompt alone) equals an
  evaluation text;
- n-gram: the share of the evaluation example's word n-grams found in the training
  example, or of the training example's n-grams found in the evaluation example, is at
  least the threshold. An evaluation text shorter than n words (but at least
  ``SHORT`` words) counts as a single n-gram of its own length, so a short test sentence
  pasted into a training prompt is still caught.

Evaluation data are files (.jsonl/.csv/.tsv) or suites (each task's data, as the
harness loads it). The evaluation texts of a row are its text fields of at least
``SHORT`` words, each on its own (a document and its summary, say), or, when it has
none, its longest text field: so a label column ("positive", "1") is never taken for a
text, while a two-word review still is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.data.examples import Example, normalize, source_name
from harness.data.rows import load_rows
from harness.errors import UserError

SHORT = 4  # evaluation texts with fewer words are only compared exactly
LISTED = 200  # leaking examples listed in the manifest (all are counted)

# user-facing messages (tests assert them exactly)
LEAKAGE_FOUND = (
    "{n} training example(s) overlap the evaluation data ({exact} exact, {ngram} n-gram); "
    "remove them, or set curation.leakage.drop: true"
)
LEAK_LINE = "{train}: {kind} match with {eval} (overlap {overlap:.2f})"


@dataclass(frozen=True)
class EvalText:
    """One evaluation example, normalized."""

    where: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class Leak:
    """A training example and the evaluation example it overlaps most."""

    train: str
    eval: str
    kind: str  # "exact" | "ngram"
    overlap: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "train": self.train,
            "eval": self.eval,
            "kind": self.kind,
            "overlap": round(self.overlap, 4),
        }


@dataclass
class LeakageReport:
    """Counts and list of leaking training examples."""

    checked: int = 0
    eval_texts: int = 0
    eval_sources: list[str] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    dropped: int = 0

    @property
    def exact(self) -> int:
        return sum(1 for leak in self.leaks if leak.kind == "exact")

    @property
    def ngram(self) -> int:
        return sum(1 for leak in self.leaks if leak.kind == "ngram")

    def as_dict(self) -> dict[str, Any]:
        return {
            "eval_sources": self.eval_sources,
            "eval_texts": self.eval_texts,
            "checked": self.checked,
            "leaking": len(self.leaks),
            "exact": self.exact,
            "ngram": self.ngram,
            "dropped": self.dropped,
            "listed": [leak.as_dict() for leak in self.leaks[:LISTED]],
        }

    def error(self) -> UserError:
        """The error `--fail-on-leakage` raises: a summary, then one line per leak."""
        head = LEAKAGE_FOUND.format(n=len(self.leaks), exact=self.exact, ngram=self.ngram)
        lines = [LEAK_LINE.format(**leak.as_dict()) for leak in self.leaks[:20]]
        more = len(self.leaks) - len(lines)
        return UserError([head, *lines, *([f"... and {more} more"] if more > 0 else [])])


def eval_texts(paths: Sequence[str]) -> tuple[list[EvalText], list[str]]:
    """The evaluation examples of data files and suites, and the sources' names."""
    out: list[EvalText] = []
    names: list[str] = []
    for path in paths:
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            from harness.config.suite import load_suite

            suite = load_suite(path, check_files=False)  # only its data are needed
            sources: list[Any] = [task.data for task in suite.tasks]
        else:
            sources = [path]
        for source in sources:
            name = source_name(source)
            names.append(name)
            for row in load_rows(source, Path.cwd()):
                where = f"{name} line {row.line}"
                out += [EvalText(where, words) for words in row_texts(row.fields)]
    return out, names


def row_texts(fields: dict[str, Any]) -> list[tuple[str, ...]]:
    """The normalized evaluation texts of one row (see the module docstring)."""
    texts = [tuple(normalize(v).split()) for v in fields.values() if isinstance(v, str)]
    texts = [t for t in texts if t]
    long = [t for t in texts if len(t) >= SHORT]
    return long or ([max(texts, key=len)] if texts else [])


def grams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """The word n-grams of a text (none when it is shorter than n)."""
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def find_leaks(
    examples: Sequence[Example], evals: Sequence[EvalText], *, n: int, threshold: float
) -> list[Leak]:
    """One Leak per training example that overlaps some evaluation example."""
    exact: dict[tuple[str, ...], int] = {}
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    size: list[int] = []  # number of distinct grams of each evaluation text
    for e, ev in enumerate(evals):
        exact.setdefault(ev.words, e)
        own = grams(ev.words, n) if len(ev.words) >= n else set()
        if SHORT <= len(ev.words) < n:
            own = {ev.words}
        for g in own:
            index[g].append(e)
        size.append(len(own))
    short_sizes = sorted({len(g) for g in index if len(g) < n})
    leaks = []
    for ex in examples:
        words = tuple(normalize(ex.text).split())
        prompt = tuple(normalize(ex.input_text).split())
        hit = exact.get(words, exact.get(prompt) if prompt else None)
        if hit is not None:
            leaks.append(Leak(ex.where, evals[hit].where, "exact", 1.0))
            continue
        own = grams(words, n)
        found: dict[int, int] = defaultdict(int)
        for g in own.union(*(grams(words, k) for k in short_sizes)):
            for e in index.get(g, ()):
                found[e] += 1
        best, best_e = 0.0, -1
        for e, count in found.items():
            share_eval = count / size[e]
            share_train = count / len(own) if own and len(evals[e].words) >= n else 0.0
            if max(share_eval, share_train) > best:
                best, best_e = max(share_eval, share_train), e
        if best_e >= 0 and best >= threshold:
            leaks.append(Leak(ex.where, evals[best_e].where, "ngram", best))
    return leaks


def check_leakage(
    examples: Sequence[Example], paths: Sequence[str], *, n: int, threshold: float
) -> LeakageReport:
    """Compare trained-on examples with the evaluation data at ``paths``."""
    report = LeakageReport(checked=len(examples))
    if not paths:
        return report
    evals, report.eval_sources = eval_texts(paths)
    report.eval_texts = len(evals)
    report.leaks = find_leaks(examples, evals, n=n, threshold=threshold)
    return report
