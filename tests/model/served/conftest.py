"""Fixtures: the fake server over the session's tiny GPT-2 (and a LoRA of it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model.served.fake_server import FakeServer, serving


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Path:
    from tests.report.stored_run import build_adapter

    return build_adapter(tiny_gpt2, tmp_path_factory.mktemp("adapter") / "lora")


@pytest.fixture(scope="session")
def _shared_server(tiny_gpt2: Path, tiny_adapter: Path) -> Iterator[FakeServer]:
    with serving(tiny_gpt2, tiny_adapter) as server:
        yield server


@pytest.fixture
def server(_shared_server: FakeServer) -> Iterator[FakeServer]:
    """The session's fake server, its faults and counters cleared for each test."""
    s = _shared_server
    s.faults.clear()
    s.down = False
    s.posts.clear()
    s.auth.clear()
    yield s
    s.faults.clear()
    s.down = False
