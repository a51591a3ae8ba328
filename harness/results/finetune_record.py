"""The fine-tune record of an adapter: the manifest and learning history that
`finetune train` saves beside it, read for results.json ("finetune", docs/results.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.data.rows import display_path, sha256_file
from harness.metrics.finite import null_non_finite

FINETUNE_MANIFEST, FINETUNE_HISTORY = "manifest.json", "history.jsonl"
HISTORY_CAP = 100_000  # logged points embedded at most
PROBLEMS_CAP = 20


def finetune_record(folder: str | None) -> dict[str, Any] | None:
    """The manifest and learning history `finetune train` saves beside an adapter.

    Embedded in results.json (docs/results.md, "finetune") so the report can show the
    learning curves and settings of the checkpoint it audits, with their sha256 for
    `harness verify`. None when the adapter folder has neither file. A file that does
    not parse is reported under "problems" rather than failing the evaluation; NaN and
    infinities become null (results.json is strict JSON).
    """
    if not folder:
        return None
    manifest_path, history_path = Path(folder) / FINETUNE_MANIFEST, Path(folder) / FINETUNE_HISTORY
    if not (manifest_path.is_file() or history_path.is_file()):
        return None
    out: dict[str, Any] = {"manifest": None, "history": [], "files": [], "problems": []}
    problems: list[str] = out["problems"]
    for path in (manifest_path, history_path):
        if path.is_file():
            out["files"].append({"path": display_path(path), "sha256": sha256_file(path)})
    if manifest_path.is_file():
        try:
            manifest = null_non_finite(json.loads(manifest_path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, ValueError) as exc:
            problems.append(f"{FINETUNE_MANIFEST}: not valid JSON ({str(exc)[:120]})")
        else:
            if isinstance(manifest, dict):
                out["manifest"] = manifest
            else:
                problems.append(f"{FINETUNE_MANIFEST}: not a JSON object")
    if history_path.is_file():
        text = history_path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = null_non_finite(json.loads(line))
            except ValueError:
                row = None
            if isinstance(row, dict) and len(out["history"]) < HISTORY_CAP:
                out["history"].append(row)
            elif not isinstance(row, dict) and len(problems) < PROBLEMS_CAP:
                problems.append(f"{FINETUNE_HISTORY} line {n}: not a JSON object")
    return out
