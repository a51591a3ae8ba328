"""digests.json: the sha256 of every file a run writes, stored beside them.

``harness run`` writes ``digests.json`` in the same atomic set as results.json and the
renderings (harness.report.render.publish): the sha256 of each written file's bytes,
and of each task's per-example records as canonical JSON (so a changed record is
named by its task even though results.json's digest already differs).
``harness verify`` recomputes them (``check_outputs``).

A digest stored beside the files detects accidental or careless edits only: whoever can
edit report.html can rewrite digests.json too. The signed statement
(harness.results.attest) is what makes a run tamper-evident (docs/security.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.data.hashing import sha256_file

DIGESTS_NAME = "digests.json"
DIGESTS_VERSION = 1
RESULTS_NAME = "results.json"
MAX_BYTES = 64 * 2**20
"""The most of digests.json or attestation.json read (a larger one is not ours)."""


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON value: keys sorted, no spaces, UTF-8, no NaN."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _payload(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def records_digests(document: Any) -> dict[str, str]:
    """``{task id: sha256 of its records as canonical JSON}`` of a parsed results.json."""
    tasks = document.get("tasks") if isinstance(document, Mapping) else None
    if not isinstance(tasks, Mapping):
        return {}
    out = {}
    for task_id, task in tasks.items():
        records = task.get("records") if isinstance(task, Mapping) else None
        out[str(task_id)] = sha256_bytes(canonical_json(records if records is not None else []))
    return out


def build_digests(files: Mapping[str, str | bytes]) -> str:
    """digests.json text for the outputs ``{file name: content}`` (results.json among
    them): each file's sha256, and each task's records digest (module doc)."""
    digests: dict[str, Any] = {
        "digests_version": DIGESTS_VERSION,
        "algorithm": "sha256",
        "files": {name: sha256_bytes(_payload(data)) for name, data in sorted(files.items())},
    }
    if RESULTS_NAME in files:
        digests["records"] = records_digests(json.loads(_payload(files[RESULTS_NAME])))
    return json.dumps(digests, indent=1) + "\n"


def read_digests(folder: Path) -> dict[str, Any] | None:
    """The parsed digests.json of a run folder; None when there is none. A damaged one is
    a ValueError (``verify`` reports it as a mismatch)."""
    path = folder / DIGESTS_NAME
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read(MAX_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable: {str(exc)[:200]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise ValueError(f"{path}: not a digests file of this harness")
    return doc


def output_differences(
    folder: Path, digests: Mapping[str, Any], document: Any
) -> Iterator[tuple[str, str, str | None, str | None]]:
    """``(what, status, stored, found)`` for each output file named in ``digests``
    (status ok | mismatch | missing) and each task's records (ok | mismatch)."""
    files = digests.get("files") or {}
    for name, stored in files.items():
        # a name with a folder part is not one of ours: never read outside the run folder
        if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
            yield str(name), "mismatch", str(stored), "not a file name of this folder"
            continue
        path = folder / name
        if not path.is_file():
            yield name, "missing", str(stored), None
            continue
        found = sha256_file(path)
        yield name, "ok" if found == stored else "mismatch", str(stored), found
    stored_records = digests.get("records")
    if isinstance(stored_records, Mapping) and document is not None:
        found_records = records_digests(document)
        for task_id in sorted(set(stored_records) | set(found_records)):
            signed, now = stored_records.get(task_id), found_records.get(task_id)
            status = "ok" if signed == now else "mismatch"
            yield f"tasks.{task_id}.records", status, signed, now
