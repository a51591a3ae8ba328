"""Issue 24, defect 7: KL-to-base was slow (the LM head and the KL over every position of
two full forward passes) and `--no-progress` printed nothing for a whole run.

The term is now computed at the trained-on positions only, from one adapter-disabled
forward pass per batch without gradients (none for an example seen before), in chunks;
its value must be the KL between the adapter-on and adapter-off next-token
distributions at those positions, computed here directly with transformers. Since
issue 18 the base pass keeps hidden states and the KL runs the base head on them a
chunk at a time (more in test_kl_chunked.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from finetune.cli import main
from finetune.data.examples import Example
from finetune.train import forgetting
from finetune.train.encode import Collator, encode_examples
from finetune.train.forgetting import BaseHead, kl_to_base
from finetune.train.trainer import FinetuneTrainer
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl

ROWS = [
    ("headline: team won\nsummary:", " team won"),
    ("headline: market price rose today\nsummary:", " price rose"),
    ("", "the city news report."),  # a text row: every token is a target
]


def peft_model(base: Path) -> Any:
    """tiny GPT-2 with a LoRA adapter whose B is random (so adapter on != off), and no
    dropout anywhere (so the adapted pass is deterministic in train mode)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base)
    tok = AutoTokenizer.from_pretrained(base)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM", fan_in_fan_out=True
    )
    model = get_peft_model(model, config)
    torch.manual_seed(3)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model, tok


def make_trainer(model: Any, tmp_path: Path, temperature: float, cache_mb: int) -> Any:
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none", use_cpu=True)
    return FinetuneTrainer(
        model=model, args=args, kl=(1.0, temperature), kl_cache_mb=cache_mb, pad_id=0
    )


def batch(tok: Any) -> dict[str, Any]:
    examples = [Example(p, t, "x.jsonl", i + 1) for i, (p, t) in enumerate(ROWS)]
    features = encode_examples(examples, tok, 64, add_eos=True).features
    return Collator(int(tok.eos_token_id))(features)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kl_term_equals_the_kl_between_adapter_on_and_off(
    tiny_gpt2: Path, tmp_path: Path, temperature: float
) -> None:
    model, tok = peft_model(tiny_gpt2)
    inputs = batch(tok)
    trainer = make_trainer(model, tmp_path, temperature, cache_mb=0)
    model.train()
    trainer.compute_loss(model, dict(inputs))
    ours = trainer._sums["kl_to_base"]

    # direct: both models' full logits, KL(off || on) at every position whose next
    # token is a target (the completion and its EOS; all of the text row), averaged
    model.eval()
    ids, att = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        on = model(input_ids=ids, attention_mask=att).logits.double() / temperature
        with model.disable_adapter():
            off = model(input_ids=ids, attention_mask=att).logits.double() / temperature
    positions = inputs["labels"][:, 1:].ne(-100).nonzero().tolist()
    assert len(positions) > len(ROWS)  # several targets per row
    kls = []
    for b, t in positions:
        p, q = torch.softmax(off[b, t], -1), torch.softmax(on[b, t], -1)
        kls.append(float((p * (p.log() - q.log())).sum()))
    direct = sum(kls) / len(kls) * temperature**2
    assert direct > 1e-3
    assert ours == pytest.approx(direct, rel=1e-4)


class LinearLM(torch.nn.Module):
    """Just an output head, as BaseHead finds it on a model."""

    def __init__(self, hidden: int, vocab: int) -> None:
        super().__init__()
        self.config = None
        self.lm_head = torch.nn.Linear(hidden, vocab, dtype=torch.float64)

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.lm_head


def test_chunked_kl_gradient_equals_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    """ChunkedKL's own backward, over several chunks, against autograd of the formula;
    the base's distribution is its head applied to its hidden states."""
    monkeypatch.setattr(forgetting, "KL_CHUNK_ELEMENTS", 2 * 50)  # 2 rows per chunk
    torch.manual_seed(0)
    head = BaseHead(LinearLM(8, 50))
    logits = torch.randn(7, 50, dtype=torch.float64, requires_grad=True)
    hidden = torch.randn(7, 8, dtype=torch.float64)
    ours = kl_to_base(logits, hidden, head, 1.5)
    (grad,) = torch.autograd.grad(ours, logits)
    leaf = logits.detach().clone().requires_grad_(True)
    log_p = F.log_softmax(leaf / 1.5, -1)
    with torch.no_grad():
        base = F.log_softmax(head.module(hidden) / 1.5, -1)
    expected = (base.exp() * (base - log_p)).sum(-1).mean() * 1.5**2
    expected.backward()
    assert float(ours.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    assert torch.allclose(grad, leaf.grad, rtol=1e-10, atol=1e-12)


def test_one_base_pass_per_batch_without_gradients_and_none_when_kept(
    tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forgetting, "KL_CHUNK_ELEMENTS", 4 * 300)  # 4 positions per chunk
    model, tok = peft_model(tiny_gpt2)
    assert model.config.vocab_size == 300
    inputs = batch(tok)
    n_targets = int(inputs["labels"][:, 1:].ne(-100).sum())
    calls: list[tuple[bool, int]] = []  # (grad enabled, rows the LM head ran on)
    head = model.get_output_embeddings()
    head.register_forward_hook(
        lambda _m, _i, out: calls.append((torch.is_grad_enabled(), out.shape[0]))
    )

    def chunks(n: int) -> list[tuple[bool, int]]:  # the KL's base logits, 4 rows a time
        return [(False, min(4, n - start)) for start in range(0, n, 4)]

    trainer = make_trainer(model, tmp_path, 1.0, cache_mb=16)
    model.train()
    trainer.compute_loss(model, dict(inputs))
    first = trainer._sums["kl_to_base"]
    # the adapted pass with gradients at the trained-on positions; without gradients,
    # once per run the check of the base head at one position (the model's pass, then
    # the head alone), then the base pass, in which the head runs on no position; then
    # the KL's base logits, a chunk at a time
    check = [(False, 1), (False, 1)]
    assert calls == [(True, n_targets), *check, (False, 0), *chunks(n_targets)]
    assert trainer.base_states.forward_passes == 1
    assert model.training  # the base pass's eval mode was undone
    hidden_bytes = n_targets * model.config.n_embd * 4
    assert trainer.base_states.used == hidden_bytes  # hidden states, not log-probabilities

    calls.clear()
    trainer.compute_loss(model, dict(inputs))  # the same examples again: kept
    assert calls == [(True, n_targets), *chunks(n_targets)]
    assert trainer.base_states.forward_passes == 1
    assert trainer._sums["kl_to_base"] == pytest.approx(2 * first, rel=1e-6)

    # one new example in a batch of kept ones: a base pass over that example only
    extra = batch(tok)
    extra["input_ids"][0, 2] = 7  # a different first row
    calls.clear()
    trainer.compute_loss(model, dict(extra))
    assert calls == [(True, n_targets), (False, 0), *chunks(n_targets)]
    assert trainer.base_states.forward_passes == 2


def test_no_budget_keeps_nothing(tiny_gpt2: Path, tmp_path: Path) -> None:
    model, tok = peft_model(tiny_gpt2)
    inputs = batch(tok)
    trainer = make_trainer(model, tmp_path, 1.0, cache_mb=0)
    model.train()
    for _ in range(2):
        trainer.compute_loss(model, dict(inputs))
    assert trainer.base_states.forward_passes == 2
    assert trainer.base_states.kept == {}


LINE = re.compile(
    r"^step (\d+)/6: train loss \d+\.\d{4}, val loss \d+\.\d{4}"
    r"(, val accuracy \d\.\d{4} \(\d+/8; majority 0\.\d{4}, chance 0\.5000\))?$"
)


@pytest.mark.parametrize("labels", [False, True])
def test_no_progress_prints_one_line_per_evaluation(
    tiny_gpt2: Path,
    new_task: Path,
    capsys: pytest.CaptureFixture[str],
    labels: bool,
) -> None:
    rows = new_task_rows(32)
    if labels:  # a label set: each evaluation line also gives the accuracy
        rows = [{**r, "completion": " won" if "won" in r["prompt"] else " lost"} for r in rows]
    write_jsonl(new_task / "train.jsonl", rows)
    config = write_config(new_task, tiny_gpt2, anti_forgetting={"kl_to_base": {"weight": 0.5}})
    assert main(["train", str(config), "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith("step ")]
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [int(m.group(1)) for m in matches if m] == [2, 4, 6]
    assert all(bool(m and m.group(2)) is labels for m in matches)


def test_search_without_progress_prints_one_line_per_trial(
    tiny_gpt2: Path,
    new_task: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(new_task)
    space = {"training.lr": {"choices": [0.001, 0.02]}}
    search = {"space": space, "sampler": "grid", "trials": 2, "seed": 0}
    config = write_config(new_task, tiny_gpt2, training={"max_steps": 2}, search=search)
    assert main(["search", str(config), "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith("trial ")]
    assert len(lines) == 2
    for i, line in enumerate(lines):
        assert re.fullmatch(
            rf"trial {i + 1}/2 complete: best_val_loss \d+\.\d{{4}} "
            r"\(training\.lr=0\.0(01|2)\) in \d+\.\d+ s",
            line,
        ), line
