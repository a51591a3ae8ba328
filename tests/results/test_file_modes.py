"""Output files honour the umask (issue #23, point 5): every file the harness and the
fine-tuner write atomically gets mode ``0666 & ~umask`` (0644 under 022, 0600 under
077), as ``open()`` would give it, not the 0600 of a bare ``mkstemp``. The error logs
of ``harness.cli.boundary`` stay private (0600) whatever the umask (docs/security.md)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli.main import main

UMASKS = [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=UMASKS, ids=lambda p: f"umask{p[0]:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under a umask; yields the mode an output file must have."""
    mask, expected = request.param
    old = os.umask(mask)
    try:
        yield expected
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Path:
    from tests.cli.test_cli import write_suite

    folder = tmp_path_factory.mktemp("modes")
    return write_suite(folder, tiny_gpt2, "  - {metric: sentiment.accuracy, min: 0.0}\n")


def test_run_outputs_follow_the_umask(suite: Path, tmp_path: Path, umask: int) -> None:
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 0
    modes = {p.name: oct(mode(p)) for p in out.iterdir()}
    names = {"results.json", "report.html", "junit.xml", "summary.md", "digests.json"}
    assert modes == {name: oct(umask) for name in names}
    # re-rendering and comparing write through the same writer
    report, diff = tmp_path / "again.html", tmp_path / "diff.md"
    results = str(out / "results.json")
    assert main(["report", results, "--format", "html", "--out", str(report)]) == 0
    assert main(["compare", results, results, "--samples", "0", "--out", str(diff)]) == 0
    assert (oct(mode(report)), oct(mode(diff))) == (oct(umask), oct(umask))


def test_replacing_a_private_file_gives_the_umask_mode(tmp_path: Path, umask: int) -> None:
    """An earlier 0600 output (written before this fix) does not stay 0600."""
    from harness.atomic import write_atomic

    target = tmp_path / "results.json"
    target.write_text("old")
    target.chmod(0o600)
    write_atomic(target, "new")
    assert oct(mode(target)) == oct(umask)


def test_finetune_outputs_follow_the_umask(tmp_path: Path, umask: int) -> None:
    from finetune.active.select import write_selection
    from finetune.search.trials import write_trials
    from finetune.train.manifest import HISTORY, MANIFEST, write_run_record

    write_run_record(tmp_path, {"run": "x"}, [{"step": 1, "train_loss": 1.0}])
    write_trials(tmp_path, [{"trial": 0, "value": 0.5}])
    write_selection([{"text": "a", "score": 1.0}], tmp_path / "chosen.jsonl")
    names = [MANIFEST, HISTORY, "trials.jsonl", "trials.csv", "chosen.jsonl"]
    assert {n: oct(mode(tmp_path / n)) for n in names} == {n: oct(umask) for n in names}


def test_generated_docs_follow_the_umask(
    tmp_path: Path, umask: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.config.schema_docs import write_generated

    target = tmp_path / "reference.md"
    assert write_generated(target, "# doc\n", "harness.config.reference", []) == 0
    assert target.read_text() == "# doc\n"
    assert oct(mode(target)) == oct(umask)


def test_generated_docs_are_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed write keeps the previous document whole (it was written in place)."""
    from harness.config.schema_docs import write_generated

    target = tmp_path / "reference.md"
    target.write_text("previous\n")

    def refuse(*_a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        write_generated(target, "# new\n", "harness.config.reference", [])
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["reference.md"]


def test_without_proc_the_umask_read_at_import_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness import atomic

    monkeypatch.setattr(atomic, "_proc_umask", lambda: None)
    monkeypatch.setattr(atomic, "_UMASK_AT_IMPORT", 0o027)
    assert atomic.current_umask() == 0o027
    atomic.write_atomic(tmp_path / "x.json", "{}")
    assert oct(mode(tmp_path / "x.json")) == oct(0o640)


def test_error_logs_stay_private(
    tmp_path: Path, umask: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.cli import boundary

    monkeypatch.setattr(boundary, "log_dirs", lambda: [tmp_path / "errors"])
    log = boundary.write_log(RuntimeError("secret row"), "harness")
    assert oct(mode(log)) == oct(0o600)


def test_umask_is_read_without_changing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the umask never sets it, even for a moment (a thread creating a file
    meanwhile would get the wrong mode): on Linux it comes from /proc."""
    from harness.atomic import current_umask

    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc")
    real = os.umask
    old = real(0o027)
    calls: list[int] = []

    def spy(mask: int) -> int:
        calls.append(mask)
        return real(mask)

    monkeypatch.setattr(os, "umask", spy)
    try:
        assert current_umask() == 0o027
    finally:
        real(old)
    assert calls == []
