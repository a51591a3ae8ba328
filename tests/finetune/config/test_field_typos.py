"""A fine-tune config field naming a data field that no row has (prompt, completion or
text field, the reweighting group or label) is ONE error at the config's line, with
the data's fields and a "did you mean"; a field missing from some rows stays a per-row
error (issue #23, point 3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune.cli import main
from finetune.config.files import NO_TEXT_FIELDS
from finetune.config.schema import load_config
from finetune.data.examples import MISSING_FIELD, load_examples
from harness.data.rows import DID_YOU_MEAN, NO_SUCH_FIELD
from harness.errors import UserError

ROWS = [
    {"prompt": f"review {i}:", "completion": " good", "group": "a", "label": "pos"}
    for i in range(40)
]
FIELDS = "completion, group, label, prompt"


def write(folder: Path, data: str, rows: list[dict[str, Any]] = ROWS, extra: str = "") -> Path:
    (folder / "base").mkdir(exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / "config.yaml"
    path.write_text(
        "schema_version: 1\nname: typos\nbase_model:\n  path: base\n"
        f"data:\n  train: [train.jsonl]\n{data}{extra}"
    )
    return path


def at(path: Path, text: str) -> str:
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return f"config.yaml:{n}:{line.index(text) + 1}"
    raise AssertionError(text)


def typo(field: str, fields: str, match: str | None) -> str:
    msg = NO_SUCH_FIELD.format(field=field, source="train.jsonl", fields=fields)
    return msg + (DID_YOU_MEAN.format(match=match) if match else "")


CASES = [
    # (data section, extra sections, rows, value located, path, message)
    (
        "  prompt_field: promt\n",
        "",
        ROWS,
        "promt",
        "data.prompt_field",
        ("promt", FIELDS, "prompt"),
    ),
    (
        "  completion_field: complete\n",
        "",
        ROWS,
        "complete",
        "data.completion_field",
        ("complete", FIELDS, "completion"),
    ),
    (
        "  text_field: txt\n",
        "",
        [{"text": f"t {i}"} for i in range(40)],
        "txt",
        "data.text_field",
        ("txt", "text", "text"),
    ),
    (
        "",
        "fairness:\n  reweight:\n    group: grop\n    label: label\n",
        ROWS,
        "grop",
        "fairness.reweight.group",
        ("grop", FIELDS, "group"),
    ),
    (
        "",
        "fairness:\n  reweight:\n    group: group\n    label: nofield\n",
        ROWS,
        "nofield",
        "fairness.reweight.label",
        ("nofield", FIELDS, None),
    ),
]


@pytest.mark.parametrize(
    ("data", "extra", "rows", "value", "path", "msg"),
    CASES,
    ids=["prompt_field", "completion_field", "text_field", "reweight_group", "reweight_label"],
)
def test_field_in_no_row_is_one_located_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    data: str,
    extra: str,
    rows: list[dict[str, Any]],
    value: str,
    path: str,
    msg: tuple[str, str, str | None],
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path, data, rows, extra)
    assert main(["train", "config.yaml", "--no-progress"]) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines == [f"error: {at(config, value)}: {path}: {typo(*msg)}"], err


def test_no_text_fields_with_defaults_is_one_error_at_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path, "", [{"input": f"x {i}", "output": "y"} for i in range(40)])
    with pytest.raises(UserError) as exc:
        load_config(config)
    msg = NO_TEXT_FIELDS.format(
        source="train.jsonl",
        prompt="prompt",
        completion="completion",
        text="text",
        fields="input, output",
    )
    assert exc.value.messages == [f"{at(config, 'train.jsonl')}: data.train[0]: {msg}"]


def test_field_missing_from_some_rows_stays_per_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [*ROWS, {"prompt": "no completion here", "group": "b"}]
    extra = "fairness:\n  reweight:\n    group: group\n    label: label\n"
    config = load_config(write(tmp_path, "", rows, extra))  # no config error
    with pytest.raises(UserError) as exc:
        load_examples(config.data.train, ("prompt", "completion", "text"))
    want = f"train.jsonl line {len(rows)}: {MISSING_FIELD.format(name='completion')}"
    assert exc.value.messages == [want]
