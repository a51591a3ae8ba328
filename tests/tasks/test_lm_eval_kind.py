"""`kind: lm_eval` tasks (harness.tasks.lm_eval): lm-eval task definitions turned into our
records. The records' (context, continuation) pairs must be exactly the arguments of the
requests lm-eval builds for the same documents (its ``Instance`` objects from
``build_all_requests``), for a HellaSwag-, a Winogrande- (multiple inputs, partial
scoring) and an MMLU-shaped task (2-shot, first_n sampler over a few-shot split); a run
through ``run_suite`` on a tiny model gives lm-eval's per-choice log-likelihoods (1e-5)
and its accuracy (exactly). Task YAMLs and data are written in the test, in each
benchmark's own row format; everything is offline (tests.lmeval_peer).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.config.suite import load_suite
from harness.errors import UserError
from harness.run.runner import prepare_suite
from harness.tasks import lm_eval
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


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lmeval-kind")
    write_tasks(root / "tasks")
    (root / "model").mkdir()
    return root


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


def prepared(root: Path, tasks: str) -> dict[str, Any]:
    suite = load_suite(write_suite(root, root / "model", tasks))
    return {p.task.id: p for p in prepare_suite(suite)}


@pytest.mark.parametrize("task_id", sorted(MC_TASKS))
def test_records_are_the_requests_lmeval_builds(root: Path, task_id: str) -> None:
    name, shots = MC_TASKS[task_id]
    ours = prepared(root, mc_suite_tasks())[task_id]
    theirs = lmeval_requests(root / "tasks", name, shots)
    assert len(ours.records) == len(theirs) > 0
    for rec, args in zip(ours.records, theirs, strict=True):
        assert our_pairs(dict(rec)) == [tuple(a) for a in args]


def test_record_fields_follow_the_classification_contract(root: Path) -> None:
    p = prepared(root, mc_suite_tasks())
    hs = p["hs"].records[0]
    assert list(hs)[:7] == ["id", "line", "input", "prompt", "choices", "gold", "target_delimiter"]
    assert hs["prompt"] == "A man is sitting on a roof. He"
    assert hs["choices"] == HELLASWAG_ROWS[0]["endings"] and hs["gold"] == 1
    assert hs["target_delimiter"] == " " and hs["input"]["ctx"] == HELLASWAG_ROWS[0]["ctx"]
    wg = p["wg"].records[2]
    assert list(wg)[3:] == [
        "prompt",
        "choices",
        "gold",
        "target_delimiter",
        "contexts",
        "continuation",
    ]
    # zero-shot: no description or shots to share, each context is its partial sentence
    assert wg["prompt"] == "" and wg["contexts"] == wg["choices"]
    sentence = "The cup fell off the table because "
    assert wg["choices"] == [sentence + "the table", sentence + "the cup"] and wg["gold"] == 1
    assert wg["continuation"] == "was too close to the edge."
    mmlu = p["mmlu"].records[0]
    assert mmlu["prompt"].startswith(
        "The following are multiple choice questions (with answers) about math.\n\n"
        "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer: B\n\nWhich is a prime?"
    )  # the first two dev rows, in order (first_n)
    assert mmlu["prompt"].endswith("What is 3 * 3?\nA. 6\nB. 9\nC. 12\nD. 33\nAnswer:")


def test_winogrande_with_shots_shares_the_shots_as_prompt(root: Path, tmp_path: Path) -> None:
    import yaml

    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "utils.py").write_text(WINOGRANDE_UTILS, "utf-8")
    text = (root / "tasks" / "wg_local.yaml").read_text("utf-8")
    cfg = yaml.safe_load(text.split("doc_to_text")[0])
    cfg["dataset_kwargs"]["data_files"]["train"] = cfg["dataset_kwargs"]["data_files"]["test"]
    cfg.update(task="wg_shots", training_split="train", fewshot_config={"sampler": "first_n"})
    head = yaml.safe_dump(cfg, sort_keys=False)
    (folder / "wg_shots.yaml").write_text(head + "doc_to_text" + text.split("doc_to_text", 1)[1])
    (tmp_path / "model").mkdir()
    tasks = "  - {id: wg, kind: lm_eval, task: wg_shots, include_path: tasks/, num_fewshot: 1, metrics: [accuracy]}\n"
    recs = prepared(tmp_path, tasks)["wg"].records
    theirs = lmeval_requests(folder, "wg_shots", 1)
    for rec, args in zip(recs, theirs, strict=True):
        assert our_pairs(dict(rec)) == [tuple(a) for a in args]
        shot = "The trophy doesn't fit in the suitcase because the trophy is too big.\n\n"
        assert rec["prompt"].startswith(shot)


def test_generation_task_prompts_stops_and_extraction(root: Path) -> None:
    tasks = "  - {id: gsm, kind: lm_eval, task: gsm_local, include_path: tasks/, num_fewshot: 1, metrics: [exact_match]}\n"
    p = prepared(root, tasks)["gsm"]
    theirs = lmeval_requests(root / "tasks", "gsm_local", 1)
    assert [(r["prompt"],) for r in p.records] == [(a[0][0],) for a in theirs]
    assert [r["references"] for r in p.records] == [[row["answer"]] for row in GSM_ROWS]
    task = p.task
    assert (task.scored_kind, task.stop, task.max_new_tokens) == (
        "generation",
        ["Question:", "\n\n"],
        24,
    )
    assert task.extract == lm_eval.Extract(regex="#### (\\-?[0-9\\.\\,]+)", select="first")
    assert task.normalize == lm_eval.Normalize(remove=GSM_IGNORE, lower=True)
    # the references as lm-eval's exact_match compares them (GSM8K's regexes_to_ignore)
    assert [r["gold_answers"] for r in p.records] == [["5"], ["12"], ["[invalid]"]]
    prov = task.provenance()
    assert prov["filter"] == "strict-match" and prov["num_fewshot"] == 1
    assert prov["not_applied"] == [
        "filter 'flexible-extract' (only the first filter, 'strict-match', is applied)"
    ]


def test_generation_settings_say_what_is_not_applied() -> None:
    got = lm_eval.generation_settings(
        {
            "generation_kwargs": {"do_sample": True, "temperature": 0.7, "until": "\n"},
            "filter_list": [
                {
                    "name": "x",
                    "filter": [{"function": "lowercase"}, {"function": "regex", "group_select": 2}],
                }
            ],
        }
    )
    assert got.stop == ["\n"] and got.max_new_tokens == 256 and got.extract is None
    assert got.not_applied == [
        "generation_kwargs.do_sample: True (decoding is greedy)",
        "generation_kwargs.temperature: 0.7 (decoding is greedy)",
        "filter 'x': lowercase",
        "filter 'x': regex {'group_select': 2}",
    ]
    # no generation_kwargs: lm-eval stops at the few-shot delimiter
    assert lm_eval.generation_settings({}).stop == ["\n\n"]


def test_resolution_is_offline_and_gives_the_scored_kind(root: Path) -> None:
    got = lm_eval.resolve("wg_local", root / "tasks")
    assert (got.output_type, got.scored_kind, got.hub_dataset) == (
        "multiple_choice",
        "classification",
        None,
    )
    suite = load_suite(write_suite(root, root / "model", mc_suite_tasks()))
    assert [t.scored_kind for t in suite.tasks] == ["classification"] * 3
    assert [t.info().kind for t in suite.tasks] == ["classification"] * 3


# -- located errors -------------------------------------------------------------------


def errors_of(root: Path, tasks: str) -> list[str]:
    with pytest.raises(UserError) as info:
        load_suite(write_suite(root, root / "model", tasks))
    return info.value.messages


def test_missing_lm_eval_is_a_located_error(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now fails
    got = errors_of(root, "  - {id: hs, kind: lm_eval, task: hs_local, metrics: [accuracy]}\n")
    assert len(got) == 1
    where, message = got[0].split(": ", 1)
    assert where.endswith("suite.yaml:7:20")
    assert message == (
        "tasks[0].kind: lm_eval tasks need lm-evaluation-harness: "
        "pip install 'llm-release-harness[lmeval]'"
    )


def test_unknown_task_group_and_output_type_are_located(root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "ll.yaml").write_text(
        "task: ll_local\ndataset_path: json\noutput_type: loglikelihood\ndoc_to_text: x\n"
        "doc_to_target: y\ntest_split: test\n"
    )
    (folder / "grp.yaml").write_text("group: grp_local\ntask: [ll_local]\n")
    (tmp_path / "model").mkdir()
    got = errors_of(
        tmp_path,
        "  - {id: a, kind: lm_eval, task: ll_locl, include_path: tasks/, metrics: [accuracy]}\n"
        "  - {id: b, kind: lm_eval, task: ll_local, include_path: tasks/, metrics: [accuracy]}\n"
        "  - {id: c, kind: lm_eval, task: grp_local, include_path: tasks/, metrics: [accuracy]}\n"
        "  - {id: d, kind: lm_eval, task: x, include_path: nowhere/, metrics: [accuracy]}\n",
    )
    tail = [m.split(": ", 1)[1] for m in got]
    assert tail == [
        "tasks[0].task: no lm-eval task 'll_locl' (did you mean 'll_local'?)",
        "tasks[1].task: lm-eval output_type loglikelihood is not supported",
        "tasks[2].task: 'grp_local' is an lm-eval group of several tasks; name one of them, "
        "e.g. 'll_local'",
        f"tasks[3].include_path: folder not found: {tmp_path / 'nowhere'}",
    ]


def test_data_is_refused_and_metrics_are_required(root: Path) -> None:
    got = errors_of(
        root,
        "  - {id: hs, kind: lm_eval, task: hs_local, include_path: tasks/, data: x.jsonl,"
        " metrics: [accuracy]}\n  - {id: b, kind: lm_eval, task: hs_local, include_path: tasks/}\n",
    )
    assert [m.split(": ", 1)[1] for m in got] == [
        "tasks[0].data: an lm_eval task reads the lm-eval task's own documents: remove `data`",
        "tasks[1].metrics: missing required field",
    ]


def test_metrics_are_checked_against_the_scored_kind(root: Path) -> None:
    got = errors_of(
        root, "  - {id: hs, kind: lm_eval, task: hs_local, include_path: tasks/, metrics: [bleu]}\n"
    )
    assert len(got) == 1
    assert "tasks[0].metrics[0]: metric 'bleu' does not apply to classification tasks" in got[0]


def test_data_that_cannot_load_names_the_network(tmp_path: Path) -> None:
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "hub.yaml").write_text(
        "task: hub_local\ndataset_path: nobody/no-such-dataset-offline\noutput_type: multiple_choice\n"
        "doc_to_text: x\ndoc_to_target: 0\ndoc_to_choice: [a, b]\ntest_split: test\n"
    )
    (tmp_path / "model").mkdir()
    peer.force_offline()
    suite = load_suite(
        write_suite(
            tmp_path,
            tmp_path / "model",
            "  - {id: h, kind: lm_eval, task: hub_local, include_path: tasks/, metrics: [accuracy]}\n",
        )
    )
    with pytest.raises(UserError) as info:
        prepare_suite(suite)
    (msg,) = info.value.messages
    assert (
        "tasks[0].task: lm-eval task 'hub_local': its documents could not be loaded (its data "
        in msg
    )
    assert "is the hub dataset 'nobody/no-such-dataset-offline', which needs the network): " in msg


def test_import_harness_does_not_import_lm_eval() -> None:
    code = (
        "import sys, harness, harness.config.suite, harness.tasks; print('lm_eval' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- end to end against lm-eval -------------------------------------------------------


@pytest.mark.slow
def test_run_suite_matches_lmeval_on_a_tiny_model(root: Path, tiny_gpt2: Path) -> None:
    from harness.metrics import base as registry
    from harness.run.runner import run_suite

    norm = "accuracy_norm" in registry.available()
    metrics = "[accuracy, accuracy_norm]" if norm else "[accuracy]"
    suite = load_suite(write_suite(root, tiny_gpt2, mc_suite_tasks(metrics)))
    results = run_suite(suite, show_progress=False)
    names = [name for name, _ in MC_TASKS.values()]
    out = peer.simple_evaluate_local(tiny_gpt2, root / "tasks", names, batch_size=4)
    for task_id, (name, _) in MC_TASKS.items():
        ours = results.tasks[task_id]
        assert ours.kind == "classification"
        got = [r["loglik"] for r in ours.records]
        want = peer.choice_logliks(out, name)
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert a == pytest.approx(b, abs=1e-5)
        assert ours.metrics["accuracy"].value == peer.metric(out, name, "acc")
        if norm:
            assert ours.metrics["accuracy_norm"].value == peer.metric(out, name, "acc_norm")
        prov = ours.model_dump()["lm_eval"]
        assert prov["task"] == name and prov["lm_eval_version"] == "0.4.13"


@pytest.mark.slow
def test_generation_run_matches_lmeval_generations(root: Path, tiny_gpt2: Path) -> None:
    """A generate_until task: our greedy generations (prompt with one shot, stop strings
    and max_gen_toks from the task's generation_kwargs) are lm-eval's, text for text."""
    from harness.run.runner import run_suite
    from harness.tasks.answers import normalize_answer

    tasks = "  - {id: gsm, kind: lm_eval, task: gsm_local, include_path: tasks/, num_fewshot: 1, metrics: [exact_match]}\n"
    results = run_suite(load_suite(write_suite(root, tiny_gpt2, tasks)), show_progress=False)
    out = peer.simple_evaluate_local(tiny_gpt2, root / "tasks", ["gsm_local"], batch_size=4)
    samples = [s for s in peer.samples(out, "gsm_local") if s["filter"] == "strict-match"]
    theirs = [s["resps"][0][0] for s in samples]
    ours = results.tasks["gsm"]
    assert [r["prediction"] for r in ours.records] == theirs
    # the answer: lm-eval's regex filter's output, normalized as its exact_match does
    norm = load_suite(write_suite(root, tiny_gpt2, tasks)).tasks[0].normalize
    extracted = [s["filtered_resps"][0] for s in samples]
    assert [r["answer"] for r in ours.records] == [normalize_answer(x, norm) for x in extracted]
    want = peer.metric(out, "gsm_local", "exact_match", "strict-match")
    assert ours.metrics["exact_match"].value == want == 1 / 3
    assert ours.kind == "generation"
    prov = ours.model_dump()["lm_eval"]
    assert (prov["num_fewshot"], prov["filter"]) == (1, "strict-match")


@pytest.mark.slow
def test_rolling_task_scores_as_perplexity_like_lmeval(tmp_path: Path, tiny_gpt2: Path) -> None:
    """loglikelihood_rolling: each record's text is lm-eval's request argument, and its
    rolling log-likelihood lm-eval's (1e-5)."""
    from harness.run.runner import run_suite

    texts = ["The quick brown fox jumps over the lazy dog.", "A second, longer text " * 12]
    data = peer.write_jsonl(tmp_path / "texts.jsonl", [{"text": t} for t in texts])
    peer.write_rolling_task(tmp_path / "tasks", "roll_local", data, text_field="text")
    tasks = "  - {id: lm, kind: lm_eval, task: roll_local, include_path: tasks/, metrics: [perplexity]}\n"
    suite = load_suite(write_suite(tmp_path, tiny_gpt2, tasks))
    assert [r["text"] for r in prepare_suite(suite)[0].records] == texts
    assert [a[0][0] for a in lmeval_requests(tmp_path / "tasks", "roll_local", None)] == texts
    ours = run_suite(suite, show_progress=False).tasks["lm"]
    out = peer.simple_evaluate_local(tiny_gpt2, tmp_path / "tasks", ["roll_local"], batch_size=4)
    assert ours.kind == "perplexity"
    want = peer.doc_logliks(out, "roll_local")
    assert [r["loglik"] for r in ours.records] == pytest.approx(want, abs=1e-5)


@pytest.mark.slow
def test_forgetting_audit_and_gates_apply(root: Path, tiny_gpt2: Path, tmp_path: Path) -> None:
    """The audits and gates see an lm_eval task as the kind it scores as: forgetting
    compares the adapter with its base on the same records (paired deltas, flips) and a
    gate reads the task's accuracy_norm."""
    from harness.run.runner import run_suite
    from tests.report.stored_run import build_adapter

    adapter = build_adapter(tiny_gpt2, tmp_path / "adapter")
    extra = (
        "gates:\n  - {metric: wg.accuracy_norm, min: 0.0}\n"
        "  - {metric: forgetting.hs.accuracy, max_drop: 1.0}\n"
        "audits:\n  forgetting:\n    tasks: [hs, wg]\n"
    )
    path = write_suite(root, tiny_gpt2, mc_suite_tasks("[accuracy, accuracy_norm]"), extra)
    suite = load_suite(path)
    suite.model.adapter = str(adapter)
    results = run_suite(suite, show_progress=False)
    forgetting = results.audits["forgetting"]
    for task_id in ("hs", "wg"):
        section = forgetting["tasks"][task_id]
        assert section["kind"] == "classification" and section["n_examples"] == 3
        assert section["flips"] is not None and "accuracy_norm" in section["metrics"]
    assert [g["verdict"] for g in results.model_dump()["gates"]] == ["pass", "pass"]


def test_validate_offline_lists_an_lm_eval_hub_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness validate --offline` checks the task (it exists, its output type, its
    metrics) without fetching its hub dataset, and says that part needs the network."""
    from harness.cli.main import main

    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "hub.yaml").write_text(
        "task: hub_local\ndataset_path: someone/some-dataset\noutput_type: multiple_choice\n"
        "doc_to_text: x\ndoc_to_target: 0\ndoc_to_choice: [a, b]\ntest_split: test\n"
    )
    (tmp_path / "model").mkdir()
    tasks = (
        "  - {id: h, kind: lm_eval, task: hub_local, include_path: tasks/, metrics: [accuracy]}\n"
    )
    suite = write_suite(tmp_path, tmp_path / "model", tasks)
    assert main(["validate", str(suite), "--offline"]) == 0
    err = capsys.readouterr().err
    assert "not checked offline: tasks[0].task: lm-eval task 'hub_local' (dataset " in err
    assert "'someone/some-dataset') needs the network (hub dataset)" in err
