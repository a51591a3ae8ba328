"""Issue 18: EWC's memory stated and bounded.

The Fisher is held in float32, whole (4 bytes per adapted base weight entry) or
factored (4 bytes per row and column of each adapted weight: F_ij ~ r_i c_j / sum(r),
exact when the summed squared gradient is rank one); ``auto`` takes the whole one when
it fits ``ewc.memory_mb``; a form that does not fit stops the run before any gradient
is computed, saying what it needs; the run's manifest records the form and its bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from finetune.train.forgetting import (
    EWC_FACTORED_HINT,
    EWC_FULL_HINT,
    EWC_MEMORY,
    diagonal_fisher,
    ewc_penalty,
    lora_delta,
    lora_layers,
    plan_fisher,
)
from harness.errors import UserError
from tests.finetune.conftest import write_config, write_jsonl


def adapted(model: Any, **lora: Any) -> Any:
    """``model`` with a LoRA adapter whose A and B are random (a non-zero delta)."""
    from peft import LoraConfig, get_peft_model

    conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())
    config = LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM", fan_in_fan_out=conv1d, **lora)
    model = get_peft_model(model, config)
    torch.manual_seed(3)
    for name, param in model.named_parameters():
        if "lora_" in name:
            torch.nn.init.normal_(param, std=0.5)
    return model


def load(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return adapted(AutoModelForCausalLM.from_pretrained(path))


def features(n: int, length: int, seed: int = 0) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(1, 200, (length,), generator=gen).tolist()
        out.append({"input_ids": ids, "labels": [-100, *ids[1:]]})
    return out


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_factored_equals_full_when_the_fisher_is_rank_one(
    tiny_gpt2: Path, tiny_llama: Path, arch: str
) -> None:
    """One example with one target token: every adapted weight's gradient comes from
    one position, an outer product, so its square is rank one and the factors hold it
    exactly. GPT-2 stores its weights transposed (Conv1D), Llama does not."""
    model = load(tiny_gpt2 if arch == "gpt2" else tiny_llama)
    one = features(1, 2)
    full = diagonal_fisher(model, one, 0, "full")
    factored = diagonal_fisher(model, one, 0, "factored")
    assert (full.plan.form, factored.plan.form) == ("full", "factored")
    assert full.layers.keys() == factored.layers.keys()
    assert any(float(full.dense(name).max()) > 0 for name in full.layers)
    for name in full.layers:  # (a Llama q_proj's is 0: attention over one position)
        exact = full.dense(name)
        assert torch.allclose(
            factored.dense(name), exact, rtol=1e-4, atol=1e-6 * float(exact.max())
        )
    # both normalized to mean 1 over all adapted entries
    count = sum(t.numel() for (t,) in full.layers.values())
    assert sum(float(t.sum()) for (t,) in full.layers.values()) == pytest.approx(count, rel=1e-5)
    total = sum(float(factored.dense(n).sum()) for n in factored.layers)
    assert total == pytest.approx(count, rel=1e-5)


def test_factored_keeps_the_row_and_column_sums(tiny_gpt2: Path) -> None:
    """With many examples the Fisher is not rank one; the factored form still has the
    full one's row and column sums (what Adafactor's factorization preserves)."""
    model = load(tiny_gpt2)
    many = features(4, 12)
    full = diagonal_fisher(model, many, 0, "full")
    factored = diagonal_fisher(model, many, 0, "factored")
    for name in full.layers:
        exact, approx = full.dense(name), factored.dense(name)
        assert torch.allclose(approx.sum(1), exact.sum(1), rtol=1e-4)
        assert torch.allclose(approx.sum(0), exact.sum(0), rtol=1e-4)
        assert not torch.allclose(approx, exact, rtol=1e-2)  # an approximation here


@pytest.mark.parametrize("form", ["full", "factored"])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_penalty_and_its_gradient_equal_the_direct_sum(
    tiny_gpt2: Path, tiny_llama: Path, arch: str, form: str
) -> None:
    """sum F * (scaling * B @ A)^2 computed directly on the dense F; the factored
    penalty's low-rank formula must give the same value and gradient."""
    model = load(tiny_gpt2 if arch == "gpt2" else tiny_llama)
    fisher = diagonal_fisher(model, features(3, 10), 0, form)
    modules = dict(lora_layers(model))
    terms = [(modules[name], parts) for name, parts in fisher.layers.items()]
    ours = ewc_penalty(terms)
    direct = sum(
        (
            fisher.dense(name)
            * lora_delta(modules[name]).float().reshape(fisher.dense(name).shape) ** 2
        ).sum()
        for name in fisher.layers
    )
    assert isinstance(direct, torch.Tensor)
    assert float(ours.detach()) == pytest.approx(float(direct.detach()), rel=1e-5)
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    mine = torch.autograd.grad(ours, params)
    theirs = torch.autograd.grad(direct, params)
    for a, b in zip(mine, theirs, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))


@pytest.mark.parametrize("form", ["full", "factored"])
def test_stated_bytes_are_the_bytes_held(tiny_llama: Path, form: str) -> None:
    model = load(tiny_llama)
    fisher = diagonal_fisher(model, features(2, 6), 0, form)
    weights = [m.base_layer.weight for _, m in lora_layers(model)]
    full = 4 * sum(w.numel() for w in weights)
    factored = 4 * sum(w.shape[0] + w.shape[1] for w in weights)
    assert (fisher.plan.full_bytes, fisher.plan.factored_bytes) == (full, factored)
    assert fisher.nbytes == fisher.plan.bytes == (full if form == "full" else factored)
    assert all(t.dtype == torch.float32 for ts in fisher.layers.values() for t in ts)
    assert fisher.plan.describe() == {
        "form": form,
        "bytes": fisher.nbytes,
        "full_bytes": full,
        "factored_bytes": factored,
        "adapted_weights": len(weights),
        "memory_mb": 1 << 20,
    }


def llama_8b_on_meta() -> Any:
    """Llama-3-8B's shapes (no memory: the meta device), LoRA on every linear layer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def test_an_8b_models_fisher_is_stated_and_factored_under_the_default_budget() -> None:
    """All linear layers of Llama-3-8B: 6,979,321,856 adapted entries, 28 GB as a full
    float32 Fisher; factored, 2,621,440 rows and columns, 10 MB. Per layer: q, o
    4096 x 4096; k, v 1024 x 4096; gate, up 14336 x 4096; down 4096 x 14336."""
    model = llama_8b_on_meta()
    entries = 32 * (2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 14336 * 4096)
    sides = 32 * (2 * 8192 + 2 * 5120 + 3 * 18432)
    assert (entries, sides) == (6_979_321_856, 2_621_440)
    plan = plan_fisher(model, "auto", 1024)
    assert (plan.form, plan.bytes, plan.full_bytes) == ("factored", 4 * sides, 4 * entries)
    assert plan.layers == 224
    with pytest.raises(UserError) as caught:
        plan_fisher(model, "full", 1024)
    assert caught.value.messages == [
        EWC_MEMORY.format(
            form="full",
            layers=224,
            need=4 * entries / 2**20,
            budget=1024,
            hint=EWC_FULL_HINT.format(factored=4 * sides / 2**20),
        )
    ]
    assert caught.value.messages[0] == (
        "anti_forgetting.ewc.memory_mb: the full Fisher of the 224 adapted weight(s) needs "
        "26624.0 MB (float32), more than memory_mb (1024); set fisher: factored (10.0 MB) "
        "or auto, or raise memory_mb"
    )
    with pytest.raises(UserError) as caught:
        plan_fisher(model, "factored", 8)
    assert caught.value.messages == [
        EWC_MEMORY.format(form="factored", layers=224, need=10.0, budget=8, hint=EWC_FACTORED_HINT)
    ]


def test_auto_is_full_when_it_fits(tiny_gpt2: Path) -> None:
    model = load(tiny_gpt2)
    assert plan_fisher(model, "auto", 1).form == "full"


def test_a_run_records_the_form_and_its_bytes(tiny_gpt2: Path, new_task: Path) -> None:
    from finetune.config.schema import load_config
    from finetune.train.run import train

    write_jsonl(new_task / "orig.jsonl", [{"text": "the team won the game today."}] * 4)
    ewc = {"weight": 1.0, "data": ["orig.jsonl"], "samples": 4, "fisher": "factored"}
    config = write_config(
        new_task, tiny_gpt2, training={"max_steps": 2}, anti_forgetting={"ewc": ewc}
    )
    result = train(load_config(config))
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    recorded = manifest["curation"]["ewc_fisher"]
    # tiny GPT-2 (2 layers), LoRA on c_attn 32 x 96, attn.c_proj 32 x 32, c_fc 32 x 128,
    # mlp.c_proj 128 x 32: 4 bytes per row and column, or per entry
    sides = 2 * (32 + 96 + 32 + 32 + 32 + 128 + 128 + 32)
    entries = 2 * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32)
    assert recorded == {
        "form": "factored",
        "bytes": 4 * sides,
        "full_bytes": 4 * entries,
        "factored_bytes": 4 * sides,
        "adapted_weights": 8,
        "memory_mb": 1024,
    }
