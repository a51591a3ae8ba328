"""Prompt templates render within bounds (harness.tasks.prompt_template).

Each hostile template below used to escape as a traceback (MemoryError, RecursionError,
OverflowError, Jinja's "no loader") or to run for minutes; now each is a located row
error, reported like a missing field, and a normal prompt renders as before."""

from __future__ import annotations

import resource
import time

import pytest

from harness.config.suite import BAD_TEMPLATE, ClassificationTask
from harness.data.rows import Row
from harness.errors import UserError
from harness.tasks import prepare
from harness.tasks import prompt_template as pt

LIMIT = pt.TOO_LONG_OUTPUT.format(limit=pt.MIN_OUTPUT + pt.OUTPUT_PER_INPUT * (2 + 8 + 8))
BIG = pt.TOO_LARGE_NUMBER.format(value=10**10, limit=pt.MAX_COUNT)

HOSTILE = [
    ("{% for i in range(10**9) %}x{% endfor %}", BIG.replace(str(10**10), str(10**9))),
    ("{{ 'a' * 10**11 }}", LIMIT),
    ("{{ 'a'.ljust(10**10) }}", BIG),
    ("{{ text | center(10**10) }}", BIG),
    ("{{ '%10000000000s' | format(text) }}", pt.TOO_LONG_FORMAT.format(limit=pt.MAX_COUNT)),
    ("{{ '{:>10000000000}'.format(text) }}", pt.TOO_LONG_FORMAT.format(limit=pt.MAX_COUNT)),
    (
        "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        LIMIT,
    ),
    (
        "{% set ns = namespace(s=[1]) %}{% for i in range(60) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
        LIMIT,
    ),
    ("{{ 7 ** 100000 }}", pt.TOO_LARGE_NUMBER.format(value="**", limit=pt.MAX_POWER_BITS)),
    ("{% for x in items recursive %}{{ loop(items) }}{% endfor %}", pt.TOO_DEEP),
    (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        pt.TOO_SLOW.format(seconds=pt.MAX_SECONDS),
    ),
    ("{{ text + 1 }}", 'TypeError: can only concatenate str (not "int") to str'),
]


def _task(prompt: str) -> ClassificationTask:
    task = ClassificationTask.model_construct(
        id="t", kind="classification", prompt=prompt, choices=[" a", " b"], label="label"
    )
    return task


def _row_errors(prompt: str) -> list[str]:
    rows = [Row(fields={"text": "hi", "label": 0, "items": [1]}, line=3)]
    with pytest.raises(UserError) as info:
        prepare(_task(prompt), rows, "data.jsonl")
    return info.value.messages


@pytest.mark.parametrize(("template", "reason"), HOSTILE)
def test_hostile_template_is_a_row_error(template: str, reason: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    assert _row_errors(template) == [f"data.jsonl line 3: prompt: {reason}"]
    # not a timing assertion: the renders are interrupted, so this only fails on a hang
    assert time.monotonic() - started < 60
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 512, f"peak memory grew by {grown_mb:.0f} MB"


@pytest.mark.parametrize(
    ("template", "tag"),
    [
        ('{% include "other.j2" %}', "include"),
        ('{% import "m.j2" as m %}', "import"),
        ('{% from "m.j2" import f %}', "from ... import"),
        ('{% extends "base.j2" %}', "extends"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "macro"),
        ("{% call range(3) %}x{% endcall %}", "call"),
    ],
)
def test_refused_tags_fail_when_the_suite_loads(template: str, tag: str) -> None:
    from harness.config.suite import _check_template

    message = BAD_TEMPLATE.format(reason=pt.REFUSED_TAG.format(tag=tag))
    with pytest.raises(ValueError, match=None) as info:
        _check_template(template)
    assert str(info.value) == message
    assert _row_errors(template) == [f"data.jsonl line 3: prompt: {message[18:]}"]


def test_ordinary_prompts_render_as_before() -> None:
    fields = {"text": "good film", "items": ["a", "b"], "n": 3, "gone": None}
    template = (
        "Review: {{ text | upper }}{% for x in items %} [{{ loop.index }}:{{ x }}]{% endfor %}"
        "{{ ' x' * n }} {{ '%-6s|' | format(text[:4]) }} {{ '{:>5}'.format(n) }}"
        "{% if gone is not defined %} none{% endif %}\n"
    )
    rendered = pt.render(template, fields)
    assert rendered == "Review: GOOD FILM [1:a] [2:b] x x x good  |     3 none\n"


def test_a_long_row_renders_whole() -> None:
    """The output budget grows with the row: a 5 MB text is a legitimate prompt."""
    text = "word " * 1_000_000
    assert pt.render("Q: {{ text }}{{ text }}", {"text": text}) == f"Q: {text}{text}"


def test_the_timer_is_left_as_found() -> None:
    import signal

    handler = signal.getsignal(signal.SIGALRM)
    pt.render("{{ x }}", {"x": 1})
    assert signal.getsignal(signal.SIGALRM) is handler
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_regex_replace_is_re_sub() -> None:
    """The filter benchmark preprocessing needs (HellaSwag's bracket markers)."""
    import re

    text = "A man [header] mixes [title] flour [step] now."
    rendered = pt.render("{{ t | regex_replace('\\\\[.*?\\\\]', '') }}", {"t": text})
    assert rendered == re.sub(r"\[.*?\]", "", text)
    assert (
        pt.render("{{ t | regex_replace('(\\\\w+)@', '\\\\1 at ') }}", {"t": "me@x"}) == "me at x"
    )
