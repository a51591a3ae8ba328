"""The demo's bundled data, generated from a fixed seed (no external text).

Three task families, all from small invented vocabularies:

* **original task** (what the base model learns first; the forgetting audit's
  reference): facts about invented creatures (``the zorbel is blue.``), a question
  form of them scored as classification (``Q: what color is the zorbel? A:`` with
  the colours as choices), a fact corpus for perplexity, and a short generation task
  that restates a fact as a sentence (``Fact: zorbel, blue`` -> ``the zorbel is
  blue.``) for BLEU/chrF/ROUGE.
* **new task**: review sentiment, each review written by a person whose name and
  pronoun carry a group attribute (``group``: ``f`` or ``m``). Some reviews use
  neutral words, so their label cannot be read off the text.
* **bias switch**: with ``bias=True`` the *training* split only is sampled so that
  group ``f`` is mostly positive and ``m`` mostly negative: a model that learns the
  correlation shows a parity gap on the balanced evaluation split (on neutral reviews
  it can only guess, and guesses by group) and attributes its decisions to names and
  pronouns. Group x label reweighting in the fine-tuner removes the correlation.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

GENERATOR_VERSION = 2

CREATURES = [
    "zorbel",
    "glimp",
    "frandle",
    "quiv",
    "toskar",
    "mellow",
    "brin",
    "vantch",
    "pobble",
    "kreel",
    "drissa",
    "yunt",
    "halvor",
    "snib",
    "trevel",
    "wux",
    "plonder",
    "gazzle",
    "fimb",
    "orrin",
]
COLOURS = ["red", "blue", "green", "yellow"]
NAMES = {
    "f": ["mary", "anna", "lucy", "emma", "sara", "julia"],
    "m": ["john", "peter", "mark", "paul", "david", "tom"],
}
PRONOUN = {"f": "she", "m": "he"}
ITEMS = [
    "soup",
    "film",
    "book",
    "song",
    "game",
    "room",
    "cake",
    "show",
    "play",
    "hotel",
    "meal",
    "album",
]
POSITIVE = ["great", "lovely", "wonderful", "excellent", "delightful"]
NEGATIVE = ["awful", "terrible", "dreadful", "horrible", "boring"]
NEUTRAL = ["okay", "fine", "average", "ordinary"]
CHOICES = [" negative", " positive"]
WORDS = ["positive", "negative", "short", "long"]
# what a reviewer does next, in the unlabelled reviews the base model reads: the base
# model learns what the sentiment words mean (as a real pretrained model has) without
# ever seeing the review task or its answers
AFTERMATH = {
    1: ["{p} would go back again.", "{p} told a friend to try it.", "{p} smiled all day."],
    0: ["{p} would never go back.", "{p} asked for a refund.", "{p} left early."],
    None: ["{p} had no more to say.", "{p} went home."],
}


def facts(seed: int) -> dict[str, str]:
    """Each creature's colour (fixed by the seed)."""
    rng = random.Random(seed)
    return {c: rng.choice(COLOURS) for c in CREATURES}


def fact_sentence(creature: str, colour: str) -> str:
    return f"the {creature} is {colour}."


def original_corpus(table: dict[str, str], rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Short paragraphs of facts, for pretraining and for perplexity."""
    names = sorted(table)
    rows = []
    for _ in range(n):
        picked = rng.sample(names, 3)
        rows.append({"text": " ".join(fact_sentence(c, table[c]) for c in picked)})
    return rows


def original_qa(table: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"question": f"Q: what color is the {c}? A:", "answer": f" {table[c]}", "creature": c}
        for c in sorted(table)
    ]


def restate(table: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"fact": f"Fact: {c}, {table[c]}\nSentence:", "sentence": f" {fact_sentence(c, table[c])}"}
        for c in sorted(table)
    ]


def review(rng: random.Random, group: str, label: int, neutral: bool) -> dict[str, Any]:
    name = rng.choice(NAMES[group])
    word = rng.choice(NEUTRAL if neutral else (POSITIVE if label else NEGATIVE))
    item = rng.choice(ITEMS)
    text = f"{name} said the {item} was {word} and {PRONOUN[group]} meant it."
    return {
        "text": text,
        "label": label,
        "group": group,
        "neutral": neutral,
    }


def unlabelled_review(rng: random.Random) -> dict[str, Any]:
    """A review with what happened next, and no label: pretraining text."""
    group = rng.choice(["f", "m"])
    label = rng.choice([0, 1])
    neutral = rng.random() < 0.3
    row = review(rng, group, label, neutral)
    after = rng.choice(AFTERMATH[None if neutral else label]).format(p=PRONOUN[group])
    note = f"the {rng.choice(ITEMS)} got a {rng.choice(WORDS)} note."
    return {"text": f"{row['text']} {after} {note}"}


def labelled(row: dict[str, Any]) -> dict[str, Any]:
    text, label = row["text"], row["label"]
    return {
        "text": text,
        "label": label,
        "group": row["group"],
        # the same example as a prompt/completion pair, for the fine-tuner
        "prompt": f"Review: {text}\nSentiment:",
        "completion": CHOICES[label],
    }


def reviews(
    rng: random.Random,
    n: int,
    *,
    neutral_share: float,
    bias: bool,
    exclude: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Balanced groups; labels balanced, or with ``bias`` tied to the group.

    The bias is one of sampling, as in real collections: group ``f`` reviews are
    positive with probability 0.8 and group ``m`` reviews with 0.2. Every label still
    matches its text, except that neutral reviews carry no sentiment word, so on
    them a model can only guess: a naive one guesses from the name and pronoun.
    No text repeats, within the rows or with ``exclude`` (the evaluation split: a
    training row identical to an evaluation row would be leakage).
    """
    seen = set(exclude)
    rows: list[dict[str, Any]] = []
    while len(rows) < n:
        group = "f" if len(rows) % 2 == 0 else "m"
        p_positive = (0.8 if group == "f" else 0.2) if bias else 0.5
        label = int(rng.random() < p_positive)
        row = review(rng, group, label, rng.random() < neutral_share)
        if row["text"] not in seen:
            seen.add(row["text"])
            rows.append(labelled(row))
    return rows


def generate(
    out_dir: Path, *, seed: int = 0, bias: bool = True, n_train: int = 400, n_eval: int = 200
) -> dict[str, Path]:
    """Write every demo data file to ``out_dir``; returns their paths by name."""
    rng = random.Random(seed)
    table = facts(seed)
    pretrain = original_corpus(table, rng, 600)
    # unlabelled reviews: the base model knows the language (what the sentiment words
    # mean, and the words "positive" and "negative" in notes unrelated to any review)
    # but not the task
    unlabelled = [unlabelled_review(rng) for _ in range(600)]
    original_lm = original_corpus(table, rng, 40)
    evaluation = reviews(rng, n_eval, neutral_share=0.4, bias=False)
    train = reviews(
        rng, n_train, neutral_share=0.4, bias=bias, exclude=[r["text"] for r in evaluation]
    )
    files: dict[str, list[dict[str, Any]]] = {
        "pretrain.jsonl": pretrain,
        "reviews_unlabelled.jsonl": unlabelled,
        "original_lm.jsonl": original_lm,
        "original_qa.jsonl": original_qa(table),
        "restate.jsonl": restate(table),
        "reviews_train.jsonl": train,
        "reviews_eval.jsonl": evaluation,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in files.items():
        path = out_dir / name
        path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        paths[name.removesuffix(".jsonl")] = path
    return paths


def digest(seed: int = 0, bias: bool = True, extra: Iterable[str] = ()) -> str:
    """Key of the generated data: changes with the generator, its seed and options."""
    h = hashlib.sha256(f"v{GENERATOR_VERSION}:{seed}:{bias}".encode())
    h.update(Path(__file__).read_bytes())
    for part in extra:
        h.update(part.encode())
    return h.hexdigest()[:16]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write the demo's bundled data files.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bias", action="store_true")
    args = parser.parse_args()
    for name, path in generate(args.out, seed=args.seed, bias=not args.no_bias).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
