"""The tokenizer side of a scoring model, and its adapter switch, shared by every backend.

A backend (transformers here, a served model, vLLM) holds a Hugging Face tokenizer and
a context window; this mixin turns texts into tokens exactly as lm-evaluation-harness
does, so every backend splits contexts from continuations, conditions a text's first
token and fits prompts into the window alike (and their answers can be compared token
for token). A subclass provides ``tokenizer`` and ``max_length``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from harness.model.long_text import SPARE_TOKENS, encode_in_pieces, longest_token_chars, window_tail


class _Switchable(Protocol):
    """What ``adapter_disabled`` needs of a backend."""

    _adapter_off: bool

    @property
    def has_adapter(self) -> bool: ...


class TokenizedModel:
    """Tokenization rules over ``self.tokenizer`` and ``self.max_length``."""

    tokenizer: Any
    max_length: int
    _longest_token: int = 0
    _cuts: dict[tuple[int, str], int]
    tokenizer_file: Path | None = None
    """The tokenizer's tokenizer.json, where the backend knows it: ``surely_fits`` counts
    tokens with it without loading the transformers tokenizer (nor torch)."""
    _counter: Any = None

    def surely_fits(self, window: int, *texts: str) -> bool:
        """Whether ``texts`` joined surely take at most ``window`` tokens, told without
        loading the tokenizer: by their UTF-8 bytes (no tokenizer makes more tokens of a
        text than its bytes, plus a few of its own: BOS, EOS, a leading marker), else by
        a count with the ``tokenizers`` library over ``tokenizer_file``, with
        ``SPARE_TOKENS`` to spare either way. False means "maybe not": tokenize."""
        if sum(len(t.encode("utf-8")) for t in texts) + SPARE_TOKENS <= window:
            return True
        if self.tokenizer_file is None:
            return False
        if not self._longest_token:
            self._longest_token = longest_token_chars(_RustTokenizer(self._fast()))
        if sum(len(t) for t in texts) > window * self._longest_token:
            return False  # more tokens than the window for sure: never tokenize a huge text whole
        n = len(self._fast().encode("".join(texts), add_special_tokens=True).ids)
        return n + SPARE_TOKENS <= window

    def overflow_chars(self, text: str, budget: int) -> int:
        """Characters at the start of ``text`` whose tokens do not fit in ``budget``
        tokens (0 when it fits): the tokens ``text`` makes, special tokens included,
        beyond the last ``budget``, decoded. Counted with ``tokenizer_file`` where there is
        one and ``text`` does not start with a special token (a rendered chat's BOS),
        so a re-run answered from the cache loads no tokenizer for it."""
        fast = self._fast() if self.tokenizer_file is not None else None
        if fast is not None and not any(
            token.special and text.startswith(token.content)
            for token in fast.get_added_tokens_decoder().values()
        ):
            ids = fast.encode(text, add_special_tokens=True).ids
            decode = fast.decode
        else:
            ids, decode = self.encode(text), self.tokenizer.decode
        overflow = len(ids) - budget
        if overflow <= 0:
            return 0
        return len(decode(ids[:overflow], skip_special_tokens=True)) or overflow

    def _fast(self) -> Any:
        """The ``tokenizers`` tokenizer of ``tokenizer_file`` (loaded once)."""
        if self._counter is None:
            from tokenizers import Tokenizer

            self._counter = Tokenizer.from_file(str(self.tokenizer_file))
        return self._counter

    def _cutting_tokenizer(self) -> Any:
        """What finds where a long text is cut (``window_tail``): the ``tokenizers``
        tokenizer of ``tokenizer_file`` where there is one (the same vocabulary and
        tokens as the loaded one, without loading it: a re-run answered from the cache
        loads neither it nor torch), else the loaded tokenizer."""
        if self.tokenizer_file is None:
            return self.tokenizer
        return _RustTokenizer(self._fast())

    @property
    def prefix_token(self) -> int:
        """Token that conditions the first token of a text (BOS, else EOS, as lm-eval)."""
        tok = self.tokenizer
        if tok.bos_token_id is not None:
            return int(tok.bos_token_id)
        return int(tok.eos_token_id)

    @property
    def pad_token(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return int(pad if pad is not None else 0)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; a text that already starts with the BOS (a chat
        template writes it) gets no second one (as lm-eval encodes it)."""
        if self._starts_with_bos(text):
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        return list(self.tokenizer.encode(text))

    def _starts_with_bos(self, text: str) -> bool:
        bos = self.tokenizer.bos_token
        return bool(bos) and text.startswith(bos)

    def text_tokens(self, text: str) -> Sequence[int]:
        """Tokens of a text scored from its start: without the BOS that some tokenizers
        put first (Llama's, a BERT's [CLS]), as the prefix token conditions the first.
        A text that starts with the BOS itself (a rendered chat) is scored after it.
        A long text is tokenized in pieces (harness.model.long_text), into a compact array."""
        if self._starts_with_bos(text) and self.tokenizer.bos_token_id == self.prefix_token:
            text = text[len(self.tokenizer.bos_token) :]
        tokens = encode_in_pieces(self.tokenizer, text)
        return tokens[1:] if tokens and tokens[0] == self.prefix_token else tokens

    def tail(self, text: str, n_tokens: int) -> tuple[str, int]:
        """(the end of ``text`` that holds its last ``n_tokens`` tokens, the number of
        characters cut before it): a prompt the window would left-truncate is cut
        before it is tokenized (harness.model.long_text.window_tail), so a huge row costs
        the window's worth of work. A text too short to need it keeps the tokenizer
        unloaded (every token covers at least one character, or ``surely_fits``)."""
        if len(text) <= n_tokens + SPARE_TOKENS or self.surely_fits(n_tokens, text):
            return text, 0
        key = (n_tokens, text)
        if key not in self._cuts:
            tokenizer = self._cutting_tokenizer()
            if not self._longest_token:
                self._longest_token = longest_token_chars(tokenizer)
            self._cuts[key] = window_tail(tokenizer, text, n_tokens, self._longest_token)
        cut = self._cuts[key]
        return text[cut:], cut

    def context_tail(self, context: str) -> tuple[str, int]:
        """``tail`` of a log-likelihood context: what the window keeps of it, and one."""
        return self.tail(context, self.max_length + 1)

    def prompt_tail(self, prompt: str, max_new_tokens: int) -> tuple[str, int]:
        """``tail`` of a generation prompt: the window less the new tokens."""
        return self.tail(prompt, max(1, self.max_length - max_new_tokens))

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Tokens of context and continuation, as lm-eval splits them.

        Trailing whitespace of the context moves to the continuation, the pair is
        encoded whole and split at the length of the encoded context.
        """
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        if not context:
            return [self.prefix_token], list(self.text_tokens(continuation))
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx) :]

    @contextlib.contextmanager
    def adapter_disabled(self: _Switchable) -> Iterator[None]:
        """Run the base model: inside, ``_adapter_off`` is set and each backend asks for
        the base (the same weights with the adapter switched off, the base's served
        name, no LoRA request). Only a flag: nothing needs to be loaded yet."""
        if not self.has_adapter:
            yield
            return
        self._adapter_off = True
        try:
            yield
        finally:
            self._adapter_off = False


class _RustTokenizer:
    """A ``tokenizers.Tokenizer`` answering the two calls ``window_tail`` makes of a
    transformers tokenizer: ``get_vocab()`` and ``tokenizer(text, ...)["input_ids"]``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get_vocab(self) -> dict[str, int]:
        return dict(self.inner.get_vocab())

    def __call__(self, text: str, *, add_special_tokens: bool = True, **_: Any) -> dict[str, Any]:
        return {"input_ids": self.inner.encode(text, add_special_tokens=add_special_tokens).ids}
