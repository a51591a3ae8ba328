"""Group terms swapped in text: whole words, case kept, all at once.

The one implementation of the swaps of the fairness audit's counterfactual check
(harness.audits.counterfactual) and of the fine-tuner's counterfactual augmentation
(finetune.data.counterfactual). With ``{he: she}``, "He" becomes "She" and "HE" "SHE";
with ``bidirectional``, each pair also swaps the other way, so "he told her" becomes
"she told him" with ``{he: she, him: her}``. Terms are matched as whole words,
case-insensitively, longest first; a replacement is never swapped again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


def swap_table(swaps: Mapping[str, str], bidirectional: bool) -> dict[str, str]:
    """Lower-cased term -> replacement; a reverse swap never overrides a forward one."""
    table = {k.lower(): v for k, v in swaps.items()}
    if bidirectional:
        for k, v in swaps.items():
            table.setdefault(v.lower(), k)
    return table


def compile_swaps(table: Mapping[str, str]) -> re.Pattern[str]:
    """One pattern matching every term as a whole word, longest terms first."""
    terms = sorted(table, key=lambda t: (-len(t), t))
    alternatives = "|".join(re.escape(t) for t in terms)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def match_case(source: str, replacement: str) -> str:
    """``replacement`` written in the case pattern of ``source``."""
    if len(source) > 1 and source.isupper():
        return replacement.upper()
    if source[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    if source.islower():
        return replacement.lower()
    return replacement


def swap_terms(text: str, table: Mapping[str, str], pattern: re.Pattern[str]) -> str:
    """``text`` with every term of ``table`` replaced, all at once (no chains)."""
    return pattern.sub(lambda m: match_case(m.group(0), table[m.group(0).lower()]), text)


def checked_swaps(swaps: dict[str, str], no_swaps: str, empty_term: str) -> dict[str, str]:
    """``swaps`` when it names at least one pair and no term is blank; otherwise a
    ValueError with the caller's message (``no_swaps`` or ``empty_term``) for its schema."""
    if not swaps:
        raise ValueError(no_swaps)
    if any(not k.strip() or not v.strip() for k, v in swaps.items()):
        raise ValueError(empty_term)
    return swaps
