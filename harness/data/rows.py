"""Loading a task's examples: local jsonl / csv / tsv files, or a `datasets` source.

Every problem in a data file is reported as ``FILE line N: ...`` (never a traceback),
with FILE shown relative to the current directory when it lies below it. Local paths
are resolved against the suite file's folder by the caller (``base_dir``).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import random
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.data.hashing import sha256_file as sha256_file  # re-exported: the callers read it here
from harness.errors import UserError, row_error

if TYPE_CHECKING:
    from harness.config.suite import DatasetSource

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}
"""Local file formats, by file name suffix (case-insensitive)."""

MAX_ERRORS = 20  # per file; a file broken on every line should not flood the terminal

NO_ROWS = "no rows"
FILE_NOT_FOUND = "file not found"
NOT_REGULAR = "not a regular file"
NOT_UTF8 = "not valid UTF-8"
INVALID_JSON = "invalid JSON: {reason}"
NOT_OBJECT = "expected a JSON object, got {type}"
NO_HEADER = "a header row naming the columns is required"
EMPTY_COLUMN_NAME = "column {n} of the header has no name"
DUPLICATE_COLUMN = "duplicate column '{name}' in the header"
COLUMN_COUNT = "expected {expected} columns, got {got}"
UNSUPPORTED = "unsupported file type '{suffix}'; use .jsonl, .csv or .tsv"
DATASETS_MISSING = (
    "the 'datasets' package is not installed; pip install 'llm-release-harness[datasets]'"
)
NO_SUCH_FIELD = "no field '{field}' in {source} (fields: {fields})"
DID_YOU_MEAN = "; did you mean '{match}'?"
MAX_FIELDS_SHOWN = 30  # a table with hundreds of columns still gives a one-line error
DATASET_OFFLINE = (
    "cannot reach the Hugging Face Hub (offline or no network); "
    "download the dataset beforehand or use a local .jsonl/.csv/.tsv file"
)

# `datasets` builders that read local files: their data_files are paths on this machine
PACKAGED_BUILDERS = frozenset({"json", "csv", "parquet", "text", "arrow", "pandas", "xml"})


@dataclass(frozen=True)
class Row:
    """One example as read from the source."""

    line: int
    """1-based: line of a jsonl file; row of a csv/tsv file (the header is row 1); index
    + 1 in a `datasets` split."""
    fields: dict[str, Any]
    """The record's fields (csv/tsv values are always text)."""


def columns(rows: Sequence[Row]) -> list[str]:
    """Every field name that at least one row has, in first-seen order."""
    return list(dict.fromkeys(name for row in rows for name in row.fields))


def field_list(fields: Sequence[str]) -> str:
    """Field names for a message: sorted, at most MAX_FIELDS_SHOWN of them."""
    shown = sorted(fields, key=str)
    listed = ", ".join(shown[:MAX_FIELDS_SHOWN])
    if len(shown) > MAX_FIELDS_SHOWN:
        listed += f", ... ({len(shown) - MAX_FIELDS_SHOWN} more)"
    return listed


def absent_field(name: str, fields: Sequence[str], source: str) -> str | None:
    """The message for a field that no row of ``source`` has (a typo in the suite or
    config naming it), with the fields the data does have and the closest one; None
    when some row has it (then a row without it is that row's error)."""
    if name in fields:
        return None
    msg = NO_SUCH_FIELD.format(field=name, source=source, fields=field_list(fields))
    close = difflib.get_close_matches(name, [str(f) for f in fields], n=1)
    return msg + DID_YOU_MEAN.format(match=close[0]) if close else msg


def display_path(path: str | Path) -> str:
    """``path`` relative to the current directory when below it, else absolute."""
    full = os.path.abspath(os.path.expanduser(path))
    cwd = os.getcwd()
    try:
        rel = os.path.relpath(full, cwd)
    except ValueError:  # another drive (Windows)
        return full
    return full if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def resolve_path(path: str | Path, base_dir: Path) -> Path:
    """An absolute, normalized path: ``~`` expanded, relative paths taken from base_dir."""
    p = Path(os.path.expanduser(path))
    return Path(os.path.abspath(p if p.is_absolute() else base_dir / p))


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None: ``FILE_NOT_FOUND`` or
    ``NOT_REGULAR``. Reading a FIFO would wait for a writer and ``/dev/zero`` never
    ends, so only regular files (symlinks to them included) are read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return FILE_NOT_FOUND
    except OSError as exc:  # permission denied on a folder on the way, a loop of links
        return f"cannot read: {exc.strerror or exc}"
    return None if stat.S_ISREG(mode) else NOT_REGULAR


def sample_rows(rows: Sequence[Row], limit: int | None, seed: int) -> list[Row]:
    """A deterministic sample of ``limit`` rows, kept in their original order.

    The rows are shuffled with a ``random.Random(seed)`` permutation and the first
    ``limit`` taken, so a smaller limit with the same seed picks a subset of a larger
    one (runs with different limits stay comparable).
    """
    if limit is None or limit >= len(rows):
        return list(rows)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in sorted(order[:limit])]


def load_rows(source: str | Path | DatasetSource, base_dir: Path) -> list[Row]:
    """Read every row of a task's data source (a local file path or a dataset spec)."""
    if isinstance(source, str | Path):
        return _load_file(resolve_path(source, base_dir))
    return _load_dataset(source, base_dir)


def _load_file(path: Path) -> list[Row]:
    file = display_path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{file}: {UNSUPPORTED.format(suffix=path.suffix)}")
    problem = file_problem(path)
    if problem is not None:
        raise UserError(f"{file}: {problem}")
    rows, errors = _read_jsonl(path, file) if fmt == "jsonl" else _read_table(path, file, fmt)
    if errors:
        more = len(errors) - MAX_ERRORS
        raise UserError(errors[:MAX_ERRORS] + ([f"{file}: {more} more errors"] if more > 0 else []))
    if not rows:
        raise UserError(f"{file}: {NO_ROWS}")
    return rows


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _read_jsonl(path: Path, file: str) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    errors: list[str] = []
    with open(path, "rb") as fh:  # binary: a bad byte is located, not a traceback
        for n, raw in enumerate(fh, start=1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                errors.append(row_error(file, n, NOT_UTF8))
                continue
            if not text.strip():
                continue
            try:
                value = json.loads(text.rstrip("\r\n"))  # keeps the error's column on this line
            except json.JSONDecodeError as exc:
                reason = f"{exc.msg} (column {exc.colno})"
                errors.append(row_error(file, n, INVALID_JSON.format(reason=reason)))
                continue
            except (ValueError, RecursionError) as exc:  # int digit limit, deep nesting
                reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                errors.append(row_error(file, n, INVALID_JSON.format(reason=reason)))
                continue
            if not isinstance(value, dict):
                errors.append(row_error(file, n, NOT_OBJECT.format(type=_json_type(value))))
                continue
            rows.append(Row(line=n, fields=value))
    return rows, errors


def _read_table(path: Path, file: str, fmt: str) -> tuple[list[Row], list[str]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return [], [row_error(file, line, NOT_UTF8)]
    rows: list[Row] = []
    errors: list[str] = []
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # the default (128 KiB per field) is too small for documents
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
        header: list[str] | None = None
        n = 0  # row number, the header being row 1
        for record in reader:
            if not record:  # blank line
                continue
            n += 1
            if header is None:
                header = record
                errors += _header_errors(header, file)
                if errors:
                    return [], errors
                continue
            if len(record) != len(header):
                msg = COLUMN_COUNT.format(expected=len(header), got=len(record))
                errors.append(row_error(file, n, msg))
                continue
            rows.append(Row(line=n, fields=dict(zip(header, record, strict=True))))
    except csv.Error as exc:
        errors.append(row_error(file, reader.line_num, str(exc)))
    finally:
        csv.field_size_limit(old_limit)
    return rows, errors


def _header_errors(header: list[str], file: str) -> list[str]:
    errors = []
    seen: set[str] = set()
    for i, name in enumerate(header, start=1):
        if not name.strip():
            errors.append(row_error(file, 1, EMPTY_COLUMN_NAME.format(n=i)))
        elif name in seen:
            errors.append(row_error(file, 1, DUPLICATE_COLUMN.format(name=name)))
        seen.add(name)
    return errors


def resolve_data_files(data_files: Any, dataset: str, base_dir: Path) -> Any:
    """Make a `datasets` source's data_files absolute when they are local files.

    Only for the packaged builders (json, csv, parquet, ...) and local dataset folders:
    for a hub dataset, data_files name files inside the hub repository.
    """
    if data_files is None or not (dataset in PACKAGED_BUILDERS or looks_local(dataset, base_dir)):
        return data_files
    if isinstance(data_files, str):
        return str(resolve_path(data_files, base_dir))
    if isinstance(data_files, list):
        return [resolve_data_files(f, dataset, base_dir) for f in data_files]
    if isinstance(data_files, dict):
        return {k: resolve_data_files(v, dataset, base_dir) for k, v in data_files.items()}
    return data_files


def resolve_source(source: str | DatasetSource, base_dir: Path) -> Any:
    """The source with its local paths made absolute (a file, a dataset folder, and the
    data_files of packaged builders)."""
    if isinstance(source, str):
        return str(resolve_path(source, base_dir))
    dataset = source.dataset
    if dataset.startswith((".", "/", "~")):
        dataset = str(resolve_path(dataset, base_dir))
    files = resolve_data_files(source.data_files, source.dataset, base_dir)
    return source.model_copy(update={"dataset": dataset, "data_files": files})


def source_problems(
    source: str | DatasetSource, base_dir: Path, exist: bool = True
) -> list[tuple[tuple[str, ...], str]]:
    """Problems of a data source, each with the sub-field it concerns: an unsupported
    file type and, if ``exist``, local files or folders that do not exist."""
    if isinstance(source, str):
        path = resolve_path(source, base_dir)
        if path.suffix.lower() not in SUFFIXES:
            return [((), UNSUPPORTED.format(suffix=path.suffix))]
        problem = file_problem(path) if exist else None
        if problem is not None:
            return [((), f"{problem}: {path}")]
        return []
    problems: list[tuple[tuple[str, ...], str]] = []
    if not exist:
        return problems
    folder = resolve_path(source.dataset, base_dir)
    if source.dataset.startswith((".", "/", "~")) and not folder.exists():
        problems.append((("dataset",), f"folder not found: {folder}"))
    for f in _flatten(resolve_data_files(source.data_files, source.dataset, base_dir)):
        if Path(f).is_absolute() and not any(c in f for c in "*?[") and not Path(f).exists():
            problems.append((("data_files",), f"{FILE_NOT_FOUND}: {f}"))
    return problems


def _flatten(data_files: Any) -> list[str]:
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, dict):
        return [f for v in data_files.values() for f in _flatten(v)]
    return [f for v in data_files or [] for f in _flatten(v)]


def looks_local(name: str, base_dir: Path) -> bool:
    """Whether a model/dataset name is a local path rather than a hub id.

    Local: starts with ``.``, ``/`` or ``~``, exists relative to base_dir, or is not
    shaped like a hub id (``name`` or ``org/name``).
    """
    if name.startswith((".", "/", "~")) or resolve_path(name, base_dir).exists():
        return True
    parts = name.split("/")
    return len(parts) > 2 or not all(parts)


PACKAGED_BUILDERS = frozenset({"json", "csv", "parquet", "text", "arrow", "pandas"})
"""`datasets` builders that read the ``data_files`` they are given."""


def needs_network(source: str | DatasetSource, base_dir: Path) -> bool:
    """Whether loading a data source fetches from the hub: a `datasets` source naming a
    hub dataset (a local folder, or a packaged builder over local files, does not)."""
    if isinstance(source, str):
        return False
    if source.dataset in PACKAGED_BUILDERS:
        files = _flatten(resolve_data_files(source.data_files, source.dataset, base_dir))
        return any("://" in f for f in files)
    return not looks_local(source.dataset, base_dir)


def _load_dataset(source: DatasetSource, base_dir: Path) -> list[Row]:
    where = f"dataset '{source.dataset}' split '{source.split}'"
    try:
        import datasets
    except ImportError:
        raise UserError(f"{where}: {DATASETS_MISSING}") from None
    src = resolve_source(source, base_dir)
    extra: dict[str, Any] = {}
    if int(datasets.__version__.split(".")[0]) < 3:
        extra["trust_remote_code"] = False  # 2.x ran a dataset's own script by default
    try:
        ds = datasets.load_dataset(
            src.dataset, src.name, split=src.split, data_files=src.data_files, **extra
        )
    except ConnectionError:
        raise UserError(f"{where}: {DATASET_OFFLINE}") from None
    except Exception as exc:  # datasets raises many types; all mean "cannot load this"
        text = str(exc).strip().splitlines()
        reason = text[0] if text else type(exc).__name__
        if "OfflineModeIsEnabled" in reason or "offline" in reason.lower():
            reason = DATASET_OFFLINE
        raise UserError(f"{where}: {reason[:300]}") from None
    rows = [Row(line=i + 1, fields=dict(example)) for i, example in enumerate(ds)]
    if not rows:
        raise UserError(f"{where}: {NO_ROWS}")
    return rows
