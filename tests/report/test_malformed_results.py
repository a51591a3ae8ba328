"""Damaged results files never crash `harness report | compare | verify`.

Seeded mutations of the golden results.json (deleted keys, values of the wrong type,
truncated or non-UTF-8 files) either render (exit 0; verify may exit 1) or are
reported as bad input (exit 2) in one line: never a traceback.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "results.json"
N_CASES = 40
WRONG = ["text", 7, -1.5, None, True, [], {}, [1, "x"], {"a": 1}, float("nan")]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):  # a few items of each list are enough
            out += _paths(v, (*prefix, i))
    return out


def mutate(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(doc))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and rng.random() < 0.4:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = rng.choice(WRONG)
    return doc


def cases() -> list[tuple[str, bytes]]:
    rng = random.Random(20240501)
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    text = GOLDEN.read_bytes()
    out = [
        ("empty", b""),
        ("truncated", text[: len(text) // 2]),
        ("not utf-8", b"\xff\xfe" + text[2:]),
        ("a list", b"[]"),
        ("nan everywhere", text.replace(b'"value": 0', b'"value": NaN')),
    ]
    for i in range(N_CASES):
        doc = mutate(golden, rng)
        out.append((f"mutation {i}", json.dumps(doc).encode()))
    return out


CASES = cases()


@pytest.fixture(scope="module")
def golden_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("golden") / "results.json"
    path.write_bytes(GOLDEN.read_bytes())
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("name", "content"), CASES, ids=[c[0] for c in CASES])
def test_damaged_results_never_crash(
    name: str,
    content: bytes,
    golden_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "results.json"
    path.write_bytes(content)
    for fmt in ("html", "junit", "md"):
        assert main(["report", str(path), "--format", fmt, "--out", str(tmp_path / fmt)]) in (0, 2)
    assert main(["compare", str(golden_file), str(path), "--samples", "20"]) in (0, 2)
    assert main(
        ["compare", str(path), str(golden_file), "--format", "html", "--samples", "20"]
    ) in (
        0,
        2,
    )
    assert main(["verify", str(path)]) in (1, 2)  # the golden run's files are not here
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for line in err.splitlines():
        assert line.startswith(("error: ", "md: ", "html: ", "junit: ")), line
