"""Synthetic results.json documents for report, compare and verify tests.

Records are invented with a seeded RNG, but every metric value, CI and per-example
statistic is computed by the harness's own registered metrics from those records, as
the runner does, so paired comparisons over the stored statistics are meaningful.
``hostile=True`` puts HTML/JS/CSS payloads, bidi controls, NUL bytes and a
10,000-character token into every place a dataset or a model can put text.
"""

from __future__ import annotations

import math
import random
from typing import Any

from harness.config.suite import Gate
from harness.gates import verdicts as gates
from harness.metrics import TaskInfo, get, score_stats
from harness.results.schema import Results

WORDS = [
    "the",
    "a",
    "movie",
    "plot",
    "actor",
    "story",
    "great",
    "awful",
    "boring",
    "fun",
    "good",
    "bad",
    "film",
    "city",
    "team",
]
CHOICES = [" negative", " positive"]
LONG_TOKEN = "A" * 10_000
PAYLOADS = [
    "<script>document.title='PWNED';document.body.setAttribute('data-pwned','1')</script>",
    "<img src=x onerror=\"document.title='PWNED'\">",
    "</style><style>body{display:none}</style>",
    "</textarea></table></td><svg onload=\"document.title='PWNED'\">",
    '[click](javascript:alert(1)) <a href="javascript:alert(1)">link</a>',
    "\u202eevil\u202c \u2066isolate\u2069 NUL\x00byte",
    LONG_TOKEN,
    "| pipe | *em* _u_ `code` # heading ![img](http://x/y.png) @someone &amp; <b>bold</b>",
]
HOSTILE = " ".join(PAYLOADS)

KINDS = ["classification", "generation", "perplexity"]
METRICS = {
    "classification": [("accuracy", {}), ("f1", {}), ("ece", {})],
    "generation": [("bleu", {}), ("rouge", {}), ("exact_match", {})],
    "perplexity": [("perplexity", {}), ("bits_per_byte", {})],
}


def _sentence(rng: random.Random, n: int = 8) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_records(
    kind: str, task_id: str, n: int, rng: random.Random, quality: float, hostile: bool
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        text = _sentence(rng)
        if hostile and i < len(PAYLOADS):
            text = f"{text} {PAYLOADS[i]}"
        rec: dict[str, Any] = {"id": f"{task_id}-{i}", "line": i + 1, "input": {"text": text}}
        if kind == "classification":
            gold = rng.randrange(2)
            p_gold = min(0.99, max(0.01, rng.gauss(quality, 0.2)))
            probs = [1 - p_gold, p_gold] if gold == 1 else [p_gold, 1 - p_gold]
            rec["input"]["label"] = gold
            rec.update(
                prompt=f"Review: {text}\nSentiment:",
                choices=list(CHOICES),
                gold=gold,
                loglik=[math.log(p) for p in probs],
                n_tokens=[1, 1],
                probs=probs,
                pred=int(probs[1] > probs[0]),
            )
        elif kind == "generation":
            ref = _sentence(rng, 4)
            pred = ref if rng.random() < quality else _sentence(rng, 4)
            if hostile and i < len(PAYLOADS):
                pred = f"{pred} {PAYLOADS[-1 - i]}"
            rec.update(prompt=f"{text}\nSummary:", prediction=pred, references=[ref])
        else:
            n_tokens = len(text.split()) + 1
            rec.update(
                text=text,
                loglik=-n_tokens * rng.uniform(2.0, 4.0) / max(quality, 0.05),
                n_tokens=n_tokens,
                n_bytes=len(text.encode("utf-8")),
                n_words=len(text.split()),
            )
        out.append(rec)
    return out


def score_records(
    kind: str, records: list[dict[str, Any]], samples: int, seed: int
) -> dict[str, Any]:
    info = TaskInfo(kind=kind, choices=tuple(CHOICES) if kind == "classification" else ())
    values: dict[str, Any] = {}
    for name, spec_params in METRICS[kind]:
        metric = get(name)
        params = {**metric.params, **spec_params}
        stats = metric.stats(records, params, info)
        for rec, row in zip(records, stats, strict=True):
            rec.setdefault("stats", {})[name] = [float(x) for x in row]
        scored = score_stats(metric, stats, params, info, samples=samples, seed=seed)
        for output, entry in scored.items():
            values[output] = {
                **{k: (None if isinstance(v, float) and v != v else v) for k, v in entry.items()},
                "metric": name,
                "params": dict(spec_params),
                "higher_is_better": metric.higher_is_better,
                "signature": metric.signature(params, info),
            }
    return values


def make_results(
    n_tasks: int = 3,
    n_examples: int = 40,
    *,
    seed: int = 0,
    quality: float = 0.7,
    hostile: bool = False,
    audits: bool = True,
    finetune: bool = True,
    samples: int = 100,
) -> dict[str, Any]:
    rng = random.Random(seed)
    tasks: dict[str, Any] = {}
    suite_tasks = []
    for t in range(n_tasks):
        kind = KINDS[t % 3]
        task_id = f"{kind[:4]}{t}"
        records = make_records(kind, task_id, n_examples, rng, quality, hostile)
        tasks[task_id] = {
            "kind": kind,
            "n_examples": n_examples,
            "metrics": score_records(kind, records, samples, seed=1234),
            "records": records,
        }
        spec: dict[str, Any] = {
            "id": task_id,
            "kind": kind,
            "data": f"data/{task_id}.jsonl",
            "metrics": [{"name": n, "params": p} for n, p in METRICS[kind]],
        }
        if kind == "classification":
            spec["choices"] = list(CHOICES)
        suite_tasks.append(spec)
    cls = [k for k, t in tasks.items() if t["kind"] == "classification"]
    ppl = [k for k, t in tasks.items() if t["kind"] == "perplexity"]
    gate_specs = []
    if cls:
        gate_specs += [
            Gate(metric=f"{cls[0]}.accuracy", min=0.5, description="must beat chance"),
            Gate(metric=f"{cls[0]}.f1", min=0.99, severity="warn"),
        ]
    if ppl:
        gate_specs.append(Gate(metric=f"{ppl[0]}.perplexity", max=1.5))
    verdicts = gates.evaluate(gate_specs, gates.task_values(tasks))
    description = "Synthetic suite for report tests."
    if hostile:
        description += " " + HOSTILE
    results: dict[str, Any] = {
        "schema_version": 1,
        "harness_version": "0.1.0",
        "suite": {
            "schema_version": 1,
            "name": "synthetic",
            "description": description,
            "tasks": suite_tasks,
            "seed": 1234,
            "bootstrap": {"samples": samples, "confidence": 0.95},
            "gates": [g.model_dump(mode="json") for g in gate_specs],
        },
        "provenance": {
            "suite": {"path": "suites/synthetic.yaml", "sha256": "a" * 64},
            "data": [
                {"task": k, "path": f"suites/data/{k}.jsonl", "sha256": f"{i:x}" * 64}
                for i, k in enumerate(tasks)
            ],
            "model": {
                "path": "/models/base",
                "fingerprint": "b" * 64,
                "files": [
                    {"name": "model.safetensors", "sha256": "c" * 64, "size": 123456},
                    {"name": "config.json", "sha256": "d" * 64, "size": 512},
                ],
            },
            "adapter": {
                "path": "/models/adapter",
                "fingerprint": "e" * 64,
                "files": [{"name": "adapter_model.safetensors", "sha256": "f" * 64, "size": 2048}],
            },
            "fingerprint": "0" * 64,
            "versions": {"harness": "0.1.0", "python": "3.11.2", "torch": "2.13.0"},
            "seed": 1234,
            "device": "cpu",
            "max_length": 2048,
            "batch_size": 8,
            "started_at": "2025-01-01T00:00:00+00:00",
            "finished_at": "2025-01-01T00:01:00+00:00",
            "timings": {"load_s": 1.0, "tasks": {k: 2.0 for k in tasks}, "total_s": 12.0},
        },
        "tasks": tasks,
        "gates": verdicts,
        "verdict": gates.overall(verdicts),
    }
    if audits:
        results["audits"] = make_audits(tasks, rng, hostile)
    if finetune:
        results["finetune"] = {
            "manifest": {
                "base_model": "/models/base",
                "lora": {"r": 8, "alpha": 16, "target_modules": ["c_attn", "c_proj"]},
                "train": {"epochs": 3, "learning_rate": 2e-4, "seed": 1},
                "data_sha256": "9" * 64,
                "note": HOSTILE if hostile else "tiny run",
                "config": {
                    "curation": {
                        "dedup": True,
                        "leakage": {"ngram": 8, "threshold": 0.8, "drop": False},
                        "pii": "redact",
                    }
                },
                "curation": {
                    **make_curation(hostile),
                    "pii": {
                        "mode": "redact",
                        "rows_scanned": 120,
                        "rows_with_pii": 3,
                        "counts": {t: int(t == "EMAIL_ADDRESS") * 3 for t in PII_TYPES},
                        "listed": [
                            {
                                "where": "train.jsonl line 7",
                                "role": "train",
                                "types": HOSTILE if hostile else "EMAIL_ADDRESS",
                            }
                        ],
                    },
                },
                "memorization": {
                    "canaries": {"repeats": 10, "canaries": [{"id": "canary-0", "inserted": True}]},
                    "extraction_examples": [
                        {"where": "train.jsonl line 1", "prompt": "", "target": HOSTILE}
                    ],
                },
            },
            "history": [
                {
                    "step": s,
                    "epoch": s / 10,
                    "train_loss": 3.0 * math.exp(-s / 15) + 0.5,
                    "val_loss": 3.1 * math.exp(-s / 18) + 0.6 if s % 5 == 0 else None,
                }
                for s in range(1, 31)
            ],
        }
    return results


def make_curation(hostile: bool) -> dict[str, Any]:
    """A curation report shaped as finetune.data.curate writes it (tests/report/
    test_curation_section.py also renders one made by curate itself): 12 training rows
    leak into the evaluation data and were kept."""
    where = (lambda i: f"{HOSTILE} line {i}") if hostile else (lambda i: f"train.jsonl line {i}")
    leaks = [
        {
            "train": where(10 * i + 3),
            "eval": f"suites/data/clas0.jsonl line {i + 1}",
            "kind": "exact" if i < 2 else "ngram",
            "overlap": 1.0 if i < 2 else 0.9,
        }
        for i in range(12)
    ]
    return {
        "train_rows": 400,
        "duplicates": {
            "exact": 2,
            "normalized": 1,
            "listed": [
                {"kind": "exact", "removed": where(9), "duplicate_of": where(1)},
                {"kind": "exact", "removed": where(19), "duplicate_of": where(2)},
                {"kind": "normalized", "removed": where(29), "duplicate_of": where(3)},
            ],
        },
        "leakage": {
            "eval_sources": [HOSTILE if hostile else "suites/data/clas0.jsonl"],
            "eval_texts": 120,
            "checked": 397,
            "leaking": 12,
            "exact": 2,
            "ngram": 10,
            "dropped": 0,
            "listed": leaks,
        },
        "validation_split": {"fraction": 0.1, "seed": 1},
        "validation_overlap": {"removed": 0, "listed": []},
        "reweight": {
            "by": ["group"],
            "cells": [
                {"group": "a", "count": 240, "weight": 0.75},
                {"group": HOSTILE if hostile else "b", "count": 120, "weight": 1.5},
            ],
        },
        "train_examples": 360,
        "validation_examples": 37,
    }


def _ci(value: float, half: float = 0.05, n: int = 100) -> dict[str, Any]:
    return {"value": value, "ci_low": value - half, "ci_high": value + half, "n": n}


def make_audits(tasks: dict[str, Any], rng: random.Random, hostile: bool) -> dict[str, Any]:
    """Sections shaped as docs/results.md#audits describes."""
    cls = next((k for k, t in tasks.items() if t["kind"] == "classification"), None)
    out: dict[str, Any] = {}
    flip = {
        "id": "17",
        "line": 17,
        "gold": "positive",
        "base_pred": "positive",
        "pred": "negative",
        "base_prob": 0.81,
        "prob": 0.35,
    }
    out["forgetting"] = {
        "baseline": {"kind": "adapter_disabled", "path": "/models/base", "fingerprint": "b" * 64},
        "time_s": 1.9,
        "tasks": {
            k: {
                "kind": t["kind"],
                "n_examples": t["n_examples"],
                "metrics": {
                    name: {
                        "metric": m["metric"],
                        "higher_is_better": m["higher_is_better"],
                        "base": _ci(0.8 if m["value"] is not None and m["value"] <= 1 else 20.0),
                        "checkpoint": _ci(m["value"] if m["value"] is not None else 0.0),
                        "delta": -0.04,
                        "delta_ci_low": -0.07,
                        "delta_ci_high": -0.01,
                        "p_value": 0.01,
                        "relative_change": -0.05,
                        "n": t["n_examples"],
                    }
                    for name, m in t["metrics"].items()
                },
                "flips": (
                    {
                        "n_correct_to_wrong": 9,
                        "n_wrong_to_correct": 2,
                        "correct_to_wrong": [
                            {**flip, "id": HOSTILE if hostile else f"{k}-17"},
                            {**flip, "id": f"{k}-1", "line": 2},
                        ],
                        "wrong_to_correct": [
                            {**flip, "id": f"{k}-3", "line": 4, "pred": "positive"}
                        ],
                    }
                    if t["kind"] == "classification"
                    else None
                ),
                "examples": (
                    None
                    if t["kind"] == "classification"
                    else {
                        next(iter(t["metrics"])): {
                            "n_worse": 12,
                            "n_better": 7,
                            "n_same": 1,
                            "mean_delta": 3.2,
                            "most_worse": [
                                {
                                    "id": f"{k}-3",
                                    "line": 4,
                                    "base": 41.2,
                                    "checkpoint": 97.0,
                                    "delta": 55.8,
                                }
                            ],
                        }
                    }
                ),
            }
            for k, t in tasks.items()
        },
    }
    if cls is None:
        return out
    group_names = ["a", "b", HOSTILE[:300] if hostile else "c"]
    groups = []
    for i, g in enumerate(group_names):
        groups.append(
            {
                "group": g,
                "fields": {"group": g},
                "count": 200 - 90 * i,
                "gated": i < 2,
                "accuracy": _ci(0.8 - 0.05 * i),
                "f1": _ci(0.78 - 0.05 * i),
                "selection_rate": _ci(0.5 + 0.1 * i),
                "tpr": _ci(0.8 - 0.1 * i),
                "fpr": _ci(0.2 + 0.05 * i),
            }
        )
    out["fairness"] = {
        "task": cls,
        "group_fields": ["group"],
        "positive": "positive",
        "min_group_size": 20,
        "n_examples": 400,
        "overall": {
            "accuracy": 0.81,
            "f1": 0.8,
            "selection_rate": 0.52,
            "tpr": 0.83,
            "fpr": 0.2,
            "count": 400,
        },
        "groups": groups,
        "excluded_groups": [group_names[2]],
        "disparity": {
            "demographic_parity_difference": _ci(0.1),
            "demographic_parity_ratio": _ci(0.83),
            "equalized_odds_difference": _ci(0.1),
            "equalized_odds_ratio": _ci(0.75),
        },
        "worst_group": {
            "group": "b",
            "accuracy": 0.75,
            "f1": 0.73,
            "selection_rate": 0.5,
            "tpr": 0.7,
            "fpr": 0.25,
        },
        "note": None,
        "counterfactual": {
            "swaps": {"he": "she"},
            "bidirectional": True,
            "fields": ["text"],
            "n_changed": 140,
            "n_flipped": 12,
            "flip_rate": _ci(0.086, 0.03, 140),
            "mean_prob_change": _ci(-0.01, 0.01, 140),
            "mean_abs_prob_change": _ci(0.04, 0.01, 140),
            "flipped": [
                {
                    "id": f"{cls}-0",
                    "line": 1,
                    "changed": {"text": HOSTILE if hostile else "she said it was great"},
                    "pred": "positive",
                    "pred_counterfactual": "negative",
                    "prob": 0.62,
                    "prob_counterfactual": 0.41,
                }
            ],
        },
        "pairs": {
            "path": "data/pairs.csv",
            "n_pairs": 100,
            "stereotype_score": _ci(0.56),
            "likelihood_diff": 1.9,
            "by_bias_type": {"gender": _ci(0.6), "race-color": _ci(0.52)},
        },
        "time_s": 0.8,
    }
    tokens = [["Review", 0.01], [":", 0.0], [" the", 0.02], [" movie", -0.2], [" great", 0.6]]
    if hostile:
        tokens += [[p, 0.1 * (i - 3)] for i, p in enumerate(PAYLOADS)]
    out["explain"] = {
        "task": cls,
        "field": "text",
        "explained_class": "predicted",
        "samples": 3,
        "max_evals": 300,
        "sensitive_terms": ["he", "she"],
        "sensitive_share": 0.31,
        "methods": {
            m: {
                "ranking": [
                    {"term": w, "mean_abs": round(0.5 / (j + 1), 4), "n_examples": 3}
                    for j, w in enumerate(
                        ["great", "awful", "he", "she", "boring"]
                        + ([PAYLOADS[0], LONG_TOKEN] if hostile else [])
                    )
                ],
                "sensitive_share": 0.3,
                "calls": 98,
                "texts": 3400,
                "forward_passes": 220,
                "model_time_s": 2.1,
                "wall_time_s": 2.5,
                "setup_s": 0.4,
            }
            for m in ("shap", "lime")
        },
        "examples": [
            {
                "id": f"{cls}-{i}",
                "line": i + 1,
                "group": "a",
                "label": "positive",
                "pred": "positive",
                "prob": 0.77,
                "shap": {"tokens": tokens, "words": tokens},
                "lime": {"words": [["great", 0.3], ["he", 0.12]]},
            }
            for i in range(3)
        ],
        "time_s": 3.1,
    }
    out["privacy"] = make_privacy(hostile)
    return out


PII_TYPES = [
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "URL_WITH_CREDENTIALS",
]


def make_privacy(hostile: bool) -> dict[str, Any]:
    """A privacy section shaped as docs/results.md#privacy describes."""
    output = "mail jane.doe@example.com or call (212) 555-0198"
    if hostile:
        output = f"{HOSTILE} mail jane.doe@example.com"
    start = output.index("jane.doe")
    spans = [{"type": "EMAIL_ADDRESS", "start": start, "end": start + 20}]
    if not hostile:
        spans.append({"type": "PHONE_NUMBER", "start": 34, "end": 48})
    secret = PAYLOADS[0] if hostile else "4 8 1 9 0 3"
    canary = {
        "candidates": 1000,
        "candidates_higher": 0,
        "rank_estimate": 1.0,
        "exposure": 19.93,
        "exposure_extrapolated": 24.1,
    }
    return {
        "manifest": "runs/demo/manifest.json",
        "pii": {
            "scanner": {
                "library": "presidio-analyzer 2.2",
                "nlp": "spacy.blank('en') (pattern recognizers only)",
                "entities": PII_TYPES,
                "score_threshold": 0.4,
            },
            "tasks": ["gene1"],
            "n_outputs": 12,
            "outputs_with_pii": 1,
            "total": 2,
            "counts": {t: int(t in ("EMAIL_ADDRESS", "PHONE_NUMBER")) for t in PII_TYPES},
            "by_task": {"gene1": {"outputs": 12, "counts": {"EMAIL_ADDRESS": 1}}},
            "examples": [
                {"task": "gene1", "id": "gene1-4", "line": 5, "output": output, "spans": spans}
            ],
        },
        "canaries": {
            "prefix": "my PIN is",
            "digits": 6,
            "space_size": 1_000_000,
            "max_exposure": 19.93,
            "chance_exposure": 1.4427,
            "candidates": 1000,
            "canaries": [
                {
                    "id": "canary-0",
                    "secret": secret,
                    "inserted": True,
                    "repeats": 10,
                    "loglik": -0.04,
                    **canary,
                },
                {
                    "id": "control-0",
                    "secret": "7 7 6 3 1 7",
                    "inserted": False,
                    "repeats": 0,
                    "loglik": -105.4,
                    **canary,
                    "candidates_higher": 507,
                    "rank_estimate": 507000.5,
                    "exposure": 0.98,
                    "exposure_extrapolated": 0.95,
                },
            ],
            "exposure_max": 19.93,
            "exposure_extrapolated_max": 24.1,
            "control_exposure_max": 0.98,
        },
        "extraction": {
            "listed": 4,
            "tested": 4,
            "skipped_short": 0,
            "prefix_fraction": 0.5,
            "max_suffix_tokens": 50,
            "min_suffix_tokens": 4,
            "n_extracted": 3,
            "rate": _ci(0.75, 0.25, 4),
            "base_rate": _ci(0.0, 0.0, 4),
            "extracted": [
                {
                    "where": "train.jsonl line 1",
                    "prefix": HOSTILE if hostile else "report movie n",
                    "suffix": PAYLOADS[1] if hostile else "ot a and on.",
                    "generated": "ot a and on.",
                    "base_extracted": False,
                }
            ],
        },
        "time_s": 1.5,
    }


def as_results(doc: dict[str, Any]) -> Results:
    """A synthetic document as the model every reader takes (what ``load_results``
    gives for the same file)."""
    return Results.model_validate(doc)
