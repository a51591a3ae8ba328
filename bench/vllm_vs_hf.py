"""Backend vllm against backend hf: the same suite on the same weights, on a GPU.

Writes a suite of three tasks over built-in rows (made here, nothing downloaded):

* classification: "is A greater than B?" yes/no questions, scored by log-likelihood;
* perplexity: generated sentences (rolling log-likelihood);
* generation: greedy continuations of counting and copying prompts, stop at newline;

then runs it twice as cold `harness run` processes, once with `backend: hf` (device
cuda) and once with `backend: vllm`, with the response cache off, an optional LoRA
adapter on both, and prints the agreement (max |Δ log-likelihood| over every scored
choice and text, the share of identical classification predictions and of identical
generations) and the speed ratio (examples per second of task time, vllm / hf; the wall
times with loading are printed too).

Both runs score in the same window: the hf suite sets `max_length: L`, the vllm suite
`L + 2` (vLLM keeps two positions of its window free, docs/backends.md). Agreement is
tightest in float32; bfloat16 (the default, as deployed) differs in the last bits of
each kernel, and a near-tie between two choices or two next tokens may then flip.

    python bench/vllm_vs_hf.py --model Qwen/Qwen2.5-0.5B [--adapter runs/x] [--rows 300]
    python bench/vllm_vs_hf.py --model ./base --dry-run   # write the suites, print commands

Needs a CUDA GPU and `pip install 'llm-release-harness[vllm]'`; without either it says
so and stops (exit 2) before anything runs.
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

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".cache" / "vllm_vs_hf"
NOUNS = ["river", "teacher", "engine", "garden", "letter", "market", "window", "signal"]
ADJECTIVES = ["quiet", "bright", "heavy", "early", "narrow", "careful", "distant", "simple"]
VERBS = ["follows", "repairs", "watches", "carries", "describes", "finds", "opens", "moves"]
PLACES = ["station", "harbour", "library", "bridge", "village", "factory", "school", "forest"]
WORDS = ["apple", "orange", "planet", "silver", "monday", "yellow", "window", "garden"]


def rows(n: int, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """The built-in rows of the three tasks (``n`` classification rows; perplexity and
    generation get two thirds of that each), the same for every ``seed``."""
    rng = random.Random(seed)
    classify = []
    for i in range(n):
        a, b = rng.sample(range(1, 1000), 2)
        classify.append({"id": f"c{i}", "a": a, "b": b, "label": 0 if a > b else 1})
    texts = []
    for i in range(max(1, 2 * n // 3)):
        sentences = [
            f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(VERBS)} the "
            f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} near the {rng.choice(PLACES)}."
            for _ in range(rng.randint(2, 12))
        ]
        texts.append({"id": f"p{i}", "text": " ".join(sentences)})
    generate = []
    for i in range(max(1, 2 * n // 3)):
        if i % 2:
            start = rng.randint(1, 80)
            prompt = f"Count on: {', '.join(str(k) for k in range(start, start + 4))},"
            target = ", ".join(str(k) for k in range(start + 4, start + 10))
        else:
            words = rng.sample(WORDS, 4)
            prompt = f"Copy the words: {' '.join(words)}\nCopy:"
            target = " ".join(words)
        generate.append({"id": f"g{i}", "prompt": prompt, "target": target})
    return {"classify": classify, "text": texts, "generate": generate}


def write_suites(args: argparse.Namespace) -> dict[str, Path]:
    """The data files and the two suites (hf, vllm) under ``args.work``."""
    import yaml

    work: Path = args.work
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, items in rows(args.rows).items():
        with open(data / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for item in items:
                fh.write(json.dumps(item) + "\n")
    model_path = args.model
    if Path(model_path).expanduser().is_dir():
        model_path = str(Path(model_path).expanduser().resolve())
    tasks = [
        {
            "id": "compare",
            "kind": "classification",
            "data": str(data / "classify.jsonl"),
            "id_field": "id",
            "prompt": "Question: is {{ a }} greater than {{ b }}?\nAnswer:",
            "choices": [" yes", " no"],
            "label": "label",
            "metrics": ["accuracy"],
        },
        {
            "id": "text",
            "kind": "perplexity",
            "data": str(data / "text.jsonl"),
            "id_field": "id",
            "text": "text",
            "metrics": ["perplexity", "bits_per_byte"],
        },
        {
            "id": "continue",
            "kind": "generation",
            "data": str(data / "generate.jsonl"),
            "id_field": "id",
            "prompt": "{{ prompt }}",
            "reference": "target",
            "max_new_tokens": args.max_new_tokens,
            "stop": ["\n"],
            "metrics": ["exact_match"],
        },
    ]
    suites = {}
    for backend in ("hf", "vllm"):
        model: dict[str, Any] = {"path": model_path, "dtype": args.dtype, "backend": backend}
        if args.adapter:
            model["adapter"] = str(Path(args.adapter).expanduser().resolve())
        if backend == "hf":
            model.update(device="cuda", max_length=args.max_length)
        else:
            model.update(
                max_length=args.max_length + 2,
                vllm={"gpu_memory_utilization": args.gpu_memory_utilization},
            )
        suite = {
            "schema_version": 1,
            "name": f"vllm-vs-hf-{backend}",
            "model": model,
            "batch_size": args.batch_size,
            "cache": False,
            "bootstrap": {"samples": 0},
            "tasks": tasks,
        }
        path = work / f"suite-{backend}.yaml"
        path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
        suites[backend] = path
    return suites


def command(suite: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "harness", "run", str(suite), "--out", str(out)]


def preflight() -> str | None:
    """Why this machine cannot run the comparison (None: it can)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed: install the harness first (pip install -e .)"
    if not torch.cuda.is_available():
        return "no CUDA GPU here: vLLM runs on a GPU (see the commands with --dry-run)"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed: pip install 'llm-release-harness[vllm]'"
    return None


def compare(hf: dict[str, Any], vl: dict[str, Any]) -> dict[str, Any]:
    """Agreement and speed of two results.json of the suite."""
    deltas: list[float] = []
    pairs = {tid: (hf["tasks"][tid]["records"], vl["tasks"][tid]["records"]) for tid in hf["tasks"]}
    a, b = pairs["compare"]
    for x, y in zip(a, b, strict=True):
        deltas += [abs(p - q) for p, q in zip(x["loglik"], y["loglik"], strict=True)]
    same_pred = sum(x["pred"] == y["pred"] for x, y in zip(a, b, strict=True)) / len(a)
    a, b = pairs["text"]
    deltas += [abs(x["loglik"] - y["loglik"]) for x, y in zip(a, b, strict=True)]
    a, b = pairs["continue"]
    same_text = sum(x["prediction"] == y["prediction"] for x, y in zip(a, b, strict=True)) / len(a)
    n = sum(len(t["records"]) for t in hf["tasks"].values())

    def rate(results: dict[str, Any]) -> float:
        return n / max(1e-9, sum(results["provenance"]["timings"]["tasks"].values()))

    return {
        "examples": n,
        "max_abs_delta_loglik": max(deltas),
        "same_predictions": same_pred,
        "identical_generations": same_text,
        "hf_examples_per_s": rate(hf),
        "vllm_examples_per_s": rate(vl),
        "speed_ratio": rate(vl) / rate(hf),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The same suite through backend hf and backend vllm: agreement and speed.",
        epilog="Needs a CUDA GPU and the vllm extra; --dry-run needs neither.",
    )
    parser.add_argument("--model", required=True, help="base model: a local folder or hub id")
    parser.add_argument("--adapter", help="a LoRA adapter folder (peft) on the base, both runs")
    parser.add_argument("--rows", type=int, default=300, help="classification rows (default 300)")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--max-length", type=int, default=1024, help="scoring window in tokens")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32, help="the hf backend's batch")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.6)
    parser.add_argument("--work", type=Path, default=WORK, help=f"output folder (default {WORK})")
    parser.add_argument(
        "--dry-run", action="store_true", help="write the suites and print the commands only"
    )
    args = parser.parse_args(argv)
    suites = write_suites(args)
    outs = {backend: args.work / f"out-{backend}" for backend in suites}
    commands = {b: command(suites[b], outs[b]) for b in suites}
    if args.dry_run:
        print(f"suites and data written under {args.work}; the comparison runs:")
        for cmd in commands.values():
            print("  " + shlex.join(cmd))
        return 0
    problem = preflight()
    if problem is not None:
        print(f"vllm_vs_hf: {problem}", file=sys.stderr)
        return 2
    wall = {}
    for backend, cmd in commands.items():
        print(f"[{backend}] {shlex.join(cmd)}", flush=True)
        t = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, check=False)
        wall[backend] = time.perf_counter() - t
        if done.returncode not in (0, 1):  # 1: a gate failed (the suite has none)
            print(f"vllm_vs_hf: the {backend} run failed (exit {done.returncode})", file=sys.stderr)
            return done.returncode
    results = {b: json.loads((outs[b] / "results.json").read_text(encoding="utf-8")) for b in outs}
    figures = compare(results["hf"], results["vllm"])
    figures.update(hf_wall_s=wall["hf"], vllm_wall_s=wall["vllm"])
    print(f"examples:                    {figures['examples']}")
    print(f"max |delta log-likelihood|:  {figures['max_abs_delta_loglik']:.3g}")
    print(f"same predictions:            {100 * figures['same_predictions']:.1f}%")
    print(f"identical generations:       {100 * figures['identical_generations']:.1f}%")
    print(
        f"examples/s (task time):      hf {figures['hf_examples_per_s']:.1f}, "
        f"vllm {figures['vllm_examples_per_s']:.1f}: vllm/hf = {figures['speed_ratio']:.2f}x"
    )
    print(f"wall with loading:           hf {wall['hf']:.1f} s, vllm {wall['vllm']:.1f} s")
    (args.work / "figures.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
