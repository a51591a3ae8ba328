"""`kind: lm_eval` tasks: a task of lm-evaluation-harness, read through its TaskManager and
turned into this harness's records, so that our model layer scores it and bootstrap CIs,
gates, the forgetting audit, compare and the reports apply as to any other task.

Three steps, one function each:

- ``resolve`` (suite load and ``harness validate``; offline): the task's YAML config from
  lm-eval's task index, without building the task (no dataset download, no ``!function``
  import). Its ``output_type`` says how the records are scored: ``multiple_choice`` as
  classification, ``generate_until`` as generation, ``loglikelihood_rolling`` as
  perplexity; its ``generation_kwargs``, first filter and ``exact_match`` options give
  the generation settings (``GenerationSettings``).
- ``load`` (when the run prepares its data; a hub dataset needs the network): lm-eval
  builds its task (and loads its dataset); the task's evaluation documents are the rows.
- ``LoadedTask.fields``: one document -> the prepared fields of a record of the scored
  kind, made by lm-eval's own ``fewshot_context``, ``doc_to_choice``, ``doc_to_target``
  and ``target_delimiter``, so the prompt and every continuation are the strings lm-eval
  itself would score (tests compare them with its ``Instance`` arguments, exactly).

What differs from lm-eval, and why:

- Generation is greedy: ``do_sample``/``temperature`` and other generation settings are
  listed as not applied; ``max_gen_toks`` and ``until`` become ``max_new_tokens`` and
  ``stop``.
- Only the first filter pipeline is applied, and of it only ``regex`` (as ``extract``)
  and ``take_first`` (one generation per example: nothing to take); every other filter
  is listed as not applied in the task's results (``lm_eval.not_applied``).
- ``limit`` samples documents with the suite's seed, as for every task (lm-eval takes
  the first N).
- No chat template, system instruction or multi-turn few-shot (lm-eval's defaults).

lm-eval is an optional dependency (``pip install 'llm-release-harness[lmeval]'``),
imported only inside these functions.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import UserError, row_error

if TYPE_CHECKING:
    from harness.data.rows import Row

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


@functools.lru_cache(maxsize=8)
def _manager(include_path: str | None, defaults: bool) -> Any:
    """lm-eval's TaskManager over ``include_path`` (and its built-in tasks if
    ``defaults``: indexing those takes seconds, so a task found in ``include_path``
    alone never pays for it)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=defaults)


def _find(task: str, include_path: str | None) -> tuple[Any, Any]:
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

    entry, manager = _find(task, include_path)
    if entry is None:
        close = difflib.get_close_matches(task, manager.all_subtasks, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        if include_path is not None and not close:
            hint = f" in {include_path} or lm-eval's own tasks"
        raise LmEvalError(NO_SUCH_TASK.format(task=task, hint=hint))
    if entry.kind in (Kind.GROUP, Kind.TAG):
        members = sorted(entry.tags) if entry.kind is Kind.TAG else _group_members(entry)
        what = "tag" if entry.kind is Kind.TAG else "group"
        raise LmEvalError(NOT_A_TASK.format(task=task, what=what, first=(members or ["?"])[0]))
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


def _group_members(entry: Any) -> list[str]:
    members = (entry.cfg or {}).get("task")
    if not isinstance(members, list):
        return []
    return [m if isinstance(m, str) else str(m.get("task", m.get("group", "?"))) for m in members]


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


# -- loading the documents and making records -----------------------------------------


def load(
    resolved: Resolved, include_path: str | Path | None, num_fewshot: int | None, seed: int
) -> LoadedTask:
    """Build the lm-eval task (this loads its dataset) with ``num_fewshot`` shots (None:
    the task's own number, else 0) and its few-shot sampler seeded with ``seed``, as
    ``lm_eval.simple_evaluate`` sets them up. LmEvalError when it cannot be built."""
    require_lm_eval()
    name = resolved.task
    _, manager = _find(name, str(include_path) if include_path is not None else None)
    try:
        built = manager.load([name])["tasks"][name]
        docs = [dict(doc) for doc in built.eval_docs]
    except Exception as exc:
        hub = resolved.hub_dataset
        network = HUB_DATA.format(dataset=hub) if hub else ""
        reason = f"{type(exc).__name__}: {exc}"
        raise LmEvalError(LOAD_FAILED.format(task=name, network=network, reason=reason)) from None
    if not docs:
        raise LmEvalError(NO_DOCS.format(task=name))
    shots = num_fewshot if num_fewshot is not None else built.get_config("num_fewshot") or 0
    if shots > 0 and not hasattr(built, "sampler"):
        raise LmEvalError(NO_SHOTS.format(n=shots, task=name))
    built.set_config(key="num_fewshot", value=shots)
    built.set_fewshot_seed(seed=seed)
    return LoadedTask(built, docs, shots, resolved.scored_kind)


class LoadedTask:
    """An lm-eval task with its documents, turning them into records' prepared fields.

    Documents are converted in their order and the results kept, whatever order they are
    asked in: a random few-shot sampler draws from one seeded generator across documents,
    so the shots of a document are lm-eval's only when every document before it was
    converted first, as lm-eval's own request building does."""

    def __init__(self, task: Any, docs: list[dict[str, Any]], num_fewshot: int, kind: str):
        self.task, self.docs, self.num_fewshot, self.kind = task, docs, num_fewshot, kind
        self._done: list[dict[str, Any] | str] = []

    def rows(self) -> list[Row]:
        from harness.data.rows import Row

        return [Row(line=i + 1, fields=doc) for i, doc in enumerate(self.docs)]

    def fields(self, line: int, file: str) -> dict[str, Any]:
        """The prepared fields of the document at ``line`` (1-based); UserError located at
        the document when lm-eval cannot build its requests."""
        while len(self._done) < line:
            doc = self.docs[len(self._done)]
            try:
                self._done.append(self._convert(doc))
            except LmEvalError as exc:
                self._done.append(str(exc))
            except Exception as exc:  # lm-eval's templates and functions on a bad doc
                self._done.append(BAD_DOC.format(reason=f"{type(exc).__name__}: {exc}"))
        out = self._done[line - 1]
        if isinstance(out, str):
            raise UserError(row_error(file, line, out))
        return dict(out)

    def _context(self, doc: dict[str, Any]) -> Any:
        # as lm-eval's build_all_requests calls it, without chat templates
        return self.task.fewshot_context(
            doc=doc, num_fewshot=self.num_fewshot, gen_prefix=self.task.doc_to_prefix(doc)
        )

    def _convert(self, doc: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "classification":
            return self._choices(doc)
        if self.kind == "generation":
            return {"prompt": self._context(doc), "references": self._references(doc)}
        text = str(self.task.doc_to_target(doc))
        if not text:
            raise LmEvalError(EMPTY_TEXT)
        return {"text": text}

    def _choices(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Fields of a multiple-choice record: lm-eval scores ``(context, delimiter +
        choice)`` per choice or, with multiple inputs (Winogrande), ``(context_i,
        delimiter + target)`` with one context per choice."""
        task = self.task
        context = self._context(doc)
        choices = [str(c) for c in task.doc_to_choice(doc)]
        delimiter = str(task.config.target_delimiter)
        if task.multiple_input:
            gold = task.doc_to_text(doc)
            contexts = [str(c) for c in context]
            prompt = shared_prefix(contexts, choices)
            rest = {
                "contexts": [c[len(prompt) :] for c in contexts],
                "continuation": str(task.doc_to_target(doc)),
            }
        else:
            gold, prompt, rest = task.doc_to_target(doc), str(context), {}
        out: dict[str, Any] = {"prompt": prompt, "choices": choices, "gold": _gold(gold, choices)}
        if delimiter:
            out["target_delimiter"] = delimiter
        return {**out, **rest}

    def _references(self, doc: dict[str, Any]) -> list[str]:
        target = self.task.doc_to_target(doc)
        if self.task.config.doc_to_choice is not None and isinstance(target, int):
            return [str(self.task.doc_to_choice(doc)[target])]
        if isinstance(target, list):
            return [str(t) for t in target]
        return [str(target)]


def _gold(gold: Any, choices: Sequence[str]) -> int:
    if isinstance(gold, list):
        raise LmEvalError(MULTIPLE_TARGETS)
    if isinstance(gold, str) and gold in choices:
        return list(choices).index(gold)
    if isinstance(gold, int) and not isinstance(gold, bool) and 0 <= gold < len(choices):
        return gold
    raise LmEvalError(GOLD_NOT_CHOICE.format(gold=gold, n=len(choices)))


def shared_prefix(contexts: Sequence[str], choices: Sequence[str]) -> str:
    """The part of the multiple-input contexts all choices share (description and shots):
    each context minus its own choice text when that leaves one prefix, else their
    longest common prefix. Either way ``prefix + context[len(prefix):]`` is the context."""
    heads = {c[: len(c) - len(x)] for c, x in zip(contexts, choices, strict=True) if c.endswith(x)}
    if len(heads) == 1 and all(c.endswith(x) for c, x in zip(contexts, choices, strict=True)):
        return heads.pop()
    return os.path.commonprefix(list(contexts))


def provenance(
    resolved: Resolved, loaded: LoadedTask | None, num_fewshot: int | None, seed: int
) -> dict[str, Any]:
    """What results.json records of an lm-eval task beside its metrics."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        lm_version = version("lm_eval")
    except PackageNotFoundError:
        lm_version = "absent"
    out: dict[str, Any] = {
        "task": resolved.task,
        "lm_eval_version": lm_version,
        "task_version": resolved.version,
        "output_type": resolved.output_type,
        "num_fewshot": loaded.num_fewshot if loaded is not None else num_fewshot,
        "fewshot_seed": seed,
        "config": resolved.source,
    }
    if resolved.scored_kind == "generation":
        settings = resolved.generation()
        out["filter"] = settings.filter
        out["not_applied"] = settings.not_applied
    return out
