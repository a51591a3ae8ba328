"""The offline half of `kind: lm_eval` tasks (harness.tasks.lm_eval): an lm-eval task's
config found by name in lm-eval's task index, without building the task (no dataset
download, no ``!function`` import), so that suite loading and ``harness validate`` know
the kind its records score as and the settings a generation task reads.

Its ``output_type`` gives the scored kind (``SCORED_KIND``); a ``generate_until`` task's
``generation_kwargs``, first filter pipeline and ``exact_match`` options give
``GenerationSettings``: ``max_gen_toks`` and ``until`` become ``max_new_tokens`` and
``stop``; the ``regex`` filter becomes ``extract`` (``group_select`` 0 or -1 only) and
``take_first`` needs nothing (one generation per example); the ``exact_match`` options
``regexes_to_ignore``, ``ignore_case`` and ``ignore_punctuation`` become ``normalize``.
Everything else (sampling settings, other filters, further pipelines) is listed in
``not_applied``, which the task's results keep.
"""

from __future__ import annotations

import difflib
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# user-facing messages (tests assert them exactly)
LMEVAL_MISSING = (
    "lm_eval tasks need lm-evaluation-harness: pip install 'llm-release-harness[lmeval]'"
)
NO_SUCH_TASK = "no lm-eval task '{task}'{hint}"
NOT_A_TASK = "'{task}' is an lm-eval {what} of several tasks; name one of them, e.g. '{first}'"
PYTHON_TASK = "'{task}' is an lm-eval task written as a Python class; only YAML tasks are supported"
UNSUPPORTED = "lm-eval output_type {output_type} is not supported"
LOAD_FAILED = "lm-eval task '{task}': its documents could not be loaded{network}: {reason}"
HUB_DATA = " (its data is the hub dataset '{dataset}', which needs the network)"
NO_SHOTS = "num_fewshot {n}: lm-eval task '{task}' has no few-shot documents"
NO_DOCS = "lm-eval task '{task}' has no evaluation documents"
BAD_DOC = "lm-eval could not build the requests of this document: {reason}"
MULTIPLE_TARGETS = "a list of gold targets is not supported (lm-eval's multiple_target)"
GOLD_NOT_CHOICE = "gold {gold!r} is not among the {n} choices"
EMPTY_TEXT = "the text to score is empty"
FOLDER_NOT_FOUND = "folder not found: {path}"
LMEVAL_DATA = "an lm_eval task reads the lm-eval task's own documents: remove `data`"

SCORED_KIND = {
    "multiple_choice": "classification",
    "generate_until": "generation",
    "loglikelihood_rolling": "perplexity",
}
"""lm-eval's output_type -> the kind of this harness whose records it becomes."""

# `datasets` builders that read local files (a dataset_path that is one of these, or a
# local folder, needs no network)
LOCAL_BUILDERS = frozenset(
    {"json", "csv", "parquet", "text", "arrow", "pandas", "xml", "sql", "webdataset"}
)
DEFAULT_MAX_GEN_TOKS = 256  # lm_eval.defaults.DEFAULT_MAX_GEN_TOKS
GENERATION_KEYS_APPLIED = {"until", "max_gen_toks"}


class LmEvalMissing(ValueError):
    """lm-eval is not installed (located at the task's ``kind``)."""


class LmEvalError(ValueError):
    """The named lm-eval task cannot be used (located at the task's ``task``)."""


def refuse_data(value: Any) -> None:
    """An lm_eval task's ``data`` must be absent (the suite schema's validator)."""
    if value is not None:
        raise ValueError(LMEVAL_DATA)
    return None


def require_lm_eval() -> Any:
    """The ``lm_eval`` package, or LmEvalMissing naming the extra to install."""
    try:
        import lm_eval
    except ImportError:
        raise LmEvalMissing(LMEVAL_MISSING) from None
    return lm_eval


# -- generation settings --------------------------------------------------------------


@dataclass(frozen=True)
class Extract:
    """An answer extraction read from lm-eval's ``regex`` filter (the attributes the
    generation kind's ``extract`` setting has)."""

    regex: str
    group: int | None = None
    select: Literal["first", "last"] = "first"
    fallback: str = "[invalid]"


@dataclass(frozen=True)
class Normalize:
    """Answer normalization read from lm-eval's ``exact_match`` options (the attributes
    the generation kind's ``normalize`` setting has)."""

    remove: list[str] = field(default_factory=list)
    lower: bool = False
    punctuation: bool = False
    commas: bool = False
    strip: bool = False


@dataclass(frozen=True)
class GenerationSettings:
    """What a generation kind reads of its task, from an lm-eval ``generate_until`` config."""

    max_new_tokens: int
    stop: list[str]
    extract: Extract | None
    normalize: Normalize | None
    filter: str | None
    """Name of the filter pipeline applied (the first), if any."""
    not_applied: list[str]
    """lm-eval settings and filters this harness does not apply, in words."""


def generation_settings(config: dict[str, Any]) -> GenerationSettings:
    """The generation settings of an lm-eval task config (functions unresolved)."""
    delimiter = config.get("fewshot_delimiter", "\n\n")
    kwargs = config.get("generation_kwargs")
    kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
    until = kwargs.get("until", [delimiter])
    stop = [s for s in ([until] if isinstance(until, str) else list(until or [])) if s]
    not_applied = []
    for key, value in kwargs.items():
        if key in GENERATION_KEYS_APPLIED:
            continue
        if key == "do_sample" and not value or key == "temperature" and not value:
            continue  # greedy already
        not_applied.append(f"generation_kwargs.{key}: {value!r} (decoding is greedy)")
    extract, name, skipped = _first_filter(config.get("filter_list"))
    normalize, skipped_metric = _exact_match_options(config.get("metric_list"))
    return GenerationSettings(
        max_new_tokens=int(kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)),
        stop=stop,
        extract=extract,
        normalize=normalize,
        filter=name,
        not_applied=not_applied + skipped + skipped_metric,
    )


def _first_filter(filters: Any) -> tuple[Extract | None, str | None, list[str]]:
    """(extract, the pipeline's name, what is not applied) of lm-eval's filter_list."""
    if not isinstance(filters, list) or not filters:
        return None, None, []
    first, others = filters[0], filters[1:]
    name = str(first.get("name", "none"))
    extract: Extract | None = None
    skipped = [
        f"filter '{f.get('name')}' (only the first filter, '{name}', is applied)" for f in others
    ]
    for step in first.get("filter") or []:
        function = step.get("function")
        select = {0: "first", -1: "last"}.get(step.get("group_select", 0))
        if function == "take_first":
            continue  # one generation per example: it is the first
        if function == "regex" and extract is None and select is not None:
            extract = Extract(
                regex=step.get("regex_pattern", r"#### (\-?[0-9\.\,]+)"),
                select=select,  # type: ignore[arg-type]
                fallback=str(step.get("fallback", "[invalid]")),
            )
            continue
        skipped.append(f"filter '{name}': {function} {_args(step)}".rstrip())
    return extract, name, skipped


def _args(step: dict[str, Any]) -> str:
    args = {k: v for k, v in step.items() if k != "function"}
    return repr(args) if args else ""


def _exact_match_options(metrics: Any) -> tuple[Normalize | None, list[str]]:
    """lm-eval's exact_match options (regexes_to_ignore, ignore_case, ignore_punctuation)
    as a Normalize, which applies them in lm-eval's order."""
    for spec in metrics if isinstance(metrics, list) else []:
        if isinstance(spec, dict) and spec.get("metric") == "exact_match":
            remove = spec.get("regexes_to_ignore") or []
            norm = Normalize(
                remove=[remove] if isinstance(remove, str) else list(remove),
                lower=bool(spec.get("ignore_case", False)),
                punctuation=bool(spec.get("ignore_punctuation", False)),
            )
            skipped = [
                f"exact_match.ignore_numbers: {v!r}" for v in [spec.get("ignore_numbers")] if v
            ]
            return (norm if norm != Normalize() else None), skipped
    return None, []


# -- resolving a task name (offline) --------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """An lm-eval task found in its task index, before it is built."""

    task: str
    output_type: str
    config: dict[str, Any]
    """The task's YAML config, ``!function`` references left unresolved."""
    source: str | None
    """The YAML file that defines it."""

    @property
    def scored_kind(self) -> str:
        return SCORED_KIND[self.output_type]

    @property
    def version(self) -> Any:
        """The task config's own version (``metadata.version``), if any."""
        meta = self.config.get("metadata")
        return meta.get("version") if isinstance(meta, dict) else None

    @property
    def hub_dataset(self) -> str | None:
        """The hub dataset its documents come from (None: local files or folder)."""
        path = self.config.get("dataset_path")
        if not isinstance(path, str) or path in LOCAL_BUILDERS or os.path.isdir(path):
            return None
        return path

    def generation(self) -> GenerationSettings:
        return generation_settings(self.config)

    def not_applied(self) -> list[str]:
        """What of the task's config this harness does not apply, in words (stored in
        the task's results): its own scoring and aggregation (metrics are the suite's),
        repeats, media inputs, and for generation the settings and filters that do not
        map; for other output types, any filter."""
        config, out = self.config, []
        if config.get("process_results") is not None:
            out.append("process_results (its own scoring: the suite's metrics score it)")
        for spec in config.get("metric_list") or []:
            agg = spec.get("aggregation", "mean") if isinstance(spec, dict) else "mean"
            if agg != "mean":
                out.append(f"metric_list {spec.get('metric')!r}: aggregation {agg!r}")
        if int(config.get("repeats", 1) or 1) > 1:
            out.append(f"repeats: {config['repeats']} (one answer per example)")
        out += [f"{key} (text only)" for key in ("doc_to_image", "doc_to_audio") if config.get(key)]
        if self.scored_kind == "generation":
            return out + self.generation().not_applied
        if config.get("filter_list"):
            out.append("filter_list (only generate_until answers are filtered)")
        return out


@functools.lru_cache(maxsize=8)
def _manager(include_path: str | None, defaults: bool) -> Any:
    """lm-eval's TaskManager over ``include_path`` (and its built-in tasks if
    ``defaults``: indexing those takes seconds, so a task found in ``include_path``
    alone never pays for it)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=defaults)


def find_task(task: str, include_path: str | None) -> tuple[Any, Any]:
    """(index entry or None, the manager that indexes it)."""
    if include_path is not None:
        manager = _manager(include_path, False)
        if task in manager.task_index:
            return manager.task_index[task], manager
    manager = _manager(include_path, True)
    return manager.task_index.get(task), manager


def resolve(task: str, include_path: str | Path | None = None) -> Resolved:
    """The lm-eval task named ``task`` (include_path: a folder of local task YAMLs, as
    lm-eval's ``--include_path``). LmEvalMissing without lm-eval; LmEvalError for a name
    that is not one YAML task of a supported output type."""
    require_lm_eval()
    return _resolve(task, str(include_path) if include_path is not None else None)


@functools.lru_cache(maxsize=64)
def _resolve(task: str, include_path: str | None) -> Resolved:
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    entry, manager = find_task(task, include_path)
    if entry is None:
        close = difflib.get_close_matches(task, manager.all_subtasks, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        if include_path is not None and not close:
            hint = f" in {include_path} or lm-eval's own tasks"
        raise LmEvalError(NO_SUCH_TASK.format(task=task, hint=hint))
    if entry.kind in (Kind.GROUP, Kind.TAG):
        what = "tag" if entry.kind is Kind.TAG else "group"
        first = _first_task(entry, manager.task_index, Kind) or "?"
        raise LmEvalError(NOT_A_TASK.format(task=task, what=what, first=first))
    if entry.kind is Kind.PY_TASK:
        raise LmEvalError(PYTHON_TASK.format(task=task))
    if entry.cfg is not None:
        config = dict(entry.cfg)
    else:
        config = load_yaml(entry.yaml_path, resolve_func=False, recursive=True)
    output_type = str(config.get("output_type", "generate_until"))
    if output_type not in SCORED_KIND:
        raise LmEvalError(UNSUPPORTED.format(output_type=output_type))
    source = str(entry.yaml_path) if entry.yaml_path else None
    return Resolved(task=task, output_type=output_type, config=config, source=source)


def _first_task(entry: Any, index: dict[str, Any], kind: Any, depth: int = 0) -> str | None:
    """The first single task of a group or tag (members of subgroups included)."""
    if entry.kind is kind.TAG:
        members: list[Any] = sorted(entry.tags)
    else:
        members = (entry.cfg or {}).get("task") or []
        members = members if isinstance(members, list) else []
    for member in members:
        name = member if isinstance(member, str) else member.get("task", member.get("group"))
        found = index.get(name) if isinstance(name, str) else None
        if found is None or depth > 8:
            continue
        if found.kind in (kind.TASK, kind.PY_TASK):
            return str(name)
        deeper = _first_task(found, index, kind, depth + 1)
        if deeper is not None:
            return deeper
    return None


def check(
    raw: dict[str, Any], base_dir: Path, check_files: bool = True
) -> tuple[str | None, list[tuple[tuple[str, ...], str]]]:
    """(the kind it scores as, problems) of a suite's raw ``kind: lm_eval`` task, each
    problem with the field it concerns (``kind``, ``task`` or ``include_path``); the kind
    is None when it cannot be known. Offline: reads the task's config only."""
    from harness.data.rows import resolve_path

    try:
        require_lm_eval()
    except LmEvalMissing as exc:
        return None, [(("kind",), str(exc))]
    name, include = raw.get("task"), raw.get("include_path")
    if not isinstance(name, str) or not name or not isinstance(include, str | None):
        return None, []  # the schema reports these
    folder = resolve_path(include, base_dir) if include is not None else None
    if folder is not None and not folder.is_dir():
        problem: list[tuple[tuple[str, ...], str]] = [
            (("include_path",), FOLDER_NOT_FOUND.format(path=folder))
        ]
        return None, problem if check_files else []
    try:
        return resolve(name, folder).scored_kind, []
    except LmEvalError as exc:
        return None, [(("task",), str(exc))]
