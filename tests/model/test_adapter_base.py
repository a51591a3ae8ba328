"""Issue #24 defect 11: an adapter evaluated on a base other than the one it was trained
on is a UserError unless `model.allow_base_mismatch: true`, and the comparison is
recorded in provenance either way (harness.model.adapter_base)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.errors import UserError
from harness.model.adapter_base import (
    ADAPTER_BASE_MISMATCH,
    NOT_COMPARABLE_HUB,
    NOT_COMPARABLE_PATH,
    NOTHING_RECORDED,
    WHERE_CONFIG,
    WHERE_MANIFEST,
    compare_base,
)
from harness.model.fingerprint import fingerprint_folder
from harness.model.language_model import ModelSource, load_model
from tests.cli.test_cli import write_suite
from tests.report.stored_run import build_adapter

GATES = "  - {metric: sentiment.accuracy, min: 0.0}\n"


@pytest.fixture(scope="module")
def other_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base of the same shape and tokenizer as tiny_gpt2, other weights."""
    from tests.tiny_models import build_model

    return build_model(tmp_path_factory.mktemp("other-base"), "gpt2", seed=1)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Path:
    """An adapter trained on tiny_gpt2 whose manifest records that base as `finetune
    train` does (the fingerprint of load_for_training)."""
    folder = build_adapter(tiny_gpt2, tmp_path_factory.mktemp("adapter") / "adapter")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["base_model"] = fingerprint_folder(tiny_gpt2, allow_pickle=False).as_dict()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def config_only(adapter: Path, folder: Path, base_name: str | None) -> Path:
    """A copy of ``adapter`` without manifest, its config naming ``base_name``."""
    shutil.copytree(adapter, folder)
    (folder / "manifest.json").unlink()
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base_name
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def digest(folder: Path) -> str:
    return fingerprint_folder(folder, allow_pickle=False).digest


@pytest.mark.slow
def test_run_on_another_base_exits_2_naming_both_fingerprints(
    adapter: Path,
    tiny_gpt2: Path,
    other_base: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    suite = write_suite(tmp_path, other_base, GATES)
    argv = ["run", str(suite), "--adapter", str(adapter), "--out", str(tmp_path / "out")]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    want = ADAPTER_BASE_MISMATCH.format(
        adapter=adapter,
        expected=digest(tiny_gpt2),
        where=WHERE_MANIFEST,
        model=other_base,
        actual=digest(other_base),
    )
    assert err.strip().splitlines() == [f"error: {want}"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_allowed_mismatch_runs_and_is_recorded(
    adapter: Path, tiny_gpt2: Path, other_base: Path, tmp_path: Path
) -> None:
    suite = write_suite(tmp_path, other_base, GATES)
    suite.write_text(suite.read_text().replace("  path:", "  allow_base_mismatch: true\n  path:"))
    out = tmp_path / "out"
    argv = ["run", str(suite), "--adapter", str(adapter), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    recorded = json.loads((out / "results.json").read_text())["provenance"]["model"]
    assert recorded["adapter_base"] == {
        "compared": "fingerprint",
        "source": WHERE_MANIFEST,
        "expected": digest(tiny_gpt2),
        "actual": digest(other_base),
        "match": False,
        "allowed": True,
    }


def test_the_right_base_is_recorded_as_a_match(adapter: Path, tiny_gpt2: Path) -> None:
    lm = load_model(ModelSource(path=str(tiny_gpt2), adapter=str(adapter), device="cpu"))
    assert lm.adapter_base == {
        "compared": "fingerprint",
        "source": WHERE_MANIFEST,
        "expected": digest(tiny_gpt2),
        "actual": digest(tiny_gpt2),
        "match": True,
        "allowed": False,
    }


def test_without_manifest_the_config_folder_is_compared_by_fingerprint(
    adapter: Path, tiny_gpt2: Path, other_base: Path, tmp_path: Path
) -> None:
    named = config_only(adapter, tmp_path / "adapter", str(tiny_gpt2))
    with pytest.raises(UserError) as caught:
        load_model(ModelSource(path=str(other_base), adapter=str(named), device="cpu"))
    assert caught.value.messages == [
        ADAPTER_BASE_MISMATCH.format(
            adapter=named,
            expected=digest(tiny_gpt2),
            where=WHERE_CONFIG,
            model=other_base,
            actual=digest(other_base),
        )
    ]
    # a copy of the right base elsewhere is the same base
    copy = tmp_path / "copy"
    shutil.copytree(tiny_gpt2, copy)
    lm = load_model(ModelSource(path=str(copy), adapter=str(named), device="cpu"))
    assert lm.adapter_base is not None and lm.adapter_base["match"] is True


@pytest.mark.parametrize(
    ("named", "model", "compared", "match", "reason"),
    [
        # a hub id against a hub id: names compare
        ("org/base", "org/base", "name", True, None),
        ("org/base", "org/other", "name", False, None),
        # what cannot be compared reliably is recorded, never an error
        ("org/base", "LOCAL", None, None, NOT_COMPARABLE_HUB),
        ("/nowhere/on/this/machine", "LOCAL", None, None, NOT_COMPARABLE_PATH),
        ("../relative/base", "LOCAL", None, None, NOT_COMPARABLE_PATH),
        (None, "LOCAL", None, None, NOTHING_RECORDED),
    ],
)
def test_what_the_config_names_is_compared_only_where_reliable(
    adapter: Path,
    tiny_gpt2: Path,
    tmp_path: Path,
    named: str | None,
    model: str,
    compared: str | None,
    match: bool | None,
    reason: str | None,
) -> None:
    folder = config_only(adapter, tmp_path / "adapter", named)
    base = fingerprint_folder(tiny_gpt2, allow_pickle=False)
    model_path = str(tiny_gpt2) if model == "LOCAL" else model
    got = compare_base(folder, base, model_path, allow_pickle=False)
    assert (got["compared"], got["match"], got.get("reason")) == (compared, match, reason)


def test_the_manifest_is_compared_over_the_same_kinds_of_files(
    adapter: Path, tiny_gpt2: Path, tmp_path: Path
) -> None:
    """A base trained with pickle weights allowed (so fingerprinted with them) is the
    same base when the run does not allow them, and the other way round."""
    base = tmp_path / "base"
    shutil.copytree(tiny_gpt2, base)
    (base / "pytorch_model.bin").write_bytes(b"pickle weights beside the safetensors")
    folder = tmp_path / "adapter"
    shutil.copytree(adapter, folder)
    for trained_with_pickle in (True, False):
        manifest = {
            "base_model": fingerprint_folder(base, allow_pickle=trained_with_pickle).as_dict()
        }
        (folder / "manifest.json").write_text(json.dumps(manifest))
        for run_with_pickle in (True, False):
            in_use = fingerprint_folder(base, allow_pickle=run_with_pickle)
            got = compare_base(folder, in_use, str(base), allow_pickle=run_with_pickle)
            assert got["match"] is True, (trained_with_pickle, run_with_pickle)
