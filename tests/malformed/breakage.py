"""Text-level breakage for the malformed-input corpus (tests/malformed/corpus.py): ways
to break any YAML or data file as bytes, each seeded by the caller's random generator."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any


def lines_of(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def non_utf8(data: bytes, rng: random.Random) -> bytes:
    bad = rng.choice([b"\xff", b"\xc3\x28", b"\x80", b"\xed\xa0\x80", b"\xfe\xfe"])
    lines = lines_of(data)
    i = rng.randrange(len(lines))
    line = lines[i]
    cut = rng.randrange(max(1, len(line.rstrip(b"\n"))))
    lines[i] = line[:cut] + bad + line[cut:]
    return b"".join(lines)


YAML_BREAKERS: list[tuple[str, Callable[[bytes, random.Random], bytes]]] = []


def _yaml_breaker(name: str) -> Callable[[Callable[[bytes, random.Random], bytes]], Any]:
    def register(fn: Callable[[bytes, random.Random], bytes]) -> Any:
        YAML_BREAKERS.append((name, fn))
        return fn

    return register


def _insert_line(data: bytes, rng: random.Random, text: bytes) -> bytes:
    lines = lines_of(data)
    i = rng.randrange(1, len(lines) + 1)
    return b"".join([*lines[:i], text, *lines[i:]])


def _content_lines(lines: list[bytes]) -> list[int]:
    return [i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith(b"#")]


@_yaml_breaker("unclosed-bracket")
def _unclosed_bracket(data: bytes, rng: random.Random) -> bytes:
    return _insert_line(data, rng, b"extra: [1, 2\n")


@_yaml_breaker("unclosed-quote")
def _unclosed_quote(data: bytes, rng: random.Random) -> bytes:
    return _insert_line(data, rng, b'extra: "no end\n')


@_yaml_breaker("tab-indent")
def _tab_indent(data: bytes, rng: random.Random) -> bytes:
    lines = lines_of(data)
    i = rng.choice(_content_lines(lines))
    lines[i] = b"\t" + lines[i].lstrip(b" ")
    return b"".join(lines)


@_yaml_breaker("mapping-in-scalar")
def _mapping_in_scalar(data: bytes, rng: random.Random) -> bytes:
    return _insert_line(data, rng, b"extra: a: b\n")


@_yaml_breaker("stray-item")
def _stray_item(data: bytes, rng: random.Random) -> bytes:
    lines = lines_of(data)
    top = [i for i in _content_lines(lines) if not lines[i].startswith((b" ", b"-"))]
    i = rng.choice(top[1:])
    return b"".join([*lines[:i], b"- stray\n", *lines[i:]])


@_yaml_breaker("reserved-indicator")
def _reserved(data: bytes, rng: random.Random) -> bytes:
    return _insert_line(data, rng, b"extra: @value\n")


@_yaml_breaker("unclosed-brace")
def _unclosed_brace(data: bytes, rng: random.Random) -> bytes:
    return _insert_line(data, rng, b"extra: {a: 1, b: [2\n")


@_yaml_breaker("duplicate-key")
def _duplicate_key(data: bytes, rng: random.Random) -> bytes:
    lines = lines_of(data)
    top = [
        i
        for i in _content_lines(lines)
        if not lines[i].startswith((b" ", b"-"))
        and lines[i].rstrip().endswith(b"}")
        or lines[i].startswith((b"name:", b"seed:", b"batch_size:", b"schema_version:"))
    ]
    i = rng.choice(top)
    return b"".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])


@_yaml_breaker("alias-to-nothing")
def _bad_alias(data: bytes, rng: random.Random) -> bytes:
    return _insert_line(data, rng, b"extra: *nowhere\n")


@_yaml_breaker("control-char")
def _control(data: bytes, rng: random.Random) -> bytes:
    return _insert_line(data, rng, b"extra: a\x07b\n")


EMPTY_DOCS = [b"", b"\n\n  \n", b"# only a comment\n", b"---\n", b"~\n"]
NOT_MAPPING_DOCS = [b"- a\n- b\n", b"just text\n", b"42\n"]
