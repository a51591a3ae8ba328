"""Inputs of bench/eval_vs_lmeval.py: data files, harness suites and lm-eval task folders
for each workload, written into a scratch folder; and reading lm-eval's outputs back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bench.measure import REALDATA
from bench.workloads import CHOICES, PROMPT, hellaswag_shape, sst2_dev
from tests.lmeval_peer import _write_task as write_task
from tests.lmeval_peer import write_jsonl, write_multiple_choice_task, write_rolling_task


def write_inputs(work: Path, model: Path, batch_size: int) -> tuple[Path, Path, list[str]]:
    """Data files, the harness suite and the lm-eval task folder."""
    data = work / "data"
    sst = sst2_dev()
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


def write_92m_inputs(
    work: Path, model: Path, tokenizer: Any, batch_size: int, workload: str
) -> tuple[Path, Path, str]:
    """One workload of issue 20 on the 92M model: ``sst2`` (SST-2 dev, a one-token and
    a two-token choice) or ``hellaswag`` (``hellaswag_shape``: four endings a context,
    acc and acc_norm). Returns the harness suite, the lm-eval task folder, the task."""
    data = work / "data"
    tasks = work / "lmeval_tasks"
    name = f"bench_{workload}"
    metrics = ["accuracy"]
    if workload == "sst2":
        write_jsonl(data / "sst2.jsonl", sst2_dev())
        write_multiple_choice_task(
            tasks,
            name,
            data / "sst2.jsonl",
            doc_to_text=PROMPT.replace("{{ sentence }}", "{{sentence}}"),
            choices=CHOICES,
            target="label",
        )
        task: dict[str, Any] = {
            "prompt": PROMPT,
            "choices": CHOICES,
            "label": "label",
        }
    elif workload == "hellaswag":
        write_jsonl(data / "hellaswag.jsonl", hellaswag_shape(tokenizer))
        metrics = ["accuracy", "accuracy_norm"]
        write_task(
            tasks,
            {
                "task": name,
                "dataset_path": "json",
                "dataset_kwargs": {
                    "data_files": {"test": str((data / "hellaswag.jsonl").resolve())},
                    "cache_dir": str((tasks / ".datasets_cache").resolve()),
                },
                "test_split": "test",
                "output_type": "multiple_choice",
                "doc_to_text": "{{ctx}}",
                "doc_to_choice": "{{endings}}",
                "doc_to_target": "{{label}}",
                "target_delimiter": "",
                "num_fewshot": 0,
                "metric_list": [
                    {"metric": m, "aggregation": "mean", "higher_is_better": True}
                    for m in ("acc", "acc_norm")
                ],
            },
        )
        task = {
            "prompt": "{{ ctx }}",
            "choices": {"field": "endings"},
            "label": "label",
            "target_delimiter": "",  # the endings carry their leading space, as lm-eval's task
        }
    else:
        raise ValueError(workload)
    suite = work / "suite.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "name": f"bench-{workload}",
                "model": {"path": str(model), "device": "cpu"},
                "batch_size": batch_size,
                "bootstrap": {"samples": 0},
                "tasks": [
                    {
                        "id": workload,
                        "kind": "classification",
                        "data": str(data / f"{workload}.jsonl"),
                        **task,
                        "metrics": metrics,
                    }
                ],
            },
            sort_keys=False,
        )
    )
    return suite, tasks, name


def lmeval_results(out: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """lm-eval's newest results under ``out`` and its logged samples by task."""
    result_file = max(out.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    results = json.loads(result_file.read_text())["results"]
    samples = {}
    for path in out.rglob("samples_*.jsonl"):
        name = path.name.split("samples_", 1)[1].rsplit("_", 1)[0]
        samples[name] = [json.loads(x) for x in path.read_text().splitlines() if x]
    return results, samples
