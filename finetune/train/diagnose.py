"""Learning-curve diagnosis: no learning, overfitting and underfitting, with the evidence.

First, when the validation rows form a label set (finetune.train.validation), whether the
saved checkpoint learned the task at all:

- not above chance: its validation accuracy is not significantly above the
  majority-class baseline (the share of the most frequent label, which a constant
  answer reaches): a one-sided binomial test of ``correct`` of ``n`` rows against that
  share gives p >= ``alpha``. A loss can fall for a model that only learned the form of
  the answers (the end-of-sequence token, which label comes most often), so the losses
  alone cannot say this.

Then, read from the history (one point per evaluation: step, train_loss, val_loss):

- overfitting, rising validation: over the last ``window`` evaluations the validation
  loss rose at every evaluation while the training loss fell overall;
- overfitting, gap: at the last evaluation the validation loss exceeds the training loss
  by more than ``gap`` (relative: val / train - 1);
- underfitting: both losses are high (the training loss is still above ``high`` times
  its first value, i.e. it fell by less than 1 - ``high``) and flat (each changed by less
  than ``flat``, relatively, over the last ``window`` evaluations).

The thresholds are recorded with the verdict, so a reader can see what was tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from finetune.config.diagnosis import Thresholds
from finetune.train.validation import binomial_p

VERDICTS = ("ok", "not_above_chance", "overfitting", "underfitting", "too_short")


def _points(history: Sequence[dict[str, Any]]) -> list[tuple[int, float, float]]:
    out = []
    for h in history:
        train, val = h.get("train_loss"), h.get("val_loss")
        if isinstance(train, int | float) and isinstance(val, int | float):
            out.append((int(h["step"]), float(train), float(val)))
    return out


def _rel_change(values: Sequence[float]) -> float:
    return abs(values[-1] - values[0]) / max(abs(values[0]), 1e-12)


def chance_test(validation: dict[str, Any], alpha: float) -> dict[str, Any]:
    """The evidence of the accuracy rule: the ``validation`` numbers (accuracy, correct,
    n, majority, chance) with the binomial p-value and whether it is above chance."""
    p = binomial_p(int(validation["correct"]), int(validation["n"]), validation["majority"])
    return {**validation, "p_value": p, "alpha": alpha, "above_chance": p < alpha}


def _chance_message(v: dict[str, Any]) -> str:
    return (
        f"validation accuracy {v['accuracy']:.4f} ({v['correct']}/{v['n']}) is not above the "
        f"majority-class baseline {v['majority']:.4f} (chance {v['chance']:.4f}): one-sided "
        f"binomial p = {v['p_value']:.3g} >= {v['alpha']}"
    )


def diagnose(
    history: Sequence[dict[str, Any]],
    thresholds: Thresholds | None = None,
    *,
    validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """{"verdict", "findings": [{kind, rule, message, ...evidence}], "thresholds",
    "validation"}.

    ``validation`` is the saved checkpoint's {accuracy, correct, n, majority, chance}
    on a label set (None without one); its test is recorded under "validation"."""
    t = thresholds or Thresholds()
    points = _points(history)
    out: dict[str, Any] = {"verdict": "ok", "findings": [], "thresholds": asdict(t)}
    if validation is not None:
        evidence = chance_test(validation, t.alpha)
        out["validation"] = evidence
        if not evidence["above_chance"]:
            out["findings"].append(
                {
                    "kind": "not_above_chance",
                    "rule": "binomial_vs_majority",
                    "message": _chance_message(evidence),
                    **{k: evidence[k] for k in ("accuracy", "correct", "n", "majority")},
                    "chance": evidence["chance"],
                    "p_value": evidence["p_value"],
                }
            )
    if len(points) < 2:
        out["findings"].append(
            {
                "kind": "too_short",
                "rule": "points",
                "message": f"{len(points)} evaluation(s) logged; the diagnosis needs 2 or more",
                "steps": [p[0] for p in points],
                "train_loss": [p[1] for p in points],
                "val_loss": [p[2] for p in points],
            }
        )
        out["verdict"] = out["findings"][0]["kind"]
        return out
    last = points[-t.window :]
    steps = [p[0] for p in last]
    train = [p[1] for p in last]
    val = [p[2] for p in last]

    def finding(
        kind: str, rule: str, message: str, pts: Sequence[tuple[int, float, float]]
    ) -> None:
        out["findings"].append(
            {
                "kind": kind,
                "rule": rule,
                "message": message,
                "steps": [p[0] for p in pts],
                "train_loss": [round(p[1], 6) for p in pts],
                "val_loss": [round(p[2], 6) for p in pts],
            }
        )

    rising = len(last) >= 3 and all(b > a for a, b in zip(val, val[1:], strict=False))
    if rising and train[-1] < train[0]:
        finding(
            "overfitting",
            "val_rising",
            f"validation loss rose {val[0]:.4f} -> {val[-1]:.4f} over steps {steps[0]}-"
            f"{steps[-1]} while training loss fell {train[0]:.4f} -> {train[-1]:.4f}",
            last,
        )
    step, tr, va = points[-1]
    if tr > 0 and va / tr - 1 > t.gap:
        finding(
            "overfitting",
            "gap",
            f"at step {step} validation loss {va:.4f} is {va / tr - 1:.0%} above "
            f"training loss {tr:.4f} (threshold {t.gap:.0%})",
            [points[-1]],
        )
    first_train = points[0][1]
    high = tr > t.high * first_train
    flat = len(last) >= 2 and _rel_change(train) < t.flat and _rel_change(val) < t.flat
    loss_findings = [f for f in out["findings"] if f["kind"] != "not_above_chance"]
    if high and flat and not loss_findings:
        finding(
            "underfitting",
            "high_and_flat",
            f"training loss {tr:.4f} is still {tr / first_train:.0%} of its first value "
            f"{first_train:.4f}, and both losses changed by less than {t.flat:.0%} over steps "
            f"{steps[0]}-{steps[-1]}",
            [points[0], *last] if points[0] not in last else last,
        )
    if out["findings"]:
        out["verdict"] = out["findings"][0]["kind"]
    return out


def print_diagnosis(diagnosis: dict[str, Any], console: Any) -> None:
    """The verdict and its evidence, with rich."""
    colour = {"ok": "green", "overfitting": "red", "underfitting": "yellow"}.get(
        diagnosis["verdict"], "yellow"
    )
    colour = "red" if diagnosis["verdict"] == "not_above_chance" else colour
    verdict = diagnosis["verdict"].replace("_", " ")
    console.print(f"[bold {colour}]learning curves: {verdict}[/]")
    v = diagnosis.get("validation")
    if v is not None:
        console.print(
            f"  validation accuracy {v['accuracy']:.4f} ({v['correct']}/{v['n']}), majority "
            f"baseline {v['majority']:.4f}, chance {v['chance']:.4f}; one-sided binomial p = "
            f"{v['p_value']:.3g} against the majority baseline",
            markup=False,
            highlight=False,
        )
    for f in diagnosis["findings"]:
        console.print(f"  {f['kind']} ({f['rule']}): {f['message']}", markup=False, highlight=False)
