"""The sha256 of an input file, read in chunks: the one digest of data, suites, model
and adapter files, fine-tune records and baseline runs that results.json records."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file's bytes, read ``chunk`` bytes at a time (weights can be
    larger than memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
