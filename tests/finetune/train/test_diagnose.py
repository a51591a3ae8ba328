"""finetune.train.diagnose on synthetic learning curves (a real run is in test_train.py)."""

from __future__ import annotations

import io

from rich.console import Console

from finetune.config.diagnosis import Thresholds
from finetune.train.diagnose import diagnose, print_diagnosis


def history(train: list[float], val: list[float], every: int = 10) -> list[dict[str, float]]:
    return [
        {"step": every * (i + 1), "epoch": i + 1.0, "train_loss": t, "val_loss": v}
        for i, (t, v) in enumerate(zip(train, val, strict=True))
    ]


def test_val_rising_while_train_falls_is_overfitting() -> None:
    h = history([3.0, 2.0, 1.5, 1.0, 0.6], [3.1, 2.4, 2.5, 2.7, 2.9])
    d = diagnose(h)
    assert d["verdict"] == "overfitting"
    first = d["findings"][0]
    assert first["rule"] == "val_rising"
    assert first["steps"] == [30, 40, 50]
    assert first["train_loss"] == [1.5, 1.0, 0.6]
    assert first["val_loss"] == [2.5, 2.7, 2.9]
    assert first["message"] == (
        "validation loss rose 2.5000 -> 2.9000 over steps 30-50 while training loss fell "
        "1.5000 -> 0.6000"
    )
    # the last gap (2.9 vs 0.6) is large too: both pieces of evidence are listed
    assert [f["rule"] for f in d["findings"]] == ["val_rising", "gap"]


def test_a_large_gap_alone_is_overfitting() -> None:
    d = diagnose(history([2.0, 1.2, 1.0], [2.2, 2.0, 1.9]))
    assert d["verdict"] == "overfitting"
    (finding,) = d["findings"]
    assert finding["rule"] == "gap"
    assert finding["steps"] == [30]
    assert finding["message"] == (
        "at step 30 validation loss 1.9000 is 90% above training loss 1.0000 (threshold 50%)"
    )


def test_high_and_flat_is_underfitting() -> None:
    d = diagnose(history([5.70, 5.69, 5.69, 5.68], [5.71, 5.70, 5.70, 5.70]))
    assert d["verdict"] == "underfitting"
    (finding,) = d["findings"]
    assert finding["rule"] == "high_and_flat"
    assert finding["steps"] == [10, 20, 30, 40]  # the first point and the last window
    assert finding["train_loss"] == [5.7, 5.69, 5.69, 5.68]


def test_a_good_fit_and_a_short_history() -> None:
    assert diagnose(history([3.0, 2.0, 1.5, 1.3], [3.0, 2.1, 1.7, 1.6])) == {
        "verdict": "ok",
        "findings": [],
        "thresholds": {"window": 3, "gap": 0.5, "high": 0.9, "flat": 0.02, "alpha": 0.05},
    }
    assert diagnose(history([3.0], [3.1]))["verdict"] == "too_short"
    # a looser gap threshold turns the gap case into a good fit
    assert (
        diagnose(history([2.0, 1.2, 1.0], [2.2, 2.0, 1.9]), Thresholds(gap=1.0))["verdict"] == "ok"
    )


def test_printed_with_the_evidence() -> None:
    out = io.StringIO()
    d = diagnose(history([3.0, 2.0, 1.5, 1.0, 0.6], [3.1, 2.4, 2.5, 2.7, 2.9]))
    print_diagnosis(d, Console(file=out, width=200))
    lines = out.getvalue().splitlines()
    assert lines[0] == "learning curves: overfitting"
    assert lines[1].startswith("  overfitting (val_rising): validation loss rose 2.5000 -> 2.9000")
