"""``run_search``: hyperparameter search with Optuna over the config's declared space.

Each trial is a full ``train`` run (its own output folder under ``OUT/search/``) with
the trial's values put into the config; its objective is the validation measure of the
run's best checkpoint (``validation.metric``): the accuracy, maximized, when the
validation completions form a label set (or the config asks for it), else the loss,
minimized. ``auto`` is resolved once, on the curated data, before the first trial, so
that every trial is ranked by the same measure. Samplers: grid (every combination), random and TPE (Bergstra et al. 2011,
"Algorithms for Hyper-Parameter Optimization"), all seeded. The trials table
(trials.csv and trials.jsonl) is rewritten after each trial, so an interrupted search
keeps what it found; best.yaml is the config of the best trial, ready for
``finetune train``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from finetune.config.schema import FinetuneConfig, config_record
from finetune.config.space import SearchParam, searchable, with_values
from finetune.train.validation import resolve_metric
from harness.atomic import write_atomic
from harness.data.rows import display_path, resolve_path
from harness.errors import UserError

# user-facing messages (tests assert them exactly)
NO_SEARCH = "{config}: no `search` section; declare the space to search there"
GRID_VALUES = (
    "search.space.{name}: the grid sampler needs a finite set of values: give `choices`, "
    "or a `step` for this real-valued range"
)
ALL_FAILED = "every trial failed; the first error: {error}"

OBJECTIVES = {"accuracy": "best_val_accuracy", "loss": "best_val_loss"}


@dataclass
class SearchResult:
    """What a search produced."""

    output_dir: Path
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    """The best trial's row."""
    best_config: Path | None


def grid_values(name: str, param: SearchParam, kind: type) -> list[Any]:
    """The values of one setting on the grid."""
    if param.choices is not None:
        return [kind(v) for v in param.choices]
    assert param.low is not None and param.high is not None
    if kind is int:
        step = int(param.step or 1)
        return list(range(int(param.low), int(param.high) + 1, step))
    if param.step is None:
        raise UserError(GRID_VALUES.format(name=name))
    count = int(math.floor((param.high - param.low) / param.step + 1e-9)) + 1
    return [round(param.low + i * param.step, 12) for i in range(count)]


def suggest(trial: Any, name: str, param: SearchParam, kind: type) -> Any:
    """The trial's value of one setting."""
    if param.choices is not None:
        return kind(trial.suggest_categorical(name, [kind(v) for v in param.choices]))
    assert param.low is not None and param.high is not None
    if kind is int:
        step = int(param.step or 1)
        return trial.suggest_int(
            name, int(param.low), int(param.high), step=step, log=param.log and step == 1
        )
    return trial.suggest_float(
        name, param.low, param.high, step=None if param.log else param.step, log=param.log
    )


def _sampler(name: str, space: dict[str, list[Any]], seed: int) -> Any:
    import optuna

    if name == "grid":
        return optuna.samplers.GridSampler(space, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def run_search(
    config: FinetuneConfig,
    *,
    trials: int | None = None,
    sampler: str | None = None,
    out: str | None = None,
    console: Any = None,
    progress: bool = True,
) -> SearchResult:
    """Search the config's space (see the module docstring); ``trials`` and ``sampler``
    override the config's."""
    import optuna
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from finetune.train.run import train

    if config.search is None:
        name = display_path(config.source_path) if config.source_path else "config"
        raise UserError(NO_SEARCH.format(config=name))
    if trials is not None and trials < 1:
        raise UserError(f"--trials: must be >= 1, got {trials}")
    spec = config.search
    kinds = searchable(FinetuneConfig)
    method = sampler or spec.sampler
    grid: dict[str, list[Any]] = {}
    if method == "grid":
        grid = {n: grid_values(n, p, kinds[n]) for n, p in spec.space.items()}
    n_trials = trials or spec.trials
    if grid:
        n_trials = min(n_trials, math.prod(len(v) for v in grid.values()))
    folder = resolve_path(out, Path.cwd()) if out else config.output_dir / "search"
    console = console or Console(stderr=True)
    metric = search_metric(config)
    key = OBJECTIVES[metric]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if metric == "accuracy" else "minimize",
        sampler=_sampler(method, grid, spec.seed),
    )
    rows: list[dict[str, Any]] = []
    columns = [
        TextColumn("search ({task.fields[method]})", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}", markup=False),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task("search", total=n_trials, method=method, best="-")

        def objective(trial: Any) -> float:
            values = {n: suggest(trial, n, p, kinds[n]) for n, p in spec.space.items()}
            row: dict[str, Any] = {"trial": trial.number, **values, "metric": metric}
            row.update(state="failed", best_val_loss=None, best_val_accuracy=None)
            row.update(best_step=None, output=None, error="")
            rows.append(row)
            started = time.monotonic()
            try:
                run = with_values(config, values)
                run.validation.metric = metric  # every trial ranked by the same measure
                run.output = str(folder / f"trial-{trial.number:03d}")
                result = train(run, overwrite=True)
                m = result.manifest
                row.update(state="complete", best_val_loss=m["best_val_loss"])
                row.update(best_val_accuracy=m["best_val_accuracy"])
                row.update(best_step=m["best_step"], output=run.output)
                return float(row[key])
            except (UserError, ValueError) as exc:
                row["error"] = str(exc).splitlines()[0]
                raise
            finally:
                row["seconds"] = round(time.monotonic() - started, 2)
                write_trials(folder, rows)
                done = [r for r in rows if r["state"] == "complete"]
                shown = f"{best_row(done)[key]:.4f}" if done else "-"
                bar.update(task, advance=1, best=shown)
                if not progress:  # no bar: one plain line per trial, never silent
                    console.print(trial_line(row, key, n_trials), markup=False, highlight=False)

        # a failed trial (say, a combination the model refuses) is recorded, not fatal
        study.optimize(objective, n_trials=n_trials, catch=(UserError, ValueError))
    return _finish(config, folder, rows, console)


def _finish(
    config: FinetuneConfig, folder: Path, rows: list[dict[str, Any]], console: Any
) -> SearchResult:
    done = [r for r in rows if r["state"] == "complete"]
    if not done:
        raise UserError(ALL_FAILED.format(error=rows[0]["error"] if rows else "no trials"))
    best = best_row(done)
    name = {"best_val_loss": "validation loss", "best_val_accuracy": "validation accuracy"}
    key = OBJECTIVES[best["metric"]]
    assert config.search is not None
    values = {name: best[name] for name in config.search.space}
    chosen = config_record(with_values(config, values))
    chosen.pop("search", None)
    path = folder / "best.yaml"
    header = f"# best of {len(done)} trial(s): trial {best['trial']}, "
    header += f"best {name[key]} {best[key]:.6f}\n"
    write_atomic(path, header + yaml.safe_dump(chosen, sort_keys=False, allow_unicode=True))
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    console.print(
        f"best trial {best['trial']}: {name[key]} {best[key]:.4f} ({shown}); "
        f"config: {display_path(path)}",
        markup=False,
        highlight=False,
    )
    return SearchResult(output_dir=folder, trials=rows, best=best, best_config=path)


def search_metric(config: FinetuneConfig) -> str:
    """``validation.metric`` with auto resolved on the config's curated validation rows
    (accuracy when they form a label set, else loss)."""
    v = config.validation
    if v.metric != "auto":
        return v.metric
    from finetune.data.curate import curate

    validation = curate(config, config.eval_data).validation
    return resolve_metric(v.metric, v.max_labels, validation)[0]


def trial_line(row: dict[str, Any], key: str, n_trials: int) -> str:
    """``trial 2/6 complete: best_val_accuracy 0.9062 (training.lr=0.03) in 12.3 s``."""
    value = row.get(key)
    shown = f"{key} {value:.4f}" if isinstance(value, float) else row.get("error", "")
    values = ", ".join(f"{k}={v}" for k, v in row.items() if "." in k)
    return (
        f"trial {row['trial'] + 1}/{n_trials} {row['state']}: {shown} ({values}) "
        f"in {row['seconds']} s"
    )


def best_row(done: list[dict[str, Any]]) -> dict[str, Any]:
    """The best complete trial: highest accuracy (lowest loss breaking ties) when the
    search ranks by accuracy, else lowest loss; the earlier trial on a full tie."""
    if done[0]["metric"] == "accuracy":
        return max(done, key=lambda r: (r["best_val_accuracy"], -r["best_val_loss"], -r["trial"]))
    return min(done, key=lambda r: (r["best_val_loss"], r["trial"]))


def write_trials(folder: Path, rows: list[dict[str, Any]]) -> None:
    """trials.jsonl and trials.csv (same rows), atomically."""
    write_atomic(folder / "trials.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    names = list(dict.fromkeys(itertools.chain.from_iterable(rows)))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(folder / "trials.csv", buffer.getvalue())
