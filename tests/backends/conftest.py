"""The real server's model: a tiny Llama (its tokenizer adds a BOS, which the server
needs to align echoed log-probs), trained briefly so its greedy text is words, and its
float32 GGUF. Built once per session; skipped with the reason where llama-cpp-python,
its server extra or the sdist's converter ($HARNESS_LLAMACPP_SRC) is missing."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def trained_llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(HF folder, GGUF file) of the same weights."""
    from tests.backends.llamacpp_server import convert_to_gguf, train_briefly, unavailable
    from tests.tiny_models import build_model

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("real-server-model")
    folder = train_briefly(build_model(work / "hf", "llama", chat="llama3", n_positions=256))
    return folder, convert_to_gguf(folder, work / "model.gguf")
