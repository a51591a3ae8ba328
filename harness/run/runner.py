"""Run a suite end to end: data -> records -> model -> metrics -> gates -> results.

``prepare_suite`` reads and checks every data file without a model (what ``harness
validate`` runs); ``run_suite`` then loads the model once, runs each task with a
progress bar, scores the metrics with bootstrap CIs over the stored per-example
statistics, checks the gates and returns the run's ``Results`` (harness.results.schema;
docs/results.md).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.gates import verdicts as gates
from harness.metrics.finite import none_if_nan
from harness.model.factory import source_of
from harness.results.finetune_record import finetune_record
from harness.results.schema import RESULTS_SCHEMA_VERSION, Results
from harness.version import __version__

if TYPE_CHECKING:
    from harness.tasks import AnyRecord

SAME_OUTPUT = (
    "task {task}: metric {metric!r} gives {output!r}, which metric {first!r} already gives; "
    "rename the plug-in's key or drop one of the metrics"
)


@dataclass
class PreparedTask:
    task: Any
    records: list[AnyRecord]
    data_path: str | None  # None for a `datasets` source
    data_sha256: str | None


def prepare_suite(suite: Any, skip: set[int] | frozenset[int] = frozenset()) -> list[PreparedTask]:
    """Load, sample and check the data of every task but the ``skip`` indices (``harness
    validate --offline``: tasks whose data needs the network); all errors are reported
    together."""
    from harness.audits.base import locate as suite_error
    from harness.data.rows import display_path, load_rows, sample_rows, sha256_file
    from harness.run import chat_setup
    from harness.tasks import field_typos, prepare

    prepared = []
    errors: list[str] = []
    templates: dict[str, Any] = {}
    for i, task in enumerate(suite.tasks):
        if i in skip:
            continue
        problems = chat_setup.chat_problems(suite, task, i)
        if problems:
            errors += [suite_error(suite, where, msg) for where, msg in problems]
            continue
        source = task.data
        base_dir = suite.resolve(".")
        try:
            if source is None:  # an lm_eval task: lm-eval's own documents
                rows = all_rows = _lm_eval_rows(suite, task, i)
            else:
                rows = all_rows = load_rows(source, base_dir)
            limit = task.limit if task.limit is not None else suite.limit
            if limit is not None:
                rows = sample_rows(rows, limit, suite.seed)
            if isinstance(source, str):
                path = suite.resolve(source)
                label, digest = display_path(path), sha256_file(path)
            else:
                label, digest = None, None
            file = label or (f"dataset {source.dataset}" if source else f"lm-eval {task.task}")
            typos = field_typos(task, all_rows, file)
            if typos:
                errors += [
                    suite_error(suite, _written(suite, ("tasks", i, *sub)), m) for sub, m in typos
                ]
                continue
            chat_setup.attach(suite, task, i, templates)
            if getattr(task, "fewshot", None) is not None:
                problem = _attach_shots(task, all_rows, rows, file, base_dir, suite.seed)
                if problem:
                    errors.append(suite_error(suite, ("tasks", i, "fewshot", "n"), problem))
                    continue
            records = prepare(task, rows, file)
        except UserError as exc:
            errors.extend(exc.messages)
            continue
        prepared.append(PreparedTask(task, records, label, digest))
    if not errors:
        from harness.audits import data_problems

        errors = data_problems(suite, prepared)
    if errors:
        raise UserError(errors)
    return prepared


def _lm_eval_rows(suite: Any, task: Any, i: int) -> list[Any]:
    """The documents of an lm_eval task as rows; a task lm-eval cannot build is an error
    located at the task's name."""
    from harness.audits.base import locate as suite_error

    try:
        return list(task.load_rows())
    except ValueError as exc:
        raise UserError(suite_error(suite, ("tasks", i, "task"), str(exc))) from None


def _attach_shots(
    task: Any, own_rows: list[Any], rows: list[Any], file: str, base_dir: Any, seed: int
) -> str | None:
    """Load the rows a task's shots come from (its ``fewshot.data``, else its own rows,
    before any ``limit``); returns the problem when there are too few of them."""
    from harness.data.rows import display_path, load_rows
    from harness.tasks import shots

    source = task.fewshot.data
    if source is None:
        shots.attach_pool(task, own_rows, file, own=True, seed=seed)
    else:
        name = display_path(source) if isinstance(source, str) else f"dataset {source.dataset}"
        shots.attach_pool(task, load_rows(source, base_dir), name, own=False, seed=seed)
    return shots.too_few(task, rows)


def _written(suite: Any, path: tuple[Any, ...]) -> tuple[Any, ...]:
    """``path`` as the suite wrote it: without the item index of a list the schema made
    from one value (``reference: summary`` is ``reference[0]`` once loaded)."""
    marks = getattr(suite, "_marks", None)
    if isinstance(path[-1], int) and (marks is None or path not in marks.values):
        return path[:-1]
    return path


def score_task(prepared: PreparedTask, suite: Any) -> dict[str, dict[str, Any]]:
    """Every metric of one task with its bootstrap CI; per-example stats go to records."""
    from harness.metrics import score_stats
    from harness.metrics.resolve import resolve_metric

    task = prepared.task
    info = task.info()
    values: dict[str, dict[str, Any]] = {}
    for spec in task.metrics:
        metric = resolve_metric(spec.name, suite.resolve("."))
        params = {**metric.params, **spec.params}
        stats = metric.stats(prepared.records, params, info)
        for rec, row in zip(prepared.records, stats, strict=True):
            rec.setdefault("stats", {})[spec.name] = [float(x) for x in row]
        scored = score_stats(
            metric,
            stats,
            params,
            info,
            samples=suite.bootstrap.samples,
            confidence=suite.bootstrap.confidence,
            seed=suite.seed,
        )
        signature = metric.signature(params, info) if getattr(metric, "signature", None) else ""
        for output, entry in scored.items():
            if output in values:  # a plug-in's key can only be known once it has run
                raise UserError(
                    SAME_OUTPUT.format(
                        task=task.id,
                        metric=spec.name,
                        output=output,
                        first=values[output]["metric"],
                    )
                )
            values[output] = {
                **_clean(entry),
                "metric": spec.name,
                "params": dict(spec.params),
                "higher_is_better": metric.higher_is_better,
                "signature": signature,
            }
    return values


def _clean(entry: dict[str, Any]) -> dict[str, Any]:
    """NaN is not valid JSON: store it as null."""
    return {k: none_if_nan(v) for k, v in entry.items()}


def run_suite(
    suite: Any,
    *,
    show_progress: bool = True,
    console: Any = None,
    on_model_loaded: Callable[[Any], None] | None = None,
) -> Results:
    """Run ``suite`` and return its results (not yet written)."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    prepared = prepare_suite(suite)
    from harness.audits import preflight, run_audits
    from harness.model.factory import open_model, unwrapped

    preflight(suite)
    from harness.model.distributed import join

    # Launched as one of several processes: each loads the model on its own device and
    # scores its share of every model call; only the main one holds the cache and shows
    # progress (docs/scale-out.md).
    group = join(cpu=suite.model.device == "cpu")
    source = source_of(suite.model)
    if group is not None:
        show_progress = show_progress and group.is_main

    from harness.model.cache import open_run_cache

    main_process = group is None or group.is_main
    cache = open_run_cache(console) if suite.cache and main_process else None
    t_load = time.perf_counter()
    try:
        lm = open_model(source, cache=cache, group=group)
    except BaseException:
        if cache is not None:
            cache.close()
        raise
    load_s = time.perf_counter() - t_load
    if on_model_loaded is not None:
        on_model_loaded(unwrapped(lm))
    tasks_out: dict[str, Any] = {}
    timings: dict[str, float] = {}
    try:  # every answer is committed as its chunk completes; Ctrl-C closes the file cleanly
        with _progress(show_progress, console) as bar:
            for p in prepared:
                t = time.perf_counter()
                advance = bar(p.task.id, len(p.records))
                from harness.tasks import mark_truncation, run
                from harness.tasks.context import chat_of

                run(p.task, p.records, lm, batch_size=suite.batch_size, advance=advance)
                n_truncated = mark_truncation(p.task, p.records, lm)
                metrics = score_task(p, suite)
                timings[p.task.id] = round(time.perf_counter() - t, 3)
                tasks_out[p.task.id] = {
                    "kind": p.task.scored_kind,
                    "n_examples": len(p.records),
                    "n_truncated": n_truncated,
                    "metrics": metrics,
                    "records": p.records,
                }
                chat = chat_of(p.task)
                if chat is not None:  # template hash, system prompt, a rendered example
                    head = dict(p.records[0]) if p.records else {}
                    example = head.get("prompt", head.get("text"))
                    tasks_out[p.task.id]["chat"] = chat.describe(
                        None if example is None else str(example)
                    )
                if hasattr(p.task, "provenance"):  # an lm_eval task's task, version, shots
                    tasks_out[p.task.id]["lm_eval"] = p.task.provenance()
            audits_out, audit_values = run_audits(
                suite,
                lm,
                prepared,
                tasks_out,
                progress=bar,
                model_source=source,
                run_task=lambda task, records, model, advance=None: run(
                    task, records, model, batch_size=suite.batch_size, advance=advance
                ),
                load_model=lambda other: open_model(other, cache=cache, group=group),
            )
    finally:
        cache_stats = cache.stats() if cache is not None else None
        if cache is not None:
            cache.close()
    from harness.results.store import mark_undefined

    mark_undefined(tasks_out)  # nan/inf -> null with a reason, which the gate message gives
    verdicts = gates.evaluate(suite.gates, {**gates.task_values(tasks_out), **audit_values})
    # weights load on the first answer not in the cache (never, on a warm re-run)
    provenance = _provenance(suite, prepared, lm, started, load_s + lm.load_s, timings, t0)
    provenance["cache"] = cache_stats
    provenance["processes"] = group.size if group is not None else 1
    return Results.model_validate(
        {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "harness_version": __version__,
            "suite": suite.model_dump(mode="json"),
            "provenance": provenance,
            "tasks": tasks_out,
            "audits": audits_out,
            "gates": verdicts,
            "verdict": gates.overall(verdicts),
            "finetune": finetune_record(lm.adapter.path if lm.adapter else None),
        }
    )


def _provenance(
    suite: Any,
    prepared: list[PreparedTask],
    lm: Any,
    started: datetime,
    load_s: float,
    timings: dict[str, float],
    t0: float,
) -> dict[str, Any]:
    from harness.data.rows import display_path, sha256_file

    src = suite.source_path
    return {
        "suite": {"path": display_path(src), "sha256": sha256_file(src)} if src else None,
        "data": [
            {"task": p.task.id, "path": p.data_path, "sha256": p.data_sha256} for p in prepared
        ],
        "model": {**lm.base.as_dict(), "adapter_base": lm.adapter_base},
        "adapter": lm.adapter.as_dict() if lm.adapter else None,
        "fingerprint": lm.fingerprint,
        "versions": library_versions(),
        "seed": suite.seed,
        "device": str(lm.device),
        "loading": lm.loading,
        "max_length": lm.max_length,
        "batch_size": suite.batch_size,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "timings": {
            "load_s": round(load_s, 3),
            "tasks": timings,
            "total_s": round(time.perf_counter() - t0, 3),
        },
    }


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"harness": __version__, "python": platform.python_version()}
    for name in (
        "torch",
        "transformers",
        "peft",
        "tokenizers",
        "sacrebleu",
        "rouge-score",
        "scikit-learn",
        "numpy",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


@contextmanager
def _progress(
    enabled: bool, console: Any
) -> Iterator[Callable[[str, int], Callable[[float], None]]]:
    """A rich progress bar per task, showing examples/s; a no-op when disabled."""
    if not enabled:
        yield lambda _name, _total: lambda _n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} ex/s" if speed else "- ex/s", style="progress.data.speed")

    progress = Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )

    def new_bar(name: str, total: int) -> Callable[[float], None]:
        task_id = progress.add_task(name, total=total)
        return lambda n: progress.advance(task_id, n)

    with progress:
        yield new_bar
