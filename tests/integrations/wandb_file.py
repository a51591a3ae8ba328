"""The records of a W&B offline run file (``run-ID.wandb``), read without a network.

The file is a LevelDB-style log: a 7-byte header (``:W&B``, a magic number, a
version), then 32 KiB blocks of chunks, each with a 7-byte header (CRC32, length, type:
1 whole, 2 first, 3 middle, 4 last); a block's tail shorter than a header is padding.
Each whole record is a ``wandb_internal_pb2.Record``. wandb 0.31 ships no reader of its
own in Python (its service, written in Go, reads these files).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # padding at a block's end
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def run_contents(path: Path) -> dict[str, Any]:
    """The metrics (history), config, summary, tags and saved files of one run file."""
    found: dict[str, Any] = {"history": {}, "config": {}, "summary": {}, "tags": [], "files": []}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            for item in record.history.item:
                found["history"][item.key or "/".join(item.nested_key)] = json.loads(
                    item.value_json
                )
        elif kind == "config":
            for item in record.config.update:
                found["config"][item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                found["summary"][item.key or "/".join(item.nested_key)] = json.loads(
                    item.value_json
                )
        elif kind == "run":  # the config given to wandb.init comes with the run
            found["tags"] = list(record.run.tags)
            for item in record.run.config.update:
                found["config"][item.key] = json.loads(item.value_json)
        elif kind == "files":
            found["files"] += [f.path for f in record.files.files]
    return found
