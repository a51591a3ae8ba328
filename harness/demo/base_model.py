"""The demo's tiny base model: trained here, on the original task, in about a minute.

A byte-level BPE tokenizer is trained with ``tokenizers`` on all demo text, and a
small GPT-2 is pretrained with ``transformers.Trainer`` on the original task: the
fact corpus, its question form and its restatement form. The result is cached under
the user's cache folder, keyed by the data generator's digest and this module's
config, so a second demo skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

CONFIG: dict[str, Any] = {
    "vocab_size": 512,
    "n_positions": 128,
    "n_embd": 96,
    "n_layer": 3,
    "n_head": 4,
    "epochs": 20,
    "lr": 3e-3,
    "batch_size": 32,
    "seed": 0,
}
EOT = "<|endoftext|>"


def cache_root() -> Path:
    """``$HARNESS_CACHE_DIR`` or the user's cache folder."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llm-release-harness"


def model_key(data_digest: str) -> str:
    blob = json.dumps(CONFIG, sort_keys=True) + data_digest
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def training_texts(paths: dict[str, Path]) -> list[str]:
    """Original-task texts the base model learns: facts, questions, restatements."""

    def rows(name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in paths[name].read_text().splitlines() if line]

    texts = [r["text"] for r in rows("pretrain")] + [r["text"] for r in rows("reviews_unlabelled")]
    qa = [r["question"] + r["answer"] for r in rows("original_qa")]
    restate = [r["fact"] + r["sentence"] for r in rows("restate")]
    return texts + qa * 20 + restate * 20


def build_tokenizer(texts: list[str], folder: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=CONFIG["vocab_size"],
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT, pad_token=EOT
    )
    fast.save_pretrained(folder)
    return fast


def build_base_model(paths: dict[str, Path], folder: Path, console: Any = None) -> Path:
    """Train tokenizer and model into ``folder`` (safetensors) and return it; with a
    ``console``, a progress bar of the pretraining on it."""
    import torch
    from transformers import (
        DataCollatorForLanguageModeling,
        GPT2Config,
        GPT2LMHeadModel,
        PrinterCallback,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    set_seed(CONFIG["seed"])
    texts = training_texts(paths)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tok = build_tokenizer(texts, tmp)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=CONFIG["n_positions"],
        n_embd=CONFIG["n_embd"],
        n_layer=CONFIG["n_layer"],
        n_head=CONFIG["n_head"],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    encoded = [tok(EOT + t + EOT)["input_ids"][: CONFIG["n_positions"]] for t in texts]
    dataset = [{"input_ids": ids} for ids in encoded]
    args = TrainingArguments(
        output_dir=str(tmp / "trainer"),
        num_train_epochs=CONFIG["epochs"],
        learning_rate=CONFIG["lr"],
        per_device_train_batch_size=CONFIG["batch_size"],
        lr_scheduler_type="cosine",
        warmup_steps=20,
        weight_decay=0.01,
        logging_steps=50,
        save_strategy="no",
        report_to=[],
        seed=CONFIG["seed"],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
    )
    # with its bar off the Trainer prints every log as a raw dict: the demo console
    # says "base model: ... (built)" instead; the losses stay in the Trainer's state
    trainer.remove_callback(PrinterCallback)
    if console is not None:
        from finetune.train.progress import RichProgressCallback

        trainer.add_callback(RichProgressCallback(console, "pretraining the base model"))
    trainer.train()
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / "demo_base.json").write_text(json.dumps({"config": CONFIG}, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # appears whole or not at all
    return folder


def ensure_base_model(
    paths: dict[str, Path], data_digest: str, console: Any = None
) -> tuple[Path, bool]:
    """The cached base model for this data, building it if needed (a progress bar on
    ``console`` if given); (folder, built?)."""
    folder = cache_root() / "demo-base" / model_key(data_digest)
    if (folder / "model.safetensors").exists():
        return folder, False
    return build_base_model(paths, folder, console), True
