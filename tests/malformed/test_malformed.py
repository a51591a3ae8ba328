"""Malformed input never gets past the front door: exit 2, one located line, no traceback.

The generated corpus (tests/malformed/corpus.py: seeded mutations of the shipped demo
suite, its data and the fine-tune configs) goes through the in-process entry points
(``harness validate``, ``finetune train``, ``harness run``); a few cases run as real
subprocesses. The hand-written cases below cover what the mutations cannot reach
(model folders, command-line options, other file formats). ``harness run`` cases point
at the output folder of an earlier good run, which must stay byte for byte the same.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from finetune.cli import main as finetune_main
from harness.cli.main import main as harness_main
from tests.malformed.corpus import ROOT, RUN_SUITE, Case, generate, run_cases, run_suite_text

CASES = generate()
RUNS = run_cases()

# FILE:LINE[:COL]: ... | FILE line N: ... | --option: ... ; FILE alone for whole-file problems
LOCATED = re.compile(
    r"^error: (?P<file>[^:\n]+?)"
    r"(?::(?P<line>\d+)(?::(?P<col>\d+))?| line (?P<row>\d+))?: \S"
)
MAX_MESSAGE = 4000  # characters: a message never echoes a huge input line


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine copy of the shipped demo suite and data (plus the runnable variant)."""
    folder = tmp_path_factory.mktemp("demo-template")
    shutil.copy(ROOT / "suites" / "demo.yaml", folder / "demo.yaml")
    shutil.copytree(ROOT / "suites" / "demo", folder / "demo")
    (folder / RUN_SUITE).write_text(run_suite_text())
    # an empty base-model folder: a fine-tune case that got past the checks fails there,
    # with a message that does not name the broken file
    (folder / "demo" / "demo-base").mkdir()
    return folder


def materialize(case: Case, template: Path, dest: Path) -> Path:
    folder = dest / "case"
    shutil.copytree(template, folder)
    for rel, data in case.files.items():
        target = folder / rel
        if data is None:
            target.unlink()
        else:
            target.write_bytes(data)
    return folder


def check_refusal(
    code: int, out: str, err: str, names: str, folder: Path | None, whole_file: bool = False
) -> None:
    """Exit 2, exactly one located line on stderr naming ``names``, no traceback."""
    assert "Traceback" not in out + err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    (line,) = lines
    assert len(line) <= MAX_MESSAGE, line[:300]
    assert names in line, line
    if whole_file:  # a file or folder as a whole: naming it is the location
        return
    m = LOCATED.match(line)
    assert m, line
    if m["line"] or m["row"]:
        number = int(m["line"] or m["row"])
        located = Path(m["file"])
        if not located.is_absolute() and folder is not None:
            located = folder / located
        if located.is_file():
            assert 1 <= number <= located.read_bytes().count(b"\n") + 1, line
    else:
        assert m["file"].startswith("--"), f"no line number: {line}"


def test_corpus_size_and_kinds() -> None:
    assert len(CASES) >= 200 and len(HAND) >= 10
    for kind in (
        "-deleted-",
        "-type-",
        "-yaml-",
        "-unknown-",
        "-range-",
        "-empty",
        "-non-utf8",
        "-huge",
        "-missing",
        "-duplicate",
        "-label-",
    ):
        assert sum(kind in c.id for c in CASES) >= 3, kind
    assert {c.command for c in CASES} == {"validate", "train"}
    assert [c.id for c in generate()] == [c.id for c in CASES]  # seeded: same corpus


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_generated_case_is_refused(
    case: Case, template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = materialize(case, template, tmp_path)
    entry = str(folder / case.entry)
    if case.command == "validate":
        code = harness_main(["validate", entry, *case.args])
    else:
        out = tmp_path / "ft-out"
        code = finetune_main(["train", entry, "--out", str(out), "--no-progress", *case.args])
        assert not out.exists()  # nothing is written before the input is known good
    captured = capsys.readouterr()
    check_refusal(code, captured.out, captured.err, case.names, folder, case.whole_file)


# --- harness run: the output of an earlier good run is untouched ---------------------


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def good_run(template: Path, tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output folder written by one good `harness run`."""
    out = tmp_path_factory.mktemp("good-run") / "out"
    env_cache = os.environ.get("HARNESS_CACHE_DIR")
    os.environ["HARNESS_CACHE_DIR"] = str(out.parent / "cache")
    try:
        argv = ["run", str(template / RUN_SUITE), "--model", str(tiny_gpt2), "--out", str(out)]
        code = harness_main([*argv, "--no-progress"])
    finally:
        if env_cache is None:
            os.environ.pop("HARNESS_CACHE_DIR", None)
        else:
            os.environ["HARNESS_CACHE_DIR"] = env_cache
    assert code in (0, 1)
    assert {"results.json", "report.html", "junit.xml", "summary.md"} <= {
        p.name for p in out.iterdir()
    }
    return out


@pytest.mark.slow
@pytest.mark.parametrize("case", RUNS, ids=[c.id for c in RUNS])
def test_bad_run_leaves_earlier_output_untouched(
    case: Case,
    template: Path,
    good_run: Path,
    tiny_gpt2: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(good_run)
    capsys.readouterr()
    folder = materialize(case, template, tmp_path)
    argv = ["run", str(folder / case.entry), "--model", str(tiny_gpt2), "--out", str(good_run)]
    code = harness_main([*argv, "--no-progress"])
    captured = capsys.readouterr()
    check_refusal(code, captured.out, captured.err, case.names, folder, case.whole_file)
    assert snapshot(good_run) == before


# --- hand-written cases ---------------------------------------------------------------


def _pickle_only(folder: Path, model: Path) -> None:
    shutil.copytree(model, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


def _garbage_weights(folder: Path, model: Path) -> None:
    shutil.copytree(model, folder)
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 64)


def _no_weights(folder: Path, model: Path) -> None:
    shutil.copytree(model, folder)
    (folder / "model.safetensors").unlink()


def _bad_config_json(folder: Path, model: Path) -> None:
    shutil.copytree(model, folder)
    (folder / "config.json").write_text('{"model_type": "gpt2", ')


def _unknown_architecture(folder: Path, model: Path) -> None:
    shutil.copytree(model, folder)
    (folder / "config.json").write_text('{"model_type": "no-such-architecture"}')


# (id, how the --model folder is broken, text the message must contain)
BROKEN_MODELS: list[tuple[str, Callable[[Path, Path], None], str]] = [
    ("pickle-only", _pickle_only, "--allow-pickle"),
    ("garbage-safetensors", _garbage_weights, "bad-model"),
    ("no-weights", _no_weights, "bad-model"),
    ("broken-config-json", _bad_config_json, "bad-model"),
    ("unknown-architecture", _unknown_architecture, "bad-model"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "names"), [(b, n) for _, b, n in BROKEN_MODELS], ids=[i for i, _, _ in BROKEN_MODELS]
)
def test_broken_model_folder(
    how: Callable[[Path, Path], None],
    names: str,
    template: Path,
    good_run: Path,
    tiny_gpt2: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(good_run)
    capsys.readouterr()
    model = tmp_path / "bad-model"
    how(model, tiny_gpt2)
    argv = ["run", str(template / RUN_SUITE), "--model", str(model), "--out", str(good_run)]
    code = harness_main([*argv, "--no-progress"])
    captured = capsys.readouterr()
    check_refusal(code, captured.out, captured.err, names, None, whole_file=True)
    assert snapshot(good_run) == before


def _write(rel: str, data: str | bytes) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    return make


SUITE_HEAD = "schema_version: 1\nname: hand\nmodel: {path: demo-base}\n"
CSV_TASK = (
    "tasks:\n  - {id: t, kind: classification, data: %s, prompt: '{{ text }}',"
    " choices: [' a', ' b'], label: label}\n"
)


def _csv_suite(name: str, content: str | bytes) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        _write(name, content)(folder)
        return _write("hand.yaml", SUITE_HEAD + CSV_TASK % name)(folder)

    return make


# (id, argv maker: folder -> argv, a name the message must contain, whole-file problem)
HAND: list[tuple[str, Callable[[Path], list[str]], str, bool]] = [
    ("suite-missing", lambda f: ["validate", str(f / "nope.yaml")], "nope.yaml", True),
    ("suite-is-a-folder", lambda f: ["validate", str(f / "demo")], "demo", True),
    (
        "alias-bomb",
        lambda f: [
            "validate",
            _write(
                "bomb.yaml",
                "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                + "".join(
                    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
                    for p, c in zip("abcdefg", "bcdefgh", strict=True)
                )
                + "schema_version: 1\n",
            )(f),
        ],
        "bomb.yaml",
        False,
    ),
    (
        "impossible-date",
        lambda f: [
            "validate",
            _write("date.yaml", SUITE_HEAD + "description: 2024-13-45\n" + CSV_TASK % "d.csv")(f),
        ],
        "date.yaml",
        False,
    ),
    (
        "recursive-alias",
        lambda f: ["validate", _write("rec.yaml", "schema_version: 1\nname: &n [*n]\n")(f)],
        "rec.yaml",
        False,
    ),
    (
        "csv-ragged-row",
        lambda f: ["validate", _csv_suite("d.csv", "text,label\ngood,0\nbad,1,extra\n")(f)],
        "d.csv",
        False,
    ),
    (
        "tsv-duplicate-header",
        lambda f: ["validate", _csv_suite("d.tsv", "text\ttext\nx\ty\n")(f)],
        "d.tsv",
        False,
    ),
    (
        "csv-non-utf8",
        lambda f: ["validate", _csv_suite("d.csv", b"text,label\nok,0\nbad\xff,1\n")(f)],
        "d.csv",
        False,
    ),
    (
        "metric-plugin-missing",
        lambda f: [
            "validate",
            _write(
                "plug.yaml",
                SUITE_HEAD.replace("hand", "plug")
                + "tasks:\n  - {id: t, kind: perplexity, data: demo/original_lm.jsonl,"
                " text: text, metrics: [./no_such_metric.py]}\n",
            )(f),
        ],
        "no_such_metric.py",
        False,
    ),
    ("run-limit-zero", lambda f: ["run", str(f / RUN_SUITE), "--limit", "0"], "--limit", False),
    (
        "run-batch-size-negative",
        lambda f: ["run", str(f / RUN_SUITE), "--batch-size", "-2"],
        "--batch-size",
        False,
    ),
    (
        "run-missing-model",
        lambda f: ["run", str(f / RUN_SUITE), "--model", str(f / "no-model")],
        "no-model",
        False,
    ),
    (
        "run-bad-baseline",
        lambda f: [
            "run",
            str(f / RUN_SUITE),
            "--baseline-results",
            _write("base.json", '{"schema_version": 1, "tasks": ')(f),
        ],
        "base.json",
        True,
    ),
    (
        "finetune-config-missing",
        lambda f: ["ft", "train", str(f / "nope.yaml")],
        "nope.yaml",
        True,
    ),
    (
        "finetune-bad-search",
        lambda f: [
            "ft",
            "search",
            _write(
                "demo/search.yaml",
                (ROOT / "suites/demo/finetune-naive.yaml").read_text()
                + "search: {sampler: annealing, space: {training.lr: {choices: [0.1]}}}\n",
            )(f),
        ],
        "search.yaml",
        False,
    ),
]


@pytest.mark.parametrize(
    ("make", "names", "whole"), [(m, n, w) for _, m, n, w in HAND], ids=[i for i, *_ in HAND]
)
def test_hand_written_case_is_refused(
    make: Callable[[Path], list[str]],
    names: str,
    whole: bool,
    template: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "case"
    shutil.copytree(template, folder)
    argv = make(folder)
    code = finetune_main(argv[1:]) if argv[0] == "ft" else harness_main(argv)
    captured = capsys.readouterr()
    check_refusal(code, captured.out, captured.err, names, folder, whole)


# --- a few as real subprocesses (the installed entry points, no test harness around) ---

SUBPROCESS = [c for c in CASES if c.id.split("-")[1] in ("yaml", "non", "huge", "empty")][::6][:5]


@pytest.mark.slow
@pytest.mark.parametrize("case", SUBPROCESS, ids=[c.id for c in SUBPROCESS])
def test_subprocess_case_is_refused(case: Case, template: Path, tmp_path: Path) -> None:
    folder = materialize(case, template, tmp_path)
    module = "harness" if case.command == "validate" else "finetune"
    argv = ["validate", case.entry] if module == "harness" else ["train", case.entry]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    check_refusal(proc.returncode, proc.stdout, proc.stderr, case.names, folder, case.whole_file)
