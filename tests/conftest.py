"""Shared fixtures: tiny models built once per session, the real-data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.fixture(autouse=True)
def _own_response_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets an empty response cache (never the user's ~/.cache)."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "response-cache"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is absent")
    return REALDATA


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_model

    return build_model(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture(scope="session")
def chatml_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 whose tokenizer carries a ChatML template (no BOS)."""
    from tests.tiny_models import build_model

    return build_model(tmp_path_factory.mktemp("chatml"), "gpt2", n_positions=256, chat="chatml")


@pytest.fixture(scope="session")
def llama3_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer adds a BOS and whose chat template writes one too."""
    from tests.tiny_models import build_model

    return build_model(tmp_path_factory.mktemp("llama3"), "llama", n_positions=256, chat="llama3")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_model

    return build_model(tmp_path_factory.mktemp("tiny-llama"), "llama")
