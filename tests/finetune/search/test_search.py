"""finetune.search.trials: Optuna with grid, random and TPE samplers on tiny runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from finetune.cli import main
from finetune.config.schema import load_config
from finetune.search.trials import GRID_VALUES, NO_SEARCH, run_search
from harness.errors import UserError
from tests.finetune.conftest import write_config

SPACE = {
    "training.lr": {"low": 0.001, "high": 0.05, "log": True},
    "lora.r": {"choices": [2, 8]},
}


def search_config(folder: Path, base: Path, space: dict, sampler: str = "tpe") -> Path:
    return write_config(
        folder,
        base,
        training={"max_steps": 2, "eval_steps": 1},
        search={"space": space, "sampler": sampler, "trials": 3, "seed": 1},
    )


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_search_writes_trials_and_the_best_config(
    tiny_gpt2: Path, new_task: Path, monkeypatch: pytest.MonkeyPatch, sampler: str
) -> None:
    monkeypatch.chdir(new_task)
    config = load_config(search_config(new_task, tiny_gpt2, SPACE, sampler))
    result = run_search(config, trials=2, progress=False)
    folder = new_task / "out" / "search"
    assert result.output_dir == folder
    rows = [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]
    assert [r["trial"] for r in rows] == [0, 1] and all(r["state"] == "complete" for r in rows)
    for r in rows:
        assert 0.001 <= r["training.lr"] <= 0.05 and r["lora.r"] in (2, 8)
        # each trial is a real run whose manifest holds its values and objective
        manifest = json.loads((Path(r["output"]) / "manifest.json").read_text())
        assert manifest["best_val_loss"] == r["best_val_loss"]
        assert manifest["config"]["training"]["lr"] == r["training.lr"]
        assert manifest["config"]["lora"]["r"] == r["lora.r"]
    with open(folder / "trials.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [float(t["best_val_loss"]) for t in table] == [r["best_val_loss"] for r in rows]
    best = min(rows, key=lambda r: r["best_val_loss"])
    assert result.best == best
    chosen = load_config(folder / "best.yaml")  # ready for `finetune train`
    assert (chosen.training.lr, chosen.lora.r) == (best["training.lr"], best["lora.r"])
    assert chosen.search is None


@pytest.mark.slow
def test_grid_search_runs_every_combination_once(
    tiny_gpt2: Path,
    new_task: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(new_task)
    space = {"training.lr": {"choices": [0.001, 0.02]}, "lora.r": {"low": 2, "high": 4, "step": 2}}
    path = search_config(new_task, tiny_gpt2, space, "grid")
    assert main(["search", str(path), "--trials", "10", "--no-progress"]) == 0
    rows = [
        json.loads(line)
        for line in (new_task / "out" / "search" / "trials.jsonl").read_text().splitlines()
    ]
    assert sorted((r["training.lr"], r["lora.r"]) for r in rows) == [
        (0.001, 2),
        (0.001, 4),
        (0.02, 2),
        (0.02, 4),
    ]
    assert "best trial" in capsys.readouterr().err


def test_grid_needs_finite_values(
    tiny_gpt2: Path, new_task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(new_task)
    config = load_config(search_config(new_task, tiny_gpt2, SPACE, "grid"))
    with pytest.raises(UserError) as exc:
        run_search(config, progress=False)
    assert exc.value.messages == [GRID_VALUES.format(name="training.lr")]


def test_a_config_without_search(
    tiny_gpt2: Path,
    new_task: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(new_task)
    path = write_config(new_task, tiny_gpt2)
    assert main(["search", str(path)]) == 2
    assert capsys.readouterr().err == f"error: {NO_SEARCH.format(config='config.yaml')}\n"
