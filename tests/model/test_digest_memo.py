"""harness.model.fingerprint.DigestMemo: a large weight file is hashed once, then its
digest is reused while the file is the same version (path, size, mtime, inode), from
this process or another one (the memo file); any rewrite hashes it again.

Reference: hashlib.sha256 over the file's bytes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from harness.model import fingerprint
from harness.model.fingerprint import MEMO_FILE, DigestMemo, fingerprint_folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(os.urandom(4096))
    (folder / "config.json").write_text("{}")
    return folder


def test_a_large_file_is_read_once_across_processes(
    folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    memo = DigestMemo(min_bytes=1024)  # "large" = 1 KiB here
    monkeypatch.setattr(fingerprint, "MEMO", memo)
    weights = folder / "model.safetensors"
    first = fingerprint_folder(folder, allow_pickle=False)
    assert memo.hashed == 2  # the weights, and config.json (small: never remembered)
    again = fingerprint_folder(folder, allow_pickle=False)
    assert again == first and memo.hashed == 3  # config.json only
    assert {f.name: f.sha256 for f in first.files}["model.safetensors"] == sha(weights)

    stored = json.loads((tmp_path / "response-cache" / MEMO_FILE).read_text())
    assert list(stored) == [str(weights.resolve())]
    other = DigestMemo(min_bytes=1024)  # another process: reads the memo file
    assert other.digest(weights) == sha(weights) and other.hashed == 0


def test_a_rewritten_file_is_hashed_again(folder: Path) -> None:
    memo = DigestMemo(min_bytes=1024)
    weights = folder / "model.safetensors"
    before = memo.digest(weights)
    stat = weights.stat()
    weights.write_bytes(os.urandom(4096))  # same size
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    after = memo.digest(weights)
    assert memo.hashed == 2 and after == sha(weights) != before


def test_a_forged_entry_for_another_version_is_not_used(folder: Path, tmp_path: Path) -> None:
    weights = folder / "model.safetensors"
    memo = DigestMemo(min_bytes=1024)
    memo.digest(weights)
    file = tmp_path / "response-cache" / MEMO_FILE
    data = json.loads(file.read_text())
    entry = data[str(weights.resolve())]
    entry["sha256"], entry["size"] = "0" * 64, entry["size"] + 1  # another version's stamp
    file.write_text(json.dumps(data))
    fresh = DigestMemo(min_bytes=1024)
    assert fresh.digest(weights) == sha(weights) and fresh.hashed == 1


def test_the_memo_can_be_switched_off(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_DIGEST_MEMO", "0")
    memo = DigestMemo(min_bytes=1024)
    weights = folder / "model.safetensors"
    memo.digest(weights)
    memo.digest(weights)
    assert memo.hashed == 2


def test_an_unwritable_cache_folder_still_hashes(
    folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(blocked))
    memo = DigestMemo(min_bytes=1024)
    weights = folder / "model.safetensors"
    assert memo.digest(weights) == sha(weights)
    assert memo.digest(weights) == sha(weights) and memo.hashed == 1  # kept in the process
