"""This harness vs lm-evaluation-harness on the same model, data and batch size.

Builds (once, cached in bench/.cache) a GPT-2-style model of about 20M parameters with a
BPE tokenizer trained on SST-2 train, then runs three tasks through both tools, each
run a cold end-to-end process (imports, loading, scoring, writing), alternating:

* classification: SST-2 dev (872 examples x 2 choices), scored by log-likelihood;
* perplexity: the XSum sample documents (rolling log-likelihood, windows);
* generation: the WMT16 en-ro sample sources, greedy, 32 new tokens, stop at newline.

It checks that accuracy, bits per byte and word perplexity agree within 1e-4 and
reports wall-time and peak-RSS ratios (harness / lm-eval). The harness runs with an
empty response cache, so its numbers are cold. Targets (issue 7): wall <= 0.33x,
peak RSS <= 1.0x.

    .venv/bin/python bench/eval_vs_lmeval.py [--reps 2] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import REALDATA, python, run_timed, write_section  # noqa: E402
from tests.lmeval_peer import (  # noqa: E402
    OFFLINE_ENV,
    write_jsonl,
    write_multiple_choice_task,
    write_rolling_task,
)

CACHE = Path(__file__).resolve().parent / ".cache"
PROMPT = "Review: {{ sentence }}\nSentiment:"
CHOICES = [" negative", " positive"]


def build_model(folder: Path) -> Path:
    """GPT-2 (n_embd 384, 6 layers, 16k BPE vocab), random weights, seed 0."""
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    lines = (REALDATA / "sst2" / "train.tsv").read_text().splitlines()[1:]
    texts = [line.rsplit("\t", 1)[0] for line in lines]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=16000,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(fast),
        n_positions=256,
        n_embd=384,
        n_layer=6,
        n_head=6,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def write_inputs(work: Path, model: Path, batch_size: int) -> tuple[Path, Path, list[str]]:
    """Data files, the harness suite and the lm-eval task folder."""
    data = work / "data"
    sst = [
        {"sentence": line.rsplit("\t", 1)[0], "label": int(line.rsplit("\t", 1)[1])}
        for line in (REALDATA / "sst2" / "dev.tsv").read_text().splitlines()[1:]
    ]
    docs = [
        json.loads(x)
        for x in (REALDATA / "xsum_sample" / "sample.json").read_text().splitlines()
        if x
    ]
    src = (REALDATA / "wmt16_en_ro_sample" / "test.source").read_text().splitlines()
    tgt = (REALDATA / "wmt16_en_ro_sample" / "test.target").read_text().splitlines()
    write_jsonl(data / "sst2.jsonl", sst)
    write_jsonl(data / "xsum.jsonl", [{"document": d["document"]} for d in docs])
    write_jsonl(
        data / "wmt.jsonl", [{"source": s, "target": t} for s, t in zip(src, tgt, strict=True)]
    )
    tasks = work / "lmeval_tasks"
    write_multiple_choice_task(
        tasks,
        "bench_sst2",
        data / "sst2.jsonl",
        doc_to_text=PROMPT.replace("{{ sentence }}", "{{sentence}}"),
        choices=CHOICES,
        target="label",
    )
    write_rolling_task(tasks, "bench_xsum", data / "xsum.jsonl", text_field="document")
    gen = {
        "task": "bench_wmt",
        "dataset_path": "json",
        "dataset_kwargs": {
            "data_files": {"test": str(data / "wmt.jsonl")},
            "cache_dir": str(work / "hf"),
        },
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{source}}\nTranslation:",
        "doc_to_target": "{{target}}",
        "target_delimiter": "",
        "num_fewshot": 0,
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": 32, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }
    import yaml

    (tasks / "bench_wmt.yaml").write_text(yaml.safe_dump(gen))
    suite = work / "suite.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "name": "bench",
                "model": {"path": str(model), "device": "cpu"},  # as lm-eval: --device cpu
                "batch_size": batch_size,
                "bootstrap": {"samples": 0},
                "tasks": [
                    {
                        "id": "sst2",
                        "kind": "classification",
                        "data": str(data / "sst2.jsonl"),
                        "prompt": PROMPT,
                        "choices": CHOICES,
                        "label": "label",
                        "metrics": ["accuracy"],
                    },
                    {
                        "id": "xsum",
                        "kind": "perplexity",
                        "data": str(data / "xsum.jsonl"),
                        "text": "document",
                        "metrics": ["perplexity", "bits_per_byte", "word_perplexity"],
                    },
                    {
                        "id": "wmt",
                        "kind": "generation",
                        "data": str(data / "wmt.jsonl"),
                        "prompt": "{{ source }}\nTranslation:",
                        "reference": "target",
                        "max_new_tokens": 32,
                        "stop": ["\n"],
                        "metrics": ["exact_match"],
                    },
                ],
            },
            sort_keys=False,
        )
    )
    return suite, tasks, ["bench_sst2", "bench_xsum", "bench_wmt"]


def lmeval_results(out: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    result_file = max(out.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    results = json.loads(result_file.read_text())["results"]
    samples = {}
    for path in out.rglob("samples_*.jsonl"):
        name = path.name.split("samples_", 1)[1].rsplit("_", 1)[0]
        samples[name] = [json.loads(x) for x in path.read_text().splitlines() if x]
    return results, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-readme", action="store_true", help="do not update bench/README.md")
    args = parser.parse_args()
    if not REALDATA.is_dir():
        print("skipped: ../shared/realdata is absent")
        return 0
    model = build_model(CACHE / "gpt2-20m")
    # Bytecode for this project's own modules, as lm-eval's come from pip: an editable
    # install leaves none, and with PYTHONDONTWRITEBYTECODE set (as on this machine)
    # every run would compile the harness's ~100 modules again (about 0.2 s)
    import compileall

    root = Path(__file__).resolve().parents[1]
    for package in ("harness", "finetune"):
        compileall.compile_dir(root / package, quiet=1)
    work = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    suite, task_dir, task_names = write_inputs(work, model, args.batch_size)
    env = {**OFFLINE_ENV, "HF_DATASETS_CACHE": str(work / "hf")}
    # what both tools pay before scoring anything: a Python process that imports torch and
    # transformers and loads this model and tokenizer (the floor under either wall time)
    floor_code = (
        "import torch, transformers; "
        "from transformers import AutoModelForCausalLM, AutoTokenizer; "
        f"AutoModelForCausalLM.from_pretrained({str(model)!r}); "
        f"AutoTokenizer.from_pretrained({str(model)!r})"
    )
    ours, peer, floor = [], [], []
    for rep in range(args.reps):
        out_h = work / f"harness-{rep}"
        t_h = run_timed(
            [python(), "-m", "harness", "run", str(suite), "--out", str(out_h), "--no-progress"],
            env={**env, "HARNESS_CACHE_DIR": str(work / f"cache-{rep}")},
        )
        out_l = work / f"lmeval-{rep}"
        t_l = run_timed(
            [
                python(),
                "-m",
                "lm_eval",
                "run",
                "--model",
                "hf",
                "--model_args",
                f"pretrained={model},dtype=float32",
                "--tasks",
                ",".join(task_names),
                "--include_path",
                str(task_dir),
                "--batch_size",
                str(args.batch_size),
                "--device",
                "cpu",
                "--output_path",
                str(out_l),
                "--log_samples",
            ],
            env=env,
        )
        t_f = run_timed([python(), "-c", floor_code], env=env)
        ours.append(t_h)
        peer.append(t_l)
        floor.append(t_f)
        print(
            f"rep {rep}: harness {t_h.wall_s:.1f}s {t_h.peak_rss_mb:.0f}MB | "
            f"lm-eval {t_l.wall_s:.1f}s {t_l.peak_rss_mb:.0f}MB | "
            f"start-up floor {t_f.wall_s:.1f}s"
        )
    # re-runs of the same suite on the last cold run's response cache: nothing to compute
    # (as many as the cold runs, median, each into a fresh output folder)
    last = args.reps - 1
    warms = [
        run_timed(
            [
                python(),
                "-m",
                "harness",
                "run",
                str(suite),
                "--out",
                str(work / f"warm-{rep}"),
                "--no-progress",
            ],
            env={**env, "HARNESS_CACHE_DIR": str(work / f"cache-{last}")},
        )
        for rep in range(args.reps)
    ]
    warm_s = statistics.median(w.wall_s for w in warms)
    cold_s = statistics.median(o.wall_s for o in ours)
    warm_ratio = warm_s / cold_s
    cold_doc = json.loads((work / f"harness-{last}" / "results.json").read_text())
    warm_doc = json.loads((work / f"warm-{last}" / "results.json").read_text())
    hits = warm_doc["provenance"]["cache"]
    same_warm = cold_doc["tasks"] == warm_doc["tasks"]
    print(
        f"re-run on the cache: {warm_s:.2f}s (median of {args.reps}) = {warm_ratio:.3f}x "
        "the cold run "
        f"(target <= 0.05); cache {hits}; tasks identical: {same_warm}"
    )
    mine = cold_doc["tasks"]
    theirs, samples = lmeval_results(work / f"lmeval-{args.reps - 1}")
    checks = {
        "accuracy": (
            mine["sst2"]["metrics"]["accuracy"]["value"],
            theirs["bench_sst2"]["acc,none"],
        ),
        "bits_per_byte": (
            mine["xsum"]["metrics"]["bits_per_byte"]["value"],
            theirs["bench_xsum"]["bits_per_byte,none"],
        ),
        "word_perplexity": (
            mine["xsum"]["metrics"]["word_perplexity"]["value"],
            theirs["bench_xsum"]["word_perplexity,none"],
        ),
    }
    ok = True
    for name, (a, b) in checks.items():
        same = abs(a - b) <= 1e-4 * max(1.0, abs(b))
        ok &= same
        print(f"{name}: harness {a:.6f} lm-eval {b:.6f} {'ok' if same else 'MISMATCH'}")
    gens_ours = [r["prediction"] for r in mine["wmt"]["records"]]
    gens_peer = [
        s["filtered_resps"][0]
        for s in sorted(samples.get("bench_wmt", []), key=lambda s: s["doc_id"])
    ]
    same_gen = sum(a == b for a, b in zip(gens_ours, gens_peer, strict=False))
    print(f"generations identical: {same_gen}/{len(gens_ours)}")
    wall = statistics.median(o.wall_s for o in ours) / statistics.median(p.wall_s for p in peer)
    rss = max(o.peak_rss_mb for o in ours) / max(p.peak_rss_mb for p in peer)
    floor_s = statistics.median(f.wall_s for f in floor)
    ours_s = statistics.median(o.wall_s for o in ours)
    peer_s = statistics.median(p.wall_s for p in peer)
    beyond = (ours_s - floor_s) / (peer_s - floor_s)
    timings = cold_doc["provenance"]["timings"]
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in timings["tasks"].items())
    print(f"wall-time ratio harness/lm-eval: {wall:.3f} (target <= 0.33)")
    print(f"beyond the {floor_s:.1f}s start-up floor: {beyond:.3f}")
    print(f"peak-RSS ratio harness/lm-eval: {rss:.3f} (target <= 1.0)")
    body = "\n".join(
        [
            "| measure | harness | lm-eval | ratio | target |",
            "|---|---|---|---|---|",
            f"| wall time, median of {args.reps} cold runs (s) | {statistics.median(o.wall_s for o in ours):.1f} | "
            f"{statistics.median(p.wall_s for p in peer):.1f} | {wall:.3f} | <= 0.33 |",
            f"| wall time beyond the start-up floor (s) | {ours_s - floor_s:.1f} | "
            f"{peer_s - floor_s:.1f} | {beyond:.3f} | |",
            f"| peak RSS (MB) | {max(o.peak_rss_mb for o in ours):.0f} | {max(p.peak_rss_mb for p in peer):.0f} | {rss:.3f} | <= 1.0 |",
            f"| re-run of the same suite on its cache, median of {args.reps} (s) | "
            f"{warm_s:.2f} | | "
            f"{warm_ratio:.3f} of the cold run | <= 0.05 |",
            "",
            "Agreement: "
            + ", ".join(f"{k} {a:.6f} vs {b:.6f}" for k, (a, b) in checks.items())
            + f"; identical generations {same_gen}/{len(gens_ours)}.",
            "",
            "The project's modules are byte-compiled first (compileall), as pip does for "
            "lm-eval's; this machine sets PYTHONDONTWRITEBYTECODE, so no run writes them. "
            f"Start-up floor: {floor_s:.1f} s (median) for a Python process that imports torch "
            "and transformers and loads this model and tokenizer, which either tool pays "
            "before it scores anything. The harness's last cold run, by its own provenance: "
            f"{phases} (the first task includes {timings['load_s']:.1f} s of importing and "
            "loading the model), writing and exit the rest.",
        ]
    )
    if not args.no_readme:
        write_section(
            "eval_vs_lmeval", body, "python bench/eval_vs_lmeval.py " + " ".join(sys.argv[1:])
        )
    return 0 if ok and same_warm else 1


if __name__ == "__main__":
    raise SystemExit(main())
