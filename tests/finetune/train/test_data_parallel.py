"""The training loss is the weighted token mean over the whole global batch, however it
is split: over gradient-accumulation micro-batches and over data-parallel processes.

A fast check on compute_loss (shares of one global batch add up to its loss and
gradient), and a slow one that trains a tiny model in two CPU processes (torchrun, gloo)
and in one, with the same global batch, and compares the logged curves and the adapter.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from finetune.config.schema import load_config
from finetune.data.examples import Example
from finetune.train.encode import IGNORE, Collator, GlobalCounts, encode_examples
from finetune.train.run import train
from harness.errors import UserError
from harness.model.language_model import fingerprint_folder
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl
from tests.finetune.train.test_packing import make_trainer, peft_model

ROOT = Path(__file__).resolve().parents[3]

# different lengths and weights: a micro-batch mean would weigh them differently
ROWS = [
    Example("headline: team won\nsummary:", " team won", "t", 1, weight=2.0),
    Example("headline: market price rose today in the city\nsummary:", " price rose", "t", 2),
    Example("", "the city news report.", "t", 3, weight=0.5),
    Example("the movie", " was good and the plot was not boring at all", "t", 4, weight=1.5),
]


def lora_grads(model: Any) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_shares_of_a_global_batch_add_up_to_its_loss_and_gradient(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """The whole batch in one call; split 1 + 3 as two accumulation micro-batches; split
    2 + 2 over two processes (whose gradients the data-parallel backward averages):
    the same loss, sum of w * ce / sum of w over the four examples, and gradient."""
    from transformers import AutoTokenizer

    feats = encode_examples(ROWS, AutoTokenizer.from_pretrained(tiny_llama), 64, True).features
    collate = Collator(0)
    results = []
    for split in ("whole", "accumulation", "processes"):
        model = peft_model(tiny_llama)
        trainer = make_trainer(model, tmp_path, collate, kl=False)
        parts = {"whole": [feats], "accumulation": [feats[:1], feats[1:]]}.get(
            split, [feats[:2], feats[2:]]
        )
        batches = [collate(p) for p in parts]
        counts = GlobalCounts.of(batches, "cpu")
        total = 0.0
        for batch in batches:
            if split == "processes":  # each its own micro-batch, the counts all-reduced
                counts = GlobalCounts(counts.weight, counts.tokens, 2, 1)
            loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=counts)
            scale = 0.5 if split == "processes" else 1.0  # DDP's mean of the gradients
            (loss * scale).backward()
            total += float(loss.detach()) * scale
        results.append((total, lora_grads(model), trainer._sums["train_ce"] * scale))
    # the weighted token mean, computed directly on the whole padded batch
    model = peft_model(tiny_llama).eval()
    batch = collate(feats)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    mask = batch["labels"][:, 1:].ne(IGNORE)
    ce = F.cross_entropy(logits[:, :-1][mask], batch["labels"][:, 1:][mask], reduction="none")
    w = batch["weight"][:, None].expand_as(mask)[mask]
    direct = float((w * ce).sum() / w.sum())
    whole = results[0]
    assert whole[0] == pytest.approx(direct, abs=1e-5)
    assert whole[2] == pytest.approx(float(ce.mean()), abs=1e-5)  # train_ce: plain mean
    for total, grads, train_ce in results[1:]:
        assert total == pytest.approx(whole[0], abs=1e-5)
        assert train_ce == pytest.approx(whole[2], abs=1e-5)
        assert float((grads - whole[1]).abs().max()) <= 1e-5 * float(whole[1].abs().max())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_folder(folder: Path, base: Path, batch_size: int) -> Path:
    """Six steps on rows of different lengths, two groups reweighted, logged and
    evaluated every step; no dropout (tiny Llama has none, LoRA's 0). 7 validation
    rows: on two processes of 2 rows a batch, accelerate repeats one to even out the
    last batches, and the validation loss must not count it."""
    folder.mkdir()
    rows = new_task_rows(35)
    for i, row in enumerate(rows):
        row["completion"] += " and the team won" * (i % 4)
        row["group"] = "b" if i % 6 == 0 else "a"
    write_jsonl(folder / "train.jsonl", rows[:28])
    write_jsonl(
        folder / "val.jsonl", [{k: r[k] for k in ("prompt", "completion")} for r in rows[28:]]
    )
    return write_config(
        folder,
        base,
        data={"train": ["train.jsonl"], "validation": "val.jsonl"},
        fairness={"reweight": {"group": "group"}},
        training={"max_steps": 6, "eval_steps": 1, "batch_size": batch_size},
    )


def logged(out: Path) -> list[dict[str, Any]]:
    """The training logs (loss, train_ce) and evaluations of the last checkpoint."""
    last = max((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((last / "trainer_state.json").read_text())["log_history"]


@pytest.mark.slow
def test_two_cpu_processes_train_as_one_with_the_same_global_batch(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """torchrun --nproc_per_node 2 (gloo; ACCELERATE_USE_CPU) with 2 rows per process
    against one process with 4: every logged training loss (the weighted objective and
    train_ce) and validation loss within 1e-4, the same adapter, and the run folder
    written by the main process only."""
    one = train(load_config(run_folder(tmp_path / "one", tiny_llama, 4)))
    config = run_folder(tmp_path / "two", tiny_llama, 2)
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"),
        *("--master_port", str(free_port()), "-m", "finetune", "train", str(config)),
        "--no-progress",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "two" / "out"

    a, b = logged(one.output_dir), logged(out)
    assert [e.get("step") for e in a] == [e.get("step") for e in b]
    gaps: dict[str, float] = {}
    for key in ("loss", "train_ce", "eval_loss"):
        pairs = [(x[key], y[key]) for x, y in zip(a, b, strict=True) if key in x]
        assert len(pairs) == 6, key
        gaps[key] = max(abs(x - y) for x, y in pairs)
    assert max(gaps.values()) < 1e-4, gaps
    assert any(abs(e["loss"] - e["train_ce"]) > 1e-3 for e in a if "loss" in e)  # weighted

    # one writer: the manifest describes the adapter beside it; one process printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["adapter"]["fingerprint"] == fingerprint_folder(out, allow_pickle=False).digest
    assert manifest["global_steps"] == 6 and manifest["config"]["training"]["batch_size"] == 2
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == list(range(1, 7))
    assert done.stderr.count("best validation loss") == 1
    mine, theirs = (load_file(str(o / "adapter_model.safetensors")) for o in (out, one.output_dir))
    assert mine.keys() == theirs.keys()
    assert max(float((mine[k] - theirs[k]).abs().max()) for k in mine) < 1e-5


def test_processes_that_would_train_apart_are_refused(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchrun on a machine without GPUs and without ACCELERATE_USE_CPU: the launcher
    says 2 processes, the Trainer sees 1 (it would train alone on all the data)."""
    from transformers import TrainingArguments

    from finetune.train.trainer import NOT_DATA_PARALLEL, FinetuneTrainer

    args = TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none", use_cpu=True)
    monkeypatch.setenv("WORLD_SIZE", "2")  # after the arguments: no process group here
    with pytest.raises(UserError) as err:
        FinetuneTrainer(model=peft_model(tiny_llama), args=args, pad_id=0)
    assert str(err.value) == NOT_DATA_PARALLEL.format(n=2)
