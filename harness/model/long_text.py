"""Long texts: tokenizing work and memory bounded by what is scored.

A fast tokenizer keeps per-character alignments and per-token strings, offsets and
masks while it encodes: encoding a 50 MB row whole took 11 GB. So

* a prompt (classification context, generation prompt) is cut to the characters that
  can hold the tokens the window keeps *before* it is tokenized (``window_tail``), and
* a perplexity text, whose every token is scored, is tokenized in pieces of about a
  megabyte (``encode_in_pieces``) into a compact int array.

Both rest on one property of the tokenizers in use (byte-level BPE, SentencePiece,
WordPiece): how a stretch of text is tokenized depends only on a neighbourhood of it,
and text starting at a whitespace run tokenizes as it does inside a longer text. The
cuts are placed at whitespace and cost extra tokens of slack; ``encode_in_pieces``
checks at each seam that the text around it tokenizes alike whole and cut, and where a
tokenizer breaks the property it falls back to encoding the whole text.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

SPARE_TOKENS = 16
"""Tokens of slack kept before those the window needs: the cut may change how the text
right after it is tokenized, never as far as this."""
WHITESPACE_SEARCH = 4096
"""How far back from a cut (characters) a whitespace boundary is looked for."""
PIECE_CHARS = 1 << 18
"""Characters per piece when a long text is tokenized in pieces."""
SEAM_CONTEXT = 1024
"""Characters either side of a seam that must tokenize alike as one text and as two."""


def longest_token_chars(tokenizer: Any) -> int:
    """An upper bound on the characters one token covers: the longest vocabulary entry
    (a byte-level entry spells one character per byte, a WordPiece entry carries '##',
    a byte-fallback entry is '<0x..>': all at least as long as what they cover)."""
    return max((len(token) for token in tokenizer.get_vocab()), default=1) or 1


def whitespace_cut(text: str, cut: int) -> int:
    """The start of the whitespace run at or before ``cut`` (searching back at most
    ``WHITESPACE_SEARCH`` characters), else ``cut`` itself."""
    for i in range(cut, max(0, cut - WHITESPACE_SEARCH), -1):
        if text[i].isspace() and not text[i - 1].isspace():
            return i
    return cut


def window_tail(tokenizer: Any, text: str, n_tokens: int, longest: int) -> int:
    """How many leading characters of ``text`` can go without changing its last
    ``n_tokens`` tokens (0: keep it whole).

    Keeps ``(n_tokens + SPARE_TOKENS) x longest`` characters, moved back to a whitespace
    boundary: the last ``n_tokens`` tokens of the whole text lie inside, at least
    ``SPARE_TOKENS`` tokens after the cut. A tokenizer whose tokens can cover more than
    ``longest`` characters (an unknown-word token, a normalizer that drops characters)
    shows it by producing too few tokens; the kept part then doubles until it has them.
    """
    keep = (n_tokens + SPARE_TOKENS) * max(1, longest)
    while len(text) > keep:
        cut = whitespace_cut(text, len(text) - keep)
        ids = _ids(tokenizer, text[cut:])
        if len(ids) >= n_tokens + SPARE_TOKENS:
            return cut
        keep *= 2
    return 0


def special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (BOS, [CLS], EOS)."""
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a")["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


def encode_in_pieces(
    tokenizer: Any, text: str, *, piece_chars: int | None = None, context: int | None = None
) -> Sequence[int]:
    """``tokenizer.encode(text)`` (special tokens included) with memory bounded by a
    piece (default ``PIECE_CHARS`` characters): a compact array of ids.

    Each seam between pieces is checked first: the ``context`` characters either side
    (default ``SEAM_CONTEXT``) must tokenize the same as one text and as two. A seam
    that fails moves back to an earlier whitespace run; where none passes, the whole
    text is encoded at once (exact, as before, without the memory bound).
    """
    piece_chars = piece_chars or PIECE_CHARS
    context = context or SEAM_CONTEXT
    if len(text) <= piece_chars:
        return list(tokenizer.encode(text))
    seams = _seams(tokenizer, text, piece_chars, context)
    if seams is None:
        return list(tokenizer.encode(text))
    prefix, suffix = special_affixes(tokenizer)
    out = array("l", prefix)
    for start, end in zip([0, *seams], [*seams, len(text)], strict=True):
        out.extend(_ids(tokenizer, text[start:end]))
    out.extend(suffix)
    return out


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(
        tokenizer(
            text,
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
    )


SEAM_TRIES = 8
"""Whitespace runs tried (going back) for a seam before encoding the text whole."""


def _seams(tokenizer: Any, text: str, piece_chars: int, context: int) -> list[int] | None:
    """Where to cut ``text`` into pieces of at most ``piece_chars``: each cut at a
    whitespace run around which the text tokenizes alike whole and cut; None when no
    such place is found near one of them."""
    seams: list[int] = []
    start = 0
    while len(text) - start > piece_chars:
        end = start + piece_chars
        for _ in range(SEAM_TRIES):
            end = whitespace_cut(text, end - 1)
            if end <= start or _separable(tokenizer, text, end, context):
                break
        else:
            return None
        if end <= start:
            return None
        seams.append(end)
        start = end
    return seams


def _separable(tokenizer: Any, text: str, at: int, context: int) -> bool:
    lo, hi = max(0, at - context), min(len(text), at + context)
    whole = _ids(tokenizer, text[lo:hi])
    return whole == _ids(tokenizer, text[lo:at]) + _ids(tokenizer, text[at:hi])
