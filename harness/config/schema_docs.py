"""Markdown references generated from pydantic schemas (suite and fine-tune config).

A :class:`SchemaReference` lists the models in reading order; each becomes a section
with one table row per field: its type in words, bounds, default (as YAML) and the
field's docstring. The suite reference (``harness.config.reference``) and the fine-tune config
reference (``finetune.config.reference``) differ only in their sections, labels and a
couple of special cases, passed in here.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

TYPE_NAMES = {str: "text", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class SchemaReference:
    """How to render one schema's reference."""

    intro: str
    sections: list[tuple[type[BaseModel], str, str]]  # (model, heading, anchor)
    labels: dict[type, str] = field(default_factory=dict)
    """Words for a model type in the type column (default: the class name)."""
    discriminated: str | None = None
    """Words for a discriminated union (default: the union's members)."""
    annotated_bounds: bool = True
    """Show the bounds of `Annotated[...]` metadata inside a type."""
    yaml_hook: Callable[[Any], str | None] | None = None
    """A default's YAML spelling where the generic one does not fit (None: generic)."""

    @property
    def anchors(self) -> dict[type, str]:
        return {model: anchor for model, _, anchor in self.sections}

    def render(self) -> str:
        parts = [self.intro]
        for model, heading, anchor in self.sections:
            parts.append(f'\n## <a id="{anchor}"></a>{heading}\n\n')
            if model.__doc__:
                parts.append(" ".join(model.__doc__.split()) + "\n\n")
            parts.append("| field | type | default | description |\n|---|---|---|---|\n")
            for name, info in model.model_fields.items():
                kind = self.type_words(info.annotation)
                bounds = bounds_words(info.metadata)
                if bounds:
                    kind += f", {bounds}"
                cells = [
                    f"`{name}`",
                    kind,
                    self.default(info),
                    " ".join((info.description or "").split()),
                ]
                parts.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n")
        return "".join(parts)

    def type_words(self, annotation: Any, nested: bool = False) -> str:
        """A type in words; ``nested`` parenthesizes a union inside a list or mapping."""
        origin, args = get_origin(annotation), get_args(annotation)
        if annotation is type(None):
            return "null"
        if annotation is Any:
            return "any"
        if annotation in TYPE_NAMES:
            return TYPE_NAMES[annotation]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            label = self.labels.get(annotation, annotation.__name__)
            anchors = self.anchors
            return f"[{label}](#{anchors[annotation]})" if annotation in anchors else label
        if origin is Annotated:
            if self.discriminated and any(getattr(a, "discriminator", None) for a in args[1:]):
                return self.discriminated
            inner = self.type_words(args[0], nested)
            bounds = bounds_words(list(args[1:])) if self.annotated_bounds else ""
            return f"{inner} ({bounds})" if bounds else inner
        if origin is Literal:
            return " | ".join(json.dumps(a) if isinstance(a, str) else str(a) for a in args)
        if origin is list:
            return f"list of {self.type_words(args[0], True)}"
        if origin is dict:
            return (
                f"mapping of {self.type_words(args[0], True)} to {self.type_words(args[1], True)}"
            )
        if origin in (Union, types.UnionType):
            words = " or ".join(self.type_words(a) for a in args)
            return f"({words})" if nested else words
        return str(annotation)

    def default(self, info: Any) -> str:
        if info.default_factory is not None:
            return f"`{self.yaml(info.default_factory())}`"
        if info.default is PydanticUndefined:
            return "required"
        return f"`{self.yaml(info.default)}`"

    def yaml(self, value: Any) -> str:
        """A default as it would be written in the YAML file (flow style)."""
        if self.yaml_hook is not None:
            special = self.yaml_hook(value)
            if special is not None:
                return special
        if isinstance(value, BaseModel):
            return self.yaml(value.model_dump())
        if value is None or isinstance(value, bool):
            return json.dumps(value)
        if isinstance(value, list):
            return "[" + ", ".join(self.yaml(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {self.yaml(v)}" for k, v in value.items()) + "}"
        if isinstance(value, str) and (not value.strip() or value != value.strip()):
            return json.dumps(value)  # "\n\n", " ": quoted, as YAML needs them
        return str(value)


def bounds_words(metadata: list[Any]) -> str:
    out = []
    for item in metadata:
        for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(item, getattr(annotated_types, attr.capitalize())):
                out.append(f"{op} {getattr(item, attr)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            out.append(f"at least {item.min_length} long" if item.min_length > 1 else "not empty")
    return ", ".join(out)


def main(reference: SchemaReference, path: Path, module: str, argv: list[str] | None) -> int:
    """Rewrite ``path``, or with --check exit 1 if it is stale."""
    return write_generated(path, reference.render(), module, argv)


def write_generated(path: Path, text: str, module: str, argv: list[str] | None) -> int:
    """Write a generated document atomically, or with --check exit 1 if ``path``
    differs from it (``module`` is what regenerates it, named in the message)."""
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is stale: run python -m {module}", file=sys.stderr)
            return 1
        return 0
    from harness.atomic import write_atomic

    write_atomic(path, text)  # whole or not at all, mode 0666 & ~umask
    print(f"wrote {path}")
    return 0
