"""`harness verify`: a changed byte in any weight, adapter, data or suite file is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.results.verify import MISMATCH, MISSING, OK, UNEXPECTED, verify_file
from tests.report.stored_run import copy_run, reseal, stored_run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_untouched_run_verifies(
    copy_run: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = copy_run / "out" / "results.json"
    checks = verify_file(results)
    roles = {c.role.split(" ")[0] for c in checks}
    assert {"suite", "data", "model", "adapter", "finetune"} <= roles
    assert all(c.status == OK for c in checks), [c.line() for c in checks]
    assert main(["verify", str(results)]) == 0
    assert "verify: OK" in capsys.readouterr().out


# (file to change, role reported): one case per kind of input named in the provenance
CHANGED = [
    ("model/model.safetensors", "model"),
    ("model/config.json", "model"),
    ("model/tokenizer.json", "model"),
    ("adapter/adapter_model.safetensors", "adapter"),
    ("adapter/adapter_config.json", "adapter"),
    ("data/reviews.jsonl", "data (sentiment)"),
    ("data/wiki.jsonl", "data (lm)"),
    ("suite.yaml", "suite"),
    ("adapter/history.jsonl", "finetune"),
]


@pytest.mark.parametrize(("name", "role"), CHANGED)
def test_changed_byte_is_detected(
    copy_run: Path,  # noqa: F811
    name: str,
    role: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flip_last_byte(copy_run / name)
    results = copy_run / "out" / "results.json"
    bad = [c for c in verify_file(results) if c.failed]
    assert [(c.role, c.status) for c in bad] == [(role, MISMATCH)]
    assert bad[0].path.endswith(name)
    assert bad[0].expected != bad[0].actual
    assert main(["verify", str(results)]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and name.split("/")[-1] in out and "verify: FAILED" in out


def test_changed_audit_data_file_is_detected(copy_run: Path) -> None:  # noqa: F811
    """A data file an audit reads itself (the fairness audit's sentence pairs) is checked
    like a task's data: its {path, sha256} entry in the audit's section."""
    from harness.data.rows import sha256_file

    pairs = copy_run / "data" / "pairs.jsonl"
    pairs.write_text('{"sent_more": "a b", "sent_less": "a c", "bias_type": "x"}\n')
    path = copy_run / "out" / "results.json"
    results = json.loads(path.read_text())
    results["audits"]["fairness"] = {"pairs": {"path": str(pairs), "sha256": sha256_file(pairs)}}
    path.write_text(json.dumps(results))
    reseal(path.parent)  # an edit made on purpose: not what this test looks for
    assert all(c.status == OK for c in verify_file(path))
    assert "data (fairness.pairs)" in {c.role for c in verify_file(path)}
    flip_last_byte(pairs)
    bad = [(c.role, c.status) for c in verify_file(path) if c.failed]
    assert bad == [("data (fairness.pairs)", MISMATCH)]
    pairs.unlink()
    assert [(c.role, c.status) for c in verify_file(path) if c.failed] == [
        ("data (fairness.pairs)", MISSING)
    ]


def test_missing_and_unexpected_files(copy_run: Path) -> None:  # noqa: F811
    (copy_run / "data" / "news.jsonl").unlink()
    (copy_run / "model" / "extra.safetensors").write_bytes(b"\0" * 8)
    results = copy_run / "out" / "results.json"
    bad = {(c.status, Path(c.path).name) for c in verify_file(results) if c.failed}
    assert bad == {(MISSING, "news.jsonl"), (UNEXPECTED, "extra.safetensors")}
    assert main(["verify", str(results)]) == 1


def test_relative_paths_resolve_from_root(copy_run: Path, tmp_path: Path) -> None:  # noqa: F811
    results = json.loads((copy_run / "out" / "results.json").read_text())
    results["provenance"]["suite"]["path"] = "suite.yaml"
    path = tmp_path / "relative.json"
    path.write_text(json.dumps(results))
    assert main(["verify", str(path), "--root", str(copy_run)]) == 0
    assert main(["verify", str(path), "--root", str(tmp_path)]) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("{not json", "not a results file of this harness"),
        ('{"schema_version": 1, "tasks": {}}', "no provenance section"),
    ],
)
def test_bad_results_file_exits_2(
    tmp_path: Path, content: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
