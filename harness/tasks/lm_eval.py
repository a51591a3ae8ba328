"""`kind: lm_eval` tasks: a task of lm-evaluation-harness, read through its TaskManager and
turned into this harness's records, so that our model layer scores it and bootstrap CIs,
gates, the forgetting audit, compare and the reports apply as to any other task.

Three steps, one function each:

- ``resolve`` (harness.tasks.lm_eval_config; suite load and ``harness validate``;
  offline): the task's YAML config from
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
- The suite's metrics score the records: a task's own ``process_results``, aggregations
  other than the mean, ``repeats`` and image or audio inputs are listed as not applied.
- ``limit`` samples documents with the suite's seed, as for every task (lm-eval takes
  the first N). Few-shot draws follow lm-eval's one seeded stream over the documents in
  order, so each document gets the shots lm-eval gives it, whatever the sampler.
- No chat template, system instruction or multi-turn few-shot (lm-eval's defaults).

lm-eval is an optional dependency (``pip install 'llm-release-harness[lmeval]'``),
imported only inside these functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError, row_error
from harness.tasks.answers import normalize_answer
from harness.tasks.lm_eval_config import (
    BAD_DOC,
    EMPTY_TEXT,
    GOLD_NOT_CHOICE,
    HUB_DATA,
    LMEVAL_MISSING,
    LOAD_FAILED,
    MULTIPLE_TARGETS,
    NO_DOCS,
    NO_SHOTS,
    Extract,
    GenerationSettings,
    LmEvalError,
    LmEvalMissing,
    Normalize,
    Resolved,
    check,
    find_task,
    generation_settings,
    refuse_data,
    require_lm_eval,
    resolve,
)

if TYPE_CHECKING:
    from harness.data.rows import Row

__all__ = [
    "LMEVAL_MISSING",
    "Extract",
    "GenerationSettings",
    "LmEvalError",
    "LmEvalMethods",
    "LmEvalMissing",
    "LoadedTask",
    "Normalize",
    "Resolved",
    "check",
    "generation_settings",
    "load",
    "provenance",
    "refuse_data",
    "resolve",
    "shared_prefix",
]


# -- loading the documents and making records -----------------------------------------


def load(
    resolved: Resolved, include_path: str | Path | None, num_fewshot: int | None, seed: int
) -> LoadedTask:
    """Build the lm-eval task (this loads its dataset) with ``num_fewshot`` shots (None:
    the task's own number, else 0) and its few-shot sampler seeded with ``seed``, as
    ``lm_eval.simple_evaluate`` sets them up. LmEvalError when it cannot be built."""
    require_lm_eval()
    name = resolved.task
    _, manager = find_task(name, str(include_path) if include_path is not None else None)
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
    settings = resolved.generation() if resolved.scored_kind == "generation" else None
    return LoadedTask(built, docs, shots, resolved.scored_kind, settings)


class LoadedTask:
    """An lm-eval task with its documents, turning them into records' prepared fields.

    Documents are converted in their order and the results kept, whatever order they are
    asked in: a random few-shot sampler draws from one seeded generator across documents,
    so the shots of a document are lm-eval's only when every document before it was
    converted first, as lm-eval's own request building does."""

    def __init__(
        self,
        task: Any,
        docs: list[dict[str, Any]],
        num_fewshot: int,
        kind: str,
        settings: GenerationSettings | None = None,
    ):
        self.task, self.docs, self.num_fewshot, self.kind = task, docs, num_fewshot, kind
        self.settings = settings
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
            return self._generation(doc)
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

    def _generation(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Fields of a generation record; with an extraction or normalization (the
        generation kind's ``gold_answers``), the references normalized as lm-eval's
        exact_match normalizes them (its regex filter reads the generation only)."""
        refs = self._references(doc)
        out: dict[str, Any] = {"prompt": self._context(doc), "references": refs}
        settings = self.settings
        if settings is not None and (settings.extract or settings.normalize):
            norm = settings.normalize
            out["gold_answers"] = [normalize_answer(r, norm) if norm else r for r in refs]
        return out

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

    from harness.data.rows import display_path

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
        "config": display_path(resolved.source) if resolved.source else None,
    }
    if resolved.scored_kind == "generation":
        settings = resolved.generation()
        out["filter"] = settings.filter
    out["not_applied"] = resolved.not_applied()
    return out


class LmEvalMethods:
    """What a ``kind: lm_eval`` task config (harness.config.schema.LmEvalTask, which
    holds the fields) does: resolve its lm-eval task once, load its documents, make the
    prepared fields of each, and give the settings its scored kind reads."""

    if TYPE_CHECKING:
        task: str
        include_path: str | None
        num_fewshot: int | None
        fewshot_seed: int
        _resolved: Resolved | None
        _loaded: LoadedTask | None

    def lm_eval(self) -> Resolved:
        """The lm-eval task's config, read once (LmEvalMissing, LmEvalError)."""
        if self._resolved is None:
            self._resolved = resolve(self.task, self.include_path)
        return self._resolved

    @property
    def scored_kind(self) -> str:
        return self.lm_eval().scored_kind

    @property
    def hub_dataset(self) -> str | None:
        """The hub dataset its documents come from (None: local files)."""
        return self.lm_eval().hub_dataset

    @property
    def has_choices(self) -> bool:
        """Whether its records have choices (each document its own)."""
        from harness.tasks.base import get

        return get(self.scored_kind).has_choices

    def load_rows(self) -> list[Row]:
        """The lm-eval task's evaluation documents as rows (lm-eval builds the task and
        loads its dataset); LmEvalError when it cannot."""
        self._loaded = load(self.lm_eval(), self.include_path, self.num_fewshot, self.fewshot_seed)
        return self._loaded.rows()

    def prepare_fields(self, fields: dict[str, Any], file: str, line: int) -> dict[str, Any]:
        """The prepared fields of the record of the document at ``line`` (after
        ``load_rows``)."""
        if self._loaded is None:
            raise RuntimeError("load_rows() first")
        return self._loaded.fields(line, file)

    def provenance(self) -> dict[str, Any]:
        """The lm-eval task, versions and settings, stored in the task's results."""
        return provenance(self.lm_eval(), self._loaded, self.num_fewshot, self.fewshot_seed)

    # what the generation kind reads of its task (generate_until tasks)
    @property
    def max_new_tokens(self) -> int:
        return self.lm_eval().generation().max_new_tokens

    @property
    def stop(self) -> list[str]:
        return list(self.lm_eval().generation().stop)

    @property
    def extract(self) -> Extract | None:
        return self.lm_eval().generation().extract

    @property
    def normalize(self) -> Normalize | None:
        return self.lm_eval().generation().normalize
