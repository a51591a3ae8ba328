"""Group reweighting: per-example loss weights that balance group (x label) cells.

Kamiran & Calders (2012, "Data preprocessing techniques for classification without
discrimination") reweigh examples so that no group dominates the loss. Here every
non-empty cell (a group, or a group x label pair) gets the same total weight: with N
examples in K cells, an example in a cell of n examples weighs N / (K * n). The weights
average 1, so the loss keeps its scale.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from finetune.data.examples import Example
from harness.errors import UserError, row_error

MISSING_GROUP = "missing field '{name}' (named by fairness.reweight.{role})"


def _cell_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def balance_weights(
    examples: Sequence[Example], group: str, label: str | None = None
) -> tuple[list[float], dict[str, Any]]:
    """(weight of each example, report of the cells) for the group (x label) cells."""
    errors = []
    keys: list[tuple[str, ...]] = []
    for ex in examples:
        key = []
        for role, name in (("group", group), ("label", label)):
            if name is None:
                continue
            if name not in ex.fields:
                errors.append(
                    row_error(ex.file, ex.line, MISSING_GROUP.format(name=name, role=role))
                )
            else:
                key.append(_cell_value(ex.fields[name]))
        keys.append(tuple(key))
    if errors:
        raise UserError(errors[:20])
    counts = Counter(keys)
    total, cells = len(keys), len(counts)
    weight = {key: total / (cells * n) for key, n in counts.items()}
    names = [group] if label is None else [group, label]
    report = {
        "by": names,
        "cells": [
            {**dict(zip(names, key, strict=True)), "count": n, "weight": weight[key]}
            for key, n in sorted(counts.items())
        ],
    }
    return [weight[k] for k in keys], report
