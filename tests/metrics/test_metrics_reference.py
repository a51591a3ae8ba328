"""docs/metrics.md is generated from the registry and must be current."""

from __future__ import annotations

from harness.metrics import reference
from harness.metrics.base import available


def test_metrics_page_is_current() -> None:
    assert reference.main(["--check"]) == 0, (
        "docs/metrics.md is stale: run `python -m harness.metrics.reference`"
    )


def test_every_registered_metric_and_output_is_listed() -> None:
    text = reference.render()
    for name in available():
        assert f"| `{name}` |" in text
    assert "`rouge1`, `rouge2`, `rougeL`, `rougeLsum`" in text
    assert "`ece` | `ece` | `bins`: `15` | lower |" in text
