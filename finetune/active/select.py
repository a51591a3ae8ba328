"""Active learning: which unlabelled rows should a person label next?

``finetune select`` scores every row of a pool with the model (base, or base plus the
current adapter) on a suite's classification task, exactly as the harness scores that
task (harness.tasks.score_choices: the log-likelihood of each choice after the rendered
prompt, softmax over the choices), reads the hidden states at each prompt's end when the
strategy clusters them (finetune.active.embed), and keeps the ``budget`` rows the
strategy ranks first (finetune.active.strategies: ``entropy``, ``margin``, ``random``,
``balanced``, ``cluster-margin``, ``badge``, ``typical``; Settles 2009, "Active Learning
Literature Survey", for the first three).

The chosen rows keep all their fields and gain ``score``, ``rank`` (1 = label first),
``strategy`` and ``why`` (the row's cluster, its predicted choice and a sentence saying
why it was chosen); they are written as JSON lines, atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finetune.active.strategies import STRATEGIES as REGISTRY
from finetune.active.strategies import Pick, entropy, margin
from harness.errors import UserError, row_error
from harness.tasks import ChoiceRequest, kind_of, render, score_choices
from harness.tasks.context import chat_settings

if TYPE_CHECKING:
    from harness.config.suite import ClassificationTask, Suite
    from harness.data.rows import Row
    from harness.model.language_model import LanguageModel

STRATEGIES = tuple(REGISTRY)
DEFAULT_STRATEGY = "badge"  # the best arm of bench/active_learning.py (after typical)
HIGHEST_FIRST = {"entropy": True, "margin": False, "random": True}
OUTPUT_FIELDS = ("score", "rank", "strategy", "why")
MAX_ERRORS = 20

# user-facing messages (tests assert them exactly)
UNKNOWN_STRATEGY = "--strategy: unknown strategy '{name}'; available: " + ", ".join(STRATEGIES)
BUDGET_LOW = "--budget: must be >= 1, got {budget}"
BUDGET_HIGH = "--budget: must be <= the pool's {n} rows, got {budget}"
MISSING_FIELD = "missing field '{field}' (the prompt of task '{task}' reads it)"
RESERVED_FIELD = "field '{field}' would be overwritten by the selection's output; rename it"
NO_CLASSIFICATION = "{file}: no classification task to select rows for"
SEVERAL_TASKS = "--task: {file} has several classification tasks ({tasks}); name one"
NO_SUCH_TASK = "--task: no task '{task}' in {file}; classification tasks: {tasks}"
NOT_CLASSIFICATION = "--task: task '{task}' is a {kind} task; select needs a classification task"
UNSUPPORTED = "--task: task '{task}' uses {what}; select supports a fixed choice list only"
OUT_IS_POOL = "--out: {path} is the pool itself; write the selection to another file"


# -- ranking (pure functions over choice probabilities) ----------------------------------


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise UserError(UNKNOWN_STRATEGY.format(name=strategy))


def check_budget(budget: int, n_rows: int) -> None:
    if budget < 1:
        raise UserError(BUDGET_LOW.format(budget=budget))
    if budget > n_rows:
        raise UserError(BUDGET_HIGH.format(n=n_rows, budget=budget))


def scores(strategy: str, probs: np.ndarray | None, n_rows: int, seed: int) -> np.ndarray:
    """Each row's score under ``entropy``, ``margin`` or ``random`` (``probs`` is unused by
    ``random``); the other strategies score only the rows they choose (``pick``)."""
    check_strategy(strategy)
    if strategy == "random":
        return np.random.default_rng(seed).random(n_rows)
    if strategy not in HIGHEST_FIRST:
        raise ValueError(f"strategy {strategy!r} has no score per row; use pick()")
    if probs is None:
        raise ValueError(f"strategy {strategy!r} needs the choice probabilities")
    return entropy(probs) if strategy == "entropy" else margin(probs)


def rank(values: np.ndarray, strategy: str) -> np.ndarray:
    """Row indices, the row to label first first; ties keep the pool's order."""
    check_strategy(strategy)
    key = -np.asarray(values) if HIGHEST_FIRST[strategy] else np.asarray(values)
    return np.argsort(key, kind="stable")


def pick(
    strategy: str,
    budget: int,
    *,
    n_rows: int,
    seed: int,
    probs: np.ndarray | None = None,
    states: np.ndarray | None = None,
) -> list[Pick]:
    """The ``budget`` rows to label under ``strategy``, in rank order, with their reasons."""
    check_strategy(strategy)
    check_budget(budget, n_rows)
    return REGISTRY[strategy].choose(probs, states, n_rows, budget, seed)


def choose(
    strategy: str,
    probs: np.ndarray | None,
    budget: int,
    *,
    n_rows: int,
    seed: int,
    states: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """(row index, score) of the ``budget`` rows to label, in rank order."""
    chosen = pick(strategy, budget, n_rows=n_rows, seed=seed, probs=probs, states=states)
    return [(p.index, p.score) for p in chosen]


# -- the pool ----------------------------------------------------------------------


@dataclass
class Pool:
    """Unlabelled rows and their rendered prompts."""

    file: str
    rows: list[Row]
    prompts: list[str]


def prompts_for(task: ClassificationTask, rows: Sequence[Row], file: str) -> list[str]:
    """Render the task's prompt over each row; every bad row is reported (``FILE line N``)."""
    from jinja2 import TemplateError

    from harness.tasks.prompt_template import template_fields

    template = task.prompt or ""  # check_supported refused a task without one
    needed = template_fields(template)
    prompts: list[str] = []
    errors: list[str] = []
    for row in rows:
        problems = [
            MISSING_FIELD.format(field=f, task=task.id) for f in needed if row.fields.get(f) is None
        ]
        problems += [RESERVED_FIELD.format(field=f) for f in OUTPUT_FIELDS if f in row.fields]
        if not problems:
            try:
                prompts.append(render(template, row.fields))
            except TemplateError as exc:
                problems.append(f"prompt: {exc}")
        errors += [row_error(file, row.line, p) for p in problems]
    if errors:
        more = len(errors) - MAX_ERRORS
        raise UserError(errors[:MAX_ERRORS] + ([f"{file}: {more} more errors"] if more > 0 else []))
    return prompts


def read_pool(path: str | Path, task: ClassificationTask) -> Pool:
    """Read a .jsonl/.csv/.tsv pool (relative to the cwd) and render its prompts."""
    from harness.data.rows import display_path, load_rows

    full = Path(path).expanduser().resolve()
    rows = load_rows(full, Path.cwd())
    file = display_path(full)
    return Pool(file=file, rows=rows, prompts=prompts_for(task, rows, file))


def choice_probabilities(
    lm: LanguageModel,
    task: ClassificationTask,
    prompts: Sequence[str],
    *,
    batch_size: int,
    advance: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(rows x choices) probabilities, scored as the harness scores the task."""
    check_supported(task)
    choices = list(task.fixed_choices)
    records: list[ChoiceRequest] = [{"prompt": p, "choices": choices} for p in prompts]
    if task.target_delimiter:
        for rec in records:
            rec["target_delimiter"] = task.target_delimiter
    score_choices(records, lm, batch_size=batch_size, advance=advance)
    return np.array([r["probs"] for r in records], dtype=np.float64).reshape(
        len(records), len(choices)
    )


def pool_states(
    lm: LanguageModel,
    task: ClassificationTask,
    prompts: Sequence[str],
    *,
    batch_size: int,
    advance: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(rows x width) last hidden states at each prompt's end (finetune.active.embed)."""
    from finetune.active.embed import prompt_states

    check_supported(task)
    first = (task.target_delimiter or "") + list(task.fixed_choices)[0]
    return prompt_states(lm, prompts, first, batch_size=batch_size, advance=advance)


def selected_rows(
    pool: Pool,
    chosen: Sequence[Pick | tuple[int, float]],
    strategy: str,
    *,
    probs: np.ndarray | None = None,
    choices: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The chosen rows with all their fields plus score, rank, strategy and why (the
    row's cluster or null, the predicted choice when the model scored the pool, and the
    strategy's reason)."""
    out = []
    for n, item in enumerate(chosen, start=1):
        p = item if isinstance(item, Pick) else Pick(item[0], item[1])
        why: dict[str, Any] = {"cluster": p.cluster}
        if probs is not None and choices:
            row = np.asarray(probs[p.index])
            top = int(np.argmax(row))
            why["predicted"] = choices[top]
            why["p_predicted"] = round(float(row[top]), 6)
        why["reason"] = p.reason
        fields = pool.rows[p.index].fields
        out.append({**fields, "score": p.score, "rank": n, "strategy": strategy, "why": why})
    return out


def write_selection(rows: Sequence[dict[str, Any]], out: Path) -> None:
    """JSON lines, written atomically (the old file survives a failed write)."""
    from harness.atomic import write_atomic

    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    write_atomic(out, text)


# -- the suite's task, and the command's entry point -----------------------------------


def classification_task(suite: Suite, task_id: str | None) -> ClassificationTask:
    """The classification task named by ``--task`` (or the suite's only one)."""
    from harness.data.rows import display_path

    file = display_path(suite.source_path) if suite.source_path else "suite"
    candidates = [t for t in suite.tasks if kind_of(t).has_choices]
    names = ", ".join(t.id for t in candidates) or "none"
    if task_id is None:
        if not candidates:
            raise UserError(NO_CLASSIFICATION.format(file=file))
        if len(candidates) > 1:
            raise UserError(SEVERAL_TASKS.format(file=file, tasks=names))
        check_supported(candidates[0], suite)  # type: ignore[arg-type]
        return candidates[0]  # type: ignore[return-value]
    try:
        task = suite.task(task_id)
    except KeyError:
        raise UserError(NO_SUCH_TASK.format(task=task_id, file=file, tasks=names)) from None
    if not kind_of(task).has_choices:
        raise UserError(NOT_CLASSIFICATION.format(task=task_id, kind=task.kind))
    check_supported(task, suite)  # type: ignore[arg-type]
    return task  # type: ignore[return-value]


def check_supported(task: ClassificationTask, suite: Suite | None = None) -> None:
    """Selection scores the task's prompt over pool rows with its fixed choices: a task
    that builds its contexts otherwise (each row's own choices, shots, a description,
    partial scoring) is refused rather than scored differently from the harness."""
    unsupported = [
        name
        for name, used in (
            ("choices from each row", not isinstance(task.choices, list)),
            ("fewshot", task.fewshot is not None),
            ("description", task.description is not None),
            ("continuation", task.continuation is not None),
            ("messages", task.messages is not None),
            ("chat", chat_settings(suite, task) is not None),
        )
        if used
    ]
    if unsupported:
        raise UserError(UNSUPPORTED.format(task=task.id, what=", ".join(unsupported)))


@contextmanager
def _bar(enabled: bool, console: Any, title: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over the pool's rows (a no-op when disabled)."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as bar:
        task_id = bar.add_task(title, total=total)
        yield lambda n: bar.advance(task_id, n)


def default_out(pool: str | Path, strategy: str) -> Path:
    """``POOL.<strategy>.jsonl`` beside the pool."""
    p = Path(pool).expanduser().resolve()
    return p.with_name(f"{p.stem}.{strategy}.jsonl")


def select(
    suite: Suite,
    *,
    pool: str | Path,
    budget: int,
    strategy: str = DEFAULT_STRATEGY,
    task_id: str | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    batch_size: int | None = None,
    console: Any = None,
    progress: bool = False,
) -> tuple[Path, list[dict[str, Any]]]:
    """Choose ``budget`` rows of ``pool`` to label and write them; (output path, rows).

    The model is the suite's (``harness.config.suite.apply_overrides`` sets --model/--adapter);
    ``seed`` defaults to the suite's. Bad input raises UserError before any model loads.
    """
    from harness.data.rows import display_path

    check_strategy(strategy)
    task = classification_task(suite, task_id)
    data = read_pool(pool, task)
    check_budget(budget, len(data.rows))
    target = Path(out).expanduser().resolve() if out is not None else default_out(pool, strategy)
    if target == Path(pool).expanduser().resolve():
        raise UserError(OUT_IS_POOL.format(path=display_path(target)))
    needs = REGISTRY[strategy]
    probs = states = None
    if needs.needs_probs or needs.needs_states:
        from harness.model.factory import source_of
        from harness.model.language_model import load_model

        lm = load_model(source_of(suite.model))
        size = batch_size or suite.batch_size
        if needs.needs_probs:
            title = f"{task.id}: scoring the pool"
            with _bar(progress, console, title, len(data.prompts)) as advance:
                probs = choice_probabilities(
                    lm, task, data.prompts, batch_size=size, advance=advance
                )
        if needs.needs_states:
            title = f"{task.id}: hidden states of the pool"
            with _bar(progress, console, title, len(data.prompts)) as advance:
                states = pool_states(lm, task, data.prompts, batch_size=size, advance=advance)
    chosen = pick(
        strategy,
        budget,
        n_rows=len(data.rows),
        seed=suite.seed if seed is None else seed,
        probs=probs,
        states=states,
    )
    rows = selected_rows(data, chosen, strategy, probs=probs, choices=list(task.fixed_choices))
    write_selection(rows, target)
    return target, rows
