"""finetune.reweight: weights that balance group (x label) cells."""

from __future__ import annotations

import pytest

from finetune.data import Example
from finetune.reweight import balance_weights
from harness.errors import UserError

GROUPS = [("a", 0), ("a", 0), ("a", 0), ("a", 1), ("b", 0), ("b", 0)]


def examples() -> list[Example]:
    return [
        Example(f"p{i}", " c", "t.jsonl", i, {"group": g, "label": y})
        for i, (g, y) in enumerate(GROUPS, start=1)
    ]


def test_group_x_label_cells_get_equal_total_weight() -> None:
    weights, report = balance_weights(examples(), "group", "label")
    # N = 6 examples in K = 3 cells: w = 6 / (3 * n_cell)
    assert weights == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0, 1.0, 1.0])
    assert report["cells"] == [
        {"group": "a", "label": "0", "count": 3, "weight": pytest.approx(2 / 3)},
        {"group": "a", "label": "1", "count": 1, "weight": 2.0},
        {"group": "b", "label": "0", "count": 2, "weight": 1.0},
    ]
    assert sum(weights) == pytest.approx(len(weights))  # the mean weight is 1


def test_group_only_cells() -> None:
    weights, report = balance_weights(examples(), "group")
    # groups a (4) and b (2): 6 / (2 * 4) and 6 / (2 * 2); each group totals 3
    assert weights == pytest.approx([0.75] * 4 + [1.5] * 2)
    assert report["by"] == ["group"]


def test_a_row_without_the_group_field_is_located() -> None:
    rows = [*examples(), Example("p7", " c", "t.jsonl", 7, {"label": 1})]
    with pytest.raises(UserError) as exc:
        balance_weights(rows, "group", "label")
    assert exc.value.messages == [
        "t.jsonl line 7: missing field 'group' (named by fairness.reweight.group)"
    ]
