"""The one reader of results.json refuses hostile files (issue #24, defects 9 and 12).

`harness report`, `compare` and `verify` once hung on /dev/zero or a FIFO (16 GB of
memory in 19 s) and crashed with RecursionError (exit 1) on a 200,000-deep file. Each
is now one located line and exit 2. The hanging cases run in a subprocess with a
timeout, so a regression fails instead of hanging the test session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.data.rows import NOT_REGULAR
from harness.results import store
from harness.results.store import MAX_DEPTH, NOT_RESULTS, TOO_DEEP, TOO_LARGE

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "results.json"
COMMANDS = [["report"], ["report", "--format", "md"], ["verify"], ["compare", str(GOLDEN)]]


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0] + ("-md" if "md" in c else ""))
def test_deep_results_is_bad_input(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.json"
    path.write_text(
        '{"schema_version": 1, "tasks": {}, "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    )
    assert main([*command, str(path)]) == 2
    reason = TOO_DEEP.format(depth=MAX_DEPTH)
    assert capsys.readouterr().err == f"error: {NOT_RESULTS.format(path=path, reason=reason)}\n"


def test_just_too_deep_is_refused_before_any_renderer_walks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deep enough to pass json.loads, one level more than allowed, inside a free-form
    section (audits) that the schema does not describe."""
    path = tmp_path / "deep.json"
    inner = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    path.write_text('{"schema_version": 1, "tasks": {}, "audits": {"x": ' + inner + "}}")
    assert main(["report", str(path)]) == 2
    assert TOO_DEEP.format(depth=MAX_DEPTH) in capsys.readouterr().err
    ok = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    path.write_text('{"schema_version": 1, "tasks": {}, "audits": {"x": ' + ok + "}}")
    store.load_results(path)  # MAX_DEPTH levels exactly: read


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0] + ("-md" if "md" in c else ""))
def test_dev_zero_is_refused(command: list[str]) -> None:
    proc = _run([*command, "/dev/zero"])
    assert (proc.returncode, proc.stderr) == (2, f"error: /dev/zero: {NOT_REGULAR}\n")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0] + ("-md" if "md" in c else ""))
def test_fifo_is_refused(command: list[str], tmp_path: Path) -> None:
    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    proc = _run([*command, str(fifo)])
    assert (proc.returncode, proc.stderr) == (2, f"error: {fifo}: {NOT_REGULAR}\n")


def test_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: {NOT_REGULAR}\n"


def test_symlink_to_a_device_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    link = tmp_path / "results.json"
    link.symlink_to("/dev/zero")
    assert main(["verify", str(link)]) == 2
    assert capsys.readouterr().err == f"error: {link}: {NOT_REGULAR}\n"


def test_size_is_capped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "results.json"
    with open(big, "wb") as fh:  # sparse: takes no disk space
        fh.truncate(store.MAX_RESULTS_BYTES + 1)
    assert main(["report", str(big)]) == 2
    limit = store.MAX_RESULTS_BYTES // 2**20
    assert capsys.readouterr().err == f"error: {TOO_LARGE.format(path=big, limit=limit)}\n"


def test_a_results_file_of_the_cap_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = GOLDEN.read_bytes()
    monkeypatch.setattr(store, "MAX_RESULTS_BYTES", len(data))
    path = tmp_path / "results.json"
    path.write_bytes(data)
    assert store.load_results(path).schema_version == 1
    path.write_bytes(data + b" ")
    with pytest.raises(store.UserError):
        store.load_results(path)
