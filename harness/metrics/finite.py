"""NaN and infinities in stored numbers: JSON has no such numbers, so they become null.

The one place the harness and the fine-tuner turn a non-finite float into ``None``: the
runner's metric entries and the comparison's paired values (``none_if_nan``), audit
values, gate bounds and fine-tune history points (``finite_float``), the fine-tune record
read from an adapter folder and results.json as a whole (``null_non_finite``). It lives
with the metrics, below every stage that stores a number.
"""

from __future__ import annotations

import math
from typing import Any


def none_if_nan(x: Any) -> Any:
    """``x``, or None when it is a NaN float (infinities are kept: a caller that tells
    "undefined" from "infinite", as ``store.undefined_reason`` does, still can)."""
    return None if isinstance(x, float) and math.isnan(x) else x


def finite_float(x: Any) -> float | None:
    """``x`` as a float, or None when it is missing, NaN or infinite."""
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def is_finite(x: Any) -> bool:
    """Whether ``x`` is a real number (not a bool) that is neither NaN nor infinite."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def null_non_finite(obj: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples as lists) with every NaN and
    infinity replaced by None; other values are returned as they are."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: null_non_finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [null_non_finite(v) for v in obj]
    return obj
