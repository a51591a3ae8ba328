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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import UserError

NOT_RESULTS = "{path}: not a results file of this harness ({reason})"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` in one rename; the old file survives any failure.

    A symlink at ``path`` is replaced by the new file, never written through."""
    write_atomic_many({path: data})


def write_atomic_many(files: Mapping[Path, str | bytes]) -> None:
    """Replace several files so that a failed write replaces none of them.

    Every file is first written in full to a temporary file beside it and flushed to
    disk (where a full disk or a permission error shows); only then are they renamed
    over the old ones, one rename each. Temporary files never outlive a failure. An
    OSError names the output file it happened on (``filename``)."""
    temps: list[tuple[str, Path]] = []
    current = Path(".")
    try:
        for current, data in files.items():
            payload = data.encode("utf-8") if isinstance(data, str) else data
            current.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{current.name}.", suffix=".tmp", dir=current.parent
            )
            temps.append((tmp, current))
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, current in temps:
            os.replace(tmp, current)
    except BaseException as exc:
        for tmp, _ in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename != str(current):
            raise OSError(exc.errno, exc.strerror or str(exc), str(current)) from exc
        raise


def write_or_fail(files: Mapping[Path, str | bytes]) -> None:
    """``write_atomic_many``; an OS error (full disk, no permission) is a UserError
    naming the file."""
    try:
        write_atomic_many(files)
    except OSError as exc:
        raise UserError(f"{exc.filename}: cannot write: {exc.strerror or exc}") from None


def dumps(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_results(results: dict[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/results.json`` atomically and return its path."""
    path = out_dir / "results.json"
    write_or_fail({path: dumps(results)})
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
