"""Response cache: (model fingerprint, request) -> model response, in one sqlite file.

Scoring is the expensive part of a run, and its answers depend only on what computes
(the model fingerprint: weights, adapter, tokenizer, config) and on the request. So the
wrapper ``harness.model.caching.CachingModel`` looks every request up here first, sends
only the misses to the model, and stores each chunk of answers as soon as it is computed: a second run of the
same suite recomputes nothing, a killed run resumes where it stopped, and the
forgetting audit's base-model answers (keyed by the base fingerprint) are computed once
for every checkpoint of that base.

Two processes may share the file: it is in WAL mode (readers never wait for a writer),
writers wait up to ``timeout`` seconds for the lock, every transaction is short (one
chunk of answers), and ``INSERT OR IGNORE`` makes concurrent writes of the same answer
harmless. A file that is not a usable cache (corrupt, another schema, locked for
longer than the timeout, read-only) never stops a run: the cache is bypassed and a
warning says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.model.distributed import ProcessGroup

SCHEMA_VERSION = 1
FILE_NAME = "responses.sqlite"
ENV_DIR = "HARNESS_CACHE_DIR"
DEFAULT_DIR = Path("~/.cache/llm-release-harness")
_LOOKUP_CHUNK = 500  # keys per SELECT (sqlite's default limit is 32766 variables)

CACHE_BYPASSED = "response cache {path} bypassed: {reason}"
OTHER_SCHEMA = "it was written by another version of the harness (schema {found}, expected {want})"


class CacheWarning(UserWarning):
    """The cache could not be used; the run continues without it."""


def default_dir() -> Path:
    """``$HARNESS_CACHE_DIR``, else ``~/.cache/llm-release-harness``."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else DEFAULT_DIR.expanduser()


def request_key(fingerprint: str, kind: str, request: Any) -> str:
    """sha256 of fingerprint, request kind and the request as canonical JSON."""
    body = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    h = hashlib.sha256(f"{fingerprint}\0{kind}\0".encode())
    h.update(body.encode())  # not joined first: a long text is not copied once more
    return h.hexdigest()


class ResponseCache:
    """A sqlite key -> JSON store; every failure disables it with one warning."""

    def __init__(
        self,
        path: str | Path,
        *,
        timeout: float = 30.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._warn = warn or (lambda msg: warnings.warn(msg, CacheWarning, stacklevel=3))
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self.disabled_reason: str | None = None
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._connect()
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)

    @classmethod
    def open_default(cls, **kwargs: Any) -> ResponseCache:
        """The cache in ``default_dir()``."""
        return cls(default_dir() / FILE_NAME, **kwargs)

    @property
    def enabled(self) -> bool:
        return self._conn is not None

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are opened explicitly and kept short
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found == SCHEMA_VERSION:  # ready: opening needs no write lock
                return conn
            if found != 0:
                raise sqlite3.DatabaseError(OTHER_SCHEMA.format(found=found, want=SCHEMA_VERSION))
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, kind TEXT NOT NULL,"
                " response TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID"
            )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _disable(self, exc: BaseException) -> None:
        reason = str(exc) or type(exc).__name__
        self.disabled_reason = reason
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        self._warn(CACHE_BYPASSED.format(path=self.path, reason=reason))

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The stored responses among ``keys`` (decoded from JSON)."""
        found: dict[str, Any] = {}
        if self._conn is None or not keys:
            self.misses += len(keys)
            return found
        unique = list(dict.fromkeys(keys))
        try:
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                part = unique[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(part))
                rows = self._conn.execute(
                    f"SELECT key, response FROM responses WHERE key IN ({marks})", part
                ).fetchall()
                for key, text in rows:
                    found[key] = json.loads(text)
        except (sqlite3.Error, ValueError) as exc:
            self._disable(exc)
            found = {}
        hit = sum(1 for k in keys if k in found)
        self.hits += hit
        self.misses += len(keys) - hit
        return found

    def put_many(self, fingerprint: str, kind: str, items: Iterable[tuple[str, Any]]) -> None:
        """Store responses in one short transaction; existing keys are left alone."""
        if self._conn is None:
            return
        now = time.time()
        rows = [(k, fingerprint, kind, json.dumps(v), now) for k, v in items]
        if not rows:
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?)", rows
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._disable(exc)
            return
        self.writes += len(rows)

    def count(self) -> int:
        """Number of stored responses (0 when disabled)."""
        if self._conn is None:
            return 0
        return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def stats(self) -> dict[str, Any]:
        """What this run did with the cache (for provenance)."""
        return {
            "path": str(self.path),
            "enabled": self.enabled,
            "hits": self.hits,
            "misses": self.misses,
            "writes": self.writes,
            "bypassed": self.disabled_reason,
        }

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_MISSING = object()


def cached_map(
    cache: ResponseCache | None,
    fingerprint: str,
    kind: str,
    requests: Sequence[Any],
    compute: Callable[[list[int]], list[Any]],
    *,
    chunk: int,
    order: Callable[[int], Any] | None = None,
    advance: Callable[[int], None] | None = None,
    group: ProcessGroup | None = None,
) -> list[Any]:
    """Answer ``requests`` from the cache, computing only the misses.

    ``compute(indices)`` answers the requests at ``indices`` (JSON-serializable
    answers). Misses are sorted by ``order`` (a sort key: the caller puts those the model
    should see together next to each other, longest first) and computed ``chunk`` at a time; each chunk is stored as soon as it
    is done, so an interrupted run keeps everything computed before the interruption.
    Without a cache (none, or one that is disabled) every request is a miss and goes
    through the same steps: the model sees the same requests in the same chunks as with
    a cold cache, so both give the same answers to the last bit. ``advance`` gets the
    number of requests answered, hits at once and misses chunk by chunk.

    With a process ``group`` (harness.model.distributed) every process calls this with the
    same requests and ``compute`` shares the work out; only the main process holds the
    cache (``cache`` is None elsewhere): it looks the keys up and sends what it found
    to the others, so all of them compute the same misses in the same chunks.
    """
    enabled = cache is not None and cache.enabled
    keys = [request_key(fingerprint, kind, r) for r in requests]
    if group is not None:
        group.check_same(kind, keys)
        shared = (enabled, cache.get_many(keys) if cache is not None and enabled else {})
        enabled, found = group.broadcast(shared if group.is_main else None)
    else:
        found = cache.get_many(keys) if cache is not None and enabled else {}
    if not enabled:
        cache = None  # nothing to store; every request is a miss, computed as below
    answers: list[Any] = [found.get(k, _MISSING) for k in keys]
    hits = sum(1 for a in answers if a is not _MISSING)
    if advance is not None and hits:
        advance(hits)
    first: dict[str, int] = {}  # one computation per distinct missing request
    for i, a in enumerate(answers):
        if a is _MISSING:
            first.setdefault(keys[i], i)
    todo = list(first.values())
    if order is not None:
        todo.sort(key=order)
    step = max(1, chunk)
    for start in range(0, len(todo), step):
        part = todo[start : start + step]
        computed = compute(part)
        for i, value in zip(part, computed, strict=True):
            answers[i] = value
        if cache is not None:
            cache.put_many(fingerprint, kind, [(keys[i], answers[i]) for i in part])
        if advance is not None:
            advance(len(part))
    repeated = 0
    for i, a in enumerate(answers):
        if a is _MISSING:
            answers[i] = answers[first[keys[i]]]
            repeated += 1
    if advance is not None and repeated:
        advance(repeated)
    return answers


def open_run_cache(console: Any = None) -> ResponseCache:
    """The default cache for a run; warnings go to ``console`` (rich) when given."""
    warn = None
    if console is not None:

        def warn(msg: str) -> None:
            from rich.text import Text

            # the message can hold a path: never read as markup
            console.print(Text.assemble(("warning", "yellow"), f": {msg}"), highlight=False)

    return ResponseCache.open_default(warn=warn)
