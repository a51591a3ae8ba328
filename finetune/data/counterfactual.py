"""Counterfactual data augmentation: every training example again with its group terms
swapped.

For each training example whose input names a group term (a pronoun, a first name...),
a copy is added with every term replaced by its counterpart, in both directions ("she"
and "he" trade places), with the same completion (Lu et al. 2020, "Gender Bias in Neural
Natural Language Processing"; Zmigrod et al. 2019, "Counterfactual Data Augmentation for
Mitigating Gender Stereotypes"). After it, each term appears with each label as often as
its counterpart does, so the terms carry no information about the label and a model has
nothing to gain from them. Reweighting only balances the cells on average, which leaves
examples without any other cue (a neutral review) at the decision boundary, where a
slight lean on the name decides every one of them; the mirrored copies remove the lean.

The swaps are the fairness audit's (harness.sensitive.group_terms): whole words, case
kept. Only the model's input changes (the prompt of a prompt/completion example; the
text of a text example, which is also its target), except in a chat example: there
every message's content is swapped, the assistant turns included, since an answer
that names the person asked about ("she said...") must follow the swapped question;
roles and turns are kept. A copy keeps its original's fields
and loss weight (so reweighted cells stay balanced) and is named ``FILE (swapped) line
N`` in messages. A copy that would overlap the evaluation data (by the leakage check's
rule) is dropped: augmentation must not create leakage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from finetune.config.schema import CounterfactualSpec, LeakageSpec
from finetune.data.examples import Example
from finetune.data.leakage import check_leakage
from harness.sensitive.group_terms import compile_swaps, swap_table, swap_terms

SWAPPED = "{file} (swapped)"


def swapped_copies(examples: Sequence[Example], spec: CounterfactualSpec) -> list[Example]:
    """The swapped copy of each example the swaps change (in the examples' order)."""
    table = swap_table(spec.swaps, bidirectional=True)
    pattern = compile_swaps(table)
    copies = []
    for ex in examples:
        if ex.is_chat:
            swapped = tuple((r, swap_terms(c, table, pattern)) for r, c in ex.messages)
            new = replace(ex, messages=swapped)
        elif ex.prompt:
            new = replace(ex, prompt=swap_terms(ex.prompt, table, pattern))
        else:
            new = replace(ex, target=swap_terms(ex.target, table, pattern))
        if new.key != ex.key:
            copies.append(replace(new, file=SWAPPED.format(file=ex.file), augmented=True))
    return copies


def augment_counterfactual(
    examples: Sequence[Example],
    spec: CounterfactualSpec,
    eval_paths: Sequence[str],
    leakage: LeakageSpec,
) -> tuple[list[Example], dict[str, Any]]:
    """(the examples followed by their kept swapped copies, the report)."""
    copies = swapped_copies(examples, spec)
    check = check_leakage(copies, eval_paths, n=leakage.ngram, threshold=leakage.threshold)
    leaking = {leak.train for leak in check.leaks}
    kept = [ex for ex in copies if ex.where not in leaking]
    report = {
        "swaps": dict(spec.swaps),
        "originals": len(examples),
        "unchanged": len(examples) - len(copies),
        "added": len(kept),
        "dropped_leaking": len(copies) - len(kept),
    }
    return [*examples, *kept], report
