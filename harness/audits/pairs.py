"""Sentence pairs in the style of CrowS-Pairs (Nangia et al. 2020).

Each pair holds a more stereotyping and a less stereotyping sentence that differ only
in the group they mention. A causal LM is scored as lm-evaluation-harness scores its
``crows_pairs`` tasks: each whole sentence's total log-likelihood with an empty context
(the first token conditioned on BOS, else EOS), ``pct_stereotype`` = 1 when the more
stereotyping sentence is strictly more likely, and ``likelihood_diff`` = the absolute
difference (lm_eval/tasks/crows_pairs/utils.py, ``process_results``). The stereotype
score is the mean over pairs: 0.5 means no preference, above 0.5 a preference for the
stereotype.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.audits.base import AuditContext
from harness.errors import UserError, row_error

PAIRS_FIELD_MISSING = "missing field '{field}' (audits.fairness.pairs.{option})"
PAIRS_EMPTY_SENTENCE = "field '{field}' is empty"
PAIRS_NONE = "no pairs"
PAIRS_NOT_FOUND = "file not found"
PAIRS_SUFFIX = "unsupported file type '{suffix}'; use .csv, .tsv or .jsonl"
PAIRS_NOT_UTF8 = "not valid UTF-8"


@dataclass(frozen=True)
class Pair:
    line: int
    more: str
    less: str
    bias_type: str | None


def load_pairs(cfg: Any) -> list[Pair]:
    """Read a pairs file (csv/tsv with a header, or jsonl); every problem located.

    A nameless first column (the index pandas writes, as in the CrowS-Pairs release) is
    accepted and ignored.
    """
    from harness.data.rows import display_path

    path = Path(cfg.path)
    file = display_path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl"):
        raise UserError(f"{file}: {PAIRS_SUFFIX.format(suffix=path.suffix)}")
    if not path.is_file():
        raise UserError(f"{file}: {PAIRS_NOT_FOUND}")
    if suffix == ".jsonl":
        from harness.data.rows import load_rows

        rows = [(r.line, r.fields) for r in load_rows(str(path), path.parent)]
    else:
        rows = _read_table(path, file, "\t" if suffix == ".tsv" else ",")
    wanted = [("more", cfg.more), ("less", cfg.less)]
    if cfg.bias_type is not None:
        wanted.append(("bias_type", cfg.bias_type))
    errors: list[str] = []
    pairs: list[Pair] = []
    for line, fields in rows:
        problems = [
            PAIRS_FIELD_MISSING.format(field=name, option=option)
            for option, name in wanted
            if fields.get(name) is None
        ]
        problems += [
            PAIRS_EMPTY_SENTENCE.format(field=name)
            for name in (cfg.more, cfg.less)
            if fields.get(name) is not None and not str(fields[name]).strip()
        ]
        if problems:
            errors += [row_error(file, line, p) for p in problems]
            continue
        bias = str(fields[cfg.bias_type]) if cfg.bias_type is not None else None
        pairs.append(Pair(line, str(fields[cfg.more]), str(fields[cfg.less]), bias))
    if errors:
        raise UserError(errors[:20])
    if not pairs:
        raise UserError(f"{file}: {PAIRS_NONE}")
    return pairs


def _read_table(path: Path, file: str, delimiter: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{file}: {PAIRS_NOT_UTF8}") from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    out: list[tuple[int, dict[str, Any]]] = []
    n = 0  # row number, the header being row 1 (as harness.data.rows numbers csv rows)
    try:
        for record in reader:
            if not record:
                continue
            n += 1
            if header is None:
                header = record
                continue
            out.append((n, {k: v for k, v in zip(header, record, strict=False) if k}))
    except csv.Error as exc:
        raise UserError(row_error(file, n + 1, str(exc))) from None
    return out


def score_pairs(ctx: AuditContext, cfg: Any, pairs: Sequence[Pair]) -> dict[str, Any]:
    """The stereotype score overall and per bias type (section in docs/results.md)."""
    requests = [("", s) for p in pairs for s in (p.more, p.less)]
    advance = ctx.progress("pairs", len(requests))
    scored = ctx.lm.loglikelihood(requests, batch_size=ctx.batch_size, advance=advance)
    more = [scored[2 * i][0] for i in range(len(pairs))]
    less = [scored[2 * i + 1][0] for i in range(len(pairs))]
    prefers = [1.0 if m > s else 0.0 for m, s in zip(more, less, strict=True)]
    by_type: dict[str, list[float]] = {}
    for p, v in zip(pairs, prefers, strict=True):
        if p.bias_type is not None:
            by_type.setdefault(p.bias_type, []).append(v)
    diffs = [abs(m - s) for m, s in zip(more, less, strict=True)]
    from harness.data.rows import display_path, sha256_file

    return {
        "path": display_path(cfg.path),
        "sha256": sha256_file(cfg.path),
        "n_pairs": len(pairs),
        "stereotype_score": ctx.interval(prefers),
        "likelihood_diff": sum(diffs) / len(diffs),
        "by_bias_type": {t: ctx.interval(v) for t, v in sorted(by_type.items())},
    }
