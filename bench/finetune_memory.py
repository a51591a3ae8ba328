"""Peak memory and tokens/s of LoRA training: fp32 vs bf16 + gradient checkpointing vs packing.

Three setups of the fine-tuner (``finetune.train.run.train``) train the same LoRA adapter
on the same ~110M-parameter model, data, batch size (8 examples per step), maximum
length, steps and seed; only these config keys differ:

* ``fp32``: the defaults (float32 weights, float32 training);
* ``bf16 + GC``: ``base_model.dtype: bfloat16``, ``training.precision: bf16``,
  ``training.gradient_checkpointing: true``;
* ``bf16 + GC + packing``: the same plus ``training.packing: true`` (the examples of a
  batch are packed into one row without padding; position ids restart per example).

The model is Llama-shaped (hidden 768, 12 layers, 12 heads, MLP 2048, 32k vocabulary,
tied embeddings: 110M parameters) with random seeded weights and a byte-level BPE
tokenizer trained here on synthetic text; both are built once into ``bench/.cache/``
and nothing is downloaded. The training rows are text rows of synthetic words whose
lengths spread evenly from max_length / 8 to max_length tokens, so a padded batch
carries padding and packing has something to remove.

Each setup runs in a fresh process. Memory: the process's resident set size (VmRSS in
/proc/self/status) is read once after the imports and a first curation pass of the data
(the model-independent setup: libraries, the PII scanner, the rows), after a
``gc.collect()``; the peak is ``getrusage(RUSAGE_SELF).ru_maxrss`` (the kernel's
high-water mark of the RSS) read at the Trainer's ``on_train_end``, so it covers loading
the base, wrapping it with LoRA and the whole training loop (its one evaluation
included). The figure is peak minus that baseline: the memory the training needs.
Tokens/s: real (non-padding) training tokens (every row is seen once, so the sum of the
encoded lengths) divided by the summed step times (Trainer ``on_step_begin`` to
``on_step_end``: collation excluded, forward, backward and optimizer step included;
evaluations and checkpoints outside).

Target (issue 18): peak memory of bf16 + GC <= 0.5x that of fp32. A setup whose config
keys this checkout does not know yet is listed as not run.

    .venv/bin/python bench/finetune_memory.py [--steps 4] [--max-length 256] [--reps 2]
        [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import python, write_section  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
MODEL_DIR = CACHE / "llama-110m"
TARGET = 0.5
BATCH = 8
VAL_ROWS = 8
# LoRA and optimizer settings shared by every setup
LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
SEED = 0

# setup name -> the config keys it sets beyond the shared ones, as (section, key, value)
SETUPS: dict[str, list[tuple[str, str, Any]]] = {
    "fp32": [],
    "bf16 + GC": [
        ("base_model", "dtype", "bfloat16"),
        ("training", "precision", "bf16"),
        ("training", "gradient_checkpointing", True),
    ],
    "bf16 + GC + packing": [
        ("base_model", "dtype", "bfloat16"),
        ("training", "precision", "bf16"),
        ("training", "gradient_checkpointing", True),
        ("training", "packing", True),
    ],
}
REFERENCE, CANDIDATE = "fp32", "bf16 + GC"


# ---------------------------------------------------------------- model and data


def synthetic_words(n: int, seed: int) -> list[str]:
    """n distinct pronounceable pseudo-words (2-4 syllables), seeded."""
    rng = random.Random(seed)
    onsets = ["", "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "st"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    codas = ["", "", "n", "r", "s", "l", "k"]
    words: set[str] = set()
    while len(words) < n:
        parts = rng.randint(2, 4)
        words.add(
            "".join(
                rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(parts)
            )
        )
    return sorted(words)


def sentences(words: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(words) for _ in range(rng.randint(6, 24))).capitalize() + "."
        for _ in range(n)
    ]


def build_model(folder: Path = MODEL_DIR) -> Path:
    """Llama-shaped, 110M parameters, random weights (seed 0), saved as float32
    safetensors with an 8k byte-level BPE tokenizer trained on synthetic text."""
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        sentences(synthetic_words(3000, SEED), 20000, SEED),
        trainers.BpeTrainer(
            vocab_size=8000,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    fast.save_pretrained(folder)
    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=32000,  # more rows than the tokenizer uses: a real model's logit cost
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=12,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def write_data(work: Path, model: Path, n_train: int, max_length: int) -> dict[str, str]:
    """Text rows whose encoded lengths (BOS and EOS included) run evenly from
    max_length / 8 to max_length, shuffled; and VAL_ROWS validation rows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    rng = random.Random(SEED + 1)
    words = synthetic_words(3000, SEED)
    low = max(8, max_length // 8)
    rows = []
    for i in range(n_train + VAL_ROWS):
        want = low + (max_length - low) * (i % n_train) // max(1, n_train - 1) - 2
        text = " ".join(rng.choice(words) for _ in range(want))
        ids = tokenizer.encode(text)[: max(1, want - 2)]  # margin: re-encoding may merge
        rows.append({"text": str(tokenizer.decode(ids)).strip()})
    train, val = rows[:n_train], rows[n_train:]
    random.Random(SEED).shuffle(train)
    paths = {}
    for name, data in (("train", train), ("val", val)):
        path = work / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
        paths[name] = str(path)
    return paths


def config_dict(
    setup: str, model: Path, data: dict[str, str], steps: int, max_length: int, out: Path
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "schema_version": 1,
        "name": "finetune-memory",
        "base_model": {"path": str(model)},
        "data": {"train": data["train"], "validation": data["val"]},
        "lora": dict(LORA),
        "training": {
            "epochs": 1,
            "lr": 1e-4,
            "batch_size": BATCH,
            "seed": SEED,
            "max_length": max_length,
            "eval_steps": steps,  # one evaluation, at the last step
            "early_stopping_patience": None,
        },
        "output": str(out),
    }
    for section, key, value in SETUPS[setup]:
        config[section][key] = value
    return config


def unknown_keys(setup: str) -> list[str]:
    """The keys of a setup that this checkout's fine-tune config does not have."""
    from finetune.config.schema import BaseModelSpec, TrainingSpec

    known = {"base_model": BaseModelSpec.model_fields, "training": TrainingSpec.model_fields}
    return [f"{s}.{k}" for s, k, _ in SETUPS[setup] if k not in known[s]]


# ---------------------------------------------------------------- one setup (a child)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def meter() -> Any:
    """A TrainerCallback that sums step times and reads the peak RSS at the loop's end."""
    from transformers import TrainerCallback

    class Meter(TrainerCallback):
        def __init__(self) -> None:
            self.step_s: list[float] = []
            self.begin = self.loop_s = self.peak_mb = 0.0
            self.losses: dict[int, float] = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.begin = time.perf_counter()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_s.append(time.perf_counter() - self.started)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            for key in ("train_ce", "loss"):
                if logs and key in logs:
                    self.losses[state.global_step] = float(logs[key])
                    break

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.loop_s = time.perf_counter() - self.begin
            self.peak_mb = max_rss_mb()

    return Meter()


def worker(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    # everything train() imports, so that the baseline holds the libraries
    import peft  # noqa: F401
    import transformers  # noqa: F401

    import finetune.train.progress  # noqa: F401
    import finetune.train.trainer  # noqa: F401
    from finetune.config.schema import FinetuneConfig
    from finetune.data.curate import curate
    from finetune.train.encode import encode_examples
    from finetune.train.run import train
    from harness.model.files import ModelSource, load_for_training

    config = FinetuneConfig.model_validate(json.loads(args.config))
    curate(config)  # the data and the PII scanner, loaded once before the baseline
    gc.collect()
    baseline, before = rss_mb(), max_rss_mb()
    m = meter()
    result = train(config, callbacks=[m], overwrite=True)
    enc_report = result.manifest["curation"]["encoding"]["train"]
    # the tokens trained on: the fine-tuner's own encoding of the training rows
    _, tokenizer, _ = load_for_training(ModelSource(path=config.base_model.path))
    enc = encode_examples(result_examples(config), tokenizer, config.training.max_length, True)
    out = {
        "baseline_mb": baseline,
        "max_rss_before_mb": before,
        "peak_mb": m.peak_mb,
        "increase_mb": m.peak_mb - baseline,
        "tokens": sum(len(f["input_ids"]) for f in enc.features),
        "examples": len(enc.features),
        "truncated": enc_report.get("truncated", 0),
        "steps": result.manifest["global_steps"],
        "step_s": m.step_s,
        "loop_s": m.loop_s,
        "losses": m.losses,
        "torch": torch.__version__,
    }
    Path(args.result).write_text(json.dumps(out))
    return 0


def result_examples(config: Any) -> Any:
    from finetune.data.examples import load_examples

    d = config.data
    return load_examples(d.train, (d.prompt_field, d.completion_field, d.text_field))


def spawn(setup: str, config: dict[str, Any], work: Path, threads: int) -> dict[str, Any]:
    result = work / f"{setup.replace(' ', '').replace('+', '-')}.json"
    cmd = [
        python(),
        __file__,
        "--worker",
        "--config",
        json.dumps(config),
        "--result",
        str(result),
        "--threads",
        str(threads),
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{setup} failed:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(result.read_text())
    out["tps"] = out["tokens"] / sum(out["step_s"])
    return out


# ---------------------------------------------------------------- the comparison


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per setup")
    parser.add_argument("--max-length", type=int, default=256, help="tokens per example")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--reps", type=int, default=2, help="alternating runs per setup")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 steps of 128 tokens, no README"
    )
    parser.add_argument("--no-readme", action="store_true", help="do not update bench/README.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.quick:
        args.steps, args.max_length, args.reps, args.no_readme = 2, 128, 1, True
    model = build_model()
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    data = write_data(work, model, args.steps * BATCH, args.max_length)
    load_before = os.getloadavg()
    skipped = {s: unknown_keys(s) for s in SETUPS if unknown_keys(s)}
    for setup, missing in skipped.items():
        print(f"{setup}: not run, this checkout has no {', '.join(missing)}", flush=True)
    reps: dict[str, list[dict[str, Any]]] = {s: [] for s in SETUPS if s not in skipped}
    for rep in range(args.reps):  # the setups alternate, so other load falls on all alike
        for setup in reps:
            config = config_dict(setup, model, data, args.steps, args.max_length, work / "out")
            r = spawn(setup, config, work, args.threads)
            reps[setup].append(r)
            print(
                f"rep {rep} {setup}: peak RSS +{r['increase_mb']:.0f} MB (baseline "
                f"{r['baseline_mb']:.0f} MB), {r['tokens']} tokens in {r['steps']} steps, "
                f"{r['tps']:.0f} tokens/s, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    runs = {setup: combined(rs) for setup, rs in reps.items()}
    body, ok = report(runs, skipped, args, load_before)
    print(body)
    if not args.no_readme:
        write_section(
            "finetune_memory", body, "python bench/finetune_memory.py " + " ".join(sys.argv[1:])
        )
    return 0 if ok else 1


def combined(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """One setup's figures over its repetitions: the largest peak memory (the memory a
    run must have) and the best tokens/s (the run least slowed by other load)."""
    out = dict(max(reps, key=lambda r: r["increase_mb"]))
    out["tps"] = max(r["tps"] for r in reps)
    out["all_increase_mb"] = [r["increase_mb"] for r in reps]
    out["all_tps"] = [r["tps"] for r in reps]
    return out


def checkout() -> str:
    """The commit this tree is at, and whether it has uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"commit {head}" + (" with uncommitted changes" if dirty else "")


def report(
    runs: dict[str, dict[str, Any]],
    skipped: dict[str, list[str]],
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
) -> tuple[str, bool]:
    ref = runs.get(REFERENCE)
    table = [
        "| setup | peak RSS increase (MB) | each run | vs fp32 | tokens/s | each run | vs fp32 "
        "| last logged loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for setup in SETUPS:
        if setup in skipped:
            table.append(f"| {setup} | not run: no {', '.join(skipped[setup])} yet | | | | | | |")
            continue
        r = runs[setup]
        mem = f"{r['increase_mb'] / ref['increase_mb']:.2f}x" if ref else ""
        tps = f"{r['tps'] / ref['tps']:.2f}x" if ref else ""
        last = list(r["losses"].values())[-1] if r["losses"] else float("nan")
        each_mb = ", ".join(f"{x:.0f}" for x in r["all_increase_mb"])
        each_tps = ", ".join(f"{x:.0f}" for x in r["all_tps"])
        table.append(
            f"| {setup} | {r['increase_mb']:.0f} | {each_mb} | {mem} | {r['tps']:.0f} | "
            f"{each_tps} | {tps} | {last:.4f} |"
        )
    cand = runs.get(CANDIDATE)
    if ref and cand:
        ratio = cand["increase_mb"] / ref["increase_mb"]
        ok = ratio <= TARGET
        verdict = (
            f"Peak memory {CANDIDATE} / {REFERENCE}: {ratio:.2f}x (target <= {TARGET}x): "
            f"{'PASS' if ok else 'FAIL'}."
        )
    else:
        ok = False
        verdict = f"Peak memory {CANDIDATE} / {REFERENCE}: not measured (setup not run): FAIL."
    any_run = next(iter(runs.values()), None)
    tokens = f"{any_run['tokens']} tokens in {any_run['examples']} rows" if any_run else ""
    load_after = os.getloadavg()
    lines = [
        *table,
        "",
        verdict,
        "",
        f"Model: Llama-shaped, 110M parameters (hidden 768, 12 layers, MLP 2048, 32k "
        f"vocabulary, tied embeddings), random weights, stored in float32 "
        f"(bench/.cache/llama-110m). LoRA r {LORA['r']}, alpha {LORA['alpha']} on all "
        f"linear layers; batch {BATCH}, max_length {args.max_length}, {args.steps} steps "
        f"(one epoch over {tokens}: lengths evenly from max_length / 8 to max_length), "
        f"seed {SEED}; {args.threads} torch threads, one fresh process per run, "
        f"{args.reps} alternating runs per setup (largest memory and best tokens/s shown); "
        f"{checkout()}, torch {any_run['torch'] if any_run else '?'}.",
        "",
        "Peak RSS increase: getrusage ru_maxrss at the end of the training loop minus the "
        "VmRSS after the imports and a curation pass of the data (loading the base, LoRA, "
        "training and its one evaluation are inside). Tokens/s: non-padding training "
        "tokens / summed step times (forward, backward, optimizer step).",
        "",
        f"Load average (1, 5, 15 min) before {', '.join(f'{x:.1f}' for x in load_before)}, "
        f"after {', '.join(f'{x:.1f}' for x in load_after)}.",
    ]
    return "\n".join(lines), ok


if __name__ == "__main__":
    raise SystemExit(main())
