"""The input text of an example beside its id, in every per-example table.

Audit sections (forgetting flips, counterfactual flips, explanations, personal data in
outputs) name examples by task and id; the text a reviewer needs is in the task's
stored records (``results.json`` ``tasks.<id>.records[].input``). ``ExampleTexts``
looks it up there, and ``snippet`` shortens it for a table cell: about a line of text,
with the whole (cleaned, capped) text one click away in a ``<details>``. The text is
untrusted: it passes through ``safe_text`` here and is autoescaped by the template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.report.safe_text import clean, one_line

SHORT_LIMIT = 120
"""Characters of an example's text shown in a table cell."""
FULL_LIMIT = 1000
"""Characters of the whole text shown when a cell is expanded (longer text is cut)."""
ELLIPSIS = "…"


def _str(x: Any) -> str:
    return "" if x is None else x if isinstance(x, str) else str(x)


def capped(text: str) -> str:
    """``clean(text, FULL_LIMIT)``, cleaning only the part shown (a row can be huge)."""
    if len(text) <= FULL_LIMIT:
        return clean(text)
    return f"{clean(text[:FULL_LIMIT])}… [+{len(text) - FULL_LIMIT} characters]"


def snippet(text: Any, full: Any = None) -> dict[str, str]:
    """``{"short", "full"}`` for a table cell.

    ``short``: one line of at most ``SHORT_LIMIT`` characters, cut with an ellipsis.
    ``full``: what expanding the cell shows: ``full`` when given (e.g. the prompt an
    input was rendered into), else the whole text when ``short`` does not hold all of
    it; empty when there is nothing more to show.
    """
    raw = _str(text)
    line = one_line(raw[: FULL_LIMIT + 1]).strip()
    cut = len(line) > SHORT_LIMIT
    short = line[:SHORT_LIMIT].rstrip() + ELLIPSIS if cut else line
    if full is not None:
        more = capped(_str(full))
    else:
        more = capped(raw) if cut or "\n" in raw.strip() else ""
    return {"short": short or "–", "full": more}


def record_text(record: Mapping[str, Any]) -> str:
    """The text of an example's input: its one text field, or ``field: text`` lines when
    it has several; a record without an input gives its prompt or text."""
    fields = record.get("input")
    if isinstance(fields, Mapping):
        texts = [(str(k), v) for k, v in fields.items() if isinstance(v, str) and v.strip()]
        if len(texts) == 1:
            return texts[0][1]
        if texts:
            return "\n".join(f"{k}: {v}" for k, v in texts)
    for key in ("prompt", "text"):
        value = record.get(key)
        if isinstance(value, str):
            return value
    return ""


class ExampleTexts:
    """The stored records' input texts, by task id and example id (built per task, on
    first use)."""

    def __init__(self, tasks: Any) -> None:
        self._tasks = tasks if isinstance(tasks, Mapping) else {}
        self._index: dict[str, dict[str, Mapping[str, Any]]] = {}

    def record(self, task: Any, example_id: Any) -> Mapping[str, Any] | None:
        key = str(task)
        if key not in self._index:
            t = self._tasks.get(key)
            records = t.get("records") if isinstance(t, Mapping) else None
            self._index[key] = {
                str(r.get("id")): r for r in records or [] if isinstance(r, Mapping)
            }
        return self._index[key].get(str(example_id))

    def text(self, task: Any, example_id: Any) -> dict[str, str]:
        """The snippet of an example's input; '–' when the run stored no such record."""
        r = self.record(task, example_id)
        return snippet(record_text(r) if r is not None else None)


NO_TEXTS = ExampleTexts({})
