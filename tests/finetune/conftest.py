"""Fixtures for the fine-tuner's tests: tiny models, small task data, config writing.

torch runs single-threaded here: on a 2-core machine shared with other jobs, two
intra-op threads spin against each other and a tiny model's step can take 30x longer.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# the "new task" every training test fine-tunes on: a sorted restatement of headlines
NEW_WORDS = ["market", "price", "rose", "fell", "team", "won", "lost", "game", "city", "news"]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="package", autouse=True)
def _one_thread() -> Iterator[None]:
    """Single-threaded torch for this package's tests only (restored afterwards)."""
    with one_thread():
        yield


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def new_task_rows(n: int, seed: int = 5) -> list[dict[str, Any]]:
    """Prompt/completion rows of the new task, all different."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        words = [rng.choice(NEW_WORDS) for _ in range(4)]
        prompt = f"headline: {' '.join(words)}\nsummary:"
        if prompt in seen:
            continue
        seen.add(prompt)
        rows.append({"prompt": prompt, "completion": " " + " ".join(sorted(words))})
    return rows


def write_config(folder: Path, base: Path, **sections: Any) -> Path:
    """A config file in ``folder`` (data paths relative to it), output in folder/out.

    ``training`` and ``lora`` sections are merged into the defaults, others replace them.
    """
    config: dict[str, Any] = {
        "schema_version": 1,
        "name": "test-run",
        "base_model": {"path": str(base)},
        "data": {"train": ["train.jsonl"], "val_split": 0.25},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "training": {
            "epochs": 2,
            "lr": 0.01,
            "batch_size": 8,
            "eval_steps": 2,
            "max_length": 64,
            "early_stopping_patience": None,
        },
        "output": str(folder / "out"),
    }
    for key, value in sections.items():
        if key in ("training", "lora"):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def new_task(tmp_path: Path) -> Path:
    """A folder with train.jsonl (32 rows of the new task)."""
    write_jsonl(tmp_path / "train.jsonl", new_task_rows(32))
    return tmp_path


@pytest.fixture(scope="session")
def original_task() -> tuple[list[str], list[str]]:
    """(training texts, held-out texts) of the 'original task' the base model knows."""
    from tests.tiny_models import corpus

    texts = corpus(560, seed=1)
    return texts[:500], texts[500:]


@pytest.fixture(scope="session")
def original_base(
    tiny_gpt2: Path, original_task: tuple[list[str], list[str]], tmp_path_factory: Any
) -> Path:
    """tiny_gpt2 pretrained (all weights) on the original task, so it has something to
    forget: 250 AdamW steps of 16 sentences (a few seconds)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("original-base")
    for f in tiny_gpt2.iterdir():
        shutil.copy(f, folder / f.name)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    eos = tok.eos_token_id
    encoded = [[eos, *tok.encode(t), eos] for t in original_task[0]]
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    with one_thread():  # a session fixture is set up before the package's _one_thread
        for step in range(250):
            batch = random.Random(step).sample(encoded, 16)
            width = max(map(len, batch))
            ids = torch.tensor([b + [eos] * (width - len(b)) for b in batch])
            labels = torch.tensor([b + [-100] * (width - len(b)) for b in batch])
            model(input_ids=ids, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
    model.save_pretrained(folder, safe_serialization=True)
    return folder
