"""Bundled LoRA fine-tuner: checkpoints the harness can audit.

``finetune train CONFIG.yaml`` curates the data (deduplication, leakage check against
evaluation data), trains a LoRA adapter with transformers.Trainer + peft, and writes an
output folder with the adapter, tokenizer, manifest.json and history.jsonl. The public
API is re-exported lazily so that ``import finetune`` does not load torch; the training
entry point is ``finetune.train.run.train`` (the module and the function share the name).
"""

from __future__ import annotations

__all__ = ["FinetuneConfig", "load_config", "TrainResult", "run_search", "diagnose"]


def __getattr__(name: str) -> object:
    if name in ("FinetuneConfig", "load_config"):
        from finetune.config import schema as config

        return getattr(config, name)
    if name == "TrainResult":
        from finetune.train.run import TrainResult

        return TrainResult
    if name == "run_search":
        from finetune.search.trials import run_search

        return run_search
    if name == "diagnose":
        from finetune.train.diagnose import diagnose

        return diagnose
    raise AttributeError(name)
