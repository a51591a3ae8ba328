"""Real-data fixtures for the metric tests (skipped cleanly when ../shared is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"


def _folder(name: str) -> Path:
    path = REALDATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def sst2_dev_labels() -> list[int]:
    """The 872 gold labels of GLUE SST-2 dev (444 positive, 428 negative)."""
    lines = (_folder("sst2") / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [int(line.rsplit("\t", 1)[1]) for line in lines]


@pytest.fixture(scope="session")
def sst2_dev_sentences() -> list[str]:
    lines = (_folder("sst2") / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.rsplit("\t", 1)[0] for line in lines]


@pytest.fixture(scope="session")
def wmt_targets() -> list[str]:
    """20 Romanian lines of WMT16 en-ro newstest (each joins several sentences)."""
    text = (_folder("wmt16_en_ro_sample") / "test.target").read_text(encoding="utf-8")
    return text.splitlines()


@pytest.fixture(scope="session")
def xsum() -> list[dict[str, str]]:
    """10 XSum documents with their one-sentence summaries."""
    text = (_folder("xsum_sample") / "sample.json").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
