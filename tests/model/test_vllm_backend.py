"""The vLLM backend's contract: the requests it makes of vLLM and what it makes of the answers.

vLLM needs a GPU, so a FAKE ``vllm`` package stands in for it here (put in
``sys.modules``): the parts of vLLM 0.32's API the backend uses (``LLM``,
``SamplingParams``, ``TokensPrompt``, ``vllm.lora.request.LoRARequest``, request
outputs whose ``prompt_logprobs`` hold ``Logprob(logprob, rank)`` per position,
position 0 None), with vLLM's own checks (a prompt shorter than ``max_model_len``, a
LoRA request only on an engine built with ``enable_lora``, ids from 1). Its engine
computes real answers from the tiny transformers model (and its peft adapter), so the
backend's answers must equal the hf backend's on the same weights. bench/vllm_vs_hf.py
checks the same against the real engine on a GPU.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UserError
from harness.model.api import ScoringModel
from harness.model.files import ModelSource
from harness.model.language_model import load_model
from harness.model.vllm_backend import NO_GROUP, NO_VLLM, RANK_TOO_HIGH, load_vllm

PAIRS = [
    ("The capital of France is", " Paris"),
    ("one two three", " four five"),
    ("", "hello world"),
    ("answer: ", "yes"),
    ("answer: ", "no"),
    ("a b c d e f g h i j k l m n o p q r s t u v w x y z " * 4, "end of it"),
]
TEXTS = ["short text", "the quick brown fox jumps over the lazy dog " * 12, "x"]
PROMPTS = ["Once upon a time", "Question: why?\nAnswer:", "a b c d e f g h " * 20]


# -- the fake vllm package ----------------------------------------------------------------


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class SamplingParams:
    temperature: float = 1.0
    max_tokens: int | None = 16
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    detokenize: bool = True


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str = ""

    def __post_init__(self) -> None:
        if self.lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {self.lora_int_id}")
        assert self.lora_path, "lora_path cannot be empty"


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput]
    finished: bool = True


def TokensPrompt(**fields: Any) -> dict[str, Any]:  # noqa: N802 - vLLM's TypedDict
    return dict(fields)


@dataclass
class Call:
    prompts: list[list[int]]
    params: SamplingParams
    lora_request: LoRARequest | None


class FakeLLM:
    """vllm.LLM over a transformers model (float32, one prompt at a time)."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model, self.kwargs = model, kwargs
        self.calls: list[Call] = []
        self._models: dict[str, Any] = {}
        self._models[""] = AutoModelForCausalLM.from_pretrained(model).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(kwargs.get("tokenizer") or model)
        ENGINES.append(self)

    def _net(self, lora: LoRARequest | None) -> Any:
        if lora is None:
            return self._models[""]
        if not self.kwargs.get("enable_lora"):
            raise ValueError("LoRA is not enabled: start the engine with enable_lora=True")
        if lora.lora_path not in self._models:
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            base = AutoModelForCausalLM.from_pretrained(self.model)
            self._models[lora.lora_path] = PeftModel.from_pretrained(base, lora.lora_path).eval()
        return self._models[lora.lora_path]

    def generate(
        self,
        prompts: list[dict[str, Any]],
        sampling_params: SamplingParams,
        *,
        use_tqdm: bool = True,
        lora_request: LoRARequest | None = None,
    ) -> list[RequestOutput]:
        import torch

        if sampling_params.stop and not sampling_params.detokenize:
            raise ValueError("stop strings are only supported when detokenize is True.")
        ids_list = [list(p["prompt_token_ids"]) for p in prompts]
        self.calls.append(Call(ids_list, sampling_params, lora_request))
        net = self._net(lora_request)
        limit = self.kwargs["max_model_len"]
        out = []
        for n, ids in enumerate(ids_list):
            if len(ids) >= limit:  # vLLM's check: the prompt plus one new token must fit
                raise ValueError(f"The decoder prompt (length {len(ids)}) plus ... {limit}")
            with torch.inference_mode():
                logp = torch.log_softmax(net(torch.tensor([ids])).logits[0].float(), dim=-1)
            positions: list[dict[int, Logprob] | None] | None = None
            if sampling_params.prompt_logprobs is not None:
                positions = [None]
                for p in range(1, len(ids)):
                    row = logp[p - 1]
                    entry = {}
                    top = torch.topk(row, sampling_params.prompt_logprobs)
                    for r, t in enumerate(top.indices.tolist()):
                        entry[t] = Logprob(float(row[t]), rank=r + 1)
                    rank = 1 + int((row > row[ids[p]]).sum())
                    entry[ids[p]] = Logprob(float(row[ids[p]]), rank=rank)
                    positions.append(entry)
            new = self._greedy(net, ids, sampling_params, limit)
            text = str(self.tokenizer.decode(new, skip_special_tokens=True))
            for stop in _stops(sampling_params):
                if stop in text:
                    text = text[: text.index(stop)]
            out.append(RequestOutput(str(n), ids, positions, [CompletionOutput(0, text, new)]))
        return out

    def _greedy(self, net: Any, ids: list[int], params: SamplingParams, limit: int) -> list[int]:
        import torch

        ends = set(params.stop_token_ids or [])
        if not params.ignore_eos and self.tokenizer.eos_token_id is not None:
            ends.add(self.tokenizer.eos_token_id)
        stops = _stops(params)
        new: list[int] = []
        while len(new) < (params.max_tokens or 16) and len(ids) + len(new) < limit:
            with torch.inference_mode():
                logits = net(torch.tensor([ids + new])).logits[0, -1]
            new.append(int(logits.argmax()))
            if new[-1] in ends:
                break
            if any(s in self.tokenizer.decode(new, skip_special_tokens=True) for s in stops):
                break
        return new


def _stops(params: SamplingParams) -> list[str]:
    return [params.stop] if isinstance(params.stop, str) else list(params.stop or [])


ENGINES: list[FakeLLM] = []


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> list[FakeLLM]:
    """The fake ``vllm`` package in sys.modules; returns the engines it builds."""
    vllm = types.ModuleType("vllm")
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    for name, value in {
        "LLM": FakeLLM,
        "SamplingParams": SamplingParams,
        "TokensPrompt": TokensPrompt,
        "RequestOutput": RequestOutput,
        "CompletionOutput": CompletionOutput,
        "__version__": "0.32.0",
    }.items():
        setattr(vllm, name, value)
    request.LoRARequest = LoRARequest  # type: ignore[attr-defined]
    vllm.lora = lora  # type: ignore[attr-defined]
    lora.request = request  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    ENGINES.clear()
    return ENGINES


@pytest.fixture(scope="module")
def adapter_dir(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False)
    folder = tmp_path_factory.mktemp("adapter")
    get_peft_model(base, config).save_pretrained(str(folder))
    return folder


def _pair(tiny_gpt2: Path, adapter: Path | None) -> tuple[Any, Any]:
    """(hf model, vllm model) of the same files scoring in the same window: vLLM's
    max_model_len 64 leaves a window of 62 tokens, the hf model is given 62."""
    a = str(adapter) if adapter else None
    hf = load_model(ModelSource(path=str(tiny_gpt2), adapter=a, max_length=62))
    vm = load_vllm(ModelSource(path=str(tiny_gpt2), adapter=a, backend="vllm"))
    assert vm.max_length == hf.max_length == 62
    return hf, vm


def _close(a: list[Any], b: list[Any]) -> None:
    """Log-likelihoods within 1e-5 a scored token (float32 sums of many differ in the
    last bits), flags and token counts equal."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x[0] == pytest.approx(y[0], abs=1e-5 * x[-1])
        assert tuple(x[1:]) == tuple(y[1:])


# -- answers: the same as the hf backend's ------------------------------------------------


@pytest.mark.parametrize("with_adapter", [False, True])
def test_answers_equal_the_hf_backend(
    fake_vllm: list[FakeLLM], tiny_gpt2: Path, adapter_dir: Path, with_adapter: bool
) -> None:
    hf, vm = _pair(tiny_gpt2, adapter_dir if with_adapter else None)
    assert not fake_vllm  # nothing built until a request needs the engine
    assert vm.fingerprint == hf.fingerprint and vm.base == hf.base and vm.adapter == hf.adapter
    _close(vm.loglikelihood(PAIRS), hf.loglikelihood(PAIRS))
    _close(vm.rolling_loglikelihood(TEXTS), hf.rolling_loglikelihood(TEXTS))
    for stop in ([], ["e"], ["\n", " t"]):
        got = vm.generate(PROMPTS, max_new_tokens=8, stop=stop)
        assert got == hf.generate(PROMPTS, max_new_tokens=8, stop=stop)
    assert len(fake_vllm) == 1  # one engine for every request
    if with_adapter:
        with vm.adapter_disabled(), hf.adapter_disabled():
            assert vm.fingerprint == hf.fingerprint == hf.base.digest
            _close(vm.loglikelihood(PAIRS), hf.loglikelihood(PAIRS))
            assert vm.generate(PROMPTS, max_new_tokens=6) == hf.generate(PROMPTS, max_new_tokens=6)
        assert vm.fingerprint == hf.fingerprint != hf.base.digest


def test_greedy_flags_and_long_rows_match(fake_vllm: list[FakeLLM], tiny_gpt2: Path) -> None:
    """Every greedy flag agrees, also on continuations the model itself would write."""
    import torch

    hf, vm = _pair(tiny_gpt2, None)
    written = []
    for prompt in ("the quick brown", "one two", "answer:"):
        with torch.inference_mode():
            logits = hf.model(torch.tensor([hf.encode(prompt)])).logits[0, -1]
        written.append((prompt, hf.tokenizer.decode([int(logits.argmax())])))
    pairs = [*written, *PAIRS, ("word " * 200, " word")]
    got, want = vm.loglikelihood(pairs), hf.loglikelihood(pairs)
    _close(got, want)
    assert any(g for _, g, _ in got) and any(not g for _, g, _ in got)
    # the longest prompt the engine saw fills its window less the one new token
    longest = max(len(p) for c in fake_vllm[0].calls for p in c.prompts)
    assert longest == 63 == fake_vllm[0].kwargs["max_model_len"] - 1


# -- requests: what the engine is asked ---------------------------------------------------


def test_engine_and_requests(fake_vllm: list[FakeLLM], tiny_gpt2: Path, adapter_dir: Path) -> None:
    source = ModelSource(
        path=str(tiny_gpt2),
        adapter=str(adapter_dir),
        backend="vllm",
        dtype="auto",
        vllm={"tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "max_lora_rank": 5},
    )
    vm = load_vllm(source)
    assert vm.request_settings == {"max_length": 62, "dtype": "float32", "backend": "vllm"}
    assert vm.loading == {
        "backend": "vllm",
        "dtype": "float32",
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.5,
        "max_lora_rank": 8,  # the next rank vLLM takes
        "enforce_eager": False,
        "max_model_len": 64,
    }
    ctx, cont = vm.encode_pair("answer: ", "yes")
    vm.loglikelihood([("answer: ", "yes")])
    (engine,) = fake_vllm
    assert engine.model == str(tiny_gpt2)
    assert engine.kwargs == {
        "tokenizer": str(tiny_gpt2),
        "dtype": "float32",
        "max_model_len": 64,
        "trust_remote_code": False,
        "seed": 0,
        "enable_lora": True,
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.5,
        "max_lora_rank": 8,
        "enforce_eager": False,
    }
    call = engine.calls[-1]
    assert call.prompts == [ctx + cont]
    params = call.params
    assert (params.temperature, params.max_tokens, params.prompt_logprobs) == (0.0, 1, 1)
    assert params.detokenize is False and params.stop is None
    assert call.lora_request == LoRARequest("adapter", 1, str(adapter_dir))
    vm.generate(["Once"], max_new_tokens=3, stop=["\n"])
    call = engine.calls[-1]
    assert call.prompts == [vm.encode("Once")]
    params = call.params
    assert (params.temperature, params.max_tokens, params.stop) == (0.0, 3, ["\n"])
    assert params.detokenize is True  # vLLM matches stop strings on the text
    assert params.prompt_logprobs is None
    assert params.stop_token_ids == [vm.tokenizer.eos_token_id]
    with vm.adapter_disabled():
        vm.rolling_loglikelihood(["some text"])
        vm.generate(["Once"], max_new_tokens=2)
    assert [c.lora_request for c in engine.calls[-2:]] == [None, None]
    vm.rolling_loglikelihood(["some text"])
    assert engine.calls[-1].lora_request is not None


def test_vllm_answers_are_cached_apart_from_hf(
    fake_vllm: list[FakeLLM], tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A warm re-run never builds the engine (nor imports vLLM); hf answers of the same
    files are other cache entries."""
    from harness.model.cache import ResponseCache
    from harness.model.factory import open_model

    source = ModelSource(path=str(tiny_gpt2), backend="vllm")
    cache = ResponseCache(tmp_path / "cache.sqlite")
    first = open_model(source, cache=cache).loglikelihood(PAIRS)
    assert len(fake_vllm) == 1
    monkeypatch.setitem(sys.modules, "vllm", None)  # vLLM gone: the cache answers alone
    again = open_model(source, cache=cache)
    assert again.loglikelihood(PAIRS) == first
    assert len(fake_vllm) == 1
    misses = cache.stats()["misses"]
    hf = open_model(ModelSource(path=str(tiny_gpt2), max_length=62), cache=cache)
    hf.loglikelihood(PAIRS[:1])
    assert cache.stats()["misses"] == misses + 1
    cache.close()


# -- refusals -----------------------------------------------------------------------------


def test_without_vllm_the_first_request_says_how_to_install(
    tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    vm = load_vllm(ModelSource(path=str(tiny_gpt2), backend="vllm"))  # checks need no vLLM
    assert vm.max_length == 62 and vm.tokenizer is not None
    assert isinstance(vm, ScoringModel)  # reads every member: none needs the engine
    with pytest.raises(UserError) as err:
        vm.loglikelihood(PAIRS[:1])
    assert str(err.value) == NO_VLLM


def test_engine_failure_is_a_user_error(
    fake_vllm: list[FakeLLM], tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_gpu(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("No CUDA GPUs are available\nmore detail")

    monkeypatch.setattr(sys.modules["vllm"], "LLM", no_gpu)
    vm = load_vllm(ModelSource(path=str(tiny_gpt2), backend="vllm"))
    with pytest.raises(UserError, match="vLLM could not start its engine: No CUDA GPUs"):
        vm.generate(["x"], max_new_tokens=1)


def test_several_processes_are_refused(tiny_gpt2: Path) -> None:
    group = types.SimpleNamespace(size=2)
    with pytest.raises(UserError) as err:
        load_vllm(ModelSource(path=str(tiny_gpt2), backend="vllm"), group=group)  # type: ignore[arg-type]
    assert str(err.value) == NO_GROUP.format(size=2)


def test_adapter_rank_above_the_engine_limit(
    tiny_gpt2: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    big = tmp_path / "big"
    shutil.copytree(adapter_dir, big)
    config = json.loads((big / "adapter_config.json").read_text())
    config["r"] = 64
    (big / "adapter_config.json").write_text(json.dumps(config))
    source = ModelSource(path=str(tiny_gpt2), adapter=str(big), backend="vllm")
    with pytest.raises(UserError) as err:
        load_vllm(source)
    assert str(err.value) == RANK_TOO_HIGH.format(adapter=big, rank=64, limit=16)


# -- a whole run, and the GPU bench's comparison ------------------------------------------


def test_harness_run_on_vllm_agrees_with_hf(
    fake_vllm: list[FakeLLM], tiny_gpt2: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    """bench/vllm_vs_hf.py's suites through `harness run` (hf on the CPU here, vllm on the
    fake engine), compared by the bench's own code: the same numbers, predictions and
    generations; provenance names the engine settings."""
    import argparse
    import json

    from bench.vllm_vs_hf import compare, write_suites
    from harness.cli.main import main

    args = argparse.Namespace(
        work=tmp_path,
        rows=12,
        model=str(tiny_gpt2),
        adapter=str(adapter_dir),
        dtype="float32",
        max_length=60,
        max_new_tokens=8,
        batch_size=4,
        gpu_memory_utilization=0.5,
    )
    suites = write_suites(args)
    hf_suite = suites["hf"].read_text().replace("device: cuda", "device: cpu")
    suites["hf"].write_text(hf_suite)
    results = {}
    for backend, suite in suites.items():
        assert main(["run", str(suite), "--out", str(tmp_path / backend)]) == 0
        results[backend] = json.loads((tmp_path / backend / "results.json").read_text())
    figures = compare(results["hf"], results["vllm"])
    assert figures["examples"] == 28
    assert figures["max_abs_delta_loglik"] < 5e-4  # float32 sums over texts of ~150 tokens
    assert figures["same_predictions"] == figures["identical_generations"] == 1.0
    loading = results["vllm"]["provenance"]["loading"]
    assert loading["backend"] == "vllm" and loading["max_model_len"] == 62
    assert fake_vllm[0].calls[0].lora_request is not None


def test_quantization_is_vllms_bitsandbytes(fake_vllm: list[FakeLLM], tiny_gpt2: Path) -> None:
    from harness.model.vllm_backend import NO_8BIT

    four = {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"}
    vm = load_vllm(ModelSource(path=str(tiny_gpt2), backend="vllm", quantization=four))
    assert vm.request_settings["quantization"] == vm.loading["quantization"] == "bitsandbytes"
    vm.generate(["x"], max_new_tokens=1)
    assert fake_vllm[0].kwargs["quantization"] == "bitsandbytes"
    with pytest.raises(UserError) as err:
        load_vllm(ModelSource(path=str(tiny_gpt2), backend="vllm", quantization={"bits": 8}))
    assert str(err.value) == NO_8BIT
