"""Answer extraction and normalization for generation tasks (GSM8K style).

A generation such as "She pays 3 * $4 = $12.\\n#### 12" is scored on its answer, not on
its whole text: ``extract_answer`` takes the answer out with the task's regular
expression, and ``normalize_answer`` puts the answer and every reference in one form
(case, punctuation, commas, text to drop) before metrics compare them. Both are pure
functions of a text and the task's ``extract`` / ``normalize`` settings
(harness.config.schema ``Extract`` / ``Normalize``, read here by attribute).

They follow lm-evaluation-harness, so that a suite states a GSM8K-style task in the
terms an lm-eval task YAML uses: ``extract`` is its ``regex`` filter (``RegexFilter``,
lm_eval/filters/extraction.py) and ``normalize`` the options of its ``exact_match``
metric (``exact_match_hf_evaluate``, lm_eval/api/metrics.py). Where they differ is said
in each function.
"""

from __future__ import annotations

import functools
import re
import string
from typing import Literal, Protocol

_PUNCTUATION = str.maketrans("", "", string.punctuation)


class ExtractSpec(Protocol):
    """What ``extract_answer`` reads of a task's ``extract`` setting."""

    @property
    def regex(self) -> str: ...
    @property
    def group(self) -> int | None: ...
    @property
    def select(self) -> Literal["first", "last"]: ...
    @property
    def fallback(self) -> str: ...


class NormalizeSpec(Protocol):
    """What ``normalize_answer`` reads of a task's ``normalize`` setting."""

    @property
    def remove(self) -> list[str]: ...
    @property
    def lower(self) -> bool: ...
    @property
    def punctuation(self) -> bool: ...
    @property
    def commas(self) -> bool: ...
    @property
    def strip(self) -> bool: ...


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def extract_answer(text: str, cfg: ExtractSpec) -> str:
    """The answer in ``text``: one group of the first or last match of ``cfg.regex``,
    stripped of surrounding whitespace; ``cfg.fallback`` when nothing matches.

    Which group: ``cfg.group``, or by default group 1 when the pattern has groups and
    the whole match when it has none. When the pattern has several groups (alternatives
    such as ``(-?[$0-9.,]{2,})|(-?[0-9]+)``) and the chosen one took no part in the
    match or matched nothing, the first group of that match that is not empty is taken
    instead, and the fallback when all are empty.

    The same as lm-eval's ``regex`` filter: matches are found as ``re.findall`` finds
    them (left to right, not overlapping); ``select: first`` / ``last`` are its
    ``group_select`` 0 / -1; a pattern with one group gives that group even when it is
    empty; several groups give the first non-empty one; the result is stripped. What
    differs: lm-eval has no group index (it always takes the first non-empty group),
    whereas ``group`` here picks one and falls back to lm-eval's rule only when that
    group is empty, so the default gives lm-eval's result for every pattern; lm-eval
    indexes the list of matches with any ``group_select`` (1, -2, ...), here only the
    first or the last; and lm-eval strips the fallback in one of its two fallback
    paths, here the fallback is always returned as written.
    """
    pattern = _compiled(cfg.regex)
    matches = list(pattern.finditer(text))
    if not matches:
        return cfg.fallback
    match = matches[0] if cfg.select == "first" else matches[-1]
    if pattern.groups == 0:
        return match.group(0).strip()
    group = 1 if cfg.group is None else cfg.group
    value = match.group(group)
    if pattern.groups == 1 or group == 0:
        return (value or "").strip()
    if not value:
        value = next((g for g in match.groups() if g), None)
    return cfg.fallback if value is None else value.strip()


def normalize_answer(text: str, cfg: NormalizeSpec) -> str:
    """``text`` in the form metrics compare: each ``cfg.remove`` pattern deleted
    wherever it matches (in the order given), then lower case (``lower``), then ASCII
    punctuation deleted (``punctuation``), then commas deleted (``commas``), then
    surrounding whitespace stripped (``strip``).

    The same as lm-eval's ``exact_match`` options, in their order: ``regexes_to_ignore``
    is ``remove``, ``ignore_case`` is ``lower`` (``str.lower``) and
    ``ignore_punctuation`` is ``punctuation`` (``string.punctuation``). lm-eval has no
    ``commas`` (a GSM8K task lists "," among its regexes, which works here too) and no
    ``strip`` (its regex filter strips the extracted answer, as ``extract_answer``
    does; its metric never strips); it has ``ignore_numbers``, which is not here.
    """
    for pattern in cfg.remove:
        text = _compiled(pattern).sub("", text)
    if cfg.lower:
        text = text.lower()
    if cfg.punctuation:
        text = text.translate(_PUNCTUATION)
    if cfg.commas:
        text = text.replace(",", "")
    if cfg.strip:
        text = text.strip()
    return text
