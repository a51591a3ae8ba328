"""Seeded word-level noise for small datasets (word dropout and neighbour swaps).

Noisy copies are added next to the original training examples. Only the model's input
changes: the prompt of a prompt/completion example (its completion stays the clean
target), the text of a text example, or the system and user contents of a chat example
(its assistant turns stay clean targets; roles and turns are kept). Validation, replay and evaluation data are never
augmented. Each copy's noise depends only on the seed, the copy number and the
example's own text, so runs are reproducible and independent of data order.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import replace

from finetune.config.schema import AugmentationSpec
from finetune.data.examples import Example

_LINE = re.compile(r"^(\s*)(.*?)(\s*)$", re.DOTALL)


def noisy(text: str, rng: random.Random, word_dropout: float, swap: float) -> str:
    """``text`` with words dropped and neighbours swapped, line by line (line breaks and
    the whitespace around each line are kept; words are re-joined by single spaces)."""
    out = []
    for line in text.splitlines(keepends=True):
        body, end = (line[:-1], "\n") if line.endswith("\n") else (line, "")
        match = _LINE.match(body)
        assert match is not None  # the pattern matches any string
        lead, core, trail = match.groups()
        words = core.split()
        if words:
            kept = [w for w in words if rng.random() >= word_dropout]
            if not kept:  # never empty a line
                kept = [words[rng.randrange(len(words))]]
            i = 0
            while i < len(kept) - 1:
                if rng.random() < swap:
                    kept[i], kept[i + 1] = kept[i + 1], kept[i]
                    i += 2
                else:
                    i += 1
            core = " ".join(kept)
        out.append(lead + core + trail + end)
    return "".join(out)


def _rng(seed: int, copy: int, example: Example) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x1f{copy}\x1f{example.key}".encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def _noisy_turn(
    message: tuple[str, str], rng: random.Random, spec: AugmentationSpec
) -> tuple[str, str]:
    role, content = message
    if role == "assistant":
        return message
    return role, noisy(content, rng, spec.word_dropout, spec.swap)


def augment(examples: Sequence[Example], spec: AugmentationSpec) -> list[Example]:
    """The examples followed by ``spec.copies`` noisy copies of each."""
    copies = []
    for copy in range(spec.copies):
        for ex in examples:
            rng = _rng(spec.seed, copy, ex)
            if ex.is_chat:
                new = replace(ex, messages=tuple(_noisy_turn(m, rng, spec) for m in ex.messages))
            elif ex.prompt:
                new = replace(ex, prompt=noisy(ex.prompt, rng, spec.word_dropout, spec.swap))
            else:
                new = replace(ex, target=noisy(ex.target, rng, spec.word_dropout, spec.swap))
            copies.append(replace(new, augmented=True))
    return [*examples, *copies]
