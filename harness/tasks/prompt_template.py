"""Prompt templates: sandboxed Jinja2 with a bound on what one render may cost.

A suite's prompt is configuration, but a template may come from someone else and every
row it renders is untrusted data. Jinja's sandbox already stops attribute tricks; on top
of it this module refuses what a one-row prompt never needs and bounds what it may do:

* at load time, ``include``, ``import``, ``extends``, ``macro`` and ``call`` blocks are
  refused (there is no loader, and macros are how a template recurses);
* at render time, a number above ``MAX_COUNT`` passed to a call or a filter, a repetition
  (``'a' * n``) or power past the limits, and output past a budget relative to the row's
  own size stop the render; so do deep recursion and a failed allocation;
* a render in the main thread gets ``MAX_SECONDS`` of wall time (a timer signal), which
  catches loops that print nothing.

Every refusal is a :class:`TemplateLimit` (a Jinja ``TemplateError``) whose message
names the limit; :func:`harness.tasks.prepare` reports it at the row, exit code 2.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.sandbox import SandboxedEnvironment

MAX_COUNT = 1_000_000
"""Largest number a template may pass to a call or a filter (a width, a count, a size)."""
MAX_POWER_BITS = 4096
"""Largest result of ``**`` on integers, in bits."""
MIN_OUTPUT = 1 << 20
"""Output budget of a render in characters: this much plus OUTPUT_PER_INPUT x the row."""
OUTPUT_PER_INPUT = 4
MAX_SECONDS = 2.0
"""Wall time of one render (main thread only: the limit is a timer signal)."""

REFUSED_TAG = (
    "'{tag}' is not allowed in a prompt template (a prompt is one self-contained template)"
)
TOO_LARGE_NUMBER = "number {value} is over the limit of {limit} for one render"
TOO_LONG_OUTPUT = "builds a text of more than {limit} characters (the limit for this row's size)"
TOO_SLOW = "took more than {seconds:g} s to render"
TOO_DEEP = "recursion too deep"
OUT_OF_MEMORY = "ran out of memory"
TOO_LONG_FORMAT = "a format width or precision over {limit} is not allowed"

_REFUSED_NODES: dict[type[nodes.Node], str] = {
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
    nodes.Extends: "extends",
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
}
TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\{#")
"""Where a literal string holds Jinja syntax (it would be read as text, not rendered)."""
_LONG_NUMBER = re.compile(r"\d{" + str(len(str(MAX_COUNT)) + 1) + ",}")


_SEQUENCE = str | bytes | list | tuple


class TemplateLimit(TemplateError):
    """A render stopped at one of this module's limits; the message says which.

    A ``TemplateError``, so every caller that reports template errors reports these."""


class _Budget(threading.local):
    output = MIN_OUTPUT


_BUDGET = _Budget()


def _check_number(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float) and not math.isnan(value) and abs(value) > MAX_COUNT:
        raise TemplateLimit(TOO_LARGE_NUMBER.format(value=value, limit=MAX_COUNT))


def _check_size(value: Any) -> Any:
    if isinstance(value, _SEQUENCE) and len(value) > _BUDGET.output:
        raise TemplateLimit(TOO_LONG_OUTPUT.format(limit=_BUDGET.output))
    return value


def _check_format(spec: Any) -> None:
    if isinstance(spec, str) and _LONG_NUMBER.search(spec):
        raise TemplateLimit(TOO_LONG_FORMAT.format(limit=MAX_COUNT))


def _predicted_size(operator: str, left: Any, right: Any) -> int:
    """Length of the result of ``left <operator> right`` on sequences, before computing it."""
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCE) and isinstance(n, int) and not isinstance(n, bool):
                return len(seq) * n
    if operator == "+" and isinstance(left, _SEQUENCE) and isinstance(right, _SEQUENCE):
        return len(left) + len(right)
    return 0


def _power_bits(left: Any, right: Any) -> float:
    """Bits of ``left ** right`` on integers (0 where that is small by nature)."""
    if not (isinstance(left, int) and isinstance(right, int)) or abs(left) < 2 or right < 1:
        return 0
    return right * math.log2(abs(left))


def _bounded_filter(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(fn)  # keeps Jinja's pass_context/pass_eval_context marker
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args, *kwargs.values()):
            _check_number(arg)
        if name == "format" and args:
            _check_format(args[0])
        return _check_size(fn(*args, **kwargs))

    return bounded


def _regex_replace(value: Any, pattern: str, replacement: str = "") -> str:
    """``{{ text | regex_replace('\\[.*?\\]', '') }}``: Python's ``re.sub`` (what
    benchmark preprocessing such as HellaSwag's needs; the render's time limit bounds a
    slow pattern)."""
    return _compiled_regex(str(pattern)).sub(str(replacement), str(value))


@functools.lru_cache(maxsize=64)
def _compiled_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, with numbers, repetition, powers and output sizes bounded."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, keep_trailing_newline=True)
        self.filters = {name: _bounded_filter(fn, name) for name, fn in self.filters.items()}
        self.filters["regex_replace"] = _bounded_filter(_regex_replace, "regex_replace")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if _predicted_size(operator, left, right) > _BUDGET.output:
            raise TemplateLimit(TOO_LONG_OUTPUT.format(limit=_BUDGET.output))
        if operator == "**" and _power_bits(left, right) > MAX_POWER_BITS:
            raise TemplateLimit(TOO_LARGE_NUMBER.format(value="**", limit=MAX_POWER_BITS))
        if operator == "%":
            _check_format(left)
        return _check_size(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        # what a namespace grows to ({% set ns.s = ns.s ~ ns.s %} doubles it per loop)
        return _check_size(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _check_size(super().getitem(obj, argument))

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:  # str.format / format_map, checked when looked up
            _check_format(value.__self__)
        return wrapped

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        for arg in (*args, *kwargs.values()):
            _check_number(arg)
        return _check_size(super().call(__context, __obj, *args, **kwargs))


_ENV = BoundedEnvironment()


def check(template: str) -> None:
    """Parse ``template`` and refuse the tags a prompt may not use.

    Raises ``jinja2.TemplateSyntaxError`` for bad syntax and :class:`TemplateLimit`
    for a refused tag."""
    tree = _ENV.parse(template)
    for node_type, tag in _REFUSED_NODES.items():
        if next(tree.find_all(node_type), None) is not None:
            raise TemplateLimit(REFUSED_TAG.format(tag=tag))


@functools.lru_cache(maxsize=256)
def _compiled(template: str) -> Any:
    """Compiling costs more than rendering: once per template, not per row."""
    check(template)
    return _ENV.from_string(template)


def render(template: str, fields: dict[str, Any]) -> str:
    """Render ``template`` over one row's fields, within the limits above.

    A null field counts as missing (strict undefined), since it would print "None"."""
    compiled = _compiled(template)
    values = {k: v for k, v in fields.items() if v is not None}
    budget = MIN_OUTPUT + OUTPUT_PER_INPUT * sum(_size(v) for v in values.values())
    _BUDGET.output = budget
    parts: list[str] = []
    total = 0
    try:
        with _deadline(MAX_SECONDS):
            for part in compiled.generate(**values):
                total += len(part)
                if total > budget:
                    raise TemplateLimit(TOO_LONG_OUTPUT.format(limit=budget))
                parts.append(part)
    except RecursionError:
        raise TemplateLimit(TOO_DEEP) from None
    except MemoryError:
        raise TemplateLimit(OUT_OF_MEMORY) from None
    finally:
        _BUDGET.output = MIN_OUTPUT
    return "".join(parts)


def check_expression(expression: str) -> None:
    """Parse a Jinja expression (``choices.text``, ``[option1, option2]``); raises
    ``jinja2.TemplateSyntaxError`` for bad syntax."""
    _expression(expression)


@functools.lru_cache(maxsize=256)
def _expression(expression: str) -> Any:
    return _ENV.compile_expression(expression, undefined_to_none=False)


def evaluate(expression: str, fields: dict[str, Any]) -> Any:
    """The value of a Jinja expression over one row's fields, in the same sandbox and
    within the same limits as ``render`` (a null field counts as missing)."""
    compiled = _expression(expression)
    values = {k: v for k, v in fields.items() if v is not None}
    _BUDGET.output = MIN_OUTPUT + OUTPUT_PER_INPUT * sum(_size(v) for v in values.values())
    try:
        with _deadline(MAX_SECONDS):
            value = compiled(**values)
    except RecursionError:
        raise TemplateLimit(TOO_DEEP) from None
    except MemoryError:
        raise TemplateLimit(OUT_OF_MEMORY) from None
    finally:
        _BUDGET.output = MIN_OUTPUT
    if isinstance(value, StrictUndefined):
        value._fail_with_undefined_error()
    return value


def _size(value: Any) -> int:
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(_size(k) + _size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(_size(v) for v in value)
    return 8


class _Timeout(BaseException):
    """Raised by the timer inside the render; a BaseException so no template code eats it."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt the body after ``seconds`` (main thread only, else no limit)."""
    usable = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if not usable or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        yield  # another thread, or someone else's timer is running: leave it alone
        return
    armed = True

    def expire(signum: int, frame: Any) -> None:
        if armed:
            raise _Timeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Timeout:
        raise TemplateLimit(TOO_SLOW.format(seconds=seconds)) from None
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def template_fields(template: str) -> list[str]:
    """The record fields a prompt template reads, sorted."""
    return list(_template_fields(template))


@functools.lru_cache(maxsize=256)
def _template_fields(template: str) -> tuple[str, ...]:
    """Parsed once per template (audits ask once per example)."""
    from jinja2 import meta
    from jinja2.sandbox import SandboxedEnvironment

    try:
        return tuple(sorted(meta.find_undeclared_variables(SandboxedEnvironment().parse(template))))
    except Exception:  # a syntax error is reported by the task's own check
        return ()
