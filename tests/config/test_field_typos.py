"""A suite field naming a data column that no row has is ONE error at the suite line
(with the columns the data has and a "did you mean"), not one error per data row; a
field missing from only some rows stays a per-row error (issue #23, point 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.data.rows import DID_YOU_MEAN, NO_SUCH_FIELD

ROWS = [{"text": f"review number {i}", "label": i % 2, "uid": f"u{i}"} for i in range(60)]
DOCS = [{"document": f"document {i}", "summary": f"sum {i}"} for i in range(60)]

SUITE = """schema_version: 1
name: typos
model:
  path: {model}
tasks:
  - id: sentiment
    kind: classification
    data: data/reviews.jsonl
    prompt: "Review: {{{{ {prompt_field} }}}}\\nSentiment:"
    choices: [" negative", " positive"]
    label: {label}
    id_field: {id_field}
    metrics: [accuracy]
  - id: summarize
    kind: generation
    data: data/news.jsonl
    prompt: "{{{{ document }}}}\\nSummary:"
    reference: {reference}
    max_new_tokens: 2
    metrics: [exact_match]
  - id: lm
    kind: perplexity
    data: data/reviews.jsonl
    text: {text}
    metrics: [perplexity]
seed: 7
{extra}"""

GOOD = {
    "prompt_field": "text",
    "label": "label",
    "id_field": "uid",
    "reference": "summary",
    "text": "text",
}


def write(folder: Path, model: Path, extra: str = "", **fields: str) -> Path:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (data / "news.jsonl").write_text("".join(json.dumps(r) + "\n" for r in DOCS))
    suite = folder / "suite.yaml"
    suite.write_text(SUITE.format(model=model, extra=extra, **{**GOOD, **fields}))
    return suite


def position(suite: Path, text: str) -> tuple[int, int]:
    """Line and column (1-based) of the first occurrence of ``text`` in the suite."""
    for n, line in enumerate(suite.read_text().splitlines(), 1):
        if text in line:
            return n, line.index(text) + 1
    raise AssertionError(text)


REVIEW_FIELDS = "label, text, uid"

CASES = [
    # (suite field, override, path, value searched in the suite, data file, fields, match)
    ("label", {"label": "lable"}, "tasks[0].label", "lable", "reviews", REVIEW_FIELDS, "label"),
    (
        "id_field",
        {"id_field": "uuid"},
        "tasks[0].id_field",
        "uuid",
        "reviews",
        REVIEW_FIELDS,
        "uid",
    ),
    (
        "reference",
        {"reference": "sumary"},
        "tasks[1].reference",
        "sumary",
        "news",
        "document, summary",
        "summary",
    ),
    ("text", {"text": "txt"}, "tasks[2].text", "txt", "reviews", REVIEW_FIELDS, "text"),
    (
        "nothing close",
        {"label": "nofield"},
        "tasks[0].label",
        "nofield",
        "reviews",
        REVIEW_FIELDS,
        None,
    ),
    (
        "prompt",
        {"prompt_field": "tetx"},
        "tasks[0].prompt",
        '"Review:',
        "reviews",
        REVIEW_FIELDS,
        "text",
    ),
]


def expected(suite: Path, path: str, where: str, data: str, fields: str, match: str | None) -> str:
    line, col = position(suite, where)
    field = {
        "tasks[0].label": "lable",
        "tasks[0].id_field": "uuid",
        "tasks[1].reference": "sumary",
        "tasks[2].text": "txt",
        "tasks[0].prompt": "tetx",
    }[path]
    if where == "nofield":
        field = "nofield"
    msg = NO_SUCH_FIELD.format(field=field, source=f"data/{data}.jsonl", fields=fields)
    if match:
        msg += DID_YOU_MEAN.format(match=match)
    return f"error: suite.yaml:{line}:{col}: {path}: {msg}"


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(
    ("name", "override", "path", "where", "data", "fields", "match"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_field_in_no_row_is_one_located_error(
    tmp_path: Path,
    tiny_gpt2: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    name: str,
    override: dict[str, str],
    path: str,
    where: str,
    data: str,
    fields: str,
    match: str | None,
) -> None:
    monkeypatch.chdir(tmp_path)
    suite = write(tmp_path, tiny_gpt2, **override)
    args = [command, "suite.yaml"] + (["--no-progress"] if command == "run" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [expected(suite, path, where, data, fields, match)], err
    assert "line 1:" not in err and "more" not in err


def test_field_missing_from_some_rows_stays_per_row(
    tmp_path: Path,
    tiny_gpt2: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, tiny_gpt2)
    with (tmp_path / "data" / "reviews.jsonl").open("a") as fh:
        fh.write(json.dumps({"text": "no label", "uid": "x"}) + "\n")
    assert main(["validate", "suite.yaml"]) == 2
    err = capsys.readouterr().err
    assert f"data/reviews.jsonl line {len(ROWS) + 1}: missing field 'label'" in err
    assert NO_SUCH_FIELD.split("'")[0] not in err


def test_guarded_template_variable_is_not_a_typo(
    tmp_path: Path,
    tiny_gpt2: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A template may read an optional field under ``is defined``: no row having it is fine."""
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path,
        tiny_gpt2,
        prompt_field="text }}{% if note is defined %}{{ note }}{% endif %}{{ text",
    )
    assert main(["validate", "suite.yaml"]) == 0, capsys.readouterr().err


def test_fairness_group_in_no_row_is_one_located_error(
    tmp_path: Path,
    tiny_gpt2: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    extra = "audits:\n  fairness:\n    task: sentiment\n    group: uidd\n"
    suite = write(tmp_path, tiny_gpt2, extra=extra)
    assert main(["validate", "suite.yaml"]) == 2
    err = capsys.readouterr().err
    line, col = position(suite, "uidd")
    msg = NO_SUCH_FIELD.format(field="uidd", source="data/reviews.jsonl", fields=REVIEW_FIELDS)
    want = f"error: suite.yaml:{line}:{col}: audits.fairness.group: {msg}{DID_YOU_MEAN.format(match='uid')}"
    assert [x for x in err.splitlines() if x.strip()] == [want], err
