"""QLoRA on one GPU: fine-tune a 7-8B instruct model in 4 bits, merge, evaluate.

The real check of issue 18's QLoRA path, for a machine with a CUDA GPU and bitsandbytes
(docs/large-models.md estimates 14-16 GiB for an 8B model at the defaults, so a 24 GB
GPU; not yet measured). It cannot run on a CPU-only machine: it stops at once with a
message saying what is missing. Steps:

1. writes a small instruction dataset of its own (seeded synthetic chat rows: sums,
   parity, words spelled backwards, unit conversions, sorting; a few hundred training
   rows and held-out rows for validation and evaluation), the fine-tune config and two
   evaluation suites into ``--work``;
2. fine-tunes with the bundled fine-tuner (``finetune.train.run.train``, what
   ``finetune train`` runs), in this process: base loaded in 4 bits
   (``base_model.quantization: {bits: 4, quant_type: nf4, double_quant: true,
   compute_dtype: bfloat16}``), ``training.precision: bf16``,
   ``gradient_checkpointing: true``, ``packing: true``, LoRA on every linear layer;
   prints the peak GPU memory (``torch.cuda.max_memory_allocated``, loading included),
   the memory held when training starts, tokens/s and the loss curve;
3. ``finetune merge RUN --out MERGED --dtype bfloat16``: the adapter merged into the
   base loaded unquantized in bfloat16;
4. ``harness run`` of the same suite twice, the base in bfloat16 with the adapter on,
   and the merged checkpoint; prints each task's figures side by side. They agree up to
   bfloat16 rounding of the merged weights (W + scale * B @ A is rounded once to bf16).

``--dry-run`` does step 1, checks the config and suites against this checkout's
schemas, and prints the commands of steps 2-4 without running them (no GPU needed).
The whole flow was checked on a CPU with a tiny 4-bit Llama and the CUDA calls stubbed;
its figures mean nothing there.

    python bench/gpu_qlora.py [--model meta-llama/Llama-3.1-8B-Instruct | PATH]
        [--steps 60] [--batch-size 4] [--grad-accumulation 4] [--max-length 1024]
        [--work gpu-qlora] [--dry-run]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SEED = 0
TRAIN_ROWS, VAL_ROWS, EVAL_ROWS = 400, 40, 100

# user-facing messages
NO_GPU = (
    "bench/gpu_qlora.py needs a CUDA GPU (torch.cuda.is_available() is False here): "
    "bitsandbytes' 4-bit QLoRA training is what it measures. Run it on a GPU machine, "
    "or pass --dry-run to write the configs and print the commands."
)
NO_BNB = (
    "bench/gpu_qlora.py needs bitsandbytes for the 4-bit base: "
    "pip install 'llm-release-harness[quant]' (or pip install bitsandbytes)."
)
NO_BF16 = (
    "this GPU has no bfloat16 support (torch.cuda.is_bf16_supported() is False; "
    "Ampere or newer has it): the script trains and evaluates in bf16"
)


# ---------------------------------------------------------------- the data it writes


def _sum(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    return f"What is {a} + {b}? Answer with the number only.", str(a + b)


def _parity(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(100, 99999)
    return f"Is {n} even or odd? Answer with one word.", "even" if n % 2 == 0 else "odd"


WORDS = ("garden", "planet", "window", "silver", "orange", "bridge", "candle", "forest")


def _backwards(rng: random.Random) -> tuple[str, str]:
    w = rng.choice(WORDS)
    return f"Spell the word '{w}' backwards, letters only.", w[::-1]


def _convert(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(2, 90)
    return f"How many metres are {n} kilometres? Answer with the number only.", str(n * 1000)


def _sort(rng: random.Random) -> tuple[str, str]:
    xs = rng.sample(range(1, 100), rng.randint(3, 6))
    shown = ", ".join(map(str, xs))
    return f"Sort ascending, comma-separated: {shown}", ", ".join(map(str, sorted(xs)))


KINDS = (_sum, _parity, _backwards, _convert, _sort)


def chat_row(question: str, answer: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "Answer exactly, with nothing else."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_data(work: Path) -> None:
    """Training and validation chat rows; evaluation rows for the suite's tasks, drawn
    with another seed (a question repeated from training is dropped)."""
    rng = random.Random(SEED)
    train = [KINDS[i % len(KINDS)](rng) for i in range(TRAIN_ROWS + VAL_ROWS)]
    write_jsonl(work / "data" / "train.jsonl", [chat_row(*qa) for qa in train[:TRAIN_ROWS]])
    write_jsonl(work / "data" / "val.jsonl", [chat_row(*qa) for qa in train[TRAIN_ROWS:]])
    seen = {q for q, _ in train}
    ev = random.Random(SEED + 1)
    sums: list[dict[str, str]] = []
    parity: list[dict[str, str]] = []
    while len(sums) < EVAL_ROWS or len(parity) < EVAL_ROWS:
        for kind, out in ((_sum, sums), (_parity, parity)):
            q, a = kind(ev)
            if q not in seen and len(out) < EVAL_ROWS:
                seen.add(q)
                out.append({"question": q, "answer": a})
    write_jsonl(work / "data" / "eval_sum.jsonl", sums)
    write_jsonl(work / "data" / "eval_parity.jsonl", parity)


# ---------------------------------------------------------------- configs and suites


def finetune_config(args: argparse.Namespace, run: Path) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "name": "gpu-qlora",
        "base_model": {
            "path": args.model,
            "dtype": "bfloat16",  # embeddings, norms, head; the linear layers are 4-bit
            "attn_implementation": "sdpa",
            "quantization": {
                "bits": 4,
                "quant_type": "nf4",
                "double_quant": True,
                "compute_dtype": "bfloat16",
            },
        },
        "data": {"train": "data/train.jsonl", "validation": "data/val.jsonl"},
        "chat": {"template": "tokenizer"},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "training": {
            "max_steps": args.steps,
            "lr": 2e-4,
            "warmup_steps": max(1, args.steps // 20),
            "batch_size": args.batch_size,
            "grad_accumulation": args.grad_accumulation,
            "max_length": args.max_length,
            "eval_steps": max(1, args.steps // 6),
            "early_stopping_patience": None,
            "seed": SEED,
            "precision": "bf16",
            "gradient_checkpointing": True,
            "packing": True,
        },
        "output": str(run),
    }


def suite(model: dict[str, Any], out: Path) -> dict[str, Any]:
    """The evaluation suite: parity as a classification task (both answers scored),
    sums as a generation task (exact match), chat-formatted with the model's template."""
    return {
        "schema_version": 1,
        "name": "gpu-qlora-eval",
        "model": model,
        "chat": {"enabled": True, "system": "Answer exactly, with nothing else."},
        "tasks": [
            {
                "id": "parity",
                "kind": "classification",
                "data": "data/eval_parity.jsonl",
                "prompt": "{{ question }}",
                "choices": ["even", "odd"],
                "label": "answer",
                "metrics": ["accuracy"],
            },
            {
                "id": "sums",
                "kind": "generation",
                "data": "data/eval_sum.jsonl",
                "prompt": "{{ question }}",
                "reference": "answer",
                "max_new_tokens": 8,
                "metrics": ["exact_match"],
            },
        ],
        "seed": SEED,
        "batch_size": 16,
        "output": str(out),
    }


def write_inputs(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    import yaml

    write_data(work)
    paths = {
        "config": work / "finetune.yaml",
        "run": work / "run",
        "merged": work / "merged",
        "suite_adapter": work / "suite-adapter.yaml",
        "suite_merged": work / "suite-merged.yaml",
        "eval_adapter": work / "eval-adapter",
        "eval_merged": work / "eval-merged",
    }
    docs = {
        "config": finetune_config(args, paths["run"]),
        "suite_adapter": suite(
            {"path": args.model, "adapter": str(paths["run"]), "dtype": "bfloat16"},
            paths["eval_adapter"],
        ),
        "suite_merged": suite(
            {"path": str(paths["merged"]), "dtype": "bfloat16"}, paths["eval_merged"]
        ),
    }
    for key, doc in docs.items():
        paths[key].write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return paths


def commands(paths: dict[str, Path]) -> list[list[str]]:
    """Steps 3 and 4 (step 2 runs in this process)."""
    return [
        [
            sys.executable,
            "-m",
            "finetune",
            "merge",
            str(paths["run"]),
            "--out",
            str(paths["merged"]),
            "--dtype",
            "bfloat16",
            "--overwrite",
        ],
        [sys.executable, "-m", "harness", "run", str(paths["suite_adapter"]), "--no-progress"],
        [sys.executable, "-m", "harness", "run", str(paths["suite_merged"]), "--no-progress"],
    ]


def check_schemas(paths: dict[str, Path]) -> list[str]:
    """Problems of the written config and suites under this checkout's schemas (the
    suites' merged model and adapter do not exist yet, so files are not checked)."""
    from finetune.config.schema import load_config
    from harness.config.suite import load_suite
    from harness.errors import UserError

    problems = []
    for key, load in (
        ("config", load_config),
        ("suite_adapter", load_suite),
        ("suite_merged", load_suite),
    ):
        try:
            load(paths[key], check_files=False)
        except UserError as exc:
            problems.append(str(exc))
    return problems


# ---------------------------------------------------------------- the GPU run


def preflight() -> str | None:
    """Why this machine cannot run the benchmark, or None."""
    import torch

    if not torch.cuda.is_available():
        return NO_GPU
    if importlib.util.find_spec("bitsandbytes") is None:
        return NO_BNB
    if not torch.cuda.is_bf16_supported():
        return NO_BF16
    return None


def meter() -> Any:
    """A TrainerCallback: step times, and the memory held when training starts."""
    import torch
    from transformers import TrainerCallback

    class Meter(TrainerCallback):
        def __init__(self) -> None:
            self.step_s: list[float] = []
            self.at_start_gb = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.at_start_gb = torch.cuda.memory_allocated() / 2**30

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            torch.cuda.synchronize()
            self.step_s.append(time.perf_counter() - self.started)

    return Meter()


def train_and_measure(paths: dict[str, Path]) -> dict[str, Any]:
    import torch

    from finetune.config.schema import load_config
    from finetune.data.curate import curate
    from finetune.train.encode import encode_examples
    from finetune.train.run import chat_encoding, train
    from harness.model.files import ModelSource, tokenizer_of

    config = load_config(paths["config"])
    torch.cuda.reset_peak_memory_stats()
    m = meter()
    result = train(config, callbacks=[m], overwrite=True)
    peak_gb = torch.cuda.max_memory_allocated() / 2**30
    # tokens per step: the mean encoded length of a training row times the rows a step
    # takes (packing adds no padding, so these are the tokens computed on)
    curated = curate(config)
    tokenizer = tokenizer_of(ModelSource(path=config.base_model.path))
    chat = chat_encoding(config, curated, tokenizer)
    t = config.training
    enc = encode_examples(curated.train, tokenizer, t.max_length, config.data.add_eos, chat)
    mean_len = sum(len(f["input_ids"]) for f in enc.features) / len(enc.features)
    steps = result.manifest["global_steps"]
    tokens = mean_len * t.batch_size * t.grad_accumulation * steps
    return {
        "peak_gb": peak_gb,
        "at_start_gb": m.at_start_gb,
        "tokens_per_s": tokens / sum(m.step_s),
        "steps": steps,
        "mean_row_tokens": mean_len,
        "history": result.history,
        "gpu": torch.cuda.get_device_name(),
    }


def metric_values(results_json: Path) -> dict[str, float | None]:
    data = json.loads(results_json.read_text(encoding="utf-8"))
    return {
        f"{task}.{name}": m.get("value")
        for task, entry in data["tasks"].items()
        for name, m in entry["metrics"].items()
    }


def record_agreement(a_json: Path, b_json: Path) -> list[str]:
    """Per task, how closely two runs agree example by example: the largest difference
    of a choice's log-likelihood and the share of equal predictions (classification),
    the share of identical generations (generation)."""
    a = json.loads(a_json.read_text(encoding="utf-8"))["tasks"]
    b = json.loads(b_json.read_text(encoding="utf-8"))["tasks"]
    lines = []
    for task, entry in a.items():
        pairs = list(zip(entry.get("records", []), b[task].get("records", []), strict=True))
        if not pairs:
            continue
        if "loglik" in pairs[0][0]:
            worst = max(
                abs(x - y) for r, s in pairs for x, y in zip(r["loglik"], s["loglik"], strict=True)
            )
            same = sum(r["pred"] == s["pred"] for r, s in pairs)
            lines.append(
                f"{task}: largest log-likelihood difference {worst:.4f}, "
                f"same prediction {same}/{len(pairs)}"
            )
        elif "prediction" in pairs[0][0]:
            same = sum(r["prediction"] == s["prediction"] for r, s in pairs)
            lines.append(f"{task}: identical generations {same}/{len(pairs)}")
    return lines


def run_command(cmd: list[str]) -> None:
    print("$ " + shlex.join(cmd), flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode not in (0, 1):  # 1: a gate failed, still a finished run
        raise SystemExit(f"{shlex.join(cmd[2:4])} exited with {proc.returncode}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local folder")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per forward pass")
    parser.add_argument("--grad-accumulation", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024, help="tokens per row")
    parser.add_argument("--work", default="gpu-qlora", help="folder for data, runs, reports")
    parser.add_argument(
        "--dry-run", action="store_true", help="write the inputs, print the commands, run nothing"
    )
    args = parser.parse_args()
    model = Path(args.model).expanduser()
    if model.exists():
        args.model = str(model.resolve())
    work = Path(args.work).resolve()
    if not args.dry_run:
        problem = preflight()
        if problem:
            print(problem, file=sys.stderr)
            return 2
    paths = write_inputs(args, work)
    print(f"wrote {work}: data/, finetune.yaml, suite-adapter.yaml, suite-merged.yaml")
    problems = check_schemas(paths)
    for problem in problems:
        print(f"schema check: {problem}", file=sys.stderr)
    train_cmd = [sys.executable, "-m", "finetune", "train", str(paths["config"]), "--overwrite"]
    if args.dry_run:
        print("commands (the first runs in this process, to read the GPU's peak memory):")
        for cmd in [train_cmd, *commands(paths)]:
            print("  " + shlex.join(cmd))
        return 1 if problems else 0
    if problems:
        return 2
    figures = train_and_measure(paths)
    print(
        f"{figures['gpu']}: peak GPU memory {figures['peak_gb']:.2f} GiB "
        f"(torch.cuda.max_memory_allocated, loading included; {figures['at_start_gb']:.2f} "
        f"GiB held when training started), {figures['tokens_per_s']:.0f} tokens/s over "
        f"{figures['steps']} steps ({figures['mean_row_tokens']:.0f} tokens per row)"
    )
    print("loss curve (step, train loss, validation loss):")
    for h in figures["history"]:
        print(f"  {h['step']:>5}  {h.get('train_loss')}  {h.get('val_loss')}")
    for cmd in commands(paths):
        run_command(cmd)
    on = metric_values(paths["eval_adapter"] / "results.json")
    merged = metric_values(paths["eval_merged"] / "results.json")
    print("| metric | adapter on (bf16 base) | merged (bf16) | difference |")
    print("|---|---|---|---|")
    for key in sorted(on):
        a, b = on[key], merged.get(key)
        diff = abs(a - b) if a is not None and b is not None else None
        print(f"| {key} | {a} | {b} | {diff} |")
    agreement = record_agreement(
        paths["eval_adapter"] / "results.json", paths["eval_merged"] / "results.json"
    )
    print("\n".join(agreement))
    (work / "figures.json").write_text(
        json.dumps(
            {**figures, "adapter_on": on, "merged": merged, "agreement": agreement}, indent=1
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
