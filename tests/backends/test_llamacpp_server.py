"""The llama.cpp server helpers: conversion, tokenization and log-probs against transformers.

Skipped (with the reason) where llama-cpp-python or its sdist's converter is absent;
``make test`` provides both."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backends.llamacpp_server import (
    LlamaServer,
    convert_to_gguf,
    get_json,
    llama_tokens,
    post_json,
    unavailable,
)

pytestmark = pytest.mark.slow

TEXTS = ["the movie was great.", "  two  spaces\tand\nnewlines", "café 🦙 3.14", "a<|eot_id|>b"]
# Continuation log-likelihoods from the echoed prompt agree with transformers to
# ~1e-5 on the tiny float32 Llama (measured: max |difference| of a pair's sum 1.4e-5).
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def served(llama3_chat: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(HF folder, GGUF file) of the tiny Llama whose tokenizer adds a BOS: the server
    aligns echoed log-probs only when a BOS comes first (llama-cpp-python 0.3.36)."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    return llama3_chat, convert_to_gguf(llama3_chat, tmp_path_factory.mktemp("gguf") / "m.gguf")


def test_llama_cpp_tokenizes_as_the_hf_tokenizer(served: tuple[Path, Path]) -> None:
    from transformers import AutoTokenizer

    folder, gguf_file = served
    tok = AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        assert llama_tokens(gguf_file, text, add_bos=True) == tok.encode(text), text


def test_echoed_logprobs_match_transformers(served: tuple[Path, Path]) -> None:
    from harness.model.language_model import ModelSource, load_model

    folder, gguf_file = served
    lm = load_model(ModelSource(path=str(folder)))
    context, continuation = "the movie was", " great and fun"
    [(expected, _, n)] = lm.loglikelihood([(context, continuation)])
    with LlamaServer(gguf_file) as server:
        assert get_json(server.url + "/models")["data"][0]["object"] == "model"
        body = {"prompt": context + continuation, "echo": True, "logprobs": 1}
        status, answer = post_json(server.url + "/completions", body | {"max_tokens": 1})
    assert status == 200
    lp = answer["choices"][0]["logprobs"]
    assert lp["token_logprobs"][0] is None  # the first token after the BOS: never one
    picked = [
        x
        for x, offset in zip(lp["token_logprobs"], lp["text_offset"], strict=True)
        if len(context) <= offset < len(context + continuation)
    ]
    assert len(picked) == n
    assert sum(picked) == pytest.approx(expected, abs=TOLERANCE)
