"""The suite schema of a generation task's answer settings: ``extract`` and ``normalize``
(harness.config.schema ``GenerationTask``; applied by harness.tasks.answers)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from harness.config.schema_base import StrictModel

# user-facing messages (tests assert them exactly)
BAD_REGEX = "invalid regular expression: {reason}"
NO_GROUP = "group {group} does not exist: the pattern has {groups} group(s)"


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(BAD_REGEX.format(reason=exc)) from None
    return value


class Extract(StrictModel):
    """How the answer is taken out of a generation before metrics (lm-eval's `regex`
    filter): e.g. `{regex: '#### (\\-?[0-9\\.\\,]+)'}` for GSM8K."""

    regex: Annotated[str, Field(min_length=1), AfterValidator(_regex)]
    """Python regular expression searched in the generation."""
    group: int | None = Field(default=None, ge=0)
    """The group of the match that is the answer (0: the whole match); default 1 when
    the pattern has groups, else 0. When the pattern has several groups and this one is
    empty in the match, the match's first non-empty group is taken (as lm-eval does)."""
    select: Literal["first", "last"] = "first"
    """Which match counts when there are several: the first or the last (lm-eval's
    `group_select` 0 or -1)."""
    fallback: str = "[invalid]"
    """The answer when nothing matches."""

    @field_validator("group")
    @classmethod
    def _group(cls, value: int | None, info: ValidationInfo) -> int | None:
        regex = info.data.get("regex")  # absent when the regex itself was refused
        if value is None or regex is None:
            return value
        groups = re.compile(regex).groups
        if value > groups:
            raise ValueError(NO_GROUP.format(group=value, groups=groups))
        return value


class Normalize(StrictModel):
    """Changes made to the extracted answer and to every reference before metrics, in
    the order listed (lm-eval's exact_match options: `regexes_to_ignore`, `ignore_case`,
    `ignore_punctuation`)."""

    remove: list[Annotated[str, Field(min_length=1), AfterValidator(_regex)]] = Field(
        default_factory=list
    )
    """Regular expressions whose matches are deleted, each in turn, e.g. `[',', '\\$']`."""
    lower: bool = False
    """Lower-case the text."""
    punctuation: bool = False
    """Delete ASCII punctuation (Python's `string.punctuation`)."""
    commas: bool = False
    """Delete commas (thousands separators)."""
    strip: bool = False
    """Strip whitespace from both ends."""
