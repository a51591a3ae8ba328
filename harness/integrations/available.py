"""Which experiment trackers exist, and whether each is installed: checked before any work.

The trackers are optional (``pip install 'llm-release-harness[trackers]'``). Both
``harness run --log-to`` and ``finetune train --report-to`` check their names here
when the arguments are read, so a missing package is one error (exit 2) in a second,
not after an hour of evaluation or training.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

TRACKERS = ("mlflow", "wandb", "tensorboard")
"""The trackers, by the name the options take (transformers' ``report_to`` names)."""

# user-facing messages (tests assert them exactly)
UNKNOWN_TRACKER = "{option}: unknown tracker '{name}'; choose from mlflow, wandb, tensorboard"
MISSING_EXTRA = (
    "{option} {name}: cannot import {name} ({reason}); install the trackers extra: "
    "pip install 'llm-release-harness[trackers]'"
)


def split_names(values: Iterable[str] | str | None) -> list[str]:
    """Tracker names from option values, each a name or a comma list (``mlflow,wandb``),
    in order and without repeats."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    names: list[str] = []
    for item in items:
        for name in item.split(","):
            name = name.strip().lower()
            if name and name not in names:
                names.append(name)
    return names


def require(names: Iterable[str], option: str) -> list[str]:
    """``names`` checked: each a known tracker whose package imports. Raises UserError
    (every problem at once) naming the extra to install."""
    from harness.errors import UserError

    problems = []
    checked = list(names)
    for name in checked:
        if name not in TRACKERS:
            problems.append(UNKNOWN_TRACKER.format(option=option, name=name))
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a missing package or a broken install alike
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            problems.append(MISSING_EXTRA.format(option=option, name=name, reason=reason))
    if problems:
        raise UserError(problems)
    return checked
