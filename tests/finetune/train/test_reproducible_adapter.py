"""Issue #23 point 2: a fine-tune is byte-reproducible on one machine with one seed and
one thread count.

Two runs of one config train into two folders, each in its own Python process with a
different PYTHONHASHSEED (set and dict-of-set ordering differed between two runs of the
demo: peft stores ``target_modules`` as a set, so adapter_config.json listed them in a
different order and the adapter fingerprint changed with equal weights).

Compared byte for byte: every file at the top of the output folder except
manifest.json, i.e. the adapter (adapter_model.safetensors, adapter_config.json, the
README.md model card peft writes), the tokenizer files and history.jsonl. manifest.json
legitimately differs (its creation time, and the output folder it names); of it, the
adapter fingerprint must be equal. ``checkpoints/`` holds the Trainer's resume state
(pickled optimizer and RNG states), not what the harness audits, and is not compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.model.fingerprint import fingerprint_folder
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl

ROOT = Path(__file__).resolve().parents[3]

TRAIN = """
import sys
import torch
torch.set_num_threads(1)
from finetune.config.schema import load_config
from finetune.train.run import train
train(load_config(sys.argv[1]), out=sys.argv[2])
"""


def _train(config: Path, out: Path, hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-c", TRAIN, str(config), str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )


# every data step that orders, samples or copies rows: replay, the KL term, group
# reweighting, counterfactual copies and seeded noise (the demo's mitigated fine-tune)
ALL_STEPS = {
    "anti_forgetting": {
        "replay": {"data": ["orig.jsonl"], "fraction": 0.2},
        "kl_to_base": {"weight": 0.5},
    },
    "fairness": {
        "reweight": {"group": "group"},
        "counterfactual": {"swaps": {"market": "city", "won": "lost"}},
    },
    "augmentation": {"word_dropout": 0.2, "swap": 0.2},
}


@pytest.mark.parametrize("extra", [{}, ALL_STEPS], ids=["plain", "all-data-steps"])
def test_two_runs_with_one_seed_give_identical_adapter_bytes(
    tiny_gpt2: Path, tmp_path: Path, extra: dict[str, Any]
) -> None:
    rows = new_task_rows(32)
    write_jsonl(tmp_path / "train.jsonl", [{**r, "group": "ab"[i % 2]} for i, r in enumerate(rows)])
    write_jsonl(
        tmp_path / "orig.jsonl", [{"text": f"the movie number {i} was good"} for i in range(20)]
    )
    config = write_config(
        tmp_path,
        tiny_gpt2,
        # several target modules, so their order can differ; dropout > 0 draws random
        # numbers, so the seeding is exercised too
        lora={"target_modules": ["c_attn", "c_proj", "c_fc"], "dropout": 0.1},
        training={"max_steps": 4, "eval_steps": 2},
        **extra,
    )
    first, second = tmp_path / "first", tmp_path / "second"
    _train(config, first, "1")
    _train(config, second, "2")

    names = sorted(p.name for p in first.iterdir() if p.is_file() and p.name != "manifest.json")
    assert {"adapter_model.safetensors", "adapter_config.json", "history.jsonl"} <= set(names)
    assert names == sorted(
        p.name for p in second.iterdir() if p.is_file() and p.name != "manifest.json"
    )
    differing = [n for n in names if (first / n).read_bytes() != (second / n).read_bytes()]
    assert differing == []

    one = fingerprint_folder(first, allow_pickle=False).digest
    assert one == fingerprint_folder(second, allow_pickle=False).digest
    manifests = [json.loads((f / "manifest.json").read_text()) for f in (first, second)]
    assert [m["adapter"]["fingerprint"] for m in manifests] == [one, one]
