"""The context before an example's own prompt: the task's ``description``, then its
few-shot examples (``fewshot``), as lm-evaluation-harness lays out a plain-text context.

A shot is one row of the shot pool written as the model should answer it: the row's
rendered prompt, the task's target delimiter and the row's gold target, then the
few-shot delimiter (the kind says what prompt and target are: ``TaskKind.shot``). The
pool is the ``fewshot.data`` source, or every row of the task's own data; the runner
loads it once per task (``attach_pool``) before the records are prepared.

``first_n`` gives every example the same shots, so the prefix is built once; ``random``
draws per example from a generator seeded with the suite's seed and the example's line,
so re-preparing a row (a re-run, the counterfactual audit) draws the same shots.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import UserError, row_error

if TYPE_CHECKING:
    from harness.data.rows import Row

ShotText = Callable[[Any, dict[str, Any], str, int], tuple[str, str]]
"""The kind's ``shot(task, fields, file, line)``: one row as a solved example, as
(question, answer)."""

TOO_FEW_SHOTS = "asks for {n} shots but {source} has only {available} usable rows"


@dataclass
class ShotPool:
    """The rows shots are drawn from, and the shot texts built so far (by index)."""

    rows: list[Row]
    file: str
    """The pool's name in messages (a file path, or ``dataset NAME``)."""
    own: bool
    """The pool is the task's own data."""
    seed: int = 1234
    """The random sampler's seed when ``fewshot.seed`` is not set (the suite's)."""
    texts: dict[int, tuple[str, str]] = field(default_factory=dict)
    groups: dict[tuple[str, ...], list[int]] | None = None
    """Pool indices by the values of ``fewshot.match`` (built on first use)."""

    def candidates(self, match: Sequence[str], fields: dict[str, Any]) -> list[int]:
        """Indices of the rows whose ``match`` fields equal the example's, in order."""
        if not match:
            return list(range(len(self.rows)))
        if self.groups is None:
            self.groups = {}
            for i, row in enumerate(self.rows):
                self.groups.setdefault(_key(match, row.fields), []).append(i)
        return self.groups.get(_key(match, fields), [])


def _key(match: Sequence[str], fields: dict[str, Any]) -> tuple[str, ...]:
    return tuple(repr(fields.get(name)) for name in match)


def attach_pool(task: Any, rows: Sequence[Row], file: str, *, own: bool, seed: int) -> None:
    """Give a task with ``fewshot`` the rows its shots come from (``seed``: the suite's)."""
    task._shot_pool = ShotPool(list(rows), file, own, seed)


def too_few(task: Any, rows: Sequence[Row]) -> str | None:
    """The problem when the pool cannot give ``fewshot.n`` shots to one of ``rows`` (the
    examples), else None."""
    shots = task.fewshot
    if shots is None or shots.n == 0:
        return None
    pool = _pool(task)
    spare = 1 if _exclude_self(task) else 0  # the example itself may be in its group
    seen: set[tuple[str, ...]] = set()
    for row in rows:
        key = _key(shots.match, row.fields)
        if key in seen:
            continue
        seen.add(key)
        found = max(len(pool.candidates(shots.match, row.fields)) - spare, 0)
        if found < shots.n:
            source = "the task's data" if pool.own else pool.file
            if shots.match:
                listed = ", ".join(f"{m}={row.fields.get(m)!r}" for m in shots.match)
                source += f" for {listed} (line {row.line})"
            return TOO_FEW_SHOTS.format(n=shots.n, source=source, available=found)
    return None


def description(task: Any, fields: dict[str, Any], file: str, line: int) -> str:
    """The task's ``description`` rendered over the row ("" when it has none)."""
    from harness.tasks.base import render_row

    template = getattr(task, "description", None)
    return render_row(template, fields, file, line) if template else ""


def solved(
    task: Any, fields: dict[str, Any], line: int, shot: ShotText, file: str
) -> list[tuple[str, str]]:
    """The shots of the row at ``line`` as (question, answer) pairs, in order ([] when
    the task has none). Errors in a shot row are located in the pool's file."""
    shots = getattr(task, "fewshot", None)
    if shots is None or shots.n == 0:
        return []
    pool = _pool(task)
    chosen = _choose(task, pool, fields, line)
    if len(chosen) < shots.n:  # duplicates of the example left out more than one row
        found = TOO_FEW_SHOTS.format(n=shots.n, source=pool.file, available=len(chosen))
        raise UserError(row_error(file, line, f"fewshot: {found}"))
    out = []
    for index in chosen:
        if index not in pool.texts:
            row = pool.rows[index]
            pool.texts[index] = shot(task, row.fields, pool.file, row.line)
        out.append(pool.texts[index])
    return out


def plain(
    head: str, pairs: Sequence[tuple[str, str]], prompt: str, delimiter: str, task: Any
) -> str:
    """The plain-text context: description, each shot as question + target delimiter +
    answer + few-shot delimiter, then the prompt."""
    shots = getattr(task, "fewshot", None)
    after = shots.delimiter if shots is not None else ""
    return head + "".join(q + delimiter + a + after for q, a in pairs) + prompt


def _pool(task: Any) -> ShotPool:
    pool = getattr(task, "_shot_pool", None)
    if pool is None:
        raise UserError(f"task {task.id}: few-shot rows were not loaded")
    return pool  # type: ignore[no-any-return]


def _exclude_self(task: Any) -> bool:
    flag = task.fewshot.exclude_self
    return _pool(task).own if flag is None else bool(flag)


def _choose(task: Any, pool: ShotPool, fields: dict[str, Any], line: int) -> list[int]:
    """Indices of the pool rows that are the shots of the example at ``line``: one row
    more than needed is drawn, and a row equal to the example dropped (as lm-eval does),
    so the cost does not grow with the pool. Should the pool hold the example more than
    once, every copy is left out and ``n`` other rows are still taken (lm-eval's
    first_n takes the first rows that are not the example; its random sampler draws
    again from the rows that are not)."""
    cfg = task.fewshot
    exclude = _exclude_self(task)
    group = pool.candidates(cfg.match, fields)

    def others() -> Iterator[int]:  # the group's rows that are not the example, in order
        return (i for i in group if not exclude or pool.rows[i].fields != fields)

    if cfg.sampler == "first_n":
        return list(itertools.islice(others(), cfg.n))
    want = min(len(group), cfg.n + (1 if exclude else 0))
    rng = random.Random(f"{cfg.seed if cfg.seed is not None else pool.seed}:{line}")
    picked = rng.sample(group, want)
    if exclude:
        picked = [i for i in picked if pool.rows[i].fields != fields]
        if len(picked) < cfg.n:  # more than one copy of the example was drawn
            rest = list(others())
            picked = rng.sample(rest, min(cfg.n, len(rest)))
    return picked[: cfg.n]
