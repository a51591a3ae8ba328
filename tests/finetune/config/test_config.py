"""finetune.config.schema: the schema, located errors (exact messages), paths, the reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.config import reference as config_docs
from finetune.config.schema import (
    BAD_TARGETS,
    VALIDATION_BOTH,
    WARMUP_BOTH,
    FinetuneConfig,
    load_config,
)
from finetune.config.space import NOT_SEARCHABLE, NOT_SET, searchable, with_values
from harness.errors import UserError

GOOD = """\
schema_version: 1
name: reviews
base_model:
  path: base
data:
  train: [train.jsonl]
training:
  lr: 0.001
"""


def write(folder: Path, text: str) -> Path:
    (folder / "base").mkdir(exist_ok=True)
    (folder / "train.jsonl").write_text('{"text": "a b c"}\n')
    path = folder / "config.yaml"
    path.write_text(text)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(UserError) as exc:
        load_config(path)
    return exc.value.messages


def test_good_config_resolves_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, GOOD))
    assert config.base_model.path == str(tmp_path / "base")
    assert config.data.train == [str(tmp_path / "train.jsonl")]
    assert config.output == str(tmp_path / "runs" / "reviews")
    assert config.data.holdout == 0.1  # the default split when no validation is given
    assert config.lora.target_modules == "all-linear"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # (replacement applied to GOOD, the exact located message)
        (("lr: 0.001", "lr: 0"), "config.yaml:8:7: training.lr: must be > 0, got 0"),
        (
            ("lr: 0.001", "lrr: 0.001"),
            "config.yaml:8:3: training.lrr: unknown field (did you mean 'lr'?)",
        ),
        (
            ("  path: base", "  path: ./missing"),
            "config.yaml:4:9: base_model.path: folder not found: {tmp}/missing",
        ),
        (
            ("[train.jsonl]", "[nope.jsonl]"),
            "config.yaml:6:11: data.train[0]: file not found: {tmp}/nope.jsonl",
        ),
        (
            ("[train.jsonl]", "[{dataset: json}]"),
            "config.yaml:6:11: data.train[0].split: missing required field",
        ),
        (
            ("lr: 0.001", "lr: 0.001\n  scheduler: exp"),
            "config.yaml:9:14: training.scheduler: must be one of 'linear', 'cosine', 'constant_with_warmup' or 'step', got 'exp'",
        ),
        (
            ("lr: 0.001", "lr: 0.001\n  warmup_steps: 5\n  warmup_ratio: 0.1"),
            f"config.yaml:8:3: training: {WARMUP_BOTH}",
        ),
        (
            ("[train.jsonl]", "[train.jsonl]\n  validation: train.jsonl\n  val_split: 0.2"),
            f"config.yaml:6:3: data: {VALIDATION_BOTH}",
        ),
        (
            ("lr: 0.001", "lr: 0.001\nlora: {target_modules: 3}"),
            f"config.yaml:9:24: lora.target_modules: {BAD_TARGETS}",
        ),
        (
            ("lr: 0.001", "lr: 0.001\ncuration: {pii: hide}"),
            "config.yaml:9:17: curation.pii: must be one of 'report', 'redact' or 'fail', got 'hide'",
        ),
        (
            ("lr: 0.001", "lr: 0.001\nmemorization: {canaries: {digits: 13}}"),
            "config.yaml:9:35: memorization.canaries.digits: must be <= 12, got 13",
        ),
        (  # YAML's true is not the number 1 (issue #24): it was read as lr 1.0
            ("lr: 0.001", "lr: true"),
            "config.yaml:8:7: training.lr: must be a number, not a boolean, got true",
        ),
        (
            ("name: reviews", "name: 'bad name'"),
            "config.yaml:2:7: name: must start with a letter or '_' and hold only letters, digits, '_', '.' and '-'",
        ),
    ],
)
def test_errors_are_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: tuple[str, str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, GOOD.replace(*edit))
    assert errors_of(path) == [expected.format(tmp=tmp_path)]


def test_version_is_checked_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, GOOD.replace("schema_version: 1", "schema_version: 2") + "bogus: 1\n")
    assert errors_of(path) == [
        "config.yaml:1:17: schema_version: unsupported version 2; this harness reads schema_version 1"
    ]


def test_every_error_at_once_in_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = GOOD.replace("lr: 0.001", "lr: -1\n  batch_size: 0").replace(
        "path: base", "path: base\n  colour: red"
    )
    assert errors_of(write(tmp_path, text)) == [
        "config.yaml:5:3: base_model.colour: unknown field; allowed: path, allow_pickle, trust_remote_code, dtype, device_map, max_memory, "
        "offload_folder, attn_implementation, quantization",
        "config.yaml:9:7: training.lr: must be > 0, got -1",
        "config.yaml:10:15: training.batch_size: must be >= 1, got 0",
    ]


def test_search_space_names_and_values_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = (
        GOOD + "search:\n  space:\n    lora.rank: {choices: [4]}\n    lora.r: {choices: [0, 4]}\n"
    )
    names = ", ".join(searchable(FinetuneConfig))
    assert errors_of(write(tmp_path, text)) == [
        f"config.yaml:11:5: search.space.lora.rank: {NOT_SEARCHABLE.format(names=names)}",
        "config.yaml:12:5: search.space.lora.r: value 0 is invalid for lora.r: "
        "Input should be greater than or equal to 1",
    ]


def test_searchable_settings_and_with_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    kinds = searchable(FinetuneConfig)
    assert kinds["training.lr"] is float and kinds["lora.r"] is int
    assert kinds["training.epochs"] is int and kinds["lora.dropout"] is float
    assert kinds["anti_forgetting.kl_to_base.weight"] is float  # an optional section
    assert kinds["training.early_stopping_patience"] is int
    assert "training.seed" not in kinds and "curation.leakage.ngram" not in kinds
    config = load_config(write(tmp_path, GOOD))
    new = with_values(config, {"training.lr": 0.5, "lora.r": 16})
    assert (new.training.lr, new.lora.r, config.training.lr) == (0.5, 16, 0.001)


def test_reference_doc_is_current() -> None:
    # regenerate with: python -m finetune.config.reference
    assert config_docs.main(["--check"]) == 0


def test_a_searched_section_must_be_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = GOOD + "search:\n  space:\n    anti_forgetting.kl_to_base.weight: {low: 0.1, high: 1}\n"
    assert errors_of(write(tmp_path, text)) == [
        f"config.yaml:11:5: search.space.anti_forgetting.kl_to_base.weight: "
        f"{NOT_SET.format(section='anti_forgetting.kl_to_base')}"
    ]
