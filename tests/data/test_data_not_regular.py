"""A data path that is not a regular file is named as such (issue #24, defect 14).

A FIFO given as data was reported as "file not found"; it exists, and reading it would
wait for a writer, so it is refused as "not a regular file" (a folder and a device too).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.data.rows import NOT_REGULAR, load_rows, source_problems
from harness.errors import UserError


def _fifo(folder: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    path = folder / "rows.jsonl"
    os.mkfifo(path)
    return path


def test_fifo_as_data_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path)
    with pytest.raises(UserError) as info:
        load_rows(fifo.name, tmp_path)  # returns at once: the FIFO is never opened
    assert info.value.messages == [f"{fifo}: {NOT_REGULAR}"]
    assert source_problems(fifo.name, tmp_path) == [((), f"{NOT_REGULAR}: {fifo}")]


def test_folder_and_device_as_data(tmp_path: Path) -> None:
    folder = tmp_path / "rows.csv"
    folder.mkdir()
    device = tmp_path / "zero.jsonl"
    device.symlink_to("/dev/zero")
    for path in (folder, device):
        with pytest.raises(UserError) as info:
            load_rows(path.name, tmp_path)
        assert info.value.messages == [f"{path}: {NOT_REGULAR}"]
