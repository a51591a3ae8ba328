"""The lora and training options of issue 18 in the config: their forms, their located
errors (exact messages), and a record that stays byte-identical at their defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.config.schema import (
    BAD_REGEX,
    BAD_TARGETS,
    LATER_FIELDS,
    PACKING_GROUPED,
    TargetPattern,
    config_record,
    load_config,
)
from tests.finetune.config.test_config import GOOD, errors_of, write


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("c_attn", ["c_attn"]),  # a single name is a list of one name, not a pattern
        ("[q_proj, v_proj]", ["q_proj", "v_proj"]),
        ("all-linear", "all-linear"),
        ("{regex: '.*\\.(q|v)_proj'}", TargetPattern(regex=r".*\.(q|v)_proj")),
    ],
)
def test_target_module_forms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: object
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, GOOD + f"lora: {{target_modules: {text}}}\n"))
    assert config.lora.target_modules == expected


@pytest.mark.parametrize(
    ("lora", "expected"),
    [
        (  # re's own words after the message
            "{target_modules: {regex: '(q|v'}}",
            "config.yaml:9:24: lora.target_modules: "
            + BAD_REGEX.format(reason="missing ), unterminated subpattern at position 0"),
        ),
        ("{target_modules: {regex: ''}}", f"config.yaml:9:24: lora.target_modules: {BAD_TARGETS}"),
        (
            "{target_modules: {pattern: 'q'}}",
            f"config.yaml:9:24: lora.target_modules: {BAD_TARGETS}",
        ),
        (
            "{modules_to_save: lm_head}",
            "config.yaml:9:25: lora.modules_to_save: must be a list, got 'lm_head'",
        ),
    ],
)
def test_lora_errors_are_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lora: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert errors_of(write(tmp_path, GOOD + f"lora: {lora}\n")) == [expected]


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        (
            "  precision: fp8\n",
            "config.yaml:9:14: training.precision: must be one of 'fp32', 'bf16' or 'fp16', got 'fp8'",
        ),
        (
            "  packing: true\n  group_by_length: true\n",
            f"config.yaml:8:3: training: {PACKING_GROUPED}",
        ),
    ],
)
def test_training_errors_are_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, training: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert errors_of(write(tmp_path, GOOD + training)) == [expected]


def test_new_fields_stay_out_of_the_record_at_their_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that does not use the options records the config it recorded before them,
    so earlier manifests and checkpoint folders compare equal (resume, golden files)."""
    monkeypatch.chdir(tmp_path)
    record = config_record(load_config(write(tmp_path, GOOD)))
    for section, names in LATER_FIELDS.items():
        assert not set(names) & set(record[section])
    assert set(record["lora"]) == {"r", "alpha", "dropout", "target_modules"}
    changed = GOOD.replace(
        "lr: 0.001",
        "lr: 0.001\n  precision: bf16\n  gradient_checkpointing: true\n  packing: true",
    ) + (
        "lora: {use_dora: true, use_rslora: true, modules_to_save: [lm_head], "
        "target_modules: {regex: '.*c_attn'}}\n"
    )
    record = config_record(load_config(write(tmp_path, changed)))
    assert {k: record["training"][k] for k in LATER_FIELDS["training"]} == {
        "precision": "bf16",
        "gradient_checkpointing": True,
        "packing": True,
    }
    assert {k: record["lora"][k] for k in (*LATER_FIELDS["lora"], "target_modules")} == {
        "use_dora": True,
        "use_rslora": True,
        "modules_to_save": ["lm_head"],
        "target_modules": {"regex": ".*c_attn"},
    }
    json.dumps(record)  # the manifest and run-config.json write it as JSON
