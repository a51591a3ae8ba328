"""Bad audit configs are located errors (exact messages), exit code 2; gate names of
audit values are checked when the suite loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.main import main
from harness.config.suite import load_suite
from harness.errors import UserError
from tests.audits.conftest import reviews, write_suite

QUOTE = '"'
ONE_OF_EACH = """  forgetting:
    tasks: [sentiment]
  fairness:
    task: sentiment
    group: group
    positive: " positive"
    counterfactual:
      swaps: {he: she}
  explain:
    task: sentiment
    sensitive_terms: [he, she]
"""


def at(path: Path, needle: str, value: str | None = None) -> str:
    """'suite.yaml:LINE:COL' of ``value`` (default: ``needle``) on the first line of the
    file holding ``needle``."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            col = line.find(value if value is not None else needle, line.find(needle))
            return f"{path.name}:{n}:{col + 1}"
    raise AssertionError(needle)


def errors(suite: Path, capsys: pytest.CaptureFixture[str], command: str = "validate") -> list[str]:
    code = main([command, str(suite), *(["--no-progress"] if command == "run" else [])])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return [line.removeprefix("error: ") for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # paths in messages relative to the suite's folder


def test_valid_audits_load_with_defaults_and_resolved_paths(tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text("sent_more,sent_less,bias_type\na b,c d,gender\n")
    audits = ONE_OF_EACH + "    samples: 4\n"
    audits = audits.replace(
        "      swaps: {he: she}\n", "      swaps: {he: she}\n    pairs: pairs.csv\n"
    )
    suite = load_suite(write_suite(tmp_path, adapter="gpt2-lora", audits=audits))
    a = suite.audits
    assert a.forgetting is not None and a.forgetting.tasks == ["sentiment"]
    assert a.forgetting.baseline is None
    assert a.fairness is not None and a.fairness.group == ["group"]
    assert a.fairness.min_group_size == 20
    assert a.fairness.counterfactual is not None and a.fairness.counterfactual.bidirectional
    assert a.fairness.pairs is not None
    assert a.fairness.pairs.path == str(tmp_path / "pairs.csv")
    assert (a.fairness.pairs.more, a.fairness.pairs.less) == ("sent_more", "sent_less")
    assert a.explain is not None and a.explain.methods == ["shap", "lime"]
    assert (a.explain.samples, a.explain.max_evals) == (4, 300)


def test_unknown_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(
        tmp_path,
        audits="""  forgetting:
    tasks: [sentiment, original_qa]
  fairness:
    task: sentimnet
    group: group
  explain:
    task: nope
""",
    )
    assert errors(suite, capsys) == [
        f"{at(suite, 'original_qa')}: audits.forgetting.tasks[1]: no task 'original_qa'; "
        "tasks: sentiment",
        f"{at(suite, 'sentimnet')}: audits.fairness.task: no task 'sentimnet'; tasks: sentiment",
        f"{at(suite, 'nope')}: audits.explain.task: no task 'nope'; tasks: sentiment",
    ]


def test_wrong_task_kind_and_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "wiki.jsonl").write_text('{"text": "a b c"}\n')
    lm_task = "  - {id: lm, kind: perplexity, data: data/wiki.jsonl, text: text}\n"
    suite = write_suite(
        tmp_path,
        extra_tasks=lm_task,
        audits="""  fairness:
    task: sentiment
    group: group
    positive: " favourable"
  explain:
    task: lm
""",
    )
    assert errors(suite, capsys) == [
        f"{at(suite, 'positive: ' + QUOTE, QUOTE)}: audits.fairness.positive: ' favourable' is not one of "
        "the task's choices (' negative', ' positive')",
        f"{at(suite, 'task: lm', 'lm')}: audits.explain.task: task 'lm' is a perplexity task; "
        "this audit needs a classification task",
    ]


def test_a_boolean_is_not_a_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """YAML's true was read as min_group_size 1 (issue #24)."""
    suite = write_suite(
        tmp_path,
        audits="""  fairness:
    task: sentiment
    group: group
    min_group_size: true
""",
    )
    assert errors(suite, capsys) == [
        f"{at(suite, 'min_group_size: true', 'true')}: audits.fairness.min_group_size: "
        "must be a number, not a boolean, got true"
    ]


def test_empty_swaps_and_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(
        tmp_path,
        audits="""  fairness:
    task: sentiment
    group: group
    min_group_size: 1
    gruop: x
    counterfactual:
      swaps: {}
  explain:
    task: sentiment
    methods: [shap, anchors]
    sensitive_terms: [he, new york]
""",
    )
    assert errors(suite, capsys) == [
        f"{at(suite, 'min_group_size: 1', '1')}: audits.fairness.min_group_size: must be >= 2, got 1",
        f"{at(suite, 'gruop')}: audits.fairness.gruop: unknown field (did you mean 'group'?)",
        f"{at(suite, '{}')}: audits.fairness.counterfactual.swaps: "
        "must name at least one swap, e.g. {he: she}",
        f"{at(suite, 'anchors')}: audits.explain.methods[1]: must be one of 'shap' or 'lime', "
        "got 'anchors'",
        f"{at(suite, '[he, new')}: audits.explain.sensitive_terms: sensitive terms are single "
        "words; 'new york' is not",
    ]


def test_group_field_missing_from_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = reviews(n_per_group=5)
    del rows[2]["group"]
    rows[6]["group"] = None
    suite = write_suite(tmp_path, rows=rows, audits="  fairness: {task: sentiment, group: group}\n")
    assert errors(suite, capsys) == [
        "data/reviews.jsonl line 3: audits.fairness.group: missing field 'group'",
        "data/reviews.jsonl line 7: audits.fairness.group: missing field 'group'",
    ]
    # a run stops at the same check, before any model is loaded
    assert errors(suite, capsys, "run")[0].startswith("data/reviews.jsonl line 3:")


def test_group_with_one_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = reviews(n_per_group=5)
    rows.append({"id": "x", "text": "they said it was fun", "label": 1, "group": "they"})
    suite = write_suite(
        tmp_path, rows=rows, audits="  fairness: {task: sentiment, group: [group]}\n"
    )
    assert errors(suite, capsys) == [
        "data/reviews.jsonl line 11: audits.fairness.group: group 'they' has only one example; "
        "a group needs at least two to be measured (fix or drop this row, or merge the group)"
    ]


def test_counterfactual_and_explain_field_typos_are_one_error_at_the_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A field no example has is a typo in the suite: one located error with the fields
    the data has and the closest one, not one error per row."""
    suite = write_suite(
        tmp_path,
        rows=reviews(n_per_group=3),
        audits="""  fairness:
    task: sentiment
    group: group
    counterfactual: {swaps: {he: she}, fields: [txt]}
  explain: {task: sentiment, group: [group, gruop]}
""",
    )
    have = "in data/reviews.jsonl (fields: group, id, label, text)"
    assert errors(suite, capsys) == [
        f"{at(suite, 'txt')}: audits.fairness.counterfactual.fields[0]: no field 'txt' {have}; "
        "did you mean 'text'?",
        f"{at(suite, 'gruop')}: audits.explain.group[1]: no field 'gruop' {have}; "
        "did you mean 'group'?",
    ]


def test_counterfactual_and_explain_fields_missing_from_some_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = reviews(n_per_group=3)
    rows[0] = {**rows[0], "title": "a title", "age": "old"}
    suite = write_suite(
        tmp_path,
        rows=rows,
        audits="""  fairness:
    task: sentiment
    group: group
    counterfactual: {swaps: {he: she}, fields: [title]}
  explain: {task: sentiment, group: [group, age]}
""",
    )
    found = errors(suite, capsys)
    assert found[:2] == [
        "data/reviews.jsonl line 2: audits.fairness.counterfactual.fields: missing field 'title'",
        "data/reviews.jsonl line 3: audits.fairness.counterfactual.fields: missing field 'title'",
    ]
    assert "data/reviews.jsonl line 2: audits.explain.group: missing field 'age'" in found
    assert len(found) == 10  # rows 2-6, each without title and age


def test_explain_field_must_be_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, audits="  explain: {task: sentiment, field: title}\n")
    assert errors(suite, capsys) == [
        f"{at(suite, 'title')}: audits.explain.field: the prompt of task 'sentiment' does not "
        "read field 'title' (it reads: text)"
    ]
    suite.write_text(suite.read_text().replace('"Review: {{ text }}', '"{{ title }}: {{ text }}'))
    suite.write_text(
        suite.read_text().replace(
            "  explain: {task: sentiment, field: title}", "  explain: {task: sentiment}"
        )
    )
    assert errors(suite, capsys) == [
        f"{at(suite, '{task: sentiment}')}: audits.explain.field: the prompt of task 'sentiment' reads "
        "2 fields (text, title); set `field` to the one whose words are explained"
    ]


def test_pairs_file_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audits = "  fairness: {task: sentiment, group: group, pairs: crows.csv}\n"
    suite = write_suite(tmp_path, audits=audits)
    assert errors(suite, capsys) == [
        f"{at(suite, 'crows.csv')}: audits.fairness.pairs.path: file not found: "
        f"{tmp_path / 'crows.csv'}"
    ]
    (tmp_path / "crows.csv").write_text(
        ",sent_more,sent_less,bias_type\n0,a b,c d,gender\n1,,e f,age\n2,g h,i j\n"
    )
    assert errors(suite, capsys) == [
        "crows.csv line 3: field 'sent_more' is empty",
        "crows.csv line 4: missing field 'bias_type' (audits.fairness.pairs.bias_type)",
    ]


def test_gate_names_of_audits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = [
        "forgetting.sentiment.accuracy",
        "forgetting.sentiment.f1.delta",
        "forgetting.sentiment.accuracy.relative_change",
        "fairness.sentiment.demographic_parity_difference",
        "fairness.sentiment.demographic_parity_ratio",
        "fairness.sentiment.equalized_odds_difference",
        "fairness.sentiment.equalized_odds_ratio",
        "fairness.sentiment.worst_group.accuracy",
        "fairness.sentiment.worst_group.fpr",
        "fairness.sentiment.counterfactual.flip_rate",
        "fairness.sentiment.counterfactual.mean_abs_prob_change",
        "explain.sentiment.sensitive_share",
        "explain.sentiment.shap.sensitive_share",
        "explain.sentiment.lime.sensitive_share",
    ]
    gates = "".join(f"  - {{metric: {m}, max: 1}}\n" for m in ok)
    suite = write_suite(tmp_path, adapter="org/adapter", audits=ONE_OF_EACH, gates=gates)
    assert len(load_suite(suite).gates) == len(ok)

    bad = write_suite(
        tmp_path,
        audits="  fairness: {task: sentiment, group: group}\n",
        gates="  - {metric: forgetting.sentiment.accuracy, max_drop: 0.1}\n"
        "  - {metric: fairness.sentiment.flip_rate, max: 0.1}\n"
        "  - {metric: fairness.sentiment.pairs.stereotype_score, max: 0.6}\n",
    )
    published = (
        "fairness.sentiment.demographic_parity_difference, "
        "fairness.sentiment.demographic_parity_ratio, "
        "fairness.sentiment.equalized_odds_difference, "
        "fairness.sentiment.equalized_odds_ratio, fairness.sentiment.worst_group.accuracy, "
        "fairness.sentiment.worst_group.f1, fairness.sentiment.worst_group.selection_rate, "
        "fairness.sentiment.worst_group.tpr, fairness.sentiment.worst_group.fpr"
    )
    assert errors(bad, capsys) == [
        f"{at(bad, 'forgetting.sentiment')}: gates[0].metric: audit 'forgetting' is not "
        "configured; add an `audits.forgetting` section",
        f"{at(bad, 'fairness.sentiment.flip')}: gates[1].metric: audit 'fairness' publishes no "
        f"'fairness.sentiment.flip_rate'; it publishes: {published}",
        f"{at(bad, 'fairness.sentiment.pairs')}: gates[2].metric: audit 'fairness' publishes no "
        f"'fairness.sentiment.pairs.stereotype_score'; it publishes: {published}",
    ]


def test_pairs_gate_names_by_bias_type(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("sent_more,sent_less,bias_type\na b,c d,gender\n")
    audits = "  fairness: {task: sentiment, group: group, pairs: p.csv}\n"
    gates = (
        "  - {metric: fairness.sentiment.pairs.stereotype_score, max: 0.6}\n"
        "  - {metric: 'fairness.sentiment.pairs.stereotype_score[gender]', max: 0.6}\n"
    )
    assert len(load_suite(write_suite(tmp_path, audits=audits, gates=gates)).gates) == 2
    gates += "  - {metric: 'fairness.sentiment.pairs.stereotype_score[]', max: 0.6}\n"
    with pytest.raises(UserError) as err:
        load_suite(write_suite(tmp_path, audits=audits, gates=gates))
    assert "gates[2].metric: audit 'fairness' publishes no" in err.value.messages[0]
    assert "fairness.sentiment.pairs.stereotype_score[<bias type>]" in err.value.messages[0]


def test_reserved_task_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path)
    suite.write_text(suite.read_text().replace("id: sentiment", "id: fairness"))
    assert errors(suite, capsys) == [
        f"{at(suite, 'fairness')}: tasks[0].id: 'fairness' is reserved for the fairness "
        "audit's gate names; choose another task id"
    ]


def test_forgetting_needs_an_adapter_or_a_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, audits="  forgetting:\n    tasks: [sentiment]\n")
    assert main(["validate", str(suite)]) == 0  # --adapter may still come with `run`
    assert errors(suite, capsys, "run") == [
        f"{at(suite, 'tasks: [sentiment]')}: audits.forgetting: the model has no adapter, so "
        "there is no base model to compare with; set audits.forgetting.baseline to the base "
        "model's folder"
    ]
    suite = write_suite(
        tmp_path, audits="  forgetting:\n    tasks: [sentiment]\n    baseline: ./base\n"
    )
    assert errors(suite, capsys) == [
        f"{at(suite, './base')}: audits.forgetting.baseline: folder not found: {tmp_path / 'base'}"
    ]


def test_any_wrong_audit_value_is_located_never_a_traceback(tmp_path: Path) -> None:
    """Every node of the audits section replaced by values of other shapes: load_suite
    accepts the result or raises a UserError whose every line is located."""
    import copy

    import yaml

    suite = write_suite(tmp_path, adapter="org/adapter", audits=ONE_OF_EACH)
    valid = yaml.safe_load(suite.read_text())
    load_suite(suite)

    def paths(node: object, prefix: tuple[object, ...]) -> list[tuple[object, ...]]:
        out = [prefix]
        if isinstance(node, dict):
            for k, v in node.items():
                out += paths(v, (*prefix, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out += paths(v, (*prefix, i))
        return out

    for where in paths(valid["audits"], ("audits",)):
        for value in (None, -1, "x", ["x"], {"x": 1}):
            data = copy.deepcopy(valid)
            node = data
            for key in where[:-1]:
                node = node[key]
            node[where[-1]] = value
            suite.write_text(yaml.safe_dump(data))
            try:
                load_suite(suite)
            except UserError as exc:
                assert all(m.startswith("suite.yaml:") for m in exc.messages), (where, value)


def test_registry_runs_audits_in_order_and_refuses_duplicates() -> None:
    from harness.audits import available, get, register

    assert available() == ["forgetting", "fairness", "explain", "privacy"]
    with pytest.raises(ValueError, match="audit 'fairness' is already registered"):
        register(get("fairness"))
