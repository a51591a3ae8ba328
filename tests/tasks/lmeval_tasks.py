"""Local lm-eval tasks in each benchmark's own row format (HellaSwag, Winogrande with
multiple inputs, MMLU with a few-shot split, GSM8K with filters), suites naming them as
`kind: lm_eval` tasks, and the requests lm-eval itself builds for them: shared by
tests/tasks/test_lm_eval_kind.py. Nothing here downloads (tests.lmeval_peer)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from tests import lmeval_peer as peer

# -- task folders in each benchmark's own format --------------------------------------

HELLASWAG_ROWS = [
    {
        "ctx": "A man is sitting on a roof. He",
        "endings": [
            "is using wrap to wrap a pair of skis.",
            "starts pulling up roofing.",
            "is ripping level tiles off.",
            "holds a rubik's cube.",
        ],
        "label": "1",
    },
    {
        "ctx": "A woman walks into the kitchen. She",
        "endings": ["opens the fridge.", "flies away.", "sings to the oven loudly.", "sits."],
        "label": "0",
    },
    {
        "ctx": "The dog runs across the park and",
        "endings": ["catches the frisbee.", "reads a book.", "explodes.", "files its taxes."],
        "label": "0",
    },
]

WINOGRANDE_ROWS = [
    {
        "sentence": "The trophy doesn't fit in the suitcase because _ is too big.",
        "option1": "the trophy",
        "option2": "the suitcase",
        "answer": "1",
    },
    {
        "sentence": "Sarah lent Maria a book because _ had finished reading it.",
        "option1": "Sarah",
        "option2": "Maria",
        "answer": "1",
    },
    {
        "sentence": "The cup fell off the table because _ was too close to the edge.",
        "option1": "the table",
        "option2": "the cup",
        "answer": "2",
    },
]

WINOGRANDE_UTILS = """
def doc_to_text(doc):
    return {"1": 0, "2": 1}[doc["answer"]]


def doc_to_choice(doc):
    cut = doc["sentence"].index("_")
    return [doc["sentence"][:cut] + doc[k] for k in ("option1", "option2")]


def doc_to_target(doc):
    cut = doc["sentence"].index("_") + 1
    return doc["sentence"][cut:].strip()
"""

MMLU_DEV = [
    {"question": "What is 2 + 2?", "choices": ["3", "4", "5", "6"], "answer": 1},
    {"question": "Which is a prime?", "choices": ["4", "6", "7", "9"], "answer": 2},
    {"question": "What is 10 / 2?", "choices": ["5", "2", "20", "8"], "answer": 0},
]
MMLU_TEST = [
    {"question": "What is 3 * 3?", "choices": ["6", "9", "12", "33"], "answer": 1},
    {"question": "Which is even?", "choices": ["7", "9", "11", "12"], "answer": 3},
    {"question": "What is 1 + 0?", "choices": ["1", "0", "10", "2"], "answer": 0},
    {"question": "Square root of 16?", "choices": ["2", "8", "4", "16"], "answer": 2},
]
MMLU_TEXT = (
    "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\n"
    "D. {{choices[3]}}\nAnswer:"
)

GSM_IGNORE = [",", "\\$", "(?s).*#### ", "\\.$"]  # lm-eval's gsm8k.yaml
GSM_ROWS = [
    {"question": "Tom has 3 apples and buys 2 more. How many?", "answer": "3 + 2 = 5\n#### 5"},
    {"question": "A box holds 4 pens. How many in 3 boxes?", "answer": "4 * 3 = 12\n#### 12"},
    # a gold answer equal to the regex filter's fallback: a generation without "#### N"
    # (all a tiny random model writes) matches it, so exact_match is not 0 on both sides
    {"question": "What is unknowable?", "answer": "[invalid]"},
]


def _dataset(folder: Path, **splits: Path) -> dict[str, Any]:
    return {
        "data_files": {k: str(v.resolve()) for k, v in splits.items()},
        "cache_dir": str((folder / ".datasets_cache").resolve()),
    }


def write_tasks(folder: Path) -> Path:
    """A folder of local lm-eval tasks (YAML + a utils module), one per benchmark shape."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    data = folder.parent / "data"
    hs = peer.write_jsonl(data / "hellaswag.jsonl", HELLASWAG_ROWS)
    wg = peer.write_jsonl(data / "winogrande.jsonl", WINOGRANDE_ROWS)
    dev = peer.write_jsonl(data / "mmlu_dev.jsonl", MMLU_DEV)
    test = peer.write_jsonl(data / "mmlu_test.jsonl", MMLU_TEST)
    gsm = peer.write_jsonl(data / "gsm.jsonl", GSM_ROWS)
    acc = [
        {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
    ]
    configs: dict[str, dict[str, Any]] = {
        "hs_local": {
            "dataset_kwargs": _dataset(folder, test=hs),
            "output_type": "multiple_choice",
            "doc_to_text": "{{ctx}}",
            "doc_to_target": "{{label}}",
            "doc_to_choice": "endings",
        },
        "mmlu_local": {
            "dataset_kwargs": _dataset(folder, test=test, dev=dev),
            "fewshot_split": "dev",
            "fewshot_config": {"sampler": "first_n"},
            "num_fewshot": 2,
            "description": "The following are multiple choice questions (with answers) about math.\n\n",
            "output_type": "multiple_choice",
            "doc_to_text": MMLU_TEXT,
            "doc_to_choice": ["A", "B", "C", "D"],
            "doc_to_target": "answer",
        },
        "gsm_local": {
            "dataset_kwargs": _dataset(folder, test=gsm, train=gsm),
            "fewshot_split": "train",
            "fewshot_config": {"sampler": "first_n"},
            "num_fewshot": 1,
            "output_type": "generate_until",
            "doc_to_text": "Question: {{question}}\nAnswer:",
            "doc_to_target": "{{answer}}",
            "generation_kwargs": {
                "until": ["Question:", "\n\n"],
                "do_sample": False,
                "temperature": 0.0,
                "max_gen_toks": 24,
            },
            "metric_list": [
                {
                    "metric": "exact_match",
                    "aggregation": "mean",
                    "higher_is_better": True,
                    "ignore_case": True,
                    "regexes_to_ignore": GSM_IGNORE,
                }
            ],
            "filter_list": [
                {
                    "name": "strict-match",
                    "filter": [
                        {"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                        {"function": "take_first"},
                    ],
                },
                {
                    "name": "flexible-extract",
                    "filter": [
                        {
                            "function": "regex",
                            "group_select": -1,
                            "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)",
                        },
                        {"function": "take_first"},
                    ],
                },
            ],
        },
    }
    for name, cfg in configs.items():
        body = {"task": name, "dataset_path": "json", "test_split": "test", **cfg}
        body.setdefault("metric_list", acc)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False), "utf-8")
    # Winogrande: its functions live in a utils module beside the YAML (`!function`)
    (folder / "utils.py").write_text(WINOGRANDE_UTILS, "utf-8")
    body = {
        "task": "wg_local",
        "dataset_path": "json",
        "test_split": "test",
        "dataset_kwargs": _dataset(folder, test=wg),
        "output_type": "multiple_choice",
    }
    text = yaml.safe_dump(body, sort_keys=False) + textwrap.dedent(
        """\
        doc_to_text: !function utils.doc_to_text
        doc_to_choice: !function utils.doc_to_choice
        doc_to_target: !function utils.doc_to_target
        metric_list:
          - {metric: acc, aggregation: mean, higher_is_better: true}
          - {metric: acc_norm, aggregation: mean, higher_is_better: true}
        """
    )
    (folder / "wg_local.yaml").write_text(text, "utf-8")
    return folder


def write_suite(root: Path, model: Path, tasks: str, extra: str = "") -> Path:
    suite = root / "suite.yaml"
    suite.write_text(
        "schema_version: 1\nname: lmeval\n"
        f"model: {{path: {json.dumps(str(model))}, device: cpu}}\n"
        "bootstrap: {samples: 0}\ncache: false\n" + extra + "tasks:\n" + tasks,
        "utf-8",
    )
    return suite


MC_TASKS = {"hs": ("hs_local", None), "wg": ("wg_local", None), "mmlu": ("mmlu_local", 2)}


def mc_suite_tasks(metrics: str = "[accuracy]") -> str:
    out = ""
    for task_id, (name, shots) in MC_TASKS.items():
        out += f"  - {{id: {task_id}, kind: lm_eval, task: {name}, include_path: tasks/"
        out += f", num_fewshot: {shots}" if shots is not None else ""
        out += f", metrics: {metrics}}}\n"
    return out


# -- what lm-eval itself builds -------------------------------------------------------


def lmeval_requests(folder: Path, name: str, shots: int | None) -> list[list[Any]]:
    """Per document (in order), the arguments of the requests lm-eval builds, as
    ``lm_eval.simple_evaluate`` sets the task up (its few-shot seed 1234)."""
    peer.force_offline()
    from lm_eval.tasks import TaskManager

    task = TaskManager(include_path=str(folder), include_defaults=False).load([name])
    task = task["tasks"][name]
    if shots is not None:
        task.set_config(key="num_fewshot", value=shots)
    elif task.get_config("num_fewshot") is None:
        task.set_config(key="num_fewshot", value=0)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests()
    by_doc: dict[int, list[Any]] = {}
    for inst in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
        by_doc.setdefault(inst.doc_id, []).append(inst.arguments)
    return [by_doc[i] for i in sorted(by_doc)]


def our_pairs(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The (context, continuation) pairs a classification record asks to score (the
    contract of harness.tasks.classification.score_choices)."""
    delim = record.get("target_delimiter", "")
    if "contexts" in record:
        return [(record["prompt"] + c, delim + record["continuation"]) for c in record["contexts"]]
    return [(record["prompt"], delim + c) for c in record["choices"]]
