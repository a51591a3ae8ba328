"""Everything that happens to the data before training, in order, with its report.

1. load the training rows (bad rows: one error listing each ``FILE line N``) and scan
   them for personal data: report, redact or refuse (``curation.pii``; every other data
   set is scanned as it is loaded);
2. remove exact and normalized duplicates;
3. check the examples meant for training (before the validation split, so the count
   does not depend on it) and the replay data for leakage into the evaluation data;
   ``fail_on_leakage`` makes a leak an error, ``curation.leakage.drop`` removes them;
4. take the validation data (a file, or a seeded split of what is left) and drop
   validation rows that repeat a training row;
5. group reweighting, then counterfactual copies (group terms swapped), then noisy
   copies (copies inherit their original's weight, so the cells stay balanced);
6. the training examples recorded for the extraction test, then the canaries
   (``memorization``; finetune.data.privacy).

The report (counts, and the removed examples listed) goes into the manifest.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from finetune.config.schema import FinetuneConfig
from finetune.data.augment import augment
from finetune.data.counterfactual import augment_counterfactual
from finetune.data.examples import (
    Example,
    dedup,
    drop_overlap,
    load_examples,
    source_name,
    split_validation,
    with_weights,
)
from finetune.data.leakage import check_leakage
from finetune.data.privacy import PIIReport, canaries, canary_rows, extraction_sample, scan_pii
from finetune.data.reweight import balance_weights
from harness.errors import UserError

NO_TRAINING = "no training examples are left after curation"
NO_VALIDATION = "no validation examples are left after curation"


@dataclass
class Curated:
    """The curated data sets and the curation report."""

    train: list[Example]
    validation: list[Example]
    replay: list[Example] = field(default_factory=list)
    ewc: list[Example] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    memorization: dict[str, Any] = field(default_factory=dict)
    """Canaries and training examples for the privacy audit (manifest ``memorization``)."""


def curate(
    config: FinetuneConfig, eval_paths: Sequence[str] = (), *, fail_on_leakage: bool = False
) -> Curated:
    """Load and curate the data of ``config`` (see the module docstring)."""
    d = config.data
    names = (d.prompt_field, d.completion_field, d.text_field)
    chat = d.messages_field
    pii = PIIReport(config.curation.pii)
    loaded = scan_pii(load_examples(d.train, names, chat), "train", pii)
    report: dict[str, Any] = {"train_rows": len(loaded)}
    train = loaded
    if config.curation.dedup:
        train, removed = dedup(loaded)
        report["duplicates"] = removed.as_dict()
    af = config.anti_forgetting
    replay = (
        scan_pii(load_examples(af.replay.data, names, chat), "replay", pii) if af.replay else []
    )
    spec = config.curation.leakage
    leakage = check_leakage([*train, *replay], eval_paths, n=spec.ngram, threshold=spec.threshold)
    if leakage.leaks and fail_on_leakage:
        raise leakage.error()
    if leakage.leaks and spec.drop:
        leaking = {leak.train for leak in leakage.leaks}
        before = len(train) + len(replay)
        train = [ex for ex in train if ex.where not in leaking]
        replay = [ex for ex in replay if ex.where not in leaking]
        leakage.dropped = before - len(train) - len(replay)
    report["leakage"] = leakage.as_dict()

    if d.validation is not None:
        validation = scan_pii(load_examples([d.validation], names, chat), "validation", pii)
        report["validation_rows"] = len(validation)
    else:
        where = ", ".join(source_name(s) for s in d.train)
        train, validation = split_validation(train, d.holdout, config.training.seed, where)
        report["validation_split"] = {"fraction": d.holdout, "seed": config.training.seed}
    if config.curation.dedup:
        validation, overlap = drop_overlap(validation, train)
        report["validation_overlap"] = {"removed": len(overlap), "listed": overlap[:50]}
    if not validation:
        raise UserError(NO_VALIDATION)
    if not train:
        raise UserError(NO_TRAINING)

    rw = config.fairness.reweight
    if rw is not None:
        weights, report["reweight"] = balance_weights(train, rw.group, rw.label)
        train = with_weights(train, weights)
    cf = config.fairness.counterfactual
    if cf is not None:
        train, report["counterfactual"] = augment_counterfactual(train, cf, eval_paths, spec)
    if config.augmentation is not None:
        n = len(train)
        train = augment(train, config.augmentation)
        report["augmentation"] = {"originals": n, "added": len(train) - n}

    ewc: list[Example] = []
    if af.ewc is not None:
        pool = scan_pii(load_examples(af.ewc.data, names, chat), "ewc", pii)
        order = list(range(len(pool)))
        random.Random(config.training.seed).shuffle(order)
        ewc = [pool[i] for i in sorted(order[: af.ewc.samples])]
        report["ewc_examples"] = len(ewc)
    if af.replay is not None:
        report["replay_pool"] = len(replay)
    report["pii"] = pii.as_dict()

    mem = config.memorization
    memorization: dict[str, Any] = {
        "extraction_examples": extraction_sample(
            train, mem.extraction_examples, config.training.seed
        ),
        "canaries": canaries(mem.canaries) if mem.canaries is not None else None,
    }
    if memorization["canaries"] is not None:
        rows = canary_rows(memorization["canaries"])
        train = [*train, *rows]
        report["canary_rows"] = len(rows)
    report["train_examples"] = len(train)
    report["validation_examples"] = len(validation)
    return Curated(train, validation, replay, ewc, report, memorization)
