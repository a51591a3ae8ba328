"""Loading options (harness.model.loading, harness.config.loading): half precision,
dtype auto, device maps with CPU and disk offload, bitsandbytes quantization, the
attention kernel; what reaches ``from_pretrained``; cache keys and provenance.

References: the plain float32 model loaded on one device (the same files), scored by
the same ``loglikelihood``; bitsandbytes is checked against float32 with a bound.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from harness.model.files import ModelSource
from harness.model.language_model import load_model
from harness.model.loading import pretrained_kwargs, resolve_dtype
from tests.tiny_models import build_model

WORDS = ["market", "price", "rose", "fell", "team", "won", "lost", "game", "city", "news"]
# a fixed multiple-choice set: 24 contexts, 3 one- or two-word choices each
ITEMS = [
    (
        f"headline: the {WORDS[i % 10]} {WORDS[(3 * i + 1) % 10]} today\nanswer:",
        [
            f" {WORDS[(i + k) % 10]}" + (f" {WORDS[(i * k) % 10]}" if k == 2 else "")
            for k in range(3)
        ],
    )
    for i in range(24)
]
PAIRS = [(ctx, choice) for ctx, choices in ITEMS for choice in choices]

# bfloat16 keeps 8 bits of mantissa: a log-probability of a few tokens moves by a few
# hundredths at most on these models (measured: below 0.01 per token)
BF16_PER_TOKEN = 0.02


def predictions(scores: list[tuple[float, bool, int]]) -> list[int]:
    out = []
    for i in range(len(ITEMS)):
        row = [s[0] for s in scores[3 * i : 3 * i + 3]]
        out.append(row.index(max(row)))
    return out


def margins(scores: list[tuple[float, bool, int]]) -> list[float]:
    out = []
    for i in range(len(ITEMS)):
        row = sorted((s[0] for s in scores[3 * i : 3 * i + 3]), reverse=True)
        out.append(row[0] - row[1])
    return out


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp(request.param), request.param, seed=3)


def test_bfloat16_agrees_with_float32(tiny: Path) -> None:
    fp32 = load_model(ModelSource(path=str(tiny), device="cpu")).loglikelihood(PAIRS)
    bf16 = load_model(ModelSource(path=str(tiny), device="cpu", dtype="bfloat16"))
    half = bf16.loglikelihood(PAIRS)
    assert bf16.model.dtype.__repr__() == "torch.bfloat16"
    worst = max(abs(a[0] - b[0]) / a[2] for a, b in zip(fp32, half, strict=True))
    assert worst < BF16_PER_TOKEN, worst
    # the same choice everywhere the float32 margin exceeds what bf16 can move
    sure = [i for i, m in enumerate(margins(fp32)) if m > 4 * BF16_PER_TOKEN]
    assert len(sure) >= 18
    p32, p16 = predictions(fp32), predictions(half)
    assert [p32[i] for i in sure] == [p16[i] for i in sure]
    assert [a[2] for a in fp32] == [b[2] for b in half]  # the same tokens scored


def offload_map(arch: str) -> dict[str, str]:
    """Embeddings and the first block on the CPU, the second block on disk."""
    if arch == "gpt2":
        blocks, rest = "transformer.h", ["transformer.wte", "transformer.wpe", "transformer.ln_f"]
    else:
        blocks, rest = "model.layers", ["model.embed_tokens", "model.norm", "model.rotary_emb"]
    return {
        **dict.fromkeys(rest, "cpu"),
        f"{blocks}.0": "cpu",
        f"{blocks}.1": "disk",
        "lm_head": "cpu",
    }


def test_cpu_and_disk_offload_give_the_plain_log_likelihoods(tiny: Path, tmp_path: Path) -> None:
    arch = json.loads((tiny / "config.json").read_text())["model_type"]
    plain = load_model(ModelSource(path=str(tiny), device="cpu"))
    source = ModelSource(
        path=str(tiny), device_map=offload_map(arch), offload_folder=str(tmp_path / "offload")
    )
    offloaded = load_model(source)
    assert plain.loglikelihood(PAIRS) == offloaded.loglikelihood(PAIRS)
    texts = [ctx + choices[0] for ctx, choices in ITEMS[:6]]
    assert plain.rolling_loglikelihood(texts) == offloaded.rolling_loglikelihood(texts)
    assert "disk" in offloaded.model.hf_device_map.values()
    assert str(offloaded.device) == "cpu"  # inputs go where the embeddings are
    assert offloaded.loading["device_map"] == offload_map(arch)


def test_dtype_auto_is_the_checkpoints_own(tmp_path: Path) -> None:
    folder = build_model(tmp_path / "m", "llama")
    config = json.loads((folder / "config.json").read_text())
    config.pop("dtype", None)
    config.pop("torch_dtype", None)
    (folder / "config.json").write_text(json.dumps(config))
    assert resolve_dtype("auto", folder) == "float32"  # the safetensors header says F32
    config["torch_dtype"] = "bfloat16"
    (folder / "config.json").write_text(json.dumps(config))
    assert resolve_dtype("auto", folder) == "bfloat16"
    config["dtype"] = "float16"  # transformers 5's name wins
    (folder / "config.json").write_text(json.dumps(config))
    assert resolve_dtype("auto", folder) == "float16"
    assert resolve_dtype("float32", folder) == "float32"
    lm = load_model(ModelSource(path=str(folder), device="cpu", dtype="auto"))
    # resolved before loading, so cache keys and provenance never say "auto"
    assert lm.request_settings["dtype"] == "torch.float16"
    assert lm.loading == {"dtype": "float16"}
    assert not lm.weights_loaded


def test_a_half_precision_checkpoint_without_a_dtype_in_its_config(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    folder = build_model(tmp_path / "m", "gpt2")
    AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("dtype", None)
    config.pop("torch_dtype", None)
    (folder / "config.json").write_text(json.dumps(config))
    assert resolve_dtype("auto", folder) == "bfloat16"


def test_every_option_reaches_from_pretrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kwargs as built, then as the loader passes them to transformers."""
    import torch
    from transformers import AutoModelForCausalLM

    source = ModelSource(
        path="x",
        dtype="bfloat16",
        device_map={"": "cpu"},
        max_memory={"0": "20GiB", "cpu": "64GiB"},
        offload_folder="/tmp/off",
        attn_implementation="eager",
    )
    kwargs = pretrained_kwargs(source, "bfloat16")
    assert kwargs["dtype"] is torch.bfloat16
    assert kwargs["device_map"] == {"": "cpu"}
    assert kwargs["max_memory"] == {0: "20GiB", "cpu": "64GiB"}  # GPU indices as ints
    assert kwargs["offload_folder"] == "/tmp/off"
    assert kwargs["attn_implementation"] == "eager"
    assert kwargs["use_safetensors"] is True and kwargs["trust_remote_code"] is False
    assert "quantization_config" not in kwargs

    folder = build_model(tmp_path / "m", "llama")
    seen: dict[str, Any] = {}
    real = AutoModelForCausalLM.from_pretrained

    def spy(path: Any, **kw: Any) -> Any:
        seen.update(kw)
        return real(path, **kw)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    lm = load_model(
        ModelSource(
            path=str(folder), dtype="auto", device_map={"": "cpu"}, attn_implementation="eager"
        )
    )
    lm.loglikelihood(PAIRS[:2])
    assert seen["dtype"] is torch.float32 and seen["device_map"] == {"": "cpu"}
    assert seen["attn_implementation"] == "eager"
    assert lm.model.config._attn_implementation == "eager"


def test_loading_options_key_the_cache_and_plain_keys_do_not_change(tiny: Path) -> None:
    plain = load_model(ModelSource(path=str(tiny), device="cpu"))
    assert plain.request_settings == {"max_length": plain.max_length, "dtype": "torch.float32"}
    eager = load_model(ModelSource(path=str(tiny), device="cpu", attn_implementation="eager"))
    assert eager.request_settings["loading"] == {"attn_implementation": "eager"}
    four = load_model(
        ModelSource(path=str(tiny), device="cpu", quantization={"bits": 4, "quant_type": "nf4"})
    )
    assert four.request_settings["loading"] == {"quantization": {"bits": 4, "quant_type": "nf4"}}


needs_bnb = pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed"
)


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bitsandbytes' CPU 4-bit kernels quantize blocks of 64 inputs: a width of 64."""
    return build_model(tmp_path_factory.mktemp("wide"), "llama", hidden=64, seed=3)


@needs_bnb
@pytest.mark.slow
@pytest.mark.parametrize(
    ("quantization", "per_token"),
    [
        ({"bits": 8}, 0.05),
        ({"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"}, 0.5),
        ({"bits": 4, "quant_type": "fp4", "compute_dtype": "float32"}, 0.5),
    ],
)
def test_bitsandbytes_quantized_loading(
    wide_llama: Path, quantization: dict[str, Any], per_token: float
) -> None:
    """Quantized on this CPU: the linear layers are bitsandbytes modules and the
    log-likelihoods stay near float32's (a bound, not equality: quantizing changes them)."""
    import bitsandbytes as bnb

    fp32 = load_model(ModelSource(path=str(wide_llama), device="cpu")).loglikelihood(PAIRS)
    lm = load_model(ModelSource(path=str(wide_llama), device="cpu", quantization=quantization))
    got = lm.loglikelihood(PAIRS)
    kind = bnb.nn.Linear8bitLt if quantization["bits"] == 8 else bnb.nn.Linear4bit
    layer = lm.model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, kind)
    if quantization["bits"] == 4:
        assert layer.weight.quant_state.quant_type == quantization["quant_type"]
    worst = max(abs(a[0] - b[0]) / a[2] for a, b in zip(fp32, got, strict=True))
    assert 0 < worst < per_token, worst
    assert lm.loading["quantization"] == quantization


def test_quantization_without_bitsandbytes_is_one_clear_error(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.errors import UserError
    from harness.model import loading

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real(name, *a),
    )
    lm = load_model(ModelSource(path=str(tiny), device="cpu", quantization={"bits": 8}))
    with pytest.raises(UserError, match=r"needs bitsandbytes.*\[quant\]"):
        lm.loglikelihood(PAIRS[:1])
    assert loading.NO_BITSANDBYTES.startswith("model.quantization")
