"""The response cache around any scoring model: composition, not attribute mutation.

``CachingModel(inner, cache=..., group=...)`` answers the three request kinds from the
response cache (``harness.model.cache``) and asks ``inner`` only for the misses, a chunk
at a time, storing each chunk as soon as it is answered (a killed run keeps what it
computed). Everything else (fingerprints, tokenizer, window, ``adapter_disabled``) is the
inner model's: the keys use the inner fingerprint at the time of the call, so inside
``adapter_disabled`` the base model's answers are looked up and stored.

The requests, their order and their chunks are built as the backend builds them alone
(``harness.model.requests``): the chunk of misses the wrapper passes on is one chunk to
the backend too, so the model sees the same rows in the same batches with or without the
cache, and the answers agree to the last bit.

With a process ``group`` (``harness.model.distributed``) every process wraps its model
(only the main one holds the cache): the wrapper checks that all processes ask the same
requests, the main process sends the others what it found, and each process then passes
the same misses to its backend, which deals the batches out among the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from harness.model.api import Advance, ScoringModel
from harness.model.requests import (
    as_loglikelihood,
    as_rolling,
    generate_requests,
    loglikelihood_requests,
    rolling_requests,
)

if TYPE_CHECKING:
    from harness.model.cache import ResponseCache
    from harness.model.distributed import ProcessGroup
    from harness.model.fingerprint import Fingerprint


class CachingModel:
    """``inner`` with every answer looked up in ``cache`` first (see the module docstring).

    ``cache`` may be None (a process other than the main one, or a run without a cache):
    every request is then a miss, computed in the same chunks.
    """

    def __init__(
        self,
        inner: ScoringModel,
        *,
        cache: ResponseCache | None,
        group: ProcessGroup | None = None,
    ) -> None:
        self._inner = inner
        self._cache = cache
        self._group = group

    @property
    def inner(self) -> ScoringModel:
        """The model that computes the misses."""
        return self._inner

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache answers are looked up in (None on other processes)."""
        return self._cache

    @property
    def group(self) -> ProcessGroup | None:
        """The processes that look requests up together."""
        return self._group

    # -- the scoring API: cache first, the inner model for the misses ----------------------

    def loglikelihood(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int = 8,
        advance: Advance | None = None,
    ) -> list[tuple[float, bool, int]]:
        requests = loglikelihood_requests(self._inner, pairs, batch_size)

        def compute(indices: list[int]) -> list[Any]:
            part = [pairs[i] for i in indices]
            return [list(a) for a in self._inner.loglikelihood(part, batch_size=batch_size)]

        answers = requests.answer(
            self._inner.fingerprint, compute, cache=self._cache, group=self._group, advance=advance
        )
        return [as_loglikelihood(a) for a in answers]

    def rolling_loglikelihood(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 8,
        advance: Advance | None = None,
    ) -> list[tuple[float, int]]:
        requests = rolling_requests(self._inner, texts, batch_size)

        def compute(indices: list[int]) -> list[Any]:
            part = [texts[i] for i in indices]
            scored = self._inner.rolling_loglikelihood(part, batch_size=batch_size)
            return [list(a) for a in scored]

        answers = requests.answer(
            self._inner.fingerprint, compute, cache=self._cache, group=self._group, advance=advance
        )
        return [as_rolling(a) for a in answers]

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        batch_size: int = 8,
        advance: Advance | None = None,
    ) -> list[str]:
        requests = generate_requests(
            self._inner, prompts, max_new_tokens=max_new_tokens, stop=stop, batch_size=batch_size
        )

        def compute(indices: list[int]) -> list[Any]:
            part = [prompts[i] for i in indices]
            return list(
                self._inner.generate(
                    part, max_new_tokens=max_new_tokens, stop=stop, batch_size=batch_size
                )
            )

        answers = requests.answer(
            self._inner.fingerprint, compute, cache=self._cache, group=self._group, advance=advance
        )
        return [str(a) for a in answers]

    # -- everything else is the inner model's ---------------------------------------------

    @property
    def device(self) -> Any:
        return self._inner.device

    @property
    def max_length(self) -> int:
        return self._inner.max_length

    @property
    def base(self) -> Fingerprint:
        return self._inner.base

    @property
    def adapter(self) -> Fingerprint | None:
        return self._inner.adapter

    @property
    def has_adapter(self) -> bool:
        return self._inner.has_adapter

    @property
    def adapter_base(self) -> dict[str, Any] | None:
        return self._inner.adapter_base

    @property
    def fingerprint(self) -> str:
        return self._inner.fingerprint

    @property
    def request_settings(self) -> dict[str, Any]:
        return self._inner.request_settings

    @property
    def loading(self) -> dict[str, Any]:
        return self._inner.loading

    @property
    def load_s(self) -> float:
        return self._inner.load_s

    @property
    def tokenizer(self) -> Any:
        return self._inner.tokenizer

    @property
    def model(self) -> Any:
        """The inner torch model, if the inner model has one (the explain audit counts
        its forward passes); reading it loads the weights."""
        return getattr(self._inner, "model", None)

    @property
    def prefix_token(self) -> int:
        return self._inner.prefix_token

    def encode(self, text: str) -> list[int]:
        return self._inner.encode(text)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return self._inner.encode_pair(context, continuation)

    def context_tail(self, context: str) -> tuple[str, int]:
        return self._inner.context_tail(context)

    def overflow_chars(self, text: str, budget: int) -> int:
        own = getattr(self._inner, "overflow_chars", None)
        if own is not None:
            return int(own(text, budget))
        ids = self._inner.encode(text)
        overflow = len(ids) - budget
        if overflow <= 0:
            return 0
        return (
            len(self._inner.tokenizer.decode(ids[:overflow], skip_special_tokens=True)) or overflow
        )

    def surely_fits(self, window: int, *texts: str) -> bool:
        check = getattr(self._inner, "surely_fits", None)
        return bool(check(window, *texts)) if check is not None else False

    def prompt_tail(self, prompt: str, max_new_tokens: int) -> tuple[str, int]:
        return self._inner.prompt_tail(prompt, max_new_tokens)

    def adapter_disabled(self) -> AbstractContextManager[None]:
        return self._inner.adapter_disabled()
