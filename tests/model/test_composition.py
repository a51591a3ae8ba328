"""The scoring model is composed, not patched (harness.model.factory, harness.model.caching):
the cache wraps the backend, nothing is set on a model after it is built, and both the
backend and the test fake satisfy the scoring API (harness.model.api.ScoringModel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.model.api import ScoringModel
from harness.model.cache import ResponseCache
from harness.model.caching import CachingModel
from harness.model.factory import ModelSource, open_model, source_of, unwrapped
from harness.model.language_model import LanguageModel, load_model
from tests.audits.conftest import FAIR, FakeLM

PAIRS = [("Review: a great movie.\nSentiment:", c) for c in (" positive", " negative")]


def test_the_cache_wraps_the_model_and_answers_a_repeat(tmp_path: Path, tiny_gpt2: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    lm = open_model(ModelSource(path=str(tiny_gpt2), device="cpu"), cache=cache)
    assert isinstance(lm, CachingModel) and lm.cache is cache
    backend = unwrapped(lm)
    assert isinstance(backend, LanguageModel)
    # the backend knows nothing of the cache: no attribute set on it from outside
    assert not hasattr(backend, "cache") and backend.group is None
    first = lm.loglikelihood(PAIRS)
    assert (cache.stats()["misses"], cache.stats()["writes"]) == (2, 2)
    again = lm.loglikelihood(PAIRS)
    assert again == first and cache.stats()["hits"] == 2  # answered from the cache
    # the backend alone computes (no cache to consult) and gives the same answers
    assert backend.loglikelihood(PAIRS) == first
    assert cache.stats()["hits"] == 2
    cache.close()


def test_without_cache_or_group_the_factory_gives_the_backend(tiny_gpt2: Path) -> None:
    lm = open_model(ModelSource(path=str(tiny_gpt2), device="cpu"))
    assert isinstance(lm, LanguageModel) and unwrapped(lm) is lm


def test_the_backend_the_wrapper_and_the_fake_are_scoring_models(tiny_gpt2: Path) -> None:
    backend = load_model(ModelSource(path=str(tiny_gpt2), device="cpu"))
    assert isinstance(backend, ScoringModel)
    assert isinstance(CachingModel(backend, cache=None), ScoringModel)
    assert isinstance(FakeLM(FAIR), ScoringModel)
    assert not isinstance(object(), ScoringModel)


def test_inside_adapter_disabled_the_wrapper_keys_by_the_base(
    tmp_path: Path, tiny_gpt2: Path
) -> None:
    """The keys use the inner model's fingerprint at the time of the call."""

    class Switching(FakeLM):
        off = False

        @property
        def fingerprint(self) -> str:
            return "base" if self.off else "checkpoint"

    inner = Switching(FAIR)
    cache = ResponseCache(tmp_path / "c.sqlite")
    lm = CachingModel(inner, cache=cache)
    lm.loglikelihood(PAIRS)
    inner.off = True
    lm.loglikelihood(PAIRS)
    assert (cache.stats()["hits"], inner.calls) == (0, 2)  # another model: nothing reused
    inner.off = False
    lm.loglikelihood(PAIRS)
    assert (cache.stats()["hits"], inner.calls) == (2, 2)
    cache.close()


@pytest.mark.parametrize("adapter", [None, "lora"])
def test_source_of_a_suite_model_section(adapter: str | None) -> None:
    class Model:  # what a suite's `model` section holds
        path, allow_pickle, trust_remote_code = Path("m"), False, False
        dtype, device, max_length, allow_base_mismatch = "float32", "cpu", 64, True

        def loading_options(self) -> dict[str, object]:
            return {"dtype": self.dtype, "attn_implementation": "eager"}

        def backend_options(self) -> dict[str, object]:
            return {"backend": "hf", "endpoint": None, "tokenizer": None, "vllm": None}

    Model.adapter = Path(adapter) if adapter else None  # type: ignore[attr-defined]
    assert source_of(Model()) == ModelSource(
        path="m",
        adapter=adapter,
        dtype="float32",
        device="cpu",
        max_length=64,
        allow_base_mismatch=True,
        attn_implementation="eager",
    )
