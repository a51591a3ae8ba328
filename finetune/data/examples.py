"""Training examples: loading with located row errors, deduplication, the validation split.

Rows come from .jsonl/.csv/.tsv files or `datasets` sources (harness.data.rows.load_rows,
so a broken line reads ``FILE line N: ...``). A row holds a prompt and a completion,
one text, or a conversation (``messages``: a list of {role, content}, checked by the
harness's harness.tasks.chat.checked_messages; it needs an assistant turn). One file
holds rows of one form: a file mixing chat rows with prompt/completion or text rows is
refused at the first row of the other form (different sources may differ, e.g. chat
training data with prompt/completion replay data). Curation removes exact and normalized duplicates before the validation
split, so no example can sit on both sides of it, and drops validation rows that repeat
a training row; everything removed is counted and listed for the manifest.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config.suite import DatasetSource
from harness.data.rows import (
    MAX_ERRORS,
    display_path,
    load_rows,
    sha256_file,
)
from harness.errors import UserError, row_error
from harness.tasks.chat import checked_messages

if TYPE_CHECKING:
    pass

# user-facing messages (tests assert them exactly)
NEEDS_FIELDS = "needs fields '{prompt}' and '{completion}', or '{text}'"
MISSING_FIELD = "missing field '{name}'"
NOT_TEXT = "field '{name}' must be text, got {type}"
EMPTY_FIELD = "field '{name}' is empty"
TOO_FEW = "{where}: {n} usable row(s); a validation split needs at least 2"
MIXED_FORMS = (
    "a {form} row, but the file's first row (line {line}) is a {first} row; "
    "a file holds chat rows or prompt/completion and text rows, not both"
)
LISTED = 50  # duplicates listed in the manifest (all are counted)

_PUNCT = re.compile(r"[^\w\s]+")


@dataclass(frozen=True)
class Example:
    """One training (or validation, replay) example."""

    prompt: str
    """The context, not trained on ('' for a text row)."""
    target: str
    """The completion, or the whole text of a text row: what the loss covers."""
    file: str
    """Where it came from, for messages: a file (shown relative to the cwd) or dataset."""
    line: int
    """Line (jsonl) or row (csv/tsv) number, or index + 1 in a dataset split."""
    fields: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The whole row (group and label columns are read from here)."""
    weight: float = 1.0
    """Loss weight (group reweighting)."""
    augmented: bool = False
    """A noisy copy made by finetune.data.augment."""
    messages: tuple[tuple[str, str], ...] = ()
    """A chat row's conversation as (role, content) pairs; then ``prompt`` and
    ``target`` are empty and the loss covers the assistant turns (finetune.train.encode)."""

    @property
    def where(self) -> str:
        """``FILE line N``."""
        return f"{self.file} line {self.line}"

    @property
    def is_chat(self) -> bool:
        return bool(self.messages)

    @property
    def text(self) -> str:
        """Prompt and target as one string; a conversation's contents joined by line
        breaks (what deduplication, the leakage check and the PII scan read)."""
        if self.messages:
            return "\n".join(content for _, content in self.messages)
        return self.prompt + self.target

    @property
    def input_text(self) -> str:
        """What the model reads before its target: the prompt, or a conversation's
        system and user contents (the leakage check's second text)."""
        if self.messages:
            return "\n".join(c for role, c in self.messages if role != "assistant")
        return self.prompt

    @property
    def key(self) -> str:
        """Identity for exact deduplication (a conversation: roles and contents)."""
        if self.messages:
            return "\x1e".join(f"{role}\x1f{content}" for role, content in self.messages)
        return f"{self.prompt}\x1f{self.target}"

    @property
    def norm_key(self) -> str:
        """Identity after normalization (see ``normalize``)."""
        if self.messages:
            return "\x1e".join(f"{r}\x1f{normalize(c)}" for r, c in self.messages)
        return f"{normalize(self.prompt)}\x1f{normalize(self.target)}"

    def message_dicts(self) -> list[dict[str, str]]:
        """The conversation as ``[{role, content}, ...]`` (what templates render)."""
        return [{"role": role, "content": content} for role, content in self.messages]


def normalize(text: str) -> str:
    """Unicode NFKC, case-folded, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCT.sub(" ", text).split())


def source_name(source: str | DatasetSource) -> str:
    """How a data source is named in messages."""
    if isinstance(source, str):
        return display_path(source)
    return f"dataset '{source.dataset}' split '{source.split}'"


def row_form(fields: dict[str, Any], names: tuple[str, str, str], messages: str) -> str:
    """``chat``, ``prompt/completion`` or ``text``: the form a row is read in."""
    if messages in fields:
        return "chat"
    return "prompt/completion" if names[0] in fields or names[1] in fields else "text"


def chat_example(
    fields: dict[str, Any], file: str, line: int, messages: str
) -> tuple[Example | None, list[str]]:
    """A chat example from one row, or its problem (unknown role, missing content, no
    assistant turn...: ``FILE line N: messages[2]: ...``)."""
    try:
        checked = checked_messages(fields[messages], messages, file, line, needs_assistant=True)
    except UserError as exc:
        return None, exc.messages
    pairs = tuple((m["role"], m["content"]) for m in checked)
    return Example("", "", file, line, fields, messages=pairs), []


def row_example(
    fields: dict[str, Any],
    file: str,
    line: int,
    names: tuple[str, str, str],
    messages: str = "messages",
) -> tuple[Example | None, list[str]]:
    """An example from one row, or the row's problems (``FILE line N: ...``)."""
    if messages in fields:
        return chat_example(fields, file, line, messages)
    prompt_f, completion_f, text_f = names
    if prompt_f in fields or completion_f in fields:
        wanted = [prompt_f, completion_f]
    elif text_f in fields:
        wanted = [text_f]
    else:
        msg = NEEDS_FIELDS.format(prompt=prompt_f, completion=completion_f, text=text_f)
        return None, [row_error(file, line, msg)]
    problems = []
    for name in wanted:
        value = fields.get(name)
        if name not in fields:
            problems.append(row_error(file, line, MISSING_FIELD.format(name=name)))
        elif not isinstance(value, str):
            kind = "null" if value is None else type(value).__name__
            problems.append(row_error(file, line, NOT_TEXT.format(name=name, type=kind)))
        elif not value.strip():
            problems.append(row_error(file, line, EMPTY_FIELD.format(name=name)))
    if problems:
        return None, problems
    if len(wanted) == 1:
        return Example("", fields[text_f], file, line, fields), []
    return Example(fields[prompt_f], fields[completion_f], file, line, fields), []


def load_examples(
    sources: Sequence[str | DatasetSource],
    names: tuple[str, str, str],
    messages: str = "messages",
) -> list[Example]:
    """Every example of ``sources``; all bad rows of all sources raise one UserError.

    ``names`` are the (prompt, completion, text) field names, ``messages`` the field of
    a chat row's conversation.
    """
    examples: list[Example] = []
    errors: list[str] = []
    for source in sources:
        file = source_name(source)
        first: tuple[str, int] | None = None
        for row in load_rows(source, Path.cwd()):
            form = row_form(row.fields, names, messages)
            first = first or (form, row.line)
            if (form == "chat") != (first[0] == "chat"):
                msg = MIXED_FORMS.format(form=form, first=first[0], line=first[1])
                errors.append(row_error(file, row.line, msg))
                continue
            example, problems = row_example(row.fields, file, row.line, names, messages)
            errors += problems
            if example is not None:
                examples.append(example)
    if errors:
        more = len(errors) - MAX_ERRORS
        raise UserError(errors[:MAX_ERRORS] + ([f"{more} more errors"] if more > 0 else []))
    return examples


@dataclass
class Dedup:
    """What deduplication removed."""

    exact: int = 0
    normalized: int = 0
    listed: list[dict[str, str]] = field(default_factory=list)

    def note(self, kind: str, dropped: Example, kept: Example) -> None:
        if kind == "exact":
            self.exact += 1
        else:
            self.normalized += 1
        if len(self.listed) < LISTED:
            self.listed.append({"kind": kind, "removed": dropped.where, "duplicate_of": kept.where})

    def as_dict(self) -> dict[str, Any]:
        return {"exact": self.exact, "normalized": self.normalized, "listed": self.listed}


def dedup(examples: Sequence[Example]) -> tuple[list[Example], Dedup]:
    """Keep the first of each group of duplicates: exact (same prompt and target), then
    normalized (equal after ``normalize``)."""
    report = Dedup()
    exact: dict[str, Example] = {}
    normal: dict[str, Example] = {}
    kept = []
    for ex in examples:
        if ex.key in exact:
            report.note("exact", ex, exact[ex.key])
        elif ex.norm_key in normal:
            report.note("normalized", ex, normal[ex.norm_key])
        else:
            exact[ex.key] = normal[ex.norm_key] = ex
            kept.append(ex)
    return kept, report


def split_validation(
    examples: Sequence[Example], fraction: float, seed: int, where: str
) -> tuple[list[Example], list[Example]]:
    """(train, validation): a seeded random ``fraction`` held out, both in file order."""
    if len(examples) < 2:
        raise UserError(TOO_FEW.format(where=where, n=len(examples)))
    n_val = min(len(examples) - 1, max(1, round(len(examples) * fraction)))
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_val])
    train = [ex for i, ex in enumerate(examples) if i not in held]
    return train, [ex for i, ex in enumerate(examples) if i in held]


def drop_overlap(
    validation: Sequence[Example], train: Sequence[Example]
) -> tuple[list[Example], list[dict[str, str]]]:
    """Validation examples that repeat a training example (normalized) are dropped: a
    validation loss on training examples would hide overfitting."""
    seen = {ex.norm_key: ex for ex in train}
    kept, dropped = [], []
    for ex in validation:
        if ex.norm_key in seen:
            dropped.append({"removed": ex.where, "duplicate_of": seen[ex.norm_key].where})
        else:
            kept.append(ex)
    return kept, dropped


def with_weights(examples: Sequence[Example], weights: Sequence[float]) -> list[Example]:
    """The examples with new loss weights."""
    return [replace(ex, weight=w) for ex, w in zip(examples, weights, strict=True)]


def file_hashes(role: str, sources: Sequence[str | DatasetSource]) -> list[dict[str, Any]]:
    """sha256 of each local data file (provenance); hub datasets are named only."""
    out: list[dict[str, Any]] = []
    for source in sources:
        if isinstance(source, str):
            out.append({"role": role, "path": source, "sha256": sha256_file(source)})
            continue
        files = _local_files(source.data_files)
        entry: dict[str, Any] = {"role": role, "dataset": source.model_dump(mode="json")}
        entry["files"] = [{"path": f, "sha256": sha256_file(f)} for f in files]
        out.append(entry)
    return out


def _local_files(data_files: Any) -> list[str]:
    if isinstance(data_files, str):
        path = Path(data_files)
        return [data_files] if path.is_absolute() and path.is_file() else []
    if isinstance(data_files, dict):
        return [f for v in data_files.values() for f in _local_files(v)]
    if isinstance(data_files, list):
        return [f for v in data_files for f in _local_files(v)]
    return []
