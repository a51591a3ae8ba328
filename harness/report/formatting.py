"""Number and value formatting shared by the report view-models (display only)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness.report.safe_text import clean, one_line

HASH_SHOWN = 12
VALUE_LIMIT = 400


def fmt(x: Any, digits: int = 4) -> str:
    """A number for display: 4 significant digits, thousands separators, '–' if none."""
    if x is None or isinstance(x, bool):
        return "–" if x is None else str(x)
    if not isinstance(x, int | float):
        return one_line(x, 60)
    if isinstance(x, float) and not math.isfinite(x):
        return "–" if math.isnan(x) else ("∞" if x > 0 else "−∞")
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 1000:
        return f"{x:,.1f}"
    return f"{x:.{digits}g}"


def fmt_fields(entry: Mapping[str, Any], *keys: str) -> dict[str, str]:
    """``{key: fmt(entry[key])}`` for each key, '–' where the entry lacks one."""
    return {key: fmt(entry.get(key)) for key in keys}


def fmt_ci(low: Any, high: Any) -> str:
    if low is None or high is None:
        return "–"
    return f"[{fmt(low)}, {fmt(high)}]"


def short_hash(h: Any) -> str:
    return clean(h)[:HASH_SHOWN] if h else "–"


def flatten(obj: Any, prefix: str = "", limit: int = 200) -> list[tuple[str, str]]:
    """Nested mappings as (dotted key, display value) rows, at most ``limit`` rows."""
    rows: list[tuple[str, str]] = []

    def walk(o: Any, key: str) -> None:
        if len(rows) >= limit:
            return
        if isinstance(o, Mapping) and o:
            for k, v in o.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(o, list) and o and all(isinstance(x, Mapping) for x in o):
            for i, v in enumerate(o):
                walk(v, f"{key}[{i}]")
        elif isinstance(o, list):
            rows.append((one_line(key, 200), clean(", ".join(fmt(x) for x in o), VALUE_LIMIT)))
        else:
            rows.append(
                (one_line(key, 200), clean(fmt(o) if not isinstance(o, str) else o, VALUE_LIMIT))
            )

    walk(obj, prefix)
    return rows
