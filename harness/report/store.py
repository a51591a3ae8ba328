"""Reading and writing results.json, atomically.

An output file is written to a temporary file in the same folder, flushed to disk and
renamed over the old one, so a crash, a full disk or a permission error never leaves a
half-written file or loses the previous one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import UserError

NOT_RESULTS = "{path}: not a results file of this harness ({reason})"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` in one rename; the old file survives any failure."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def dumps(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_results(results: dict[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/results.json`` atomically and return its path."""
    path = out_dir / "results.json"
    try:
        write_atomic(path, dumps(results))
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path


def load_results(path: Path) -> dict[str, Any]:
    """Read a stored results.json, checking that it is one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(NOT_RESULTS.format(path=path, reason=str(exc)[:200])) from None
    if not isinstance(data, dict) or "schema_version" not in data or "tasks" not in data:
        raise UserError(NOT_RESULTS.format(path=path, reason="missing schema_version or tasks"))
    from harness.report.results_schema import problems

    found = problems(data)
    if found:
        more = f"; and {len(found) - 3} more" if len(found) > 3 else ""
        raise UserError(NOT_RESULTS.format(path=path, reason="; ".join(found[:3]) + more))
    return data
