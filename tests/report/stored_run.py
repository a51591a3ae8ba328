"""Fixtures: a real run of the CLI (tiny model + LoRA adapter with a fine-tune record).

Import them into a test module (``from tests.report.stored_run import copy_run,
stored_run``); the run is built once per session (memoized here, since each importing
module gets its own copy of the fixture).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

HISTORY = [
    {"step": 2, "epoch": 0.5, "train_loss": 3.2, "val_loss": 3.3},
    {"step": 4, "epoch": 1.0, "train_loss": 2.9, "val_loss": 3.0},
    {"step": 6, "epoch": 1.5, "train_loss": 2.7, "val_loss": 2.95},
]
# real audit sections (small budgets), so the report is checked on the audits' output
AUDITS = """audits:
  forgetting:
    tasks: [sentiment, lm]
  explain:
    task: sentiment
    methods: [lime]
    samples: 2
    max_evals: 10
  privacy:
    pii: true
    canaries: {candidates: 50}
    extraction: {min_suffix_tokens: 2}
"""
MANIFEST = {
    "manifest_version": 1,
    "config": {"lora": {"r": 4}, "seed": 3},
    "best_step": 6,
    "curation": {"pii": {"mode": "report", "rows_scanned": 40, "rows_with_pii": 0}},
    "memorization": {
        "canaries": {
            "prefix": "my PIN is",
            "digits": 4,
            "space_size": 10_000,
            "repeats": 5,
            "seed": 0,
            "canaries": [
                {
                    "id": "canary-0",
                    "secret": "1 2 3 4",
                    "text": "my PIN is 1 2 3 4",
                    "inserted": True,
                },
                {
                    "id": "control-0",
                    "secret": "5 6 7 8",
                    "text": "my PIN is 5 6 7 8",
                    "inserted": False,
                },
            ],
        },
        "extraction_examples": [
            {
                "where": "train.jsonl line 1",
                "prompt": "",
                "target": "the movie was great fun today.",
            },
            {
                "where": "train.jsonl line 2",
                "prompt": "Review:",
                "target": " a boring plot and bad acting.",
            },
        ],
    },
}


def build_adapter(base: Path, folder: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False)
    )
    peft_model.save_pretrained(folder)
    (folder / "manifest.json").write_text(json.dumps(MANIFEST))
    (folder / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in HISTORY))
    return folder


_BUILT: dict[Path, Path] = {}  # session temp folder -> the run built in it


@pytest.fixture(scope="session")
def stored_run(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Path:
    """A finished `harness run` (model copy + adapter + suite + data) in its own folder.

    Returns the folder; ``out/`` holds results.json and the reports. Tests that modify
    files must work on a copy (``copy_run``).
    """
    from harness.cli.main import main
    from tests.cli.test_cli import write_suite

    session = tmp_path_factory.getbasetemp()
    if session in _BUILT:
        return _BUILT[session]
    root = tmp_path_factory.mktemp("stored-run")
    model = root / "model"
    shutil.copytree(tiny_gpt2, model)
    adapter = build_adapter(model, root / "adapter")
    suite = write_suite(
        root,
        model,
        "  - {metric: sentiment.accuracy, min: 0.0}\n"
        "  - {metric: lm.perplexity, max: 1.0}\n"
        "  - {metric: summarize.rougeL, min: 0.99, severity: warn}\n",
        AUDITS,
    )
    code = main(
        ["run", str(suite), "--adapter", str(adapter), "--out", str(root / "out"), "--no-progress"]
    )
    assert code == 1  # the perplexity gate fails by design
    _BUILT[session] = root
    return root


@pytest.fixture
def copy_run(stored_run: Path, tmp_path: Path) -> Path:
    """A private copy of the stored run whose results.json points into the copy."""
    dest = tmp_path / "run"
    shutil.copytree(stored_run, dest)
    results = dest / "out" / "results.json"
    results.write_text(results.read_text().replace(str(stored_run), str(dest)))
    reseal(results.parent)
    return dest


def reseal(out: Path) -> None:
    """Rewrite digests.json after a test edited an output on purpose (harness verify
    would otherwise report the edit)."""
    from harness.results.digests import DIGESTS_NAME, build_digests

    digests = json.loads((out / DIGESTS_NAME).read_text())
    files = {name: (out / name).read_bytes() for name in digests["files"]}
    (out / DIGESTS_NAME).write_text(build_digests(files))
