"""Loading examples: jsonl / csv / tsv files and `datasets` sources, with exact messages."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from harness.config.suite import DatasetSource
from harness.data.rows import (
    MAX_ERRORS,
    Row,
    display_path,
    load_rows,
    sample_rows,
    sha256_file,
)
from harness.errors import UserError


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the cwd, so messages name files relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def put(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def messages(source: str, base: Path) -> list[str]:
    with pytest.raises(UserError) as info:
        load_rows(source, base)
    return info.value.messages


# --- jsonl -------------------------------------------------------------------------------


def test_jsonl_rows_keep_their_line(cwd: Path) -> None:
    put(cwd, "d.jsonl", '{"a": 1}\n\n   \n{"a": "é", "b": [1, 2]}\r\n{"a": 3}')
    assert load_rows("d.jsonl", cwd) == [
        Row(line=1, fields={"a": 1}),
        Row(line=4, fields={"a": "é", "b": [1, 2]}),
        Row(line=5, fields={"a": 3}),
    ]


def test_jsonl_byte_order_mark(cwd: Path) -> None:
    put(cwd, "d.jsonl", b'\xef\xbb\xbf{"a": 1}\n')
    assert load_rows("d.jsonl", cwd) == [Row(line=1, fields={"a": 1})]


def test_jsonl_errors_all_reported(cwd: Path) -> None:
    put(
        cwd,
        "data/d.jsonl",
        b'{"a": 1}\n{"a":\n[1, 2]\n"text"\n3\nnull\n{"a": "\xff"}\n{"a": 1} x\n',
    )
    assert messages("data/d.jsonl", cwd) == [
        "data/d.jsonl line 2: invalid JSON: Expecting value (column 6)",
        "data/d.jsonl line 3: expected a JSON object, got list",
        "data/d.jsonl line 4: expected a JSON object, got string",
        "data/d.jsonl line 5: expected a JSON object, got number",
        "data/d.jsonl line 6: expected a JSON object, got null",
        "data/d.jsonl line 7: not valid UTF-8",
        "data/d.jsonl line 8: invalid JSON: Extra data (column 10)",
    ]


def test_jsonl_deep_nesting_is_a_located_error(cwd: Path) -> None:
    put(cwd, "d.jsonl", "[" * 100_000 + "\n")
    assert messages("d.jsonl", cwd) == ["d.jsonl line 1: invalid JSON: nested too deeply"]


def test_many_errors_are_capped(cwd: Path) -> None:
    put(cwd, "d.jsonl", "[]\n" * (MAX_ERRORS + 5))
    found = messages("d.jsonl", cwd)
    assert len(found) == MAX_ERRORS + 1
    assert found[-1] == "d.jsonl: 5 more errors"


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_jsonl(cwd: Path, text: str) -> None:
    put(cwd, "d.jsonl", text)
    assert messages("d.jsonl", cwd) == ["d.jsonl: no rows"]


def test_huge_lines(cwd: Path) -> None:
    """No line-length limit below the sizes real documents reach (here 8 MB)."""
    big = "x" * (8 << 20)
    put(cwd, "d.jsonl", f'{{"text": "{big}"}}\n')
    put(cwd, "d.csv", f"id,text\n1,{big}\n")
    assert load_rows("d.jsonl", cwd)[0].fields["text"] == big
    assert load_rows("d.csv", cwd)[0].fields["text"] == big


# --- csv / tsv ---------------------------------------------------------------------------


def test_csv_rows_are_numbered_with_the_header_as_row_1(cwd: Path) -> None:
    put(cwd, "d.csv", 'text,label\nfine,1\n\n"two\nlines",0\r\n"a ""quote""",1\n')
    assert load_rows("d.csv", cwd) == [
        Row(line=2, fields={"text": "fine", "label": "1"}),
        Row(line=3, fields={"text": "two\nlines", "label": "0"}),
        Row(line=4, fields={"text": 'a "quote"', "label": "1"}),
    ]


def test_tsv(cwd: Path) -> None:
    put(cwd, "d.TSV", "text\tlabel\nit, was fine\t1\n")
    assert load_rows("d.TSV", cwd) == [Row(line=2, fields={"text": "it, was fine", "label": "1"})]


def test_csv_column_count(cwd: Path) -> None:
    put(cwd, "d.csv", "a,b,c\n1,2,3\n1,2\n1,2,3,4\n")
    assert messages("d.csv", cwd) == [
        "d.csv line 3: expected 3 columns, got 2",
        "d.csv line 4: expected 3 columns, got 4",
    ]


def test_csv_header_problems(cwd: Path) -> None:
    put(cwd, "d.csv", "a,,a\n1,2,3\n")
    assert messages("d.csv", cwd) == [
        "d.csv line 1: column 2 of the header has no name",
        "d.csv line 1: duplicate column 'a' in the header",
    ]


@pytest.mark.parametrize("text", ["", "a,b\n", "\n\na,b\n\n"])
def test_csv_without_rows(cwd: Path, text: str) -> None:
    put(cwd, "d.csv", text)
    assert messages("d.csv", cwd) == ["d.csv: no rows"]


def test_csv_not_utf8(cwd: Path) -> None:
    put(cwd, "d.tsv", b"a\tb\n1\t2\n3\t\xe9\n")
    assert messages("d.tsv", cwd) == ["d.tsv line 3: not valid UTF-8"]


# --- paths -------------------------------------------------------------------------------


def test_missing_and_unsupported_files(cwd: Path) -> None:
    assert messages("nope.jsonl", cwd) == ["nope.jsonl: file not found"]
    put(cwd, "d.json", "[]")
    assert messages("d.json", cwd) == [
        "d.json: unsupported file type '.json'; use .jsonl, .csv or .tsv"
    ]


def test_paths_are_relative_to_base_dir_and_shown_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suites = tmp_path / "suites"
    put(suites, "data/d.jsonl", "[]\n")
    monkeypatch.chdir(tmp_path)
    assert messages("data/d.jsonl", suites) == [
        "suites/data/d.jsonl line 1: expected a JSON object, got list"
    ]
    monkeypatch.chdir(suites / "data")
    assert display_path(suites / "data" / "d.jsonl") == "d.jsonl"
    other = tmp_path / "elsewhere.jsonl"
    assert display_path(other) == str(other)  # not below the cwd: absolute
    assert display_path("x/../y.jsonl") == "y.jsonl"


# --- datasets sources --------------------------------------------------------------------


def test_datasets_packaged_builder_reads_local_files(cwd: Path) -> None:
    pytest.importorskip("datasets")
    put(cwd, "suites/data/d.jsonl", '{"text": "a"}\n{"text": "b"}\n')
    source = DatasetSource(dataset="json", data_files="data/d.jsonl", split="train")
    rows = load_rows(source, cwd / "suites")
    assert rows == [Row(line=1, fields={"text": "a"}), Row(line=2, fields={"text": "b"})]


def test_datasets_failures(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'glue' on the Hub (OfflineModeIsEnabled)")

    def missing(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("Unable to find '/data/x.jsonl'\nmore detail")

    source = DatasetSource(dataset="glue", name="sst2", split="validation")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert messages(source, cwd) == [  # type: ignore[arg-type]
        "dataset 'glue' split 'validation': cannot reach the Hugging Face Hub (offline or "
        "no network); download the dataset beforehand or use a local .jsonl/.csv/.tsv file"
    ]
    monkeypatch.setattr(datasets, "load_dataset", missing)
    assert messages(source, cwd) == [  # type: ignore[arg-type]
        "dataset 'glue' split 'validation': Unable to find '/data/x.jsonl'"
    ]


def test_datasets_not_installed(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    source = DatasetSource(dataset="glue", split="test")
    assert messages(source, cwd) == [  # type: ignore[arg-type]
        "dataset 'glue' split 'test': the 'datasets' package is not installed; "
        "pip install 'llm-release-harness[datasets]'"
    ]


# --- sampling and hashing ----------------------------------------------------------------


def _rows(n: int) -> list[Row]:
    return [Row(line=i + 1, fields={"i": i}) for i in range(n)]


def test_sample_rows_is_deterministic_and_keeps_file_order() -> None:
    rows = _rows(100)
    first = sample_rows(rows, 10, seed=1234)
    assert first == sample_rows(rows, 10, seed=1234)
    assert len(first) == 10
    assert [r.line for r in first] == sorted(r.line for r in first)
    assert first != sample_rows(rows, 10, seed=1235)
    # a smaller limit picks a subset of a larger one (runs stay comparable)
    assert set(map(id, sample_rows(rows, 5, 7))) <= set(map(id, sample_rows(rows, 20, 7)))


def test_sample_rows_golden() -> None:
    """Pinned (computed as sorted(random.Random(1234).shuffle(range(20))[:5]) + 1):
    a change of sampling would silently change every limited run's examples."""
    assert [r.line for r in sample_rows(_rows(20), 5, seed=1234)] == [5, 10, 14, 17, 20]


@pytest.mark.parametrize("limit", [None, 3, 10])
def test_sample_rows_without_cut(limit: int | None) -> None:
    rows = _rows(3)
    assert sample_rows(rows, limit, seed=0) == rows


def test_sha256_file(tmp_path: Path) -> None:
    # FIPS 180-2, appendix B.1: sha256("abc")
    path = put(tmp_path, "abc.txt", "abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    big = put(tmp_path, "big.bin", bytes(range(256)) * 20_000)  # several read chunks
    assert sha256_file(str(big)) == hashlib.sha256(big.read_bytes()).hexdigest()
