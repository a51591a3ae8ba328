"""Anti-forgetting: replay, KL-to-base and EWC each forget less of the original task
than a naive run, on a tiny model that was pretrained on that task.

Forgetting is measured as the harness measures it: the per-token loss of held-out
original-task texts (rolling log-likelihood) with the adapter on, against the base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from finetune.config.schema import load_config
from finetune.train.run import train
from harness.model.language_model import ModelSource, load_model
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl

OPTIONS: dict[str, dict[str, Any]] = {
    "naive": {},
    "replay": {"replay": {"data": ["orig.jsonl"], "fraction": 0.3}},
    "kl_to_base": {"kl_to_base": {"weight": 1.0}},
    "ewc": {"ewc": {"weight": 1.0, "data": ["orig.jsonl"], "samples": 32}},
    # the rank-1 (row and column sums) Fisher that bounds EWC's memory (issue 18)
    "ewc_factored": {
        "ewc": {"weight": 1.0, "data": ["orig.jsonl"], "samples": 32, "fisher": "factored"}
    },
}


def losses(
    base: Path, adapter: Path | None, original: list[str], new: list[dict[str, str]]
) -> tuple[float, float]:
    """(original-task loss, new-task completion loss) per token."""
    lm = load_model(
        ModelSource(path=str(base), adapter=str(adapter) if adapter else None, device="cpu")
    )
    rolled = lm.rolling_loglikelihood(original)
    scored = lm.loglikelihood([(r["prompt"], r["completion"]) for r in new])
    return (
        -sum(r[0] for r in rolled) / sum(r[1] for r in rolled),
        -sum(s[0] for s in scored) / sum(s[2] for s in scored),
    )


@pytest.fixture(scope="module")
def runs(
    original_base: Path,
    original_task: tuple[list[str], list[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[float, float]]:
    """Losses of the base and of a run with each option, same data, seed and steps."""
    train_texts, held_out = original_task
    new = new_task_rows(48)
    out = {"base": losses(original_base, None, held_out, new)}
    for name, option in OPTIONS.items():
        folder = tmp_path_factory.mktemp(name)
        write_jsonl(folder / "train.jsonl", new)
        write_jsonl(folder / "orig.jsonl", [{"text": t} for t in train_texts[:200]])
        config = write_config(
            folder,
            original_base,
            data={"train": ["train.jsonl"], "val_split": 0.2},
            lora={"r": 8, "alpha": 16},
            training={"epochs": 4, "eval_steps": 5},
            anti_forgetting=option,
        )
        result = train(load_config(config))
        out[name] = losses(original_base, result.output_dir, held_out, new)
    return out


@pytest.mark.slow
def test_naive_fine_tuning_forgets(runs: dict[str, tuple[float, float]]) -> None:
    (base_orig, base_new), (naive_orig, naive_new) = runs["base"], runs["naive"]
    assert naive_new < base_new - 0.5  # it learned the new task
    assert naive_orig > base_orig + 0.2  # and forgot some of the original one


@pytest.mark.slow
@pytest.mark.parametrize("option", ["replay", "kl_to_base", "ewc", "ewc_factored"])
def test_option_forgets_less_than_naive(runs: dict[str, tuple[float, float]], option: str) -> None:
    (base_orig, base_new), (naive_orig, _) = runs["base"], runs["naive"]
    orig, new = runs[option]
    print(
        f"{option}: original-task loss {orig:.4f} (naive {naive_orig:.4f}, base {base_orig:.4f}); new-task loss {new:.4f} (base {base_new:.4f})"
    )
    assert orig < naive_orig - 0.1  # less forgetting than the naive run
    assert new < base_new - 0.3  # while still learning the new task
