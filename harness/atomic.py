"""Files written whole or not at all, with the mode the user's umask gives.

An output file is written to a temporary file in the same folder, flushed to disk and
renamed over the old one, so a crash, a full disk or a permission error never leaves a
half-written file or loses the previous one. ``write_atomic_many`` is the one atomic
writer of the project: the harness's outputs, ``harness report --out``, ``compare
--out``, generated docs and the fine-tuner's manifest, history, search and selection
files all go through it. An output gets the mode ``open()`` would give it,
``0666 & ~umask`` (0644 under umask 022), not the 0600 of the temporary file, so a CI
artifact store or a teammate can read it (``current_umask``; docs/security.md).

It sits below every stage (next to ``harness.errors``): the generated docs, the results
store and the fine-tuner all write through it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from harness.errors import UserError

__all__ = ["current_umask", "write_atomic", "write_atomic_many", "write_or_fail"]


def _proc_umask() -> int | None:
    """The umask from /proc/self/status (Linux 4.7 and later), or None."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int:
    """The umask now; without /proc by setting and restoring it (see ``current_umask``)."""
    found = _proc_umask()
    if found is not None:
        return found
    # if another thread creates a file in this instant it is private (077), never wider
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def current_umask() -> int:
    """The process's umask, read without changing it.

    ``os.umask`` can only read the mask by setting it, and the mask is process-wide, so
    setting and restoring it on each write would let another thread create a file under
    the wrong mask meanwhile. On Linux the mask is read from /proc/self/status instead,
    on every write, so a mask the program sets later is honoured. Elsewhere the mask
    read once when this module is imported is used (before any output is written; a
    file another thread creates in that instant would get the private mask 077)."""
    found = _proc_umask()
    return _UMASK_AT_IMPORT if found is None else found


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` in one rename; the old file survives any failure.

    A symlink at ``path`` is replaced by the new file, never written through."""
    write_atomic_many({path: data})


def write_atomic_many(files: Mapping[Path, str | bytes]) -> None:
    """Replace several files so that a failed write replaces none of them.

    Every file is first written in full to a temporary file beside it and flushed to
    disk (where a full disk or a permission error shows); only then are they renamed
    over the old ones, one rename each. Temporary files never outlive a failure. An
    OSError names the output file it happened on (``filename``). Each file gets mode
    ``0666 & ~umask`` (module doc), set on the temporary file before it is renamed."""
    temps: list[tuple[str, Path]] = []
    current = Path(".")
    mode = 0o666 & ~current_umask()
    try:
        for current, data in files.items():
            payload = data.encode("utf-8") if isinstance(data, str) else data
            current.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{current.name}.", suffix=".tmp", dir=current.parent
            )
            temps.append((tmp, current))
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), mode)
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
