"""The fine-tuner's privacy steps: the PII scan of the data, canaries, and the training
examples recorded for the extraction test (docs/privacy.md).

- ``scan_pii`` runs the harness's scanner (harness.sensitive.pii) over the prompt and
  target of every row as it is loaded (a chat row: each message's content), and
  reports, redacts or refuses what it finds (``curation.pii``; redaction keeps the
  conversation's turns and roles, an error names ``messages[i].content``). The manifest gets counts by type and the rows' locations, never
  the personal data itself.
- ``canary_rows`` makes the text rows of ``memorization.canaries`` (each repeated),
  added to the training data after every other curation step so that deduplication
  and augmentation leave exactly ``repeats`` copies. They stay prompt/completion rows
  when the training data are chat rows: the privacy audit scores a secret's exposure
  as the raw continuation of its prefix, so that is how it is trained.
- ``extraction_sample`` lists a seeded sample of training examples, as trained on (a
  chat row: the contents before its last assistant turn, joined by line breaks, as the
  prompt and that turn's content as the target).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from finetune.config.schema import CanarySpec
from finetune.data.examples import Example
from harness.errors import UserError, row_error

LISTED = 50  # rows with personal data listed in the manifest (all are counted)
CANARY_FILE = "canaries"  # the `file` of canary examples (``canaries line N``)

# user-facing messages (tests assert them exactly)
PII_FOUND = "personal data in '{field}': {types} (curation.pii is 'fail'; 'redact' replaces it)"


def _types(spans: Sequence[Any]) -> str:
    found = Counter(s.type for s in spans)
    return ", ".join(f"{t} x{n}" if n > 1 else t for t, n in sorted(found.items()))


class PIIReport:
    """Counts of what ``scan_pii`` found, by type and by role."""

    def __init__(self, mode: str) -> None:
        from harness.sensitive.pii import scanner

        self.mode = mode
        self.scanner = scanner()
        self.counts: Counter[str] = Counter()
        self.by_role: dict[str, dict[str, Any]] = {}
        self.rows_with_pii = 0
        self.rows_scanned = 0
        self.listed: list[dict[str, Any]] = []

    def as_dict(self) -> dict[str, Any]:
        entities = self.scanner.entities
        return {
            "mode": self.mode,
            "scanner": self.scanner.describe(),
            "rows_scanned": self.rows_scanned,
            "rows_with_pii": self.rows_with_pii,
            "counts": {e: self.counts.get(e, 0) for e in entities},
            "by_role": self.by_role,
            "listed": self.listed,
        }


def scan_pii(examples: Sequence[Example], role: str, report: PIIReport) -> list[Example]:
    """Scan ``examples`` (of one role: train, validation, replay, ewc) into ``report``;
    returns them redacted when the mode is ``redact`` (rows without personal data are the
    same objects), and raises one UserError for all rows with personal data under
    ``fail``."""
    out: list[Example] = []
    errors: list[str] = []
    role_counts: Counter[str] = Counter()
    role_rows = 0
    for ex in examples:
        found = {}
        for name, text in _parts(ex):
            spans = report.scanner.find(text)
            if spans:
                found[name] = spans
        report.rows_scanned += 1
        if not found:
            out.append(ex)
            continue
        every = [s for spans in found.values() for s in spans]
        role_rows += 1
        role_counts.update(s.type for s in every)
        if len(report.listed) < LISTED:
            report.listed.append({"where": ex.where, "role": role, "types": _types(every)})
        if report.mode == "fail":
            for name, spans in found.items():
                field = _field_name(ex, name)
                errors.append(
                    row_error(ex.file, ex.line, PII_FOUND.format(field=field, types=_types(spans)))
                )
            continue
        if report.mode == "redact" and ex.is_chat:
            parts = [
                (role, report.scanner.redact(c, found[f"messages[{i}].content"]))
                if f"messages[{i}].content" in found
                else (role, c)
                for i, (role, c) in enumerate(ex.messages)
            ]
            ex = replace(ex, messages=tuple(parts))
        elif report.mode == "redact":
            prompt, target = (
                report.scanner.redact(getattr(ex, n), found[n]) if n in found else getattr(ex, n)
                for n in ("prompt", "target")
            )
            ex = replace(ex, prompt=prompt, target=target)
        out.append(ex)
    report.rows_with_pii += role_rows
    report.counts.update(role_counts)
    report.by_role[role] = {
        "rows": len(examples),
        "rows_with_pii": role_rows,
        "counts": dict(sorted(role_counts.items())),
    }
    if errors:
        from harness.data.rows import MAX_ERRORS

        more = len(errors) - MAX_ERRORS
        raise UserError(errors[:MAX_ERRORS] + ([f"{more} more errors"] if more > 0 else []))
    return out


def _parts(ex: Example) -> list[tuple[str, str]]:
    """(name, text) of each scanned part: prompt and target, or each message's content."""
    if ex.is_chat:
        return [(f"messages[{i}].content", c) for i, (_, c) in enumerate(ex.messages)]
    return [("prompt", ex.prompt), ("target", ex.target)]


def _field_name(ex: Example, part: str) -> str:
    """The row field a part of an example came from (for messages)."""
    if ex.is_chat:
        return part
    if part == "target" and not ex.prompt:
        return "text"
    return part if part == "prompt" else "completion"


def canaries(spec: CanarySpec) -> dict[str, Any]:
    """The canaries of ``spec`` as recorded in the manifest (inserted and controls)."""
    from harness.sensitive.canary import CanaryFormat, make_canaries

    fmt = CanaryFormat(spec.prefix, spec.digits)
    return {
        "prefix": spec.prefix,
        "digits": spec.digits,
        "space_size": fmt.space_size,
        "repeats": spec.repeats,
        "seed": spec.seed,
        "canaries": make_canaries(fmt, spec.count, spec.controls, spec.seed),
    }


def canary_rows(record: dict[str, Any]) -> list[Example]:
    """Rows of the inserted canaries, each ``repeats`` times (``canaries line N``): the
    prefix as the prompt, `` <secret>`` as the completion, so they are tokenized exactly
    as the audit scores the secret given the prefix (finetune.train.encode)."""
    rows: list[Example] = []
    for c in record["canaries"]:
        if c["inserted"]:
            prompt, target = record["prefix"], " " + c["secret"]
            fields = {"prompt": prompt, "completion": target}
            for _ in range(record["repeats"]):
                rows.append(Example(prompt, target, CANARY_FILE, len(rows) + 1, fields))
    return rows


def extraction_sample(examples: Sequence[Example], n: int, seed: int) -> list[dict[str, str]]:
    """Up to ``n`` training examples (no noisy copies), a seeded sample in file order."""
    pool = [ex for ex in examples if not ex.augmented]
    order = sorted(random.Random(seed).sample(range(len(pool)), min(n, len(pool))))
    return [{"where": pool[i].where, **_prompt_target(pool[i])} for i in order]


def _prompt_target(ex: Example) -> dict[str, str]:
    if not ex.is_chat:
        return {"prompt": ex.prompt, "target": ex.target}
    last = max(i for i, (role, _) in enumerate(ex.messages) if role == "assistant")
    before = "\n".join(c for _, c in ex.messages[:last])
    return {"prompt": before + "\n" if before else "", "target": ex.messages[last][1]}
