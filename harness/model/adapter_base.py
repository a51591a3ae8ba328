"""Was this adapter trained on the base model it is about to run on?

A LoRA adapter only means something on the weights it was trained against; on another
base it loads without complaint and scores something else. What the adapter folder
says about its base is compared with the base in use, as far as it can be compared
reliably:

* ``manifest.json`` (written by ``finetune train``) records the base's fingerprint:
  fingerprint against fingerprint, computed by the same function
  (``harness.model.fingerprint.fingerprint_folder``) over the same kinds of files;
* otherwise ``adapter_config.json``'s ``base_model_name_or_path`` (written by peft): an
  existing local folder is compared by fingerprint (the same folder needs no hashing),
  a hub id with the suite's hub id by name. A path that does not exist here, or a hub
  id against a local folder, cannot be compared: recorded as such (``match: null``).

A mismatch is a UserError unless the suite sets ``model.allow_base_mismatch: true``;
either way the comparison goes to ``provenance.model.adapter_base`` (docs/results.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.model.fingerprint import WEIGHT_PICKLE, Fingerprint, fingerprint_folder

ADAPTER_BASE_MISMATCH = (
    "adapter '{adapter}' was trained on base {expected} ({where}), but model '{model}' is "
    "{actual}; set model.allow_base_mismatch: true in the suite to evaluate it on this base "
    "anyway"
)
WHERE_MANIFEST = "manifest.json base_model.fingerprint"
WHERE_CONFIG = "adapter_config.json base_model_name_or_path"
NOT_COMPARABLE_PATH = "names a folder that does not exist here"
NOT_COMPARABLE_HUB = "names a hub id, and the model is a local folder"
NOTHING_RECORDED = "the adapter folder records no base model"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _is_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or Path(path).expanduser().is_dir()


def compare_base(
    adapter_folder: Path, base: Fingerprint, model_path: str, *, allow_pickle: bool
) -> dict[str, Any]:
    """What the adapter records about its base against the base in use:
    ``{"compared": "fingerprint" | "name" | None, "source", "expected", "actual",
    "match": True | False | None, "reason"?}``."""
    manifest = _read_json(adapter_folder / "manifest.json") or {}
    recorded = manifest.get("base_model")
    if isinstance(recorded, dict) and _DIGEST.fullmatch(str(recorded.get("fingerprint", ""))):
        files = recorded.get("files")
        listed = files if isinstance(files, list) else []
        names = [str(f.get("name", "")) for f in listed if isinstance(f, dict)]
        # fingerprint over the same kinds of files as at training (pickle weights count
        # only when they were allowed then)
        pickled = any(Path(n).suffix in WEIGHT_PICKLE for n in names)
        actual = base
        if pickled != allow_pickle:
            actual = fingerprint_folder(Path(base.path), allow_pickle=pickled)
        expected = str(recorded["fingerprint"])
        return _result("fingerprint", WHERE_MANIFEST, expected, actual.digest)
    config = _read_json(adapter_folder / "adapter_config.json") or {}
    named = config.get("base_model_name_or_path")
    if not isinstance(named, str) or not named.strip():
        return _result(None, None, None, base.digest, reason=NOTHING_RECORDED)
    if _is_local(named):
        folder = Path(named).expanduser()
        if not folder.is_absolute() or not folder.is_dir():
            # a relative path depends on where training ran: not comparable here
            return _result(None, WHERE_CONFIG, named, base.digest, reason=NOT_COMPARABLE_PATH)
        if folder.resolve() == Path(base.path).resolve():
            return _result("fingerprint", WHERE_CONFIG, base.digest, base.digest)
        other = fingerprint_folder(folder, allow_pickle=allow_pickle)
        return _result("fingerprint", WHERE_CONFIG, other.digest, base.digest)
    if not _HUB_ID.fullmatch(named):
        return _result(None, WHERE_CONFIG, named, base.digest, reason=NOT_COMPARABLE_PATH)
    if _is_local(model_path):
        return _result(None, WHERE_CONFIG, named, base.digest, reason=NOT_COMPARABLE_HUB)
    return _result("name", WHERE_CONFIG, named, model_path)


def _result(
    compared: str | None,
    source: str | None,
    expected: str | None,
    actual: str,
    *,
    reason: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "compared": compared,
        "source": source,
        "expected": expected,
        "actual": actual,
        "match": None if compared is None else expected == actual,
    }
    if reason is not None:
        out["reason"] = reason
    return out


def check_base(record: dict[str, Any], *, adapter: str, model: str, allowed: bool) -> None:
    """Raise the mismatch UserError unless the suite allows it."""
    if record["match"] is False and not allowed:
        raise UserError(
            ADAPTER_BASE_MISMATCH.format(
                adapter=adapter,
                expected=record["expected"],
                where=record["source"],
                model=model,
                actual=record["actual"],
            )
        )
