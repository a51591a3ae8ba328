"""What identifies a model or adapter folder: the sha256 of every file that decides its
behaviour (weights, config, tokenizer), combined into one digest. Results, caches and
reports name exactly what was evaluated by it; a changed byte changes it.

Hashing a 15 GB checkpoint takes about a minute, so the digest of a large file is
remembered by (resolved path, size, modification time in ns, inode) in
``$HARNESS_CACHE_DIR/file-digests.json`` and in the process (``DigestMemo``): a file is
read once, not on every run and in every process of a launch. Any change that
rewrites a file changes its modification time (and usually its size), so a remembered
digest is used only for the very file that was hashed; ``HARNESS_DIGEST_MEMO=0``
hashes every time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.atomic import write_atomic
from harness.data.hashing import sha256_file

WEIGHT_SAFE = (".safetensors",)
WEIGHT_PICKLE = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Files that change what the model computes, hashed into the fingerprint.
FINGERPRINT_EXTRA = (
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


@dataclass(frozen=True)
class FileHash:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Fingerprint:
    """sha256 of every file that determines the model's behaviour."""

    path: str
    files: tuple[FileHash, ...]
    digest: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "fingerprint": self.digest,
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in self.files],
        }


MEMO_FILE = "file-digests.json"
MEMO_MIN_BYTES = 64 << 20  # smaller files hash faster than the memo is read
MEMO_ENV = "HARNESS_DIGEST_MEMO"


@dataclass
class DigestMemo:
    """sha256 digests of large files, keyed by what identifies one version of a file."""

    min_bytes: int = MEMO_MIN_BYTES
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    loaded_from: Path | None = None
    hashed: int = 0
    """Files actually read by this process (the tests count them)."""

    @staticmethod
    def stamp(path: Path) -> dict[str, Any]:
        st = path.stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}

    def digest(self, path: Path, chunk: int = 1 << 20) -> str:
        real = path.resolve()
        stamp = self.stamp(real)
        if stamp["size"] < self.min_bytes or os.environ.get(MEMO_ENV) == "0":
            self.hashed += 1
            return sha256_file(real, chunk)
        self._load()
        key = str(real)
        known = self.entries.get(key)
        if known is not None and all(known.get(k) == v for k, v in stamp.items()):
            return str(known["sha256"])
        self.hashed += 1
        value = sha256_file(real, chunk)
        if self.stamp(real) == stamp:  # not rewritten while it was read
            self.entries[key] = {**stamp, "sha256": value}
            self._save()
        return value

    def _file(self) -> Path:
        from harness.model.cache import default_dir

        return default_dir() / MEMO_FILE

    def _load(self) -> None:
        file = self._file()
        if self.loaded_from == file:
            return
        self.loaded_from, self.entries = file, {}
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, dict):
            self.entries = {k: v for k, v in data.items() if isinstance(v, dict)}

    def _save(self) -> None:
        file = self._file()
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            # another process may have added entries since this one read the file
            on_disk = DigestMemo()
            on_disk._load()
            merged = {**on_disk.entries, **self.entries}
            write_atomic(file, json.dumps(merged, indent=0, sort_keys=True))
        except OSError:  # a read-only cache folder: remembered in this process only
            pass


MEMO = DigestMemo()


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a model file; a large one remembered (``DigestMemo``)."""
    return MEMO.digest(path, chunk)


def fingerprint_folder(folder: Path, *, allow_pickle: bool) -> Fingerprint:
    """Hash the weight, config and tokenizer files of a model or adapter folder."""
    names = []
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        is_weight = p.suffix in WEIGHT_SAFE or (allow_pickle and p.suffix in WEIGHT_PICKLE)
        if is_weight or p.name in FINGERPRINT_EXTRA or p.name.endswith(".safetensors.index.json"):
            names.append(p)
    files = tuple(FileHash(p.name, sha256_of(p), p.stat().st_size) for p in names)
    digest = hashlib.sha256("\n".join(f"{f.name}:{f.sha256}" for f in files).encode()).hexdigest()
    return Fingerprint(path=str(folder), files=files, digest=digest)
