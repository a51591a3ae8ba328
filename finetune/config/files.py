"""The fine-tune config's checks against the files it names: local files and folders
that are missing or of a type the fine-tuner cannot read, and data fields (prompt,
completion, text, group, label) that no row of a local file has.

``load_config`` runs them after validation, so a typo in a path or a field name is
reported at its place in the YAML with the other problems. They read files through
harness.data.rows only; the fine-tuner's data stage (finetune.data) is not needed to
validate a config.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import yaml_marks
from harness.data.rows import (
    absent_field,
    columns,
    display_path,
    field_list,
    load_rows,
    looks_local,
    resolve_path,
    source_problems,
)
from harness.errors import UserError

if TYPE_CHECKING:
    from finetune.config.schema import FinetuneConfig

SUITE_SUFFIXES = (".yaml", ".yml")

# user-facing messages (tests assert them exactly)
FOLDER_NOT_FOUND = "folder not found: {path}"
EVAL_NOT_FOUND = "file not found: {path}"
EVAL_UNSUPPORTED = "unsupported file type '{suffix}'; use .jsonl, .csv, .tsv or a suite .yaml"
NO_TEXT_FIELDS = (
    "no row of {source} has fields '{prompt}' and '{completion}', or '{text}' (fields: {fields})"
)

FieldProblem = tuple[yaml_marks.Path, str]
"""A problem at a place in the YAML (keys and list indices from the root)."""


def config_sources(config: FinetuneConfig) -> list[tuple[yaml_marks.Path, Any]]:
    """Every data source of a config, with its path in the YAML."""
    out: list[tuple[yaml_marks.Path, Any]] = [
        (("data", "train", i), s) for i, s in enumerate(config.data.train)
    ]
    if config.data.validation is not None:
        out.append((("data", "validation"), config.data.validation))
    af = config.anti_forgetting
    for key, spec in (("replay", af.replay), ("ewc", af.ewc)):
        if spec is not None:
            out += [(("anti_forgetting", key, "data", i), s) for i, s in enumerate(spec.data)]
    return out


def file_problems(config: FinetuneConfig, base: Path) -> list[FieldProblem]:
    """Missing or unsupported local files and folders named by the config."""
    found: list[FieldProblem] = []
    model = config.base_model.path
    if looks_local(model, base) and not resolve_path(model, base).is_dir():
        found.append(
            (("base_model", "path"), FOLDER_NOT_FOUND.format(path=resolve_path(model, base)))
        )
    for where, src in config_sources(config):
        found += [((*where, *sub), msg) for sub, msg in source_problems(src, base)]
    for i, name in enumerate(config.eval_data):
        found += [(("eval_data", i), msg) for msg in eval_path_problems(resolve_path(name, base))]
    template = config.chat.template
    if template != "tokenizer" and not resolve_path(template, base).is_file():
        found.append(
            (("chat", "template"), EVAL_NOT_FOUND.format(path=resolve_path(template, base)))
        )
    return found


def eval_path_problems(path: Path) -> list[str]:
    """Problems of one evaluation data path (a data file or a suite)."""
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".csv", ".tsv", *SUITE_SUFFIXES):
        return [EVAL_UNSUPPORTED.format(suffix=path.suffix)]
    if not path.is_file():
        return [EVAL_NOT_FOUND.format(path=path)]
    return []


def field_problems(
    config: FinetuneConfig, base: Path, written: Collection[yaml_marks.Path]
) -> list[FieldProblem]:
    """The config's fields naming a data field that no row of a local file has (a typo):
    one problem at the config's field, not one per row. ``written`` are the paths the
    YAML sets. A file that cannot be read is skipped (training reports its rows)."""
    d = config.data
    found: list[FieldProblem] = []
    train_fields: list[str] = []
    train_names: list[str] = []
    for where, src in config_sources(config):
        if not isinstance(src, str):
            continue  # a `datasets` source is only read when training
        try:
            fields = columns(load_rows(src, base))
        except UserError:
            continue
        name = display_path(resolve_path(src, base))
        if where[:2] == ("data", "train"):
            train_fields += fields
            train_names.append(name)
        found += _text_field_problems(d, where, fields, name, written)
    rw = config.fairness.reweight
    if rw is not None and train_names:
        named = [("group", rw.group)] + ([("label", rw.label)] if rw.label else [])
        for key, field_name in named:
            msg = absent_field(
                field_name, list(dict.fromkeys(train_fields)), ", ".join(train_names)
            )
            if msg is not None:
                found.append((("fairness", "reweight", key), msg))
    return found


def _text_field_problems(
    d: Any,
    where: yaml_marks.Path,
    fields: list[str],
    source: str,
    written: Collection[yaml_marks.Path],
) -> list[FieldProblem]:
    if d.messages_field in fields:  # chat rows (their conversations are checked when loaded)
        return []
    names = {"prompt_field": d.prompt_field, "completion_field": d.completion_field}
    present = [key for key, name in names.items() if name in fields]
    if len(present) == 1:  # rows of prompt and completion: the other one is a typo
        key = next(k for k in names if k not in present)
        return [(("data", key), absent_field(names[key], fields, source) or "")]
    if present or d.text_field in fields:
        return []
    keys = [k for k in ("prompt_field", "completion_field", "text_field") if ("data", k) in written]
    if keys:
        return [(("data", k), absent_field(getattr(d, k), fields, source) or "") for k in keys]
    msg = NO_TEXT_FIELDS.format(
        source=source,
        prompt=d.prompt_field,
        completion=d.completion_field,
        text=d.text_field,
        fields=field_list(fields),
    )
    return [(where, msg)]
