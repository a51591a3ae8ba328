"""The run's record: manifest.json and history.jsonl, written atomically.

history.jsonl holds one JSON object per evaluation: ``{"step", "epoch", "train_loss",
"val_loss"}`` (train_loss is the unweighted training cross-entropy averaged since the
previous evaluation, val_loss the validation cross-entropy per target token), plus
``val_accuracy``, ``val_majority`` and ``val_chance`` when the validation completions
form a label set (finetune.train.validation). manifest.json says what was trained on what:
the base model's fingerprint, sha256 of each data file, the resolved config, library
versions, seed, the validation metric and label set, losses and accuracies, best step,
the curation report and the learning-curve diagnosis. The harness report renders both when it audits the folder.
"""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.atomic import write_atomic
from harness.metrics.finite import finite_float as finite

MANIFEST = "manifest.json"
HISTORY = "history.jsonl"
MANIFEST_VERSION = 1
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors", "datasets")


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries that shape a run."""
    out = {"python": platform.python_version()}
    for name in ("llm-release-harness", *LIBRARIES):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def history_from_log(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per evaluation, from the Trainer's log history."""
    train: dict[int, float] = {}
    points: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        step = int(entry.get("step", 0))
        if "train_ce" in entry:
            train[step] = float(entry["train_ce"])
        elif "loss" in entry:
            train.setdefault(step, float(entry["loss"]))
        if "eval_loss" in entry:
            points[step] = {
                "step": step,
                "epoch": round(float(entry.get("epoch", 0.0)), 4),
                "train_loss": None,
                "val_loss": finite(entry["eval_loss"]),
            }
            for key in ("accuracy", "majority", "chance"):
                if f"eval_{key}" in entry:
                    points[step][f"val_{key}"] = finite(entry[f"eval_{key}"])
    for step, point in points.items():
        point["train_loss"] = finite(train.get(step))
    return [points[s] for s in sorted(points)]


def write_run_record(out: Path, manifest: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Write history.jsonl, then manifest.json (its presence marks a finished run)."""
    lines = "".join(json.dumps(point, allow_nan=False) + "\n" for point in history)
    write_atomic(out / HISTORY, lines)
    text = json.dumps(manifest, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    write_atomic(out / MANIFEST, text)


def base_manifest() -> dict[str, Any]:
    """The fields every manifest starts with."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "libraries": library_versions(),
    }
