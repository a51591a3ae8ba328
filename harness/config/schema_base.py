"""The base of every schema read from YAML (suite, audit configs, fine-tune config).

Unknown fields are errors (a typo fails), field docstrings document (the generated
references read them), and YAML's ``true``/``false`` is never read as a number: pydantic
would take ``min: true`` as 1 and ``limit: false`` as 0.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

BOOL_NOT_NUMBER = "must be a number, not a boolean"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    @model_validator(mode="wrap")
    @classmethod
    def _no_bool_numbers(cls, data: Any, handler: Any) -> Any:
        if isinstance(data, dict):
            errors = [
                InitErrorDetails(
                    type=PydanticCustomError("bool_not_number", BOOL_NOT_NUMBER),
                    loc=(name,),
                    input=value,
                )
                for name, value in data.items()
                if isinstance(value, bool) and name in cls.model_fields and _numeric(cls, name)
            ]
            if errors:
                raise ValidationError.from_exception_data(cls.__name__, errors)
        return handler(data)


def _numeric(model: type[BaseModel], name: str) -> bool:
    """Whether a field holds numbers and not booleans."""
    kinds = _leaf_types(model.model_fields[name].annotation)
    return bool(kinds & {int, float}) and not kinds & {bool, Any}


def _leaf_types(annotation: Any) -> set[Any]:
    """The plain types a field's annotation is made of (unions, Annotated, Optional)."""
    args = typing.get_args(annotation)
    if not args:
        return {annotation}
    return set().union(*(_leaf_types(a) for a in args))
