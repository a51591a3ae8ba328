"""The search space of ``finetune search``: its declaration in the config, and the
settings it may name.

A space names numeric settings of the config by their dotted path (``training.lr``,
``lora.r``, ``anti_forgetting.kl_to_base.weight``) and gives each a list of choices or
a range. ``load_config`` checks every name and every bound against the schema, so a
search never starts with a trial that cannot run.
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, model_validator

from harness.config.schema_base import StrictModel

Path = tuple[str | int, ...]

# user-facing messages (tests assert them exactly)
NOT_SEARCHABLE = "not a numeric setting of this config; searchable: {names}"
NOT_SET = "the config has no '{section}' section to vary"
SEARCH_VALUE = "value {value} is invalid for {name}: {reason}"
PARAM_SHAPE = "give either choices, or low and high"
PARAM_BOUNDS = "low must be < high"
PARAM_LOG = "log scale needs low > 0"
PARAM_LOG_STEP = "a log scale takes no step"

# the seed and the data curation are not hyperparameters: varying them changes the
# noise or the data that the trials are compared on; what the validation measures is
# what the trials are ranked by; a cache's size changes only the time a run takes
NOT_HYPERPARAMETERS = (
    "schema_version",
    "training.seed",
    "curation.",
    "augmentation.seed",
    "validation.",
    "anti_forgetting.kl_to_base.cache_mb",
)


class SearchParam(StrictModel):
    """One searched setting: a list of `choices`, or a range `low`..`high`."""

    choices: list[float | int] | None = Field(default=None, min_length=1)
    """The values to try."""
    low: float | None = None
    """Lower end of the range."""
    high: float | None = None
    """Upper end of the range."""
    log: bool = False
    """Sample the range on a log scale (learning rates)."""
    step: float | None = Field(default=None, gt=0)
    """Spacing of the range's values (needed by the grid sampler for real ranges)."""

    @model_validator(mode="after")
    def _shape(self) -> SearchParam:
        ranged = self.low is not None and self.high is not None
        if (self.choices is not None) == ranged or (self.low is None) != (self.high is None):
            raise ValueError(PARAM_SHAPE)
        if ranged and self.low is not None and self.high is not None:
            if self.low >= self.high:
                raise ValueError(PARAM_BOUNDS)
            if self.log and self.low <= 0:
                raise ValueError(PARAM_LOG)
            if self.log and self.step is not None:
                raise ValueError(PARAM_LOG_STEP)
        return self


class SearchSpec(StrictModel):
    """Hyperparameter search with Optuna (`finetune search`); the objective is the
    `validation.metric` of each trial's best checkpoint: its validation accuracy
    (maximized; the loss breaks ties) when the validation completions form a label set or
    the config asks for accuracy, else its validation loss (minimized). `auto` is decided
    once, on the curated data, before the first trial."""

    space: dict[str, SearchParam] = Field(min_length=1)
    """Settings to search, by dotted name: training.lr, training.epochs, lora.r,
    lora.alpha, lora.dropout, anti_forgetting.kl_to_base.weight, ..., e.g.
    {training.lr: {low: 1e-5, high: 1e-3, log: true}, lora.r: {choices: [4, 8, 16]}}."""
    sampler: Literal["grid", "random", "tpe"] = "tpe"
    """grid: every combination (ranges need `step` or integer settings); random; tpe
    (Tree-structured Parzen Estimator)."""
    trials: int = Field(default=10, ge=1)
    """Number of trials (grid: at most the grid's size)."""
    seed: int = 0
    """Seed of the sampler."""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model of a field typed ``Model`` or ``Model | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        models = [a for a in get_args(annotation) if a is not type(None)]
        if len(models) == 1:
            return _model_in(models[0])
    return None


def _number(annotation: Any) -> type | None:
    """int or float for a field typed ``int``, ``float`` or either ``| None``."""
    if annotation in (int, float):
        return annotation  # type: ignore[no-any-return]
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [a for a in get_args(annotation) if a is not type(None)]
        if len(kinds) == 1 and kinds[0] in (int, float):
            return kinds[0]  # type: ignore[no-any-return]
    return None


def searchable(model: type[BaseModel], prefix: str = "") -> dict[str, type]:
    """Dotted names of the numeric settings a search may vary, and their types."""
    out: dict[str, type] = {}
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        if dotted.startswith(NOT_HYPERPARAMETERS) or name == "search":
            continue
        sub = _model_in(field.annotation)
        if sub is not None:
            out.update(searchable(sub, f"{dotted}."))
        elif (kind := _number(field.annotation)) is not None:
            out[dotted] = kind
    return out


def with_values(config: Any, values: dict[str, Any]) -> Any:
    """A copy of ``config`` (any config model) with dotted settings replaced, validated
    again (pydantic's ValidationError if a value does not fit)."""
    data = config.model_dump()
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
    new = type(config).model_validate(data)
    new._source_path = getattr(config, "_source_path", None)
    return new


def search_problems(config: Any) -> list[tuple[Path, str]]:
    """Search settings that name no numeric setting, or whose values do not validate."""
    if config.search is None:
        return []
    names = searchable(type(config))
    found: list[tuple[Path, str]] = []
    for dotted, param in config.search.space.items():
        where: Path = ("search", "space", dotted)
        if dotted not in names:
            found.append((where, NOT_SEARCHABLE.format(names=", ".join(names))))
            continue
        section, node = [], config
        for part in dotted.split(".")[:-1]:
            section.append(part)
            node = getattr(node, part)
            if node is None:
                found.append((where, NOT_SET.format(section=".".join(section))))
                break
        if node is None:
            continue
        values = param.choices if param.choices is not None else [param.low, param.high]
        for value in values:
            if names[dotted] is int and value is not None:
                value = int(value)
            try:
                with_values(config, {dotted: value})
            except ValidationError as exc:
                reason = exc.errors()[0]["msg"]
                found.append((where, SEARCH_VALUE.format(value=value, name=dotted, reason=reason)))
    return found
