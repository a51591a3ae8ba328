"""What KL-to-base costs: training steps/s with and without it, same everything else.

Both runs fine-tune the benchmark GPT-2 (~20M parameters, 16k vocabulary; built by
bench/eval_vs_lmeval.py) with the fine-tuner on the same SST-2 rows (``Review:
...\\nSentiment:`` -> `` positive`` / `` negative``), LoRA settings, batch size, steps
and seed; one has ``anti_forgetting.kl_to_base`` set. The runs alternate in one
process (plain, KL, plain, KL, ...; each a whole ``finetune.train.train`` call), so
that other load on the machine falls on both alike. The figure is the median over the
alternating pairs of (KL step time / plain step time), measured in the same run (issue
24, defect 7; target: a KL step costs at most 1.6x a plain one).

A step is timed from the Trainer's ``on_step_begin`` to its ``on_step_end`` (forward,
backward and optimizer step; evaluations and checkpoints are outside). The first step
of each run is left out (warm-up), and the median step time of each run is used, so a
burst of other load does not decide the figure; steps/s is 1 / that median.

Two cases: "first epoch" (every batch new: the KL step runs the adapter-disabled pass)
and "later epochs" (32 training rows, 4 batches: from the fifth step on, the base
log-probabilities are reused and no base pass runs).

    .venv/bin/python bench/kl_cost.py [--reps 4] [--steps 16] [--threads 1]
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
HP: dict[str, Any] = {
    "r": 8,
    "alpha": 16,
    "dropout": 0.05,
    "targets": ["c_attn", "c_proj", "c_fc"],
    "lr": 1e-3,
    "batch_size": 8,
    "seed": 0,
    "kl_weight": 0.5,
}
VAL_ROWS = 32
# training rows per case: more than the run's batches (no example seen twice), and few
# enough that 16 steps go over them several times
CASES = {"first epoch": 368, "later epochs": 32}


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


def run(model: Path, data: dict[str, str], kl: bool, steps: int, out: Path) -> dict[str, Any]:
    """One fine-tuning run in this process; its step times."""
    from finetune.config import FinetuneConfig
    from finetune.train import train

    config = FinetuneConfig.model_validate(
        {
            "schema_version": 1,
            "name": "bench-kl",
            "base_model": {"path": str(model)},
            "data": {"train": data["train"], "validation": data["val"]},
            "lora": {
                "r": HP["r"],
                "alpha": HP["alpha"],
                "dropout": HP["dropout"],
                "target_modules": HP["targets"],
            },
            "training": {
                "max_steps": steps,
                "lr": HP["lr"],
                "batch_size": HP["batch_size"],
                "seed": HP["seed"],
                "max_length": 128,
                "eval_steps": steps,
                "early_stopping_patience": None,
            },
            "anti_forgetting": {"kl_to_base": {"weight": HP["kl_weight"]}} if kl else {},
            "output": str(out),
        }
    )
    timer = step_timer()
    result = train(config, callbacks=[timer], overwrite=True)
    return {"step_s": timer.steps, "steps": result.manifest["global_steps"]}


def measure(kl: bool, model: Path, data: dict[str, str], work: Path, rep: int, steps: int) -> dict:
    name = f"{'kl' if kl else 'plain'}-{rep}"
    out = run(model, data, kl, steps, work / name)
    timed = out["step_s"][1:]  # the first step warms up
    out["median_s"] = statistics.median(timed)
    out["mean_s"] = statistics.fmean(timed)
    return out


def write_data(work: Path, case: str) -> dict[str, str]:
    from bench.finetune_vs_trainer import sst2_rows

    rows = sst2_rows(VAL_ROWS + CASES[case], HP["seed"])
    paths = {}
    for name, part in (("val", rows[:VAL_ROWS]), ("train", rows[VAL_ROWS:])):
        path = work / case.replace(" ", "-") / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
        paths[name] = str(path)
    return paths


def compare(case: str, model: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Alternating plain and KL runs of one case; their step times and the ratio."""
    data = write_data(work, case)
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "kl": []}
    for rep in range(args.reps):
        for kl in (False, True):
            r = measure(kl, model, data, work / case.replace(" ", "-"), rep, args.steps)
            runs["kl" if kl else "plain"].append(r)
            print(
                f"{case} rep {rep} {'kl' if kl else 'plain'}: {r['steps']} steps, median step "
                f"{r['median_s']:.3f}s, mean {r['mean_s']:.3f}s, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    plain = statistics.median(r["median_s"] for r in runs["plain"])
    kl = statistics.median(r["median_s"] for r in runs["kl"])
    pairs = [k["median_s"] / p["median_s"] for p, k in zip(runs["plain"], runs["kl"], strict=True)]
    return {"runs": runs, "plain": plain, "kl": kl, "pairs": pairs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4, help="runs of each kind, alternating")
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-readme", action="store_true", help="do not update bench/README.md")
    args = parser.parse_args()
    if not REALDATA.is_dir():
        print("skipped: ../shared/realdata is absent")
        return 0
    import torch

    from bench.eval_vs_lmeval import CACHE, build_model

    torch.set_num_threads(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    model = build_model(CACHE / "gpt2-20m")
    work = Path(tempfile.mkdtemp(prefix="bench-kl-"))
    load_before = os.getloadavg()
    found = {case: compare(case, model, work, args) for case in CASES}
    load_after = os.getloadavg()
    table = [
        "| case | plain steps/s | kl_to_base steps/s | KL / plain step (median of pairs) "
        "| per pair | target |",
        "|---|---|---|---|---|---|",
    ]
    ok = True
    for case, f in found.items():
        ratio = statistics.median(f["pairs"])
        ok &= ratio <= TARGET
        table.append(
            f"| {case} ({CASES[case]} training rows) | {1 / f['plain']:.2f} | {1 / f['kl']:.2f} "
            f"| **{ratio:.2f}x** | {', '.join(f'{x:.2f}' for x in f['pairs'])} "
            f"| <= {TARGET}x |"
        )
    body = "\n".join(
        [
            *table,
            "",
            "first epoch: every batch is new, so every KL step runs the adapter-disabled "
            "forward pass; later epochs: the training rows fit in a few batches, so after "
            "the first epoch the base log-probabilities are reused (`kl_to_base.cache_mb`) "
            "and the KL step needs no base pass.",
            "",
            f"Model: bench GPT-2 ~20M (bench/.cache/gpt2-20m, 16k vocabulary); LoRA r "
            f"{HP['r']}, alpha {HP['alpha']}, dropout {HP['dropout']} on "
            f"{', '.join(HP['targets'])}; lr {HP['lr']}, batch {HP['batch_size']}, "
            f"{args.steps} steps per run (the first left out), seed {HP['seed']}; SST-2 "
            f"train rows as prompt/completion; kl_to_base weight {HP['kl_weight']}. Step: "
            "forward, backward and optimizer step, from the Trainer's step callbacks; steps/s "
            "from the median step of each run, median over runs.",
            "",
            f"Load average (1, 5, 15 min) before {', '.join(f'{x:.1f}' for x in load_before)}, "
            f"after {', '.join(f'{x:.1f}' for x in load_after)}; {args.threads} torch "
            f"thread(s), {args.reps} alternating repetitions of each run in one process.",
        ]
    )
    print(body)
    if not args.no_readme:
        write_section("kl_cost", body, "python bench/kl_cost.py " + " ".join(sys.argv[1:]))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
