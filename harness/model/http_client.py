"""A small JSON client for OpenAI-compatible servers: bearer key, timeouts, retries.

``ServerClient`` posts and gets JSON under an endpoint's base URL, ``concurrency``
requests in flight at once (a thread pool: the server batches what arrives together,
as vLLM does). A request that fails with 429, a 5xx status, a timeout or a broken
connection is retried after 1, 2, 4, ... seconds (at most 30, plus up to a quarter of
jitter so that parallel requests do not come back in step), or after what a
``Retry-After`` header asks; after ``max_retries`` retries the run stops with a
UserError naming the server URL, the request kind and the last failure. Any other 4xx
is the request's fault and stops at once. A response that is not the JSON we need is
retried once (a proxy can cut a response short; a server that answers malformed twice
is broken, and retrying it further only delays the error).

The API key is read from the environment variable the suite names, and is sent as a
header only: it never enters a message (what a server echoes back is scrubbed of it),
a log line or anything stored.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError

# user-facing messages (tests assert them)
MISSING_KEY = (
    "model.endpoint.api_key_env: the environment variable {var} is not set "
    "(it must hold the server's API key)"
)
GAVE_UP = "server {url}: {kind} request failed after {attempts} attempt(s): {reason}"
REFUSED = "server {url}: {kind} request refused: {reason}"
MALFORMED = "server {url}: {kind} response is malformed ({problem}): HTTP {status}, body {body}"

MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 300.0
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

# httpx logs every request at INFO: a run sends thousands, and harness.log keeps warnings
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Endpoint:
    """The server settings of a suite (harness.config.backends.EndpointSpec)."""

    base_url: str
    api_key_env: str | None = None
    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 5

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoint:
        known = {k: data[k] for k in cls.__dataclass_fields__ if data.get(k) is not None}
        return cls(**known)


class MalformedResponse(Exception):
    """A 200 response without the JSON fields the caller needs (``problem`` says which)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def backoff(retry: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (0-based): what the server asked
    (bounded), else 1, 2, 4, ... capped at 30, plus up to 25% jitter."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
    delay = min(float(2**retry), MAX_BACKOFF_S)
    return delay + random.uniform(0, delay / 4)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: rare from model servers; the backoff applies


def escaped(text: str, limit: int = 200) -> str:
    """The first ``limit`` characters of a server's text, escaped for one line."""
    return json.dumps(text[:limit] + ("..." if len(text) > limit else ""), ensure_ascii=True)


class ServerClient:
    """JSON requests to one OpenAI-compatible server (see the module docstring).

    ``sleep`` waits between retries (tests pass a recorder); ``transport`` is an httpx
    transport (tests may pass a mock one).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        sleep: Callable[[float], None] = time.sleep,
        transport: Any = None,
    ) -> None:
        import httpx

        self.endpoint = endpoint
        self.url = endpoint.base_url.rstrip("/")
        self._sleep = sleep
        self._key: str | None = None
        headers = {"Content-Type": "application/json"}
        if endpoint.api_key_env:
            key = os.environ.get(endpoint.api_key_env)
            if key is None:
                raise UserError(MISSING_KEY.format(var=endpoint.api_key_env))
            self._key = key
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=endpoint.timeout_s,
            transport=transport,
            limits=httpx.Limits(max_connections=endpoint.concurrency + 1),
        )
        self._lock = threading.Lock()
        self.sent = 0
        """Requests sent (attempts included)."""

    def close(self) -> None:
        self._client.close()

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def get(self, path: str, *, kind: str) -> Any:
        return self._call("GET", path, None, kind, lambda data: data)

    def post(
        self, path: str, body: dict[str, Any], *, kind: str, read: Callable[[Any], Any]
    ) -> Any:
        """``read(json)`` of the answer to ``body``; ``read`` raises MalformedResponse
        when the answer lacks what it needs."""
        return self._call("POST", path, body, kind, read)

    def post_many(
        self,
        path: str,
        bodies: Sequence[dict[str, Any]],
        *,
        kind: str,
        read: Callable[[Any], Any],
        done: Callable[[int], None] | None = None,
    ) -> list[Any]:
        """``post`` of every body, ``concurrency`` at a time, answers in order. The first
        failure stops the rest (requests not yet sent are cancelled) and is raised."""
        if len(bodies) <= 1 or self.endpoint.concurrency == 1:
            out = []
            for body in bodies:
                out.append(self.post(path, body, kind=kind, read=read))
                if done is not None:
                    done(1)
            return out
        with ThreadPoolExecutor(max_workers=self.endpoint.concurrency) as pool:
            futures = [pool.submit(self.post, path, b, kind=kind, read=read) for b in bodies]
            finished, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:
                f.cancel()
            for f in futures:
                if f.done() and not f.cancelled() and f.exception() is not None:
                    raise f.exception()  # type: ignore[misc]
            if done is not None:
                done(len(bodies))
            return [f.result() for f in futures]

    def _call(
        self, method: str, path: str, body: Any, kind: str, read: Callable[[Any], Any]
    ) -> Any:
        import httpx

        url = f"{self.url}{path}"
        retries = self.endpoint.max_retries
        malformed_left = 1
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            with self._lock:
                self.sent += 1
            try:
                response = self._client.request(method, url, json=body)
            except httpx.TimeoutException:
                reason = f"no response within {self.endpoint.timeout_s:g} s (timeout)"
            except httpx.TransportError as exc:
                reason = f"connection failed ({type(exc).__name__}: {self._scrub(str(exc))})"
            else:
                status = response.status_code
                if status < 400:
                    text = response.text
                    try:
                        return read(json.loads(text))
                    except (ValueError, MalformedResponse) as exc:
                        problem = exc.problem if isinstance(exc, MalformedResponse) else "not JSON"
                        if malformed_left == 0 or attempt > retries:
                            raise UserError(
                                MALFORMED.format(
                                    url=self.url,
                                    kind=kind,
                                    problem=problem,
                                    status=status,
                                    body=escaped(self._scrub(text)),
                                )
                            ) from None
                        malformed_left -= 1
                        reason = f"malformed response ({problem})"
                else:
                    detail = escaped(self._scrub(response.text))
                    reason = f"HTTP {status} {response.reason_phrase}: {detail}"
                    if status not in RETRY_STATUS:
                        raise UserError(REFUSED.format(url=self.url, kind=kind, reason=reason))
                    retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt > retries:
                raise UserError(
                    GAVE_UP.format(url=self.url, kind=kind, attempts=attempt, reason=reason)
                )
            self._sleep(backoff(attempt - 1, retry_after))
