"""harness.gates.verdicts: min/max bounds, severity, NaN, overall verdict and exit code."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.gates import verdicts as gates


def gate(
    metric: str, min: float | None = None, max: float | None = None, severity: str = "fail", **kw
):  # type: ignore[no-untyped-def]
    extra = {
        "max_drop": None,
        "max_increase": None,
        "relative": False,
        "significant": False,
        "alpha": 0.05,
        **kw,
    }
    return SimpleNamespace(
        metric=metric, min=min, max=max, severity=severity, description=None, **extra
    )


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
        (gate("sent.f1[negative]", min=0.4, max=0.6), "pass", "0.5 >= 0.4; 0.5 <= 0.6"),
        (gate("sent.missing", min=0.1), "fail", "no value (the metric is undefined on this data)"),
    ],
)
def test_gate_verdicts(g, verdict: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (result,) = gates.evaluate(
        [g], gates.task_values({k: {"metrics": v} for k, v in VALUES.items()})
    )
    assert result["verdict"] == verdict
    assert result["message"] == message


def test_nan_never_passes() -> None:
    (result,) = gates.evaluate([gate("x.y", max=1.0)], {"x.y": {"value": float("nan")}})
    assert result["verdict"] == "fail"


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinity_never_passes(value: float) -> None:
    """inf >= min would hold: an infinite value is no value (it used to pass a min gate)."""
    (result,) = gates.evaluate([gate("x.y", min=0.5)], {"x.y": {"value": value}})
    assert (result["verdict"], result["message"]) == ("fail", gates.NO_VALUE)


def test_a_missing_value_says_why() -> None:
    tasks = {"t": {"metrics": {"score": {"value": None, "reason": "plug-in 'p.py' returned nan"}}}}
    (result,) = gates.evaluate([gate("t.score", min=0.5)], gates.task_values(tasks))
    assert result["verdict"] == "fail"
    assert result["message"] == "no value (plug-in 'p.py' returned nan)"


def test_overall_and_exit_code() -> None:
    assert gates.overall([]) == "pass"
    assert gates.overall([{"verdict": "pass"}, {"verdict": "warn"}]) == "warn"
    assert gates.overall([{"verdict": "warn"}, {"verdict": "fail"}]) == "fail"
    assert gates.exit_code("warn") == 0
    assert gates.exit_code("fail") == 1


@pytest.mark.parametrize(
    ("kw", "entry", "verdict", "message"),
    [
        (
            {"max_drop": 0.02},
            {"value": 0.80, "reference": 0.81, "source": "base"},
            "pass",
            "drop 0.01 vs base 0.81 <= 0.02",
        ),
        (
            {"max_drop": 0.02},
            {"value": 0.70, "reference": 0.80, "source": "base"},
            "fail",
            "drop 0.1 vs base 0.8 > max_drop 0.02",
        ),
        (
            {"max_increase": 0.1, "relative": True},
            {"value": 12.0, "reference": 10.0, "source": "base"},
            "fail",
            "increase 0.2 (relative) vs base 10 > max_increase 0.1",
        ),
        (
            {"max_drop": 0.01, "significant": True},
            {"value": 0.7, "reference": 0.8, "p_value": 0.2, "source": "baseline"},
            "pass",
            "drop 0.1 vs baseline 0.8 > 0.01 but not significant (p=0.2)",
        ),
        (
            {"max_drop": 0.01, "significant": True},
            {"value": 0.7, "reference": 0.8, "p_value": 0.001, "source": "baseline"},
            "fail",
            "drop 0.1 vs baseline 0.8 > max_drop 0.01, p=0.001",
        ),
        (
            {"max_drop": 0.01},
            {"value": 0.7},
            "fail",
            "no reference value (relative gates need a baseline run or a forgetting audit)",
        ),
    ],
)
def test_relative_gates(kw, entry, verdict: str, message: str) -> None:  # type: ignore[no-untyped-def]
    (result,) = gates.evaluate(
        [gate("forgetting.qa.accuracy", **kw)], {"forgetting.qa.accuracy": entry}
    )
    assert (result["verdict"], result["message"]) == (verdict, message)
