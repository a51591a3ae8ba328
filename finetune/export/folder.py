"""An output folder written whole or not at all.

``harness.atomic`` replaces single files; a merged checkpoint is a folder of many (weight
shards, their index, config, tokenizer, the merge record). ``staged_folder`` yields a
temporary folder beside the destination; when the block ends without an error every
file in it is flushed to disk and the folder is renamed into place, replacing an earlier
folder of that name only then. On any failure (an exception, Ctrl-C) the temporary
folder is removed and the destination is as it was. The folder and its files get the
modes ``mkdir`` and ``open()`` would give them (``0777 & ~umask``, ``0666 & ~umask``),
as ``harness.atomic`` gives its files: not the 0700 of a temporary folder, nor the 0600
some writers (safetensors) give their files.

Replacing an existing folder takes two renames (old aside, new in place), so a crash
between them leaves the new folder under its temporary name and the old one under a
hidden name beside it, never a half-written folder at the destination.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness.atomic import current_umask

PARTIAL_SUFFIX = ".partial"


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A temporary folder that becomes ``out`` when the block succeeds (module doc)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=PARTIAL_SUFFIX, dir=out.parent))
    try:
        yield staging
        _sync_tree(staging, current_umask())
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _sync_tree(folder: Path, umask: int) -> None:
    """Give every file and folder below ``folder`` its mode under ``umask`` and flush it
    to disk."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fchmod(fd, 0o666 & ~umask)
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(root, 0o777 & ~umask)
        _sync_dir(Path(root))


def _sync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system syncs a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an existing ``out`` is moved aside first and
    removed once the new folder is in place (put back if the rename fails)."""
    if not out.exists() and not out.is_symlink():
        os.rename(staging, out)
        _sync_dir(out.parent)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    old = aside / "old"
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    _sync_dir(out.parent)
    shutil.rmtree(aside, ignore_errors=True)
