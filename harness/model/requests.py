"""The requests behind each call of the scoring API, as the response cache keys them.

A call (``loglikelihood``, ``rolling_loglikelihood``, ``generate``) becomes one request
per input: what the model is asked, in canonical JSON form (a prompt already cut to what
the window keeps, and the settings that change the answer). The backend
(``harness.model.language_model``) and the caching wrapper (``harness.model.caching``)
build them here, so both see the same requests, deduplicated, ordered and chunked the
same way (``harness.model.cache.cached_map``): a call answered by the backend alone and
one answered through the cache send the model the same rows in the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from harness.model.cache import cached_map

if TYPE_CHECKING:
    from harness.model.cache import ResponseCache
    from harness.model.distributed import ProcessGroup

LOGLIKELIHOOD = "loglikelihood"
ROLLING = "rolling_loglikelihood"
GENERATE = "generate"


class Windowed(Protocol):
    """What building requests needs of a model: its window cuts and settings."""

    @property
    def request_settings(self) -> dict[str, Any]: ...

    def context_tail(self, context: str) -> tuple[str, int]: ...

    def prompt_tail(self, prompt: str, max_new_tokens: int) -> tuple[str, int]: ...


@dataclass(frozen=True)
class Requests:
    """One call's requests: ``bodies[i]`` is what input ``i`` asks (the cache key's
    material), ``order[i]`` its sort key among the misses (longest first, those that
    share a context together), ``chunk`` misses are computed (and stored) at a time."""

    kind: str
    bodies: list[dict[str, Any]]
    order: list[Any]
    chunk: int

    def answer(
        self,
        fingerprint: str,
        compute: Callable[[list[int]], list[Any]],
        *,
        cache: ResponseCache | None = None,
        group: ProcessGroup | None = None,
        advance: Callable[[int], None] | None = None,
    ) -> list[Any]:
        """Every request's answer: from ``cache`` where it holds one, else ``compute``d
        (``harness.model.cache.cached_map``)."""
        return cached_map(
            cache,
            fingerprint,
            self.kind,
            self.bodies,
            compute,
            chunk=self.chunk,
            order=self.order.__getitem__,
            advance=advance,
            group=group,
        )


def loglikelihood_requests(
    lm: Windowed, pairs: Sequence[tuple[str, str]], batch_size: int
) -> Requests:
    """A context longer than the window is cut to what the window keeps (``context_tail``);
    the request holds that part. Misses are ordered by context, longest first, so the
    continuations of one context are computed in one chunk (and its context once,
    ``harness.model.scoring.pack_prefixes``)."""
    tails = {c: lm.context_tail(c)[0] for c in dict.fromkeys(c for c, _ in pairs)}
    settings = lm.request_settings
    bodies = [{"context": tails[c], "continuation": t, **settings} for c, t in pairs]
    order = [(-len(tails[c]), tails[c], -len(t)) for c, t in pairs]
    return Requests(LOGLIKELIHOOD, bodies, order, chunk=batch_size * 8)


def rolling_requests(lm: Windowed, texts: Sequence[str], batch_size: int) -> Requests:
    """A text is scored whole. ``"bos": "prefix"``: the BOS a tokenizer adds is the prefix,
    not a target (answers cached before that rule lack the field, so they are not reused)."""
    settings = lm.request_settings
    bodies = [{"text": text, "bos": "prefix", **settings} for text in texts]
    return Requests(ROLLING, bodies, [-len(t) for t in texts], chunk=batch_size * 4)


def generate_requests(
    lm: Windowed,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    stop: Sequence[str],
    batch_size: int,
) -> Requests:
    """A prompt longer than the window is cut to what the window keeps
    (``prompt_tail``); the request holds that part."""
    tails = {p: lm.prompt_tail(p, max_new_tokens)[0] for p in dict.fromkeys(prompts)}
    kept = [tails[p] for p in prompts]
    request = {"max_new_tokens": max_new_tokens, "stop": list(stop), **lm.request_settings}
    bodies = [{"prompt": p, **request} for p in kept]
    return Requests(GENERATE, bodies, [-len(p) for p in kept], chunk=batch_size * 4)


def as_loglikelihood(answer: Sequence[Any]) -> tuple[float, bool, int]:
    """A stored loglikelihood answer ``[logprob, greedy, n_tokens]`` as returned."""
    return float(answer[0]), bool(answer[1]), int(answer[2])


def as_rolling(answer: Sequence[Any]) -> tuple[float, int]:
    """A stored rolling answer ``[logprob, n_tokens]`` as returned."""
    return float(answer[0]), int(answer[1])
