"""finetune.train.encode.PackedCollator: a batch packed into one row trains exactly as
the padded batch does, with no attention from one example to another.

The reference is always the padded ``Collator`` batch on the same examples: per-example
losses, the training loss and its gradient, the KL-to-base term and a short training
run must agree. Tiny GPT-2 (absolute positions) and tiny Llama (rotary) cover the two
ways a model reads position ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from finetune.config.schema import load_config
from finetune.data.examples import Example
from finetune.train import encode as encode_module
from finetune.train.encode import (
    IGNORE,
    Collator,
    PackedCollator,
    encode_examples,
    example_spans,
    packing_isolates,
    unpack,
)
from finetune.train.run import train
from finetune.train.trainer import PACKING_LEAKS, FinetuneTrainer, target_logits
from harness.errors import UserError
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl

# different lengths (so padding differs from packing), a text row, weights
ROWS = [
    Example("headline: team won\nsummary:", " team won", "t", 1, weight=2.0),
    Example("headline: market price rose today in the city\nsummary:", " price rose", "t", 2),
    Example("", "the city news report.", "t", 3, weight=0.5),
    Example("the movie", " was good and the plot was not boring at all", "t", 4, weight=1.5),
]


def features(tok: Any) -> list[dict[str, Any]]:
    return encode_examples(ROWS, tok, 64, add_eos=True).features


def model_and_tokenizer(folder: Path, attn: str = "sdpa") -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attn)
    return model.eval(), AutoTokenizer.from_pretrained(folder)


def per_example_ce(model: Any, batch: dict[str, Any]) -> list[float]:
    """Mean target-token CE of each example of a padded or a packed batch."""
    labels = batch["labels"]
    mask = labels[:, 1:].ne(IGNORE)
    with torch.no_grad():
        logits, _ = target_logits(
            model,
            batch["input_ids"],
            batch.get("attention_mask"),
            mask,
            batch.get("position_ids"),
        )
    ce = F.cross_entropy(logits, labels[:, 1:][mask], reduction="none")
    if "position_ids" in batch:  # one row: cut it at each example's span
        counts = [int(mask[0, s : e - 1].sum()) for s, e in example_spans(batch["position_ids"])]
    else:
        counts = mask.sum(-1).tolist()
    return [float(part.mean()) for part in torch.split(ce, counts)]


def test_packed_row_restarts_positions_and_masks_each_first_token(tiny_gpt2: Path) -> None:
    _, tok = model_and_tokenizer(tiny_gpt2)
    feats = features(tok)
    batch = PackedCollator(0)(feats)
    lengths = [len(f["input_ids"]) for f in feats]
    assert batch["input_ids"].shape == (1, sum(lengths))
    assert "attention_mask" not in batch  # the positions alone separate the examples
    assert batch["position_ids"][0].tolist() == [i for n in lengths for i in range(n)]
    assert example_spans(batch["position_ids"]) == [
        (sum(lengths[:k]), sum(lengths[: k + 1])) for k in range(len(lengths))
    ]
    for (start, end), f in zip(example_spans(batch["position_ids"]), feats, strict=True):
        assert batch["input_ids"][0, start:end].tolist() == f["input_ids"]
        # the first token is never predicted from the previous example's last one
        assert batch["labels"][0, start:end].tolist() == [IGNORE, *f["labels"][1:]]
        assert batch["weight"][0, start:end].tolist() == [f["weight"]] * (end - start)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packed_per_example_losses_equal_the_padded_ones(
    arch: str, attn: str, tiny_gpt2: Path, tiny_llama: Path
) -> None:
    model, tok = model_and_tokenizer(tiny_gpt2 if arch == "gpt2" else tiny_llama, attn)
    feats = features(tok)
    padded = per_example_ce(model, Collator(0)(feats))
    packed = per_example_ce(model, PackedCollator(0)(feats))
    assert max(abs(a - b) for a, b in zip(padded, packed, strict=True)) < 1e-4
    assert packing_isolates(model)


def test_isolation_check_catches_a_model_that_ignores_the_positions(tiny_gpt2: Path) -> None:
    """Without its position ids a packed row is one long causal sequence: the check
    sees the second example's logits change."""
    model, _ = model_and_tokenizer(tiny_gpt2)

    class IgnoresPositions(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def get_input_embeddings(self) -> Any:
            return self.inner.get_input_embeddings()

        def forward(self, position_ids: Any = None, **kwargs: Any) -> Any:
            return self.inner(**kwargs)

    assert not packing_isolates(IgnoresPositions(model))


def peft_model(base: Path) -> Any:
    """A LoRA adapter with random B (adapter on != off) and no dropout anywhere."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(base)
    fan = any(type(m).__name__ == "Conv1D" for m in model.modules())
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, fan_in_fan_out=fan)
    torch.manual_seed(3)  # the same A and B for every model built here
    model = get_peft_model(model, config)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model.train()


def make_trainer(model: Any, tmp_path: Path, collator: Any, kl: bool) -> Any:
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none", use_cpu=True)
    return FinetuneTrainer(
        model=model,
        args=args,
        data_collator=collator,
        kl=(1.0, 2.0) if kl else None,
        kl_cache_mb=0,
        pad_id=0,
    )


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_packed_loss_kl_and_gradient_equal_the_padded_ones(
    arch: str, tiny_gpt2: Path, tiny_llama: Path, tmp_path: Path
) -> None:
    """compute_loss on the packed row: the weighted loss, train_ce, the KL to base (its
    base pass runs on the examples apart) and the LoRA gradient match the padded batch."""
    base = tiny_gpt2 if arch == "gpt2" else tiny_llama
    _, tok = model_and_tokenizer(base)
    feats = features(tok)
    found = []
    for collator in (Collator(0), PackedCollator(0)):
        model = peft_model(base)
        trainer = make_trainer(model, tmp_path, collator, kl=True)
        loss = trainer.compute_loss(model, collator(feats))
        loss.backward()
        grads = torch.cat(
            [p.grad.flatten() for n, p in model.named_parameters() if p.grad is not None]
        )
        found.append((float(loss.detach()), dict(trainer._sums), grads))
    (loss_a, sums_a, grad_a), (loss_b, sums_b, grad_b) = found
    assert sums_a["kl_to_base"] > 1e-3  # the adapter changes the predictions
    assert loss_b == pytest.approx(loss_a, abs=1e-5)
    assert sums_b == pytest.approx(sums_a, abs=1e-5)
    assert float((grad_a - grad_b).abs().max()) <= 1e-5 * float(grad_a.abs().max())


def test_unpack_gives_the_padded_rows(tiny_gpt2: Path) -> None:
    _, tok = model_and_tokenizer(tiny_gpt2)
    feats = features(tok)
    padded, packed = Collator(7)(feats), PackedCollator(7)(feats)
    mask = packed["labels"][:, 1:].ne(IGNORE)
    ids, attention, rows = unpack(packed["input_ids"], packed["position_ids"], mask, 7)
    assert torch.equal(ids, padded["input_ids"])
    assert torch.equal(attention, padded["attention_mask"])
    assert torch.equal(rows, padded["labels"][:, 1:].ne(IGNORE))


def test_a_leaking_model_is_refused(tiny_gpt2: Path, tmp_path: Path, monkeypatch: Any) -> None:
    from finetune.train import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "packing_isolates", lambda model: False)
    with pytest.raises(UserError) as err:
        make_trainer(peft_model(tiny_gpt2), tmp_path, PackedCollator(0), kl=False)
    assert str(err.value) == PACKING_LEAKS.format(model=str(tiny_gpt2))


@pytest.mark.slow
def test_a_packed_run_follows_the_padded_one(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six steps of 4 examples of different lengths, logged every step: the training
    and validation losses with packing equal those without within 1e-4 (float32; the
    two differ only in summation order). Tiny Llama has no dropout (GPT-2's would draw
    different masks for a padded and a packed batch)."""
    write_jsonl(tmp_path / "train.jsonl", weighted_rows())
    histories = []
    for packed in (False, True):
        folder = tmp_path / ("packed" if packed else "padded")
        folder.mkdir()
        (folder / "train.jsonl").write_text((tmp_path / "train.jsonl").read_text())
        config = write_config(
            folder, tiny_llama, training={"max_steps": 6, "eval_steps": 1, "batch_size": 4}
        )
        if packed:  # what training.packing selects in run.py
            monkeypatch.setattr(encode_module, "Collator", CountingPackedCollator)
        histories.append(train(load_config(config)).history)
    assert CountingPackedCollator.rows == 6  # one row per step
    padded, packed_run = histories
    gaps: dict[str, float] = {}
    assert [h["step"] for h in packed_run] == [h["step"] for h in padded] == list(range(1, 7))
    for key in ("train_loss", "val_loss"):
        gap = gaps[key] = max(abs(a[key] - b[key]) for a, b in zip(padded, packed_run, strict=True))
        assert gap < 1e-4, key


class CountingPackedCollator(PackedCollator):
    rows = 0

    def __call__(self, batch: Any) -> dict[str, Any]:
        CountingPackedCollator.rows += 1
        return super().__call__(batch)


def weighted_rows() -> list[dict[str, Any]]:
    """The new task with completions of different lengths."""
    rows = new_task_rows(32)
    for i, row in enumerate(rows):
        row["completion"] += " and the team won" * (i % 4)
    return rows
