"""Faults while a run publishes or computes: a full disk or a refused permission gives
one clear error and leaves the previous outputs whole; Ctrl-C stops a run cleanly with
the response cache closed, and the next run resumes from it."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import atomic
from harness.cli.main import INTERRUPTED, main
from harness.model.cache import FILE_NAME
from tests.cli.test_cli import write_suite
from tests.model.test_cache import _rows_in

OUTPUTS = {"results.json", "report.html", "junit.xml", "summary.md", "digests.json"}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def fail_fsync_of(monkeypatch: pytest.MonkeyPatch, name: str, err: int) -> list[str]:
    """Make fsync fail with ``err`` on the temporary file of output ``name`` (a full disk
    shows at the latest when the data are flushed)."""
    real = os.fsync
    seen: list[str] = []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        seen.append(path)
        if Path(path).name.startswith(f".{name}."):
            raise OSError(err, os.strerror(err))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    return seen


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_failed_write_replaces_none_of_the_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {tmp_path / n: f"old {n}" for n in ("a.json", "b.html", "c.xml")}
    for path, text in files.items():
        path.write_text(text)
    fail_fsync_of(monkeypatch, "b.html", errno.ENOSPC)
    with pytest.raises(OSError) as exc:
        atomic.write_atomic_many({p: "new" for p in files})
    assert exc.value.errno == errno.ENOSPC and exc.value.filename == str(tmp_path / "b.html")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        p.name: t for p, t in files.items()
    }  # a.json was written in full too, yet not renamed; no temporary file is left


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> tuple[Path, Path]:
    """(suite, output folder of a finished run of it); the tests leave it as it is."""
    tmp_path = tmp_path_factory.mktemp("earlier-run")
    suite = write_suite(tmp_path, tiny_gpt2, "  - {metric: sentiment.accuracy, min: 0.0}\n")
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 0
    assert {p.name for p in out.iterdir()} == OUTPUTS
    # the next run differs (another seed), so a half-published folder would show
    suite.write_text(suite.read_text().replace("seed: 7", "seed: 8"))
    return suite, out


WRITE_FAULTS: list[tuple[str, str, int, str]] = [
    # (output whose write fails, how, errno, message)
    ("report.html", "fsync", errno.ENOSPC, "No space left on device"),
    ("summary.md", "fsync", errno.EDQUOT, "Disk quota exceeded"),
    ("results.json", "mkstemp", errno.EACCES, "Permission denied"),
    ("junit.xml", "mkstemp", errno.EROFS, "Read-only file system"),
]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize(("name", "how", "err", "message"), WRITE_FAULTS)
def test_write_fault_keeps_the_previous_outputs(
    name: str,
    how: str,
    err: int,
    message: str,
    earlier_run: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    suite, out = earlier_run
    before = snapshot(out)
    if how == "fsync":
        fail_fsync_of(monkeypatch, name, err)
    else:
        real: Callable[..., tuple[int, str]] = atomic.tempfile.mkstemp

        def mkstemp(*args: object, prefix: str = "", **kwargs: object) -> tuple[int, str]:
            if prefix.startswith(f".{name}."):
                raise OSError(err, os.strerror(err), str(out))
            return real(*args, prefix=prefix, **kwargs)

        monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    capsys.readouterr()
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 2
    err_text = capsys.readouterr().err
    assert "Traceback" not in err_text
    errors = [ln for ln in err_text.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: {out / name}: cannot write: {message}"]
    assert snapshot(out) == before  # every file as it was, and no temporary file left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(
    earlier_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    suite, out = earlier_run
    before = snapshot(out)
    out.chmod(0o500)
    try:
        assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 2
    finally:
        out.chmod(0o700)
    assert "cannot write: Permission denied" in capsys.readouterr().err
    assert snapshot(out) == before
    assert (out / "results.json").stat().st_mode  # still readable after the chmod back


@pytest.mark.slow
def test_report_command_write_fault(
    earlier_run: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out = earlier_run
    target = out.parent / "summary-copy.md"
    target.write_text("previous\n")
    fail_fsync_of(monkeypatch, target.name, errno.ENOSPC)
    capsys.readouterr()
    code = main(["report", str(out / "results.json"), "--format", "md", "--out", str(target)])
    assert code == 2
    assert capsys.readouterr().err == f"error: {target}: cannot write: No space left on device\n"
    assert target.read_text() == "previous\n"


# --- Ctrl-C ------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigint_stops_cleanly_and_the_rerun_resumes(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = write_suite(tmp_path, tiny_gpt2, "  - {metric: lm.perplexity, max: 1e9}")
    texts = [f"the team won the game number {i} in the city today." for i in range(240)]
    (tmp_path / "data" / "wiki.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in texts)
    )
    cache_dir = tmp_path / "cache"
    db = cache_dir / FILE_NAME
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache_dir)}
    cmd = [sys.executable, "-m", "harness", "run", str(suite), "--no-progress"]
    cmd += ["--out", str(tmp_path / "out")]
    # batch size 1: answers are committed 4 at a time, so the run is caught mid-way
    proc = subprocess.Popen(
        [*cmd, "--batch-size", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell ignores SIGINT in its background jobs and children inherit that (then
        # Python installs no KeyboardInterrupt handler): give the run the default, as a
        # terminal does
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while _rows_in(db) < 40 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == INTERRUPTED
    assert not (tmp_path / "out").exists()  # nothing half-published
    # closed cleanly: the write-ahead log was checkpointed into the file and removed
    assert not Path(f"{db}-wal").exists()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    conn.close()
    total = len(texts) + 2 * 10 + 3  # perplexity texts, 2 choices x 10 reviews, 3 prompts
    assert 40 <= stored < total

    # in-process this time; the batch size is not part of a request's cache key
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache_dir))
    assert main([*cmd[3:], "--batch-size", "16"]) == 0
    cache = json.loads((tmp_path / "out" / "results.json").read_text())["provenance"]["cache"]
    assert (cache["hits"], cache["misses"]) == (stored, total - stored)
