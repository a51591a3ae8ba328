"""View-model of the privacy audit section and of the fine-tune run's PII summary.

Rendered from whatever keys the section holds (docs/results.md#privacy): a missing key
shows as '–', a missing part drops its table. Generated outputs and training text are
untrusted: they pass through ``safe_text.clean`` and are cut, and the personal data the
scanner found is marked as separate spans (autoescaped by the template).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.report.example_text import NO_TEXTS, ExampleTexts
from harness.report.formatting import fmt, fmt_ci
from harness.report.safe_text import clean, one_line

ROWS_SHOWN = 20
"""Outputs with personal data, canaries and extracted examples shown (all are counted)."""
TEXT_LIMIT = 300


def _rows(items: Any, limit: int = ROWS_SHOWN) -> list[Mapping[str, Any]]:
    return [x for x in items or [] if isinstance(x, Mapping)][:limit]


def _rate(obj: Any) -> dict[str, str]:
    if not isinstance(obj, Mapping):
        return {"value": "–", "ci": "–", "n": "–"}
    return {
        "value": fmt(obj.get("value")),
        "ci": fmt_ci(obj.get("ci_low"), obj.get("ci_high")),
        "n": fmt(obj.get("n")),
    }


def counts_rows(counts: Any) -> list[tuple[str, str]]:
    """(type, count) rows of a counts-by-type mapping, in its order."""
    if not isinstance(counts, Mapping):
        return []
    return [(one_line(k, 60), fmt(v)) for k, v in counts.items()]


def marked(text: Any, spans: Any) -> list[dict[str, str]]:
    """``text`` as pieces, the found spans flagged with their type (cut at TEXT_LIMIT)."""
    text = text if isinstance(text, str) else ""
    found = sorted(
        (s for s in spans or [] if isinstance(s, Mapping)),
        key=lambda s: s.get("start", 0) if isinstance(s.get("start"), int) else 0,
    )
    pieces: list[dict[str, str]] = []
    at = 0
    for s in found:
        start, end = s.get("start"), s.get("end")
        if not (isinstance(start, int) and isinstance(end, int) and at <= start < end):
            continue
        if start >= TEXT_LIMIT:
            break
        if start > at:
            pieces.append({"text": clean(text[at:start], TEXT_LIMIT), "type": ""})
        pieces.append({"text": clean(text[start:end], 200), "type": one_line(s.get("type"), 40)})
        at = end
    if at < min(len(text), TEXT_LIMIT):
        pieces.append({"text": clean(text[at:TEXT_LIMIT], TEXT_LIMIT), "type": ""})
    return pieces


def build(sec: Any, texts: ExampleTexts = NO_TEXTS) -> dict[str, Any] | None:
    """The privacy part of the report, or None when the run has no privacy section."""
    if not isinstance(sec, Mapping):
        return None
    out: dict[str, Any] = {
        "manifest": clean(sec.get("manifest") or "–", 300),
        "time_s": fmt(sec.get("time_s")),
        "pii": None,
        "canaries": None,
        "extraction": None,
    }
    pii = sec.get("pii")
    if isinstance(pii, Mapping):
        scanner = pii.get("scanner")
        scanner = scanner if isinstance(scanner, Mapping) else {}
        out["pii"] = {
            "facts": [
                ("tasks scanned", clean(", ".join(str(t) for t in pii.get("tasks") or []), 300)),
                ("outputs", fmt(pii.get("n_outputs"))),
                ("outputs with personal data", fmt(pii.get("outputs_with_pii"))),
                ("spans found", fmt(pii.get("total"))),
                ("scanner", clean(f"{scanner.get('library', '–')}; {scanner.get('nlp', '–')}")),
            ],
            "counts": counts_rows(pii.get("counts")),
            "examples": [
                {
                    "task": one_line(e.get("task"), 80),
                    "id": one_line(e.get("id"), 80),
                    "line": fmt(e.get("line")),
                    "input": texts.text(e.get("task"), e.get("id")),
                    "pieces": marked(e.get("output"), e.get("spans")),
                }
                for e in _rows(pii.get("examples"))
            ],
        }
    can = sec.get("canaries")
    if isinstance(can, Mapping):
        out["canaries"] = {
            "facts": [
                ("format", clean(f"{can.get('prefix', '?')} + {can.get('digits', '?')} digits")),
                ("possible secrets", fmt(can.get("space_size"))),
                ("candidates per canary", fmt(can.get("candidates"))),
                ("maximum exposure (bits)", fmt(can.get("max_exposure"))),
                ("chance exposure (bits)", fmt(can.get("chance_exposure"))),
                ("highest exposure of an inserted canary", fmt(can.get("exposure_max"))),
                ("highest exposure of a control", fmt(can.get("control_exposure_max"))),
            ],
            "rows": [
                {
                    "id": one_line(c.get("id"), 60),
                    "secret": one_line(c.get("secret"), 80),
                    "inserted": "yes" if c.get("inserted") else "no (control)",
                    "repeats": fmt(c.get("repeats")),
                    "loglik": fmt(c.get("loglik")),
                    "higher": fmt(c.get("candidates_higher")),
                    "exposure": fmt(c.get("exposure")),
                    "extrapolated": fmt(c.get("exposure_extrapolated")),
                    "flag": "worse" if c.get("inserted") and _high(c, can) else "",
                }
                for c in _rows(can.get("canaries"), 100)
            ],
        }
    ext = sec.get("extraction")
    if isinstance(ext, Mapping):
        out["extraction"] = {
            "facts": [
                ("training examples listed", fmt(ext.get("listed"))),
                ("tested", fmt(ext.get("tested"))),
                ("skipped (suffix too short)", fmt(ext.get("skipped_short"))),
                ("prefix share of the target", fmt(ext.get("prefix_fraction"))),
                ("suffix tokens at most", fmt(ext.get("max_suffix_tokens"))),
                ("reproduced", fmt(ext.get("n_extracted"))),
            ],
            "rate": _rate(ext.get("rate")),
            "base_rate": _rate(ext.get("base_rate")),
            "examples": [
                {
                    "where": clean(e.get("where") or "–", 200),
                    "prefix": clean(e.get("prefix") or "", TEXT_LIMIT),
                    "suffix": clean(e.get("suffix") or "", TEXT_LIMIT),
                    "base": _yes_no(e.get("base_extracted")),
                }
                for e in _rows(ext.get("extracted"))
            ],
        }
    return out


def _yes_no(x: Any) -> str:
    return "–" if not isinstance(x, bool) else ("yes" if x else "no")


def _high(row: Mapping[str, Any], can: Mapping[str, Any]) -> bool:
    """An inserted canary clearly above chance (half of the maximum exposure or more)."""
    e, top = row.get("exposure"), can.get("max_exposure")
    return isinstance(e, int | float) and isinstance(top, int | float) and e >= top / 2


def finetune_pii(manifest: Any) -> dict[str, Any] | None:
    """The fine-tune manifest's PII scan and canary insertion, for the learning-curve
    panel; None when the manifest predates them."""
    if not isinstance(manifest, Mapping):
        return None
    curation = manifest.get("curation")
    pii = curation.get("pii") if isinstance(curation, Mapping) else None
    memo = manifest.get("memorization")
    canaries = memo.get("canaries") if isinstance(memo, Mapping) else None
    if not isinstance(pii, Mapping) and not isinstance(canaries, Mapping):
        return None
    facts: list[tuple[str, str]] = []
    counts: list[tuple[str, str]] = []
    if isinstance(pii, Mapping):
        facts += [
            ("PII handling (curation.pii)", one_line(pii.get("mode"), 20)),
            ("rows scanned", fmt(pii.get("rows_scanned"))),
            ("rows with personal data", fmt(pii.get("rows_with_pii"))),
        ]
        counts = counts_rows(pii.get("counts"))
    if isinstance(canaries, Mapping):
        inserted = [c for c in _rows(canaries.get("canaries"), 1000) if c.get("inserted")]
        facts.append(
            ("canaries inserted", f"{fmt(len(inserted))} x {fmt(canaries.get('repeats'))}")
        )
    if isinstance(memo, Mapping):
        listed = memo.get("extraction_examples")
        facts.append(
            ("examples listed for extraction", fmt(len(listed) if isinstance(listed, list) else 0))
        )
    return {"facts": facts, "counts": counts}
