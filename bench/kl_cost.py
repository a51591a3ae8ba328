"""What KL-to-base costs: training steps/s and whole-run wall time with and without it.

Both runs fine-tune one base with the fine-tuner on the same SST-2 rows (``Review:
...\\nSentiment:`` -> `` positive`` / `` negative``), LoRA settings, batch size, steps,
evaluations and seed; one has ``anti_forgetting.kl_to_base`` set. ``--base`` chooses
the base:

- ``gpt2`` (default): the benchmark GPT-2 (~20M parameters, 16k vocabulary; built by
  bench/eval_vs_lmeval.py).
- ``minilm``: all-MiniLM-L6-v2 run as a causal LM (a 6-layer BERT, 30k vocabulary,
  [CLS] as BOS; built and cached in bench/.cache by bench/active_learning.py's
  ``build_base``), fine-tuned as issue 24's workflow did: 400 SST-2 rows, LoRA on every
  linear layer, batch 16.

The runs alternate in one process (plain, KL, plain, KL, ...; each a whole
``finetune.train.run.train`` call), so that other load on the machine falls on both alike.
Two figures, each the median over the alternating pairs of (KL / plain) measured in
the same run (issue 24, defect 7; target: KL-to-base costs at most 1.6x):

- per step: a step is timed from the Trainer's ``on_step_begin`` to its
  ``on_step_end`` (forward, backward and optimizer step; evaluations and checkpoints
  are outside). The first step of each run is left out (warm-up), and the median step
  time of each run is used, so a burst of other load does not decide the figure;
  steps/s is 1 / that median.
- whole run: the wall time of the ``train`` call as the user waits for it: loading,
  curation, every step, the evaluations (validation loss, and validation accuracy on
  the label set), checkpoints, the final evaluation and the saved adapter. A short
  untimed run of each kind comes first, so no timed run pays the imports.

Two cases: "first epoch" (every batch is new: the KL step runs the adapter-disabled
pass) and "later epochs" (a few batches of training rows: once they have been seen, the
base log-probabilities are reused and no base pass runs).

    .venv/bin/python bench/kl_cost.py [--base gpt2|minilm] [--reps 4] [--steps 16]
        [--eval-steps 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import REALDATA, write_section  # noqa: E402

TARGET = 1.6
# per base: the model, the fine-tune settings, training rows per case (more than the
# run's batches in the first, few enough in the second that the run goes over them
# several times) and the README section it writes
BASES: dict[str, dict[str, Any]] = {
    "gpt2": {
        "title": "bench GPT-2 ~20M (bench/.cache/gpt2-20m, 16k vocabulary)",
        "section": "kl_cost",
        "r": 8,
        "alpha": 16,
        "dropout": 0.05,
        "targets": ["c_attn", "c_proj", "c_fc"],
        "lr": 1e-3,
        "batch_size": 8,
        "max_length": 128,
        "kl_weight": 0.5,
        "val_rows": 32,
        "cases": {"first epoch": 368, "later epochs": 32},
    },
    "minilm": {
        "title": (
            "all-MiniLM-L6-v2 as a causal LM (bench/.cache/minilm-causal, built by "
            "bench/active_learning.py; 30k vocabulary, [CLS] as BOS)"
        ),
        "section": "kl_cost_minilm",
        "r": 8,
        "alpha": 16,
        "dropout": 0.05,
        "targets": "all-linear",
        "lr": 1e-3,
        "batch_size": 16,
        "max_length": 128,
        "kl_weight": 1.0,
        "val_rows": 60,  # with the first case's training rows: issue 24's 400 rows
        "cases": {"first epoch": 340, "later epochs": 48},
    },
}
SEED = 0


def step_timer() -> Any:
    """A TrainerCallback that times each optimizer step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.started = 0.0
            self.steps: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.steps.append(time.perf_counter() - self.started)

    return StepTimer()


def run(
    model: Path, hp: dict[str, Any], data: dict[str, str], kl: bool, args: Any, out: Path
) -> dict[str, Any]:
    """One fine-tuning run in this process; its step times and whole wall time."""
    from finetune.config.schema import FinetuneConfig
    from finetune.train.run import train

    config = FinetuneConfig.model_validate(
        {
            "schema_version": 1,
            "name": "bench-kl",
            "base_model": {"path": str(model)},
            "data": {"train": data["train"], "validation": data["val"]},
            "lora": {
                "r": hp["r"],
                "alpha": hp["alpha"],
                "dropout": hp["dropout"],
                "target_modules": hp["targets"],
            },
            "training": {
                "max_steps": args.steps,
                "lr": hp["lr"],
                "batch_size": hp["batch_size"],
                "seed": SEED,
                "max_length": hp["max_length"],
                "eval_steps": args.eval_steps,
                "early_stopping_patience": None,
            },
            "anti_forgetting": {"kl_to_base": {"weight": hp["kl_weight"]}} if kl else {},
            "output": str(out),
        }
    )
    timer = step_timer()
    started = time.perf_counter()
    result = train(config, callbacks=[timer], overwrite=True)
    whole = time.perf_counter() - started
    return {"step_s": timer.steps, "steps": result.manifest["global_steps"], "whole_s": whole}


def write_data(work: Path, hp: dict[str, Any], case: str) -> dict[str, str]:
    from bench.finetune_vs_trainer import sst2_rows

    rows = sst2_rows(hp["val_rows"] + hp["cases"][case], SEED)
    paths = {}
    for name, part in (("val", rows[: hp["val_rows"]]), ("train", rows[hp["val_rows"] :])):
        path = work / case.replace(" ", "-") / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
        paths[name] = str(path)
    return paths


def compare(
    case: str, model: Path, hp: dict[str, Any], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Alternating plain and KL runs of one case; their times and the ratios."""
    data = write_data(work, hp, case)
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "kl": []}
    for rep in range(args.reps):
        for kl in (False, True):
            kind = "kl" if kl else "plain"
            r = run(model, hp, data, kl, args, work / case.replace(" ", "-") / f"{kind}-{rep}")
            r["median_s"] = statistics.median(r["step_s"][1:])  # the first step warms up
            runs[kind].append(r)
            print(
                f"{case} rep {rep} {kind}: {r['steps']} steps, median step "
                f"{r['median_s']:.3f}s, whole run {r['whole_s']:.1f}s, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    pairs = list(zip(runs["plain"], runs["kl"], strict=True))
    return {
        "plain": statistics.median(r["median_s"] for r in runs["plain"]),
        "kl": statistics.median(r["median_s"] for r in runs["kl"]),
        "plain_whole": statistics.median(r["whole_s"] for r in runs["plain"]),
        "kl_whole": statistics.median(r["whole_s"] for r in runs["kl"]),
        "step_pairs": [k["median_s"] / p["median_s"] for p, k in pairs],
        "whole_pairs": [k["whole_s"] / p["whole_s"] for p, k in pairs],
    }


def warm_up(model: Path, hp: dict[str, Any], work: Path) -> None:
    """A short untimed run of each kind, so that no timed run pays the imports and the
    first loading of the model files (a run of ``finetune train`` pays them whichever
    kind it is: leaving them out makes the whole-run ratio stricter)."""
    data = write_data(work / "warm-up", hp, next(iter(hp["cases"])))
    short = argparse.Namespace(steps=2, eval_steps=2)
    for kl in (False, True):
        run(model, hp, data, kl, short, work / "warm-up" / ("kl" if kl else "plain"))


def build(base: str) -> Path:
    if base == "minilm":
        from bench.active_learning import CACHE, build_base

        return build_base(CACHE / "minilm-causal")
    from bench.eval_vs_lmeval import CACHE, build_model

    return build_model(CACHE / "gpt2-20m")


def report(
    found: dict[str, dict[str, Any]], hp: dict[str, Any], args: Any, loads: list[Any]
) -> tuple[str, bool]:
    """The README section's body, and whether every ratio is within the target."""
    table = [
        "| case | plain steps/s | kl_to_base steps/s | KL / plain step (median of pairs) "
        "| per pair | plain run (s) | kl_to_base run (s) | KL / plain whole run "
        "(median of pairs) | per pair | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ok = True
    for case, f in found.items():
        step = statistics.median(f["step_pairs"])
        whole = statistics.median(f["whole_pairs"])
        ok &= step <= TARGET and whole <= TARGET
        table.append(
            f"| {case} ({hp['cases'][case]} training rows) | {1 / f['plain']:.2f} "
            f"| {1 / f['kl']:.2f} | **{step:.2f}x** "
            f"| {', '.join(f'{x:.2f}' for x in f['step_pairs'])} "
            f"| {f['plain_whole']:.1f} | {f['kl_whole']:.1f} | **{whole:.2f}x** "
            f"| {', '.join(f'{x:.2f}' for x in f['whole_pairs'])} | <= {TARGET}x |"
        )
    targets = hp["targets"] if isinstance(hp["targets"], str) else ", ".join(hp["targets"])
    body = "\n".join(
        [
            *table,
            "",
            "first epoch: every batch is new, so every KL step runs the adapter-disabled "
            "forward pass; later epochs: the training rows fit in a few batches, so after "
            "the first epoch the base log-probabilities are reused (`kl_to_base.cache_mb`) "
            "and the KL step needs no base pass.",
            "",
            f"Model: {hp['title']}; LoRA r {hp['r']}, alpha {hp['alpha']}, dropout "
            f"{hp['dropout']} on {targets}; lr {hp['lr']}, batch {hp['batch_size']}, "
            f"max_length {hp['max_length']}, {args.steps} steps per run, an evaluation every "
            f"{args.eval_steps} steps ({hp['val_rows']} validation rows: loss and accuracy "
            f"on the label set), seed {SEED}; SST-2 train rows as prompt/completion; "
            f"kl_to_base weight {hp['kl_weight']}. Step: forward, backward and optimizer "
            "step, from the Trainer's step callbacks (the first left out); steps/s from the "
            "median step of each run, median over runs. Whole run: wall time of the "
            "`finetune.train.run.train` call (loading, curation, steps, evaluations, "
            "checkpoints, final evaluation, saving), median over runs.",
            "",
            f"Load average (1, 5, 15 min) before {', '.join(f'{x:.1f}' for x in loads[0])}, "
            f"after {', '.join(f'{x:.1f}' for x in loads[1])}; {args.threads} torch "
            f"thread(s), {args.reps} alternating repetitions of each run in one process.",
        ]
    )
    return body, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", choices=sorted(BASES), default="gpt2", help="the base model")
    parser.add_argument("--reps", type=int, default=4, help="runs of each kind, alternating")
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per run")
    parser.add_argument("--eval-steps", type=int, default=8, help="steps between evaluations")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-readme", action="store_true", help="do not update bench/README.md")
    args = parser.parse_args()
    if not REALDATA.is_dir():
        print("skipped: ../shared/realdata is absent")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    hp = BASES[args.base]
    model = build(args.base)
    work = Path(tempfile.mkdtemp(prefix="bench-kl-"))
    warm_up(model, hp, work)
    load_before = os.getloadavg()
    found = {case: compare(case, model, hp, work, args) for case in hp["cases"]}
    body, ok = report(found, hp, args, [load_before, os.getloadavg()])
    print(body)
    if not args.no_readme:
        write_section(hp["section"], body, "python bench/kl_cost.py " + " ".join(sys.argv[1:]))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
