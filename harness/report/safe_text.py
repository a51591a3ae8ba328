"""Untrusted text (data, model generations, ids, group names) made inert for each format.

Everything a report shows from a dataset or a model passes through here first:

- ``clean`` replaces characters that can hide or reorder what a reviewer reads, or
  that some format cannot carry, with U+FFFD (so their presence stays visible): NUL and
  the other C0/C1 controls except tab and newline, Unicode bidirectional controls
  (the "Trojan Source" characters, Boucher & Anderson 2021), lone surrogates and the
  non-characters U+FFFE/U+FFFF. It also shortens very long text.
- ``md_escape`` makes text literal in Markdown (CommonMark / GitHub) inside a line:
  the significant ASCII punctuation is backslash-escaped (so no emphasis, code, link,
  image, table cell, heading, math or mention can start), and ``<``, ``>``, ``&``
  become entities so no raw HTML reaches the renderer. Newlines become spaces, so a
  table row stays one row.
- HTML relies on Jinja2 autoescaping of ``clean``-ed text; JUnit XML on ElementTree's
  escaping of ``clean``-ed text (which is then also valid XML 1.0).
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"

# C0 except \t and \n, DEL, C1; bidi embeddings/overrides/isolates and marks;
# lone surrogates; the two non-characters XML 1.0 forbids.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff\ufffe\uffff]"
)
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

# Markdown-significant ASCII punctuation (CommonMark escapes any of it with a backslash):
# emphasis, code, links/images, tables, headings, GitHub math ($), mentions (@) and
# autolinks (:). '.', ',', '/' etc. matter only at a line start, where escaped text
# never goes, and are left as they are for readability.
_MD_SPECIAL = re.compile(r"[!#$()*+\-:@\[\\\]^_`{|}~]")
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def clean(value: Any, limit: int | None = None) -> str:
    """``value`` as display text: unsafe characters replaced, cut after ``limit`` chars."""
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _UNSAFE.sub(REPLACEMENT, text)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… [+{len(text) - limit} characters]"
    return text


def one_line(value: Any, limit: int | None = None) -> str:
    """``clean`` with tabs and newlines shown as spaces."""
    return re.sub(r"[\t\n]+", " ", clean(value, limit))


def md_escape(value: Any, limit: int | None = 200) -> str:
    """Inert Markdown for untrusted text (one line, every control character escaped)."""
    text = one_line(value, limit)
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)
    return re.sub("[&<>]", lambda m: _MD_ENTITIES[m.group(0)], text)
