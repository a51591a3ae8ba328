"""YAML loading that remembers where every value came from, and located errors.

PyYAML's ``safe_load`` forgets positions and silently keeps the last of two equal
keys. Here the document is composed into nodes and walked by hand, so that every
mapping key, mapping value and sequence item gets its 1-based (line, column) under a
path tuple such as ``("tasks", 0, "choices", 1)``, and duplicate keys are reported
instead of dropped. Scalars are still typed by PyYAML's safe resolver (ints, floats,
booleans, null), anchors/aliases and ``<<`` merge keys work as usual.

``read_mapping`` turns unreadable files and YAML syntax errors into ``UserError`` and
``validation_errors`` turns a pydantic ``ValidationError`` into
``(line, col, "path.to.field: message")`` triples, for any YAML document validated by
a pydantic model (suites here, fine-tune configs too).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import UserError, located

Path = tuple[str | int, ...]
Position = tuple[int, int]
Located = tuple[int, int, str]
"""(line, column, "path: message"), sortable into file order."""

MAX_NODES = 1_000_000  # guards against alias expansion bombs ("billion laughs")
MAX_KEY_SHOWN = 60  # a key longer than this is cut in messages (a huge line stays short)

DUPLICATE_KEY = "duplicate key '{key}' (first defined at line {line})"
NON_STRING_KEY = "keys must be text, got {key!r}"
RECURSIVE_ALIAS = "recursive alias is not supported"
TOO_LARGE = "document expands to more than {n} values (alias bomb?)"
BAD_SCALAR = "cannot read this value: {reason}"
EMPTY = "empty file"
NOT_A_MAPPING = "the top level must be a mapping of fields, got {type}"
INVALID_YAML = "invalid YAML: {reason}"
NOT_UTF8 = "not valid UTF-8"
MISSING = "missing required field"
VERSION_MISSING = "missing; add '{field}: {want}' at the top of the file"
VERSION_UNSUPPORTED = "unsupported version {got}; this harness reads {field} {want}"
UNKNOWN = "unknown field"


@dataclass
class Marks:
    """Positions of the nodes of one YAML document, keyed by path."""

    values: dict[Path, Position] = field(default_factory=dict)
    """Start of each value (the document root is ``()``; sequence items by index)."""
    keys: dict[Path, Position] = field(default_factory=dict)
    """Start of each mapping key, under the path of its value."""

    def value_at(self, path: Path) -> Position:
        """Position of the value at ``path``, else of its nearest recorded ancestor."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.values:
                return self.values[path[:n]]
        return (1, 1)

    def key_at(self, path: Path) -> Position:
        """Position of the key naming ``path`` (falls back to ``value_at``)."""
        return self.keys.get(path) or self.value_at(path)


@dataclass(frozen=True)
class Problem:
    """A structural problem found while walking the document (not a syntax error)."""

    path: Path
    line: int
    col: int
    message: str

    def located(self) -> Located:
        """As a (line, col, "path: message") triple."""
        return (self.line, self.col, f"{format_path(self.path)}: {self.message}")


def format_path(path: Path) -> str:
    """``("tasks", 0, "choices", 1)`` -> ``tasks[0].choices[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if len(part) <= MAX_KEY_SHOWN else part[: MAX_KEY_SHOWN - 3] + "..."
            out += f".{name}" if out else name
    return out


def _pos(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Walker:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.marks = Marks()
        self.problems: list[Problem] = []
        self.active: set[int] = set()  # ids of nodes on the current path (recursion check)
        self.count = 0

    def walk(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Abort(Problem(path, *_pos(node), TOO_LARGE.format(n=MAX_NODES)))
        self.marks.values.setdefault(path, _pos(node))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:
            raise _Abort(Problem(path, *_pos(node), RECURSIVE_ALIAS))
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: yaml.Node, path: Path) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except ValueError as exc:  # a 5000-digit int, a date such as 2024-13-45
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            msg = BAD_SCALAR.format(reason=reason)
            if path:  # an abort is reported by its message alone: name the field in it
                msg = f"{format_path(path)}: {msg}"
            raise _Abort(Problem(path, *_pos(node), msg)) from None

    def mapping(self, node: yaml.Node, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merge_key = "tag:yaml.org,2002:merge"
        # merged keys first, so that explicit keys (wherever they stand) override them
        for key_node, value_node in node.value:
            if key_node.tag == merge_key:
                self.merge(value_node, path, out)
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == merge_key:
                continue
            key = self.scalar(key_node, path)
            line, col = _pos(key_node)
            if isinstance(key, int) and not isinstance(key, bool):
                key = str(key)  # a GPU index as a device map's or max_memory's key
            if not isinstance(key, str):
                self.problems.append(Problem(path, line, col, NON_STRING_KEY.format(key=key)))
                continue
            sub = (*path, key)
            if key in first:
                msg = DUPLICATE_KEY.format(key=key, line=first[key])
                self.problems.append(Problem(sub, line, col, msg))
            first.setdefault(key, line)
            # the last occurrence wins, as in PyYAML; its position is the one recorded
            self.marks.keys[sub] = (line, col)
            self.marks.values.pop(sub, None)
            out[key] = self.walk(value_node, sub)
        return out

    def merge(self, value_node: yaml.Node, path: Path, out: dict[str, Any]) -> None:
        """``<<: *base`` or ``<<: [*a, *b]``: explicit keys (read later) win."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for src in sources:
            if not isinstance(src, yaml.MappingNode):
                continue  # PyYAML itself rejects this while constructing; keep going
            for key, value in self.mapping(src, path).items():
                out.setdefault(key, value)  # earlier sources win, as the YAML spec says


class _Abort(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def load(text: str) -> tuple[Any, Marks, list[Problem]]:
    """Parse one YAML document.

    Returns (data, marks, problems). Syntax errors raise ``yaml.YAMLError`` (the
    ``MarkedYAMLError`` subclasses carry ``problem_mark``); an empty document gives
    ``None``. Duplicate or non-text keys are returned as problems, the document is still
    built (last duplicate wins) so that validation can report further errors.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, Marks(), []
        walker = _Walker(loader)
        try:
            data = walker.walk(node, ())
        except _Abort as abort:
            return None, walker.marks, [abort.problem]
        # an aliased node is walked once per use: report each problem once
        problems = list(dict.fromkeys(walker.problems))
        return data, walker.marks, problems
    finally:
        loader.dispose()


def read_mapping(source: FilePath, file: str) -> tuple[dict[str, Any], Marks, list[Problem]]:
    """Read a YAML file whose top level must be a mapping (``file``: name for messages).

    Unreadable files, bad UTF-8, YAML syntax errors, an empty document or another top
    level raise ``UserError``; duplicate keys come back as problems.
    """
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{file}: file not found") from None
    except OSError as exc:
        raise UserError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UserError(located(file, NOT_UTF8, line, col)) from None
    try:
        raw, marks, problems = load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "syntax error"
        if exc.context and exc.context_mark and exc.problem:
            reason += f" ({exc.context} at line {exc.context_mark.line + 1})"
        msg = INVALID_YAML.format(reason=reason)
        if mark is None:
            raise UserError(located(file, msg)) from None
        raise UserError(located(file, msg, mark.line + 1, mark.column + 1)) from None
    except yaml.reader.ReaderError as exc:  # a control character; located by offset
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        reason = f"unacceptable character #x{char:04x}"
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise UserError(located(file, INVALID_YAML.format(reason=reason), line, col)) from None
    except yaml.YAMLError as exc:
        raise UserError(located(file, INVALID_YAML.format(reason=exc))) from None
    if raw is None and problems:  # the walk was aborted (alias bomb, recursion, bad value)
        raise UserError(located(file, problems[0].message, problems[0].line, problems[0].col))
    if raw is None:
        raise UserError(located(file, EMPTY))
    if not isinstance(raw, dict):
        kind = "a list" if isinstance(raw, list) else show(raw)
        raise UserError(located(file, NOT_A_MAPPING.format(type=kind), *marks.value_at(())))
    return raw, marks, problems


def check_version(
    raw: dict[str, Any], marks: Marks, file: str, want: int, field: str = "schema_version"
) -> None:
    """The schema version is checked first and alone: a later version may differ anywhere,
    so its other errors would only mislead."""
    if field not in raw:
        msg = VERSION_MISSING.format(field=field, want=want)
        raise UserError(located(file, f"{field}: {msg}", *marks.value_at(())))
    got = raw[field]
    if got != want or isinstance(got, bool):
        msg = VERSION_UNSUPPORTED.format(got=show(got), field=field, want=want)
        raise UserError(located(file, f"{field}: {msg}", *marks.value_at((field,))))


# pydantic error type -> message (ctx fields fill the braces)
_MESSAGES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "too_short": "must have at least {min_length} item(s)",
    "string_too_short": "must not be empty",
    "literal_error": "must be one of {expected}",
    "string_type": "must be text",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def show(value: Any) -> str:
    """A scalar as the user would write it in YAML (strings quoted, shortened)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def validation_errors(
    exc: ValidationError,
    raw: Any,
    marks: Marks,
    *,
    root: type[BaseModel],
    tags: Mapping[str, type[BaseModel] | None],
) -> list[Located]:
    """Locate every error of ``root.model_validate(raw)`` in the YAML.

    ``tags`` names the discriminated-union tags pydantic inserts in an error's loc (and
    the model each selects, None for a non-model member): they are not in the YAML, so
    ``('tasks', 0, 'classification', 'prompt')`` becomes ``tasks[0].prompt``. A missing
    field points at its parent mapping, an unknown key at the key itself.
    """
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path, missing = _data_path(loc, raw, tags)
        kind, ctx = err["type"], err.get("ctx") or {}
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            field_name = str(ctx.get("discriminator", "")).strip("'")
            missing = kind == "union_tag_not_found"
            path = (*path, field_name)
            names = [t for t, cls in tags.items() if cls and field_name in cls.model_fields]
            msg = f"{MISSING} ({' | '.join(names)})"
            if not missing:
                msg = f"must be one of {' | '.join(names)}, got {show(ctx.get('tag'))}"
        else:
            msg = _message(err, loc, root, tags, missing)
        if missing:
            line, col = marks.value_at(path[:-1])
        elif kind == "extra_forbidden":
            line, col = marks.key_at(path)
        else:
            line, col = marks.value_at(path)
        out.append((line, col, f"{format_path(path)}: {msg}"))
    return out


def _message(
    err: Any,
    loc: tuple[Any, ...],
    root: type[BaseModel],
    tags: Mapping[str, type[BaseModel] | None],
    missing: bool,
) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if missing or kind == "missing":
        return MISSING
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1], root, tags)
        if model is None:
            return UNKNOWN
        allowed = list(model.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        return (
            f"{UNKNOWN} (did you mean '{close[0]}'?)"
            if close
            else f"{UNKNOWN}; allowed: {', '.join(allowed)}"
        )
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    text = _MESSAGES.get(kind)
    # 1.0 -> 1: bounds of float fields are stored as floats
    ctx = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in ctx.items()}
    msg = text.format(**ctx) if text else err["msg"][:1].lower() + err["msg"][1:]
    value = err.get("input")
    if value is None or isinstance(value, str | int | float | bool):
        msg += f", got {show(value)}"
    return msg


def _data_path(loc: tuple[Any, ...], raw: Any, tags: Mapping[str, Any]) -> tuple[Path, bool]:
    """Follow a pydantic loc through the YAML data: (path, whether its last key is missing)."""
    path: list[str | int] = []
    cur = raw
    for el in loc:
        if (
            isinstance(cur, list)
            and isinstance(el, int)
            and 0 <= el < len(cur)
            or isinstance(cur, dict)
            and el in cur
        ):
            cur = cur[el]
        elif el in tags:
            continue
        else:
            return (*path, el), True
        path.append(el)
    return tuple(path), False


def _model_at(
    loc: tuple[Any, ...], root: type[BaseModel], tags: Mapping[str, type[BaseModel] | None]
) -> type[BaseModel] | None:
    """The model validated at a (tagged) loc, to suggest a field for an unknown key."""
    cls: type[BaseModel] | None = root
    for el in loc:
        if cls is None:
            return None
        if isinstance(el, int):
            continue
        if el in tags:
            cls = tags[el]
        elif el in cls.model_fields:
            cls = _first_model(cls.model_fields[el].annotation)
        else:
            return None
    return cls


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _first_model(arg)
        if found is not None:
            return found
    return None
