"""harness.gates: min/max bounds, severity, NaN, overall verdict and exit code."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness import gates


def gate(metric: str, min: float | None = None, max: float | None = None, severity: str = "fail"):  # type: ignore[no-untyped-def]
    return SimpleNamespace(metric=metric, min=min, max=max, severity=severity, description=None)


VALUES = {
    "sent": {"accuracy": {"value": 0.85}, "f1[negative]": {"value": 0.5}},
    "lm": {"perplexity": {"value": 41.0}},
}


@pytest.mark.parametrize(
    ("g", "verdict", "message"),
    [
        (gate("sent.accuracy", min=0.8), "pass", "0.85 >= 0.8"),
        (gate("sent.accuracy", min=0.9), "fail", "0.85 < min 0.9"),
        (gate("sent.accuracy", min=0.9, severity="warn"), "warn", "0.85 < min 0.9"),
        (gate("lm.perplexity", max=40), "fail", "41 > max 40"),
        (gate("sent.f1[negative]", min=0.4, max=0.6), "pass", "0.5 >= 0.4 and <= 0.6"),
        (gate("sent.missing", min=0.1), "fail", "no value (the metric is undefined on this data)"),
    ],
)
def test_gate_verdicts(g, verdict: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (result,) = gates.evaluate([g], VALUES)
    assert result["verdict"] == verdict
    assert result["message"] == message


def test_nan_never_passes() -> None:
    (result,) = gates.evaluate([gate("x.y", max=1.0)], {"x": {"y": {"value": float("nan")}}})
    assert result["verdict"] == "fail"


def test_overall_and_exit_code() -> None:
    assert gates.overall([]) == "pass"
    assert gates.overall([{"verdict": "pass"}, {"verdict": "warn"}]) == "warn"
    assert gates.overall([{"verdict": "warn"}, {"verdict": "fail"}]) == "fail"
    assert gates.exit_code("warn") == 0
    assert gates.exit_code("fail") == 1
