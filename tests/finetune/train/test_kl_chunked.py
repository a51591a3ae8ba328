"""Issue 18: the KL-to-base term keeps the base's hidden states, not its logits.

The base pass keeps (positions, hidden) states and the KL computes the base's logits
from them a chunk of positions at a time. Its value and gradient must equal the direct
computation on both models' full logit tensors (F.kl_div on full log-softmaxes), on the
architectures whose heads differ: GPT-2 (tied head, Conv1D layers), Llama (untied),
BERT run as a causal LM (a transform before the head), Gemma-2 (final logit
soft-capping), a head in lora.modules_to_save (the base head is the original, not the
trained copy); an unknown transform of the logits is refused. And no tensor of size
positions x vocabulary is made besides the gradient of the adapted logits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from finetune.train import forgetting
from finetune.train.forgetting import HEAD_MISMATCH, BaseHead, BaseStates, kl_to_base
from finetune.train.trainer import target_logits
from harness.errors import UserError
from tests.tiny_models import build_model

TOLERANCE = 1e-5  # the bound on value and gradient differences


def random_batch(vocab: int, lengths: tuple[int, ...] = (14, 9, 6), prompt: int = 3) -> dict:
    """Rows of random tokens padded on the right; the first ``prompt`` tokens of each
    row and the padding are not targets."""
    gen = torch.Generator().manual_seed(len(lengths) * 1000 + vocab)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    att = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(1, vocab, (n,), generator=gen)
        att[b, :n] = 1
        labels[b, prompt:n] = ids[b, prompt:n]
    return {"input_ids": ids, "attention_mask": att, "labels": labels}


def adapted(model: Any, std: float = 0.5, **lora: Any) -> Any:
    """``model`` with a LoRA adapter whose B is random (adapter on != off) and no
    dropout anywhere (the adapted pass is deterministic in train mode)."""
    from peft import LoraConfig, get_peft_model

    conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM", fan_in_fan_out=conv1d, **lora
    )
    model = get_peft_model(model, config)
    torch.manual_seed(3)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=std)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.train()
    return model


def ours_and_direct(model: Any, inputs: dict, temperature: float) -> tuple[Any, Any, Any]:
    """(our KL, the direct KL, the LoRA parameters), both KLs with their graphs."""
    ids, att, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
    mask = labels[:, 1:].ne(-100)
    logits, _ = target_logits(model, ids, att, mask)
    states = BaseStates(0)
    base = states(model, ids, att, mask)
    assert states.head is not None
    ours = kl_to_base(logits, base, states.head, temperature)

    keep = F.pad(mask, (0, 1), value=False)
    on = model(input_ids=ids, attention_mask=att).logits[keep]
    with torch.no_grad(), model.disable_adapter():
        model.eval()
        off = model(input_ids=ids, attention_mask=att).logits[keep]
        model.train()
    direct = F.kl_div(
        F.log_softmax(on / temperature, -1),
        F.log_softmax(off / temperature, -1),
        log_target=True,
        reduction="batchmean",
    )
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    return ours, direct * temperature**2, params


def assert_equal_with_gradients(model: Any, inputs: dict, temperature: float) -> None:
    ours, direct, params = ours_and_direct(model, inputs, temperature)
    assert float(direct.detach()) > 1e-3  # the adapter moved the distributions
    assert abs(float(ours.detach()) - float(direct.detach())) <= TOLERANCE
    mine = torch.autograd.grad(ours, params)
    theirs = torch.autograd.grad(direct, params)
    worst = max(float((a - b).abs().max()) for a, b in zip(mine, theirs, strict=True))
    assert worst <= TOLERANCE, worst
    assert max(float(g.abs().max()) for g in theirs) > 1e-3  # a real gradient


@pytest.fixture(autouse=True)
def several_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 3 positions of a 300-token vocabulary: every batch spans several."""
    monkeypatch.setattr(forgetting, "KL_CHUNK_ELEMENTS", 3 * 300)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_kl_and_gradient_equal_the_full_tensor_computation(
    tiny_gpt2: Path, tiny_llama: Path, arch: str, temperature: float
) -> None:
    from transformers import AutoModelForCausalLM

    path = tiny_gpt2 if arch == "gpt2" else tiny_llama
    model = adapted(AutoModelForCausalLM.from_pretrained(path))
    assert_equal_with_gradients(model, random_batch(model.config.vocab_size), temperature)


def test_bert_as_a_causal_lm_transforms_before_its_head(tmp_path: Path) -> None:
    """BertLMHeadModel's head input is the output of a dense + LayerNorm transform of
    the last layer: what is kept is the head's input, whatever comes before it."""
    from transformers import AutoModelForCausalLM

    bert = AutoModelForCausalLM.from_pretrained(build_model(tmp_path / "b", "bert"))
    model = adapted(bert, std=2.0, target_modules="all-linear")
    assert_equal_with_gradients(model, random_batch(model.config.vocab_size), 2.0)


def test_gemma2_final_logit_softcapping() -> None:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        final_logit_softcapping=2.0,  # small: most logits are capped hard
        attn_logit_softcapping=None,
    )
    model = adapted(Gemma2ForCausalLM(config))
    head = BaseHead(model)
    assert head.softcap == 2.0
    assert_equal_with_gradients(model, random_batch(300), 1.0)


def test_a_head_in_modules_to_save_is_the_original_in_the_base(tiny_llama: Path) -> None:
    """The trained copy of lm_head differs from the original; the base (adapter
    disabled) uses the original, and so does the KL."""
    from transformers import AutoModelForCausalLM

    model = adapted(AutoModelForCausalLM.from_pretrained(tiny_llama), modules_to_save=["lm_head"])
    wrapper = model.get_base_model().lm_head
    with torch.no_grad():
        wrapper.modules_to_save["default"].weight.add_(torch.randn_like(wrapper.weight) * 0.5)
    head = BaseHead(model)
    assert head.module is wrapper.original_module
    assert_equal_with_gradients(model, random_batch(model.config.vocab_size), 1.0)


def test_a_lora_adapted_head_is_its_base_layer_in_the_base(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model = adapted(base, target_modules=["q_proj", "v_proj", "lm_head"])
    layer = model.get_base_model().lm_head
    assert hasattr(layer, "lora_A")
    assert BaseHead(model).module is layer.base_layer
    assert_equal_with_gradients(model, random_batch(model.config.vocab_size), 2.0)


def test_a_packed_row_gives_each_examples_own_states(tiny_llama: Path) -> None:
    """Packing (no attention mask, position ids restarting at each example): the base
    pass takes the extra per-token inputs, and an example's states in a packed row are
    those it has alone."""
    from transformers import AutoModelForCausalLM

    model = adapted(AutoModelForCausalLM.from_pretrained(tiny_llama))
    inputs = random_batch(model.config.vocab_size, lengths=(9, 6))
    mask = inputs["labels"][:, 1:].ne(-100)
    alone = BaseStates(0)(model, inputs["input_ids"], inputs["attention_mask"], mask)
    ids = torch.cat([inputs["input_ids"][0, :9], inputs["input_ids"][1, :6]])[None]
    labels = torch.cat([inputs["labels"][0, :9], inputs["labels"][1, :6]])[None]
    positions = torch.cat([torch.arange(9), torch.arange(6)])[None]
    states = BaseStates(0)
    packed = states(model, ids, None, labels[:, 1:].ne(-100), position_ids=positions)
    assert packed.shape == alone.shape
    assert torch.allclose(packed, alone, atol=1e-5)
    assert states.head is not None and states.head.verified


def test_an_unknown_transform_of_the_logits_is_refused(tiny_gpt2: Path) -> None:
    from transformers import GPT2LMHeadModel

    class Scaled(GPT2LMHeadModel):  # a model that scales its logits where we cannot see
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 3.0
            return out

    model = adapted(Scaled.from_pretrained(tiny_gpt2))
    inputs = random_batch(model.config.vocab_size)
    mask = inputs["labels"][:, 1:].ne(-100)
    prefix = HEAD_MISMATCH.split("{diff")[0].format(arch="Scaled")
    with pytest.raises(UserError, match="^" + re.escape(prefix)):
        BaseStates(0)(model, inputs["input_ids"], inputs["attention_mask"], mask)
    assert model.training  # eval mode undone on the way out


class LargestTensors(TorchDispatchMode):
    """Records the element count of every new tensor an operation returns (not views
    or in-place results, which share an input's memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        inputs = [*args, *kwargs.values()]
        shared = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor)}
        out = func(*args, **kwargs)
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in shared:
                self.sizes.append(t.numel())
        return out


def kl_tensor_sizes(vocab: int, lengths: tuple[int, ...]) -> tuple[int, int, list[int], int]:
    """(positions, largest tensor made by the base pass, every tensor made by the KL's
    forward and backward, chunk bound) for a tiny GPT-2 with ``vocab`` tokens."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=64,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = adapted(GPT2LMHeadModel(config))
    inputs = random_batch(vocab, lengths, prompt=1)
    ids, att = inputs["input_ids"], inputs["attention_mask"]
    mask = inputs["labels"][:, 1:].ne(-100)
    logits, _ = target_logits(model, ids, att, mask)
    logits = logits.detach().requires_grad_(True)
    states = BaseStates(0)
    states(model, ids, att, mask)  # the first pass also checks the head: not measured
    with LargestTensors() as base_pass:
        base = states(model, ids, att, mask)
    assert states.head is not None
    with LargestTensors() as kl:
        (grad,) = torch.autograd.grad(kl_to_base(logits, base, states.head, 1.0), logits)
    assert grad.shape == logits.shape
    return logits.shape[0], max(base_pass.sizes), kl.sizes, max(forgetting.KL_CHUNK_ELEMENTS, vocab)


@pytest.mark.parametrize("lengths", [(20, 17, 12), (40, 34, 24)])
def test_no_tensor_of_positions_by_vocabulary_besides_the_gradient(
    monkeypatch: pytest.MonkeyPatch, lengths: tuple[int, ...]
) -> None:
    """A sweep of vocabulary sizes and positions: the base pass makes the same tensors
    whatever the vocabulary; the KL makes none larger than a chunk except the one
    gradient of the adapted logits (the old log-probabilities were positions x vocab)."""
    monkeypatch.setattr(forgetting, "KL_CHUNK_ELEMENTS", 1024)
    largest_base = set()
    for vocab in (512, 2048, 8192):
        n, base_max, sizes, bound = kl_tensor_sizes(vocab, lengths)
        assert n * vocab >= 10 * bound  # what keeping the base logits would take
        largest_base.add(base_max)
        assert sizes.count(n * vocab) == 1  # the gradient, made once
        assert max(s for s in sizes if s != n * vocab) <= bound
    assert len(largest_base) == 1  # the base pass does not depend on the vocabulary
