"""The benchmark templates in suites/templates/forgetting/ validate offline and build
lm-evaluation-harness's prompts.

Their data are hub datasets, so ``harness validate --offline`` checks everything else and
names the sources that need the network. What can be checked without the network is
checked here: each template's task runs its preparation on a few hand-made rows in the
benchmark's hub format, and every prompt, choice list and gold index equals what
lm-eval's own task definition (its installed YAML files and Python helpers, read here,
not copied) builds from the same rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli.main import main
from harness.config.suite import load_suite
from harness.run.runner import prepare_suite
from harness.tasks.classification import scored_pairs

FOLDER = Path(__file__).resolve().parents[2] / "suites" / "templates" / "forgetting"
TEMPLATES = sorted(FOLDER.glob("*.yaml"))
NETWORK_SOURCES = {  # template -> the sources `validate --offline` must list
    "arc_challenge": ["tasks[0].data"],
    "gsm8k": ["tasks[0].data", "tasks[0].fewshot.data", "tasks[1].data", "tasks[1].fewshot.data"],
    "hellaswag": ["tasks[0].data"],
    "mmlu": ["tasks[0].data", "tasks[0].fewshot.data"],
    "winogrande": ["tasks[0].data"],
    "truthfulqa_mc1": ["tasks[0].task"],
    "general-abilities": [
        "tasks[0].data",
        "tasks[0].fewshot.data",
        "tasks[1].data",
        "tasks[2].data",
        "tasks[3].data",
        "tasks[4].task",
        "tasks[5].data",
        "tasks[5].fewshot.data",
    ],
}


def test_every_template_is_listed() -> None:
    assert sorted(p.stem for p in TEMPLATES) == sorted(NETWORK_SOURCES)


def test_the_combined_template_repeats_each_template_s_task_unchanged() -> None:
    combined = load_suite(FOLDER / "general-abilities.yaml", check_files=False)
    assert [t.id for t in combined.tasks] == [
        "mmlu", "hellaswag", "arc_challenge", "winogrande", "truthfulqa_mc1", "gsm8k",
    ]  # fmt: skip
    for task in combined.tasks:
        alone = load_suite(FOLDER / f"{task.id}.yaml", check_files=False).task(task.id)
        assert task.model_dump() == alone.model_dump()
    gated = {g.metric.split(".")[1] for g in combined.gates}
    assert gated == {t.id for t in combined.tasks}
    assert all(g.significant and g.max_drop for g in combined.gates)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
def test_template_validates_offline_and_names_what_needs_the_network(
    template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--offline", str(template)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("ok:")
    listed = [line.split(": ")[1] for line in err.splitlines() if "needs the network" in line]
    assert listed == NETWORK_SOURCES[template.stem]


# --- lm-eval's definitions, read from the installed package ---------------------------


def lm_eval_tasks() -> Path:
    lm_eval = pytest.importorskip("lm_eval")
    return Path(lm_eval.__file__).parent / "tasks"


def lm_eval_yaml(relative: str) -> dict[str, Any]:
    """A task YAML of lm-eval, its ``!function`` tags kept as text."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    return yaml.load((lm_eval_tasks() / relative).read_text(), Loader=Loader)  # noqa: S506


def render(template: str, doc: dict[str, Any]) -> str:
    from lm_eval.utils import apply_template

    return str(apply_template(template, doc))


def prepared(template: str, data: dict[str, list[dict[str, Any]]], tmp: Path) -> list[Any]:
    """The template's records over local rows: ``data`` maps 'test'/'shots' to rows."""
    for split, rows in data.items():
        (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = load_suite(FOLDER / f"{template}.yaml", check_files=False)
    task = suite.tasks[0]
    task.data = str(tmp / "test.jsonl")
    if getattr(task, "fewshot", None) is not None and task.fewshot.data is not None:
        task.fewshot.data = str(tmp / "shots.jsonl")
    suite.tasks = [task]
    return prepare_suite(suite)[0].records


def test_mmlu_prompt_is_lm_evals(tmp_path: Path) -> None:
    base = lm_eval_yaml("mmlu/default/_default_template_yaml")
    described = {
        s: lm_eval_yaml(f"mmlu/default/mmlu_{s}.yaml")["description"]
        for s in ("high_school_biology", "abstract_algebra")
    }

    def q(i: int, subject: str) -> dict[str, Any]:
        return {"question": f"  Question {i} about {subject}? ", "subject": subject,
                "choices": [f"c{i}a", f"c{i}b", f"c{i}c", f"c{i}d"], "answer": i % 4}  # fmt: skip

    shots = [q(i, s) for s in ("abstract_algebra", "high_school_biology") for i in range(6)]
    tests = [q(10, "high_school_biology"), q(11, "abstract_algebra")]
    records = prepared("mmlu", {"test": tests, "shots": shots}, tmp_path)
    letters = base["doc_to_choice"]
    for doc, rec in zip(tests, records, strict=True):
        own = [s for s in shots if s["subject"] == doc["subject"]][:5]  # first_n, own subject
        context = described[doc["subject"]] + "".join(
            render(base["doc_to_text"], s) + " " + letters[s["answer"]] + "\n\n" for s in own
        )
        context += render(base["doc_to_text"], doc)
        assert scored_pairs(rec) == [(context, " " + c) for c in letters]
        assert rec["gold"] == doc["answer"]


def test_hellaswag_prompt_is_lm_evals(tmp_path: Path) -> None:
    import datasets

    lm_eval_tasks()
    from lm_eval.tasks.hellaswag.utils import process_docs

    rows = [
        {"activity_label": "Making a cake", "ctx_a": "A man [header] mixes flour.",
         "ctx_b": "then HE", "endings": [" pours it [title] into a pan.", "eats  it.",
                                         "[step] bakes it ", "runs away."], "label": "2"},
        {"activity_label": "Home and Garden", "ctx_a": "She waters the plants.", "ctx_b": "",
         "endings": ["a", "b [substeps] c", "d", "e"], "label": "0"},
    ]  # fmt: skip
    reference = process_docs(datasets.Dataset.from_list(rows))
    records = prepared("hellaswag", {"test": rows}, tmp_path)
    for doc, rec in zip(reference, records, strict=True):
        assert scored_pairs(rec) == [(doc["query"], " " + c) for c in doc["choices"]]
        assert rec["gold"] == doc["gold"]


def test_arc_prompt_is_lm_evals(tmp_path: Path) -> None:
    arc = lm_eval_yaml("arc/arc_easy.yaml")
    rows = [
        {"question": "Which is a gas?", "answerKey": "C",
         "choices": {"text": ["ice", "water", "steam", "rock"], "label": ["A", "B", "C", "D"]}},
        {"question": "Pick 2.", "answerKey": "2",
         "choices": {"text": ["one", "two", "three"], "label": ["1", "2", "3"]}},
    ]  # fmt: skip
    records = prepared("arc_challenge", {"test": rows}, tmp_path)
    for doc, rec in zip(rows, records, strict=True):
        choices = json.loads(render(arc["doc_to_choice"], doc).replace("'", '"'))
        context = render(arc["doc_to_text"], doc)
        assert scored_pairs(rec) == [(context, " " + c) for c in choices]
        assert rec["gold"] == int(render(arc["doc_to_target"], doc))


def test_winogrande_pairs_are_lm_evals(tmp_path: Path) -> None:
    lm_eval_tasks()
    from lm_eval.tasks.winogrande import preprocess_winogrande as wg

    rows = [
        {"sentence": "The trophy did not fit the case because _ was too big.",
         "option1": "the trophy", "option2": "the case", "answer": "1"},
        {"sentence": "Ann helped Beth since _ had time.", "option1": "Ann",
         "option2": "Beth", "answer": "2"},
    ]  # fmt: skip
    records = prepared("winogrande", {"test": rows}, tmp_path)
    for doc, rec in zip(rows, records, strict=True):
        expected = [(c, " " + wg.doc_to_target(doc)) for c in wg.doc_to_choice(doc)]
        assert scored_pairs(rec) == expected
        assert rec["gold"] == wg.doc_to_text(doc)


def test_gsm8k_prompt_and_scoring_are_lm_evals(tmp_path: Path) -> None:
    gsm = lm_eval_yaml("gsm8k/gsm8k.yaml")
    shots = [{"question": f"What is {i} + {i}?", "answer": f"{i} plus {i}.\n#### {2 * i}"}
             for i in range(1, 10)]  # fmt: skip
    tests = [{"question": "How many legs do 3 cats have?", "answer": "3 * 4 = 12\n#### 12"}]
    [rec] = prepared("gsm8k", {"test": tests, "shots": shots}, tmp_path)
    text = gsm["doc_to_text"]
    context = "".join(render(text, s) + " " + s["answer"] + "\n\n" for s in shots[:8])
    assert rec["prompt"] == context + render(text, tests[0])
    suite = load_suite(FOLDER / "gsm8k.yaml", check_files=False)
    strict, flexible = suite.tasks
    filters = {f["name"]: f["filter"][0] for f in gsm["filter_list"]}
    assert strict.extract.regex == filters["strict-match"]["regex_pattern"]
    assert flexible.extract.regex == filters["flexible-extract"]["regex_pattern"]
    assert flexible.extract.select == "last"  # group_select -1
    [metric] = gsm["metric_list"]
    for task in (strict, flexible):
        assert task.normalize.remove == metric["regexes_to_ignore"]
        assert task.normalize.lower is metric["ignore_case"] is True
        assert task.stop == gsm["generation_kwargs"]["until"]
