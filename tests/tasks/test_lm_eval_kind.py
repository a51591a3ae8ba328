"""`kind: lm_eval` tasks (harness.tasks.lm_eval): lm-eval task definitions turned into our
records. The records' (context, continuation) pairs must be exactly the arguments of the
requests lm-eval builds for the same documents (its ``Instance`` objects from
``build_all_requests``), for a HellaSwag-, a Winogrande- (multiple inputs, partial
scoring) and an MMLU-shaped task (2-shot, first_n sampler over a few-shot split); a run
through ``run_suite`` on a tiny model gives lm-eval's per-choice log-likelihoods (1e-5)
and its accuracy (exactly). Task YAMLs and data are written in the test, in each
benchmark's own row format (tests/tasks/lmeval_tasks.py); everything is offline.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.config.suite import load_suite
from harness.errors import UserError
from harness.run.runner import prepare_suite
from harness.tasks import lm_eval
from tests import lmeval_peer as peer
from tests.tasks.lmeval_tasks import (
    GSM_IGNORE,
    GSM_ROWS,
    HELLASWAG_ROWS,
    MC_TASKS,
    WINOGRANDE_UTILS,
    lmeval_requests,
    mc_suite_tasks,
    our_pairs,
    write_suite,
    write_tasks,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lmeval-kind")
    write_tasks(root / "tasks")
    (root / "model").mkdir()
    return root


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


def test_what_is_not_applied_is_listed_for_every_output_type() -> None:
    config = {
        "process_results": "utils.process_results",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean"},
            {"metric": "f1", "aggregation": "f1"},
        ],
        "repeats": 3,
        "filter_list": [{"name": "x", "filter": [{"function": "lowercase"}]}],
    }
    got = lm_eval.Resolved("t", "multiple_choice", config, None).not_applied()
    assert got == [
        "process_results (its own scoring: the suite's metrics score it)",
        "metric_list 'f1': aggregation 'f1'",
        "repeats: 3 (one answer per example)",
        "filter_list (only generate_until answers are filtered)",
    ]
    got = lm_eval.Resolved("t", "generate_until", config, None).not_applied()
    assert got[-1] == "filter 'x': lowercase"


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
    norm = lm_eval.Normalize(remove=GSM_IGNORE, lower=True)  # from its exact_match options
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
    assert [dict(r)["text"] for r in prepare_suite(suite)[0].records] == texts
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
    forgetting = (results.audits or {})["forgetting"]
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
