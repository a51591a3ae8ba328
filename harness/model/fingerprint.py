"""What identifies a model or adapter folder: the sha256 of every file that decides its
behaviour (weights, config, tokenizer), combined into one digest. Results, caches and
reports name exactly what was evaluated by it; a changed byte changes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    return sha256_file(path, chunk)


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
