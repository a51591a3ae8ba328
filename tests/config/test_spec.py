"""The suite schema: a valid suite loads; every bad input gives an exact located message.

Expected messages are written out in full, line:col included, so that a change of
wording or position is a visible test change (house style: messages are a contract).
Most tests run against a small fake metric registry so that the "available: ..."
lists stay stable; ``test_release_gate_fixture_with_builtin_metrics`` uses the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.config.suite import (
    ClassificationTask,
    DatasetSource,
    GenerationTask,
    MetricSpec,
    PerplexityTask,
    Suite,
    apply_overrides,
    load_suite,
    task_outputs,
    verify_files,
)
from harness.errors import UserError
from harness.metrics import base
from tests.config.suite_files import FIXTURES, HEAD, SENTIMENT, errors, write

# --- a valid suite ------------------------------------------------------------------------


def test_full_suite_loads_resolved(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        HEAD
        + SENTIMENT
        + """\
    metrics: [accuracy, {name: f1, average: macro}, {name: f1, params: {average: per_class}}]
  - id: summarize
    kind: generation
    data: news.jsonl
    prompt: "{{ document }}\\nSummary:"
    reference: summary
    max_new_tokens: 48
    stop: ["\\n"]
  - id: lm
    kind: perplexity
    data: {dataset: json, data_files: wiki.jsonl, split: train}
    text: text
limit: 50
gates:
  - {metric: sentiment.accuracy, min: 0.80}
  - {metric: "sentiment.f1[negative]", min: 0.5}
  - {metric: summarize.rougeL, min: 0.20, severity: warn}
  - {metric: lm.perplexity, max: 40, description: keep the language}
""",
    )
    path = write(suite_dir, path.read_text().replace("path: gpt2", "path: ./base"))
    suite = load_suite(path)

    assert suite.source_path == path
    assert suite.resolve("x/y.jsonl") == suite_dir / "x" / "y.jsonl"
    assert suite.model.path == str(suite_dir / "base")
    sentiment, summarize, lm = suite.tasks
    assert isinstance(sentiment, ClassificationTask)
    assert isinstance(summarize, GenerationTask)
    assert isinstance(lm, PerplexityTask)
    assert sentiment.data == str(suite_dir / "reviews.jsonl")
    # both mapping forms load; defaults are filled in
    assert sentiment.metrics == [
        MetricSpec(name="accuracy"),
        MetricSpec(name="f1", params={"average": "macro", "positive": None}),
        MetricSpec(name="f1", params={"average": "per_class", "positive": None}),
    ]
    assert summarize.metrics == [MetricSpec(name="bleu"), MetricSpec(name="rouge")]
    assert summarize.reference == ["summary"]
    assert isinstance(lm.data, DatasetSource)
    assert lm.data.data_files == str(suite_dir / "wiki.jsonl")
    assert lm.metrics == [MetricSpec(name="perplexity")]
    assert task_outputs(sentiment) == ["accuracy", "f1_macro", "f1[negative]", "f1[positive]"]
    assert task_outputs(summarize) == ["bleu", "rouge1", "rouge2", "rougeL", "rougeLsum"]
    assert [(g.task_id, g.output) for g in suite.gates][:2] == [
        ("sentiment", "accuracy"),
        ("sentiment", "f1[negative]"),
    ]
    assert suite.gates[2].severity == "warn" and suite.gates[0].severity == "fail"
    assert suite.output == str(suite_dir / "reports" / "gate")
    assert (suite.limit, suite.seed, suite.batch_size) == (50, 1234, 8)
    assert (suite.bootstrap.samples, suite.bootstrap.confidence) == (1000, 0.95)

    dumped = suite.model_dump(mode="json")
    assert dumped["tasks"][0]["data"] == str(suite_dir / "reviews.jsonl")
    assert Suite.model_validate(dumped).model_dump(mode="json") == dumped


def test_default_metrics_per_kind() -> None:
    data = {"id": "t", "data": "x.jsonl", "prompt": "p"}
    assert ClassificationTask.model_validate(
        {**data, "kind": "classification", "choices": ["a", "b"], "label": "y"}
    ).metrics == [MetricSpec(name="accuracy")]
    assert GenerationTask.model_validate(
        {**data, "kind": "generation", "reference": "r"}
    ).metrics == [MetricSpec(name="bleu"), MetricSpec(name="rouge")]
    assert PerplexityTask.model_validate(
        {"id": "t", "data": "x.jsonl", "kind": "perplexity", "text": "t"}
    ).metrics == [MetricSpec(name="perplexity")]


def test_yaml_anchors_and_merge_keys(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        HEAD
        + """\
  - &base
    id: a
    kind: classification
    data: reviews.jsonl
    prompt: "{{ text }}"
    choices: [" negative", " positive"]
    label: label
  - <<: *base
    id: b
""",
    )
    assert [t.id for t in load_suite(path).tasks] == ["a", "b"]


def test_release_gate_fixture_with_builtin_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real registry: metric names, params and outputs of the shipped fixture."""
    try:
        base.available()
    except ImportError as exc:  # the built-in metric modules are being written elsewhere
        pytest.skip(f"built-in metrics not importable yet: {exc}")
    monkeypatch.chdir(FIXTURES)
    suite = load_suite("release-gate.yaml")
    assert [task_outputs(t) for t in suite.tasks] == [
        ["accuracy", "precision", "recall", "f1", "ece", "f1[negative]", "f1[positive]"],
        ["bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match"],
        ["perplexity", "bits_per_byte"],
    ]
    assert suite.model.path == str(FIXTURES / "base")
    assert suite.output == str(FIXTURES / "reports" / "release-gate")


# --- files, YAML and the schema version -------------------------------------------------


def test_missing_suite_file(suite_dir: Path) -> None:
    assert errors(suite_dir / "nope.yaml") == ["nope.yaml: file not found"]


def test_invalid_yaml(suite_dir: Path) -> None:
    path = write(suite_dir, "schema_version: 1\nname: [unclosed\nseed: 1\n")
    assert errors(path) == [
        "suite.yaml:3:5: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 2)"
    ]
    path = write(suite_dir, "schema_version: 1\nname: x\n  bad: 1\n")
    assert errors(path) == ["suite.yaml:3:6: invalid YAML: mapping values are not allowed here"]


def test_control_character(suite_dir: Path) -> None:
    path = write(suite_dir, "schema_version: 1\nname: \x01\n")
    assert errors(path) == ["suite.yaml:2:7: invalid YAML: unacceptable character #x0001"]


def test_not_utf8(suite_dir: Path) -> None:
    (suite_dir / "suite.yaml").write_bytes(b"schema_version: 1\nname: caf\xe9\n")
    assert errors(suite_dir / "suite.yaml") == ["suite.yaml:2:10: not valid UTF-8"]


@pytest.mark.parametrize("text", ["", "\n# only a comment\n"])
def test_empty_file(suite_dir: Path, text: str) -> None:
    assert errors(write(suite_dir, text)) == ["suite.yaml: empty file"]


@pytest.mark.parametrize(
    ("text", "got"), [("- a\n- b\n", "a list"), ("just text\n", "'just text'")]
)
def test_top_level_not_a_mapping(suite_dir: Path, text: str, got: str) -> None:
    assert errors(write(suite_dir, text)) == [
        f"suite.yaml:1:1: the top level must be a mapping of fields, got {got}"
    ]


def test_schema_version_missing_is_reported_alone(suite_dir: Path) -> None:
    path = write(suite_dir, "# a suite\nname: 5\nfoo: 1\n")
    assert errors(path) == [
        "suite.yaml:2:1: schema_version: missing; add 'schema_version: 1' at the top of the file"
    ]


@pytest.mark.parametrize(("value", "shown"), [("2", "2"), ("'1'", "'1'"), ("true", "true")])
def test_schema_version_unsupported(suite_dir: Path, value: str, shown: str) -> None:
    path = write(suite_dir, f"name: 5\nschema_version: {value}\nfoo: 1\n")
    assert errors(path) == [
        f"suite.yaml:2:17: schema_version: unsupported version {shown}; "
        "this harness reads schema_version 1"
    ]


def test_duplicate_keys(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        HEAD
        + SENTIMENT
        + """\
    label: gold
seed: 1
seed: 2
""",
    )
    assert errors(path) == [
        "suite.yaml:12:5: tasks[0].label: duplicate key 'label' (first defined at line 11)",
        "suite.yaml:14:1: seed: duplicate key 'seed' (first defined at line 13)",
    ]


def test_recursive_alias(suite_dir: Path) -> None:
    assert errors(write(suite_dir, "a: &x [*x]\n")) == [
        "suite.yaml:1:4: recursive alias is not supported"
    ]


# --- pydantic errors, located ---------------------------------------------------------------


def test_unknown_key_points_at_the_key(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        """
        schema_version: 1
        name: gate
        model:
          path: gpt2
          devise: cpu
        tasks:
          - id: lm
            kind: perplexity
            data: wiki.jsonl
            text: text
            prompt: "{{ text }}"
        audit: []
        """,
    )
    assert errors(path) == [
        "suite.yaml:5:3: model.devise: unknown field (did you mean 'device'?)",
        "suite.yaml:11:5: tasks[0].prompt: unknown field; "
        "allowed: id, kind, data, id_field, metrics, limit, chat, text, messages, score",
        "suite.yaml:12:1: audit: unknown field (did you mean 'audits'?)",
    ]


def test_missing_field_points_at_the_parent_mapping(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        """
        schema_version: 1
        name: gate
        model: {adapter: ./x}
        tasks:
          - id: sentiment
            kind: classification
            data: reviews.jsonl
            choices: [" negative", " positive"]
        """,
    )
    assert errors(path, check_files=False) == [
        "suite.yaml:3:8: model.path: missing required field",
        "suite.yaml:5:5: tasks[0].label: missing required field",
        "suite.yaml:5:5: tasks[0].prompt: missing required field",
    ]


def test_nested_list_locations(suite_dir: Path) -> None:
    """The discriminator tag pydantic puts in the loc is dropped; list indices kept."""
    path = write(
        suite_dir,
        HEAD
        + """\
  - id: sentiment
    kind: classification
    data: reviews.jsonl
    prompt: "{{ text }}"
    choices: [" negative", 5, ""]
    label: label
  - id: summarize
    kind: generation
    data: {dataset: cnn, split: 3}
    prompt: "{{ document }}"
    reference: [summary, 7]
    stop: ["\\n", ""]
    max_new_tokens: 0
""",
    )
    assert errors(path) == [
        "suite.yaml:10:28: tasks[0].choices[1]: must be text, got 5",
        "suite.yaml:10:31: tasks[0].choices[2]: must not be empty, got ''",
        "suite.yaml:14:33: tasks[1].data.split: must be text, got 3",
        "suite.yaml:16:26: tasks[1].reference[1]: must be text, got 7",
        "suite.yaml:17:18: tasks[1].stop[1]: must not be empty, got ''",
        "suite.yaml:18:21: tasks[1].max_new_tokens: must be >= 1, got 0",
    ]


def test_task_kind(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        HEAD
        + """\
  - id: a
    kind: clasification
  - id: b
  - 5
""",
    )
    assert errors(path) == [
        "suite.yaml:7:11: tasks[0].kind: must be one of classification | generation | "
        "perplexity | lm_eval, got 'clasification'",
        "suite.yaml:8:5: tasks[1].kind: missing required field "
        "(classification | generation | perplexity | lm_eval)",
        "suite.yaml:9:5: tasks[2]: must be a mapping, got 5",
    ]


def test_scalar_fields(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        """
        schema_version: 1
        name: release gate
        model: {path: gpt2, dtype: fp32, device: gpu, max_length: 4}
        tasks:
          - id: 1lm
            kind: perplexity
            data: {split: test}
            text: text
        batch_size: 0
        bootstrap: {samples: -1, confidence: 1}
        seed: many
        """,
    )
    assert errors(path, check_files=False) == [
        "suite.yaml:2:7: name: must start with a letter or '_' and hold only letters, "
        "digits, '_' and '-'",
        "suite.yaml:3:28: model.dtype: must be one of 'auto', 'float32', 'bfloat16' or 'float16', "
        "got 'fp32'",
        "suite.yaml:3:42: model.device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'",
        "suite.yaml:3:59: model.max_length: must be >= 8, got 4",
        "suite.yaml:5:9: tasks[0].id: must start with a letter or '_' and hold only letters, "
        "digits, '_' and '-'",
        "suite.yaml:7:11: tasks[0].data.dataset: missing required field",
        "suite.yaml:9:13: batch_size: must be >= 1, got 0",
        "suite.yaml:10:22: bootstrap.samples: must be >= 0, got -1",
        "suite.yaml:10:38: bootstrap.confidence: must be < 1, got 1",
        "suite.yaml:11:7: seed: must be an integer, got 'many'",
    ]


def test_choices_unique_and_data_shape(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        HEAD
        + """\
  - id: sentiment
    kind: classification
    data: 5
    prompt: "{{ text }}"
    choices: [" yes", " no", " yes"]
    label: label
""",
    )
    assert errors(path) == [
        "suite.yaml:8:11: tasks[0].data: must be a file path or a mapping "
        "{dataset: NAME, split: SPLIT}, got 5",
        "suite.yaml:10:14: tasks[0].choices: duplicate choice ' yes'",
    ]


def test_template_syntax_error(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        HEAD
        + """\
  - id: sentiment
    kind: classification
    data: reviews.jsonl
    prompt: |
      Review: {{ text }}
      Sentiment: {% if x %}
    choices: [" negative", " positive"]
    label: label
  - id: summarize
    kind: generation
    data: news.jsonl
    prompt: "{{ document }"
    reference: summary
""",
    )
    assert errors(path) == [
        "suite.yaml:9:13: tasks[0].prompt: invalid template: Unexpected end of template. "
        "Jinja was looking for the following tags: 'elif' or 'else' or 'endif'. The "
        "innermost block that needs to be closed is 'if'. (template line 2)",
        "suite.yaml:17:13: tasks[1].prompt: invalid template: unexpected '}'",
    ]


def test_all_errors_reported_sorted_by_line(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        """
        schema_version: 1
        gates:
          - {metric: lm.perplexity}
        name: gate
        model: {path: gpt2}
        tasks:
          - {id: lm, kind: perplexity, data: nowhere.jsonl, text: text}
        seed: x
        """,
    )
    assert errors(path) == [
        "suite.yaml:3:5: gates[0]: needs at least one of: min, max, max_drop, max_increase",
        "suite.yaml:7:38: tasks[0].data: file not found: " + str(suite_dir / "nowhere.jsonl"),
        "suite.yaml:8:7: seed: must be an integer, got 'x'",
    ]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        out += _paths(value, (*prefix, key))
    return out


def test_any_wrong_value_gives_located_errors_never_a_traceback(suite_dir: Path) -> None:
    """Replace every node of a valid suite by values of other shapes: load_suite either
    accepts the result or raises UserError whose every line is located in the file."""
    import copy

    import yaml

    valid = yaml.safe_load((FIXTURES / "release-gate.yaml").read_text())
    valid["model"]["path"] = "gpt2"
    metrics = {  # those of the fake registry
        "classification": ["accuracy", {"name": "f1", "average": "macro"}],
        "generation": ["bleu", "rouge"],
        "perplexity": ["perplexity"],
    }
    files = {"classification": "reviews.jsonl", "generation": "news.jsonl"}
    for task in valid["tasks"]:
        task["metrics"] = metrics[task["kind"]]
        task["data"] = files.get(task["kind"], "wiki.jsonl")
    valid["gates"] = [g for g in valid["gates"] if "f1" not in g["metric"]]
    write(suite_dir, yaml.safe_dump(valid))
    load_suite("suite.yaml")
    replacements = [None, -1, "x", ["x"], {"x": 1}]  # every shape against every field
    for where in _paths(valid):
        if where == ("schema_version",):
            continue
        for value in replacements:
            data = copy.deepcopy(valid)
            node = data
            for key in where[:-1]:
                node = node[key]
            node[where[-1]] = value
            write(suite_dir, yaml.safe_dump(data))
            try:
                load_suite("suite.yaml")
            except UserError as exc:
                assert all(m.startswith("suite.yaml:") for m in exc.messages), (where, value)


# --- command-line overrides -------------------------------------------------------------


def test_apply_overrides(suite_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        suite_dir,
        HEAD.replace("gpt2", "./base")
        + SENTIMENT
        + "    limit: 100\n  - {id: lm, kind: perplexity, data: wiki.jsonl, text: text, limit: 3}\n",
    )
    suite = load_suite(path)
    elsewhere = suite_dir / "elsewhere"
    (elsewhere / "ckpt").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # CLI paths are relative to the cwd, not the suite

    new = apply_overrides(suite, adapter="ckpt", out="out", limit=10, batch_size=2)
    assert new.model.path == str(suite_dir / "base")
    assert new.model.adapter == str(elsewhere / "ckpt")
    assert new.output == str(elsewhere / "out")
    assert (new.limit, new.batch_size) == (10, 2)
    assert [t.limit for t in new.tasks] == [10, 3]
    assert new.source_path == path
    verify_files(new)
    # the original is untouched
    assert (suite.model.adapter, suite.limit, suite.tasks[0].limit) == (None, None, 100)

    hub = apply_overrides(suite, model="org/name")
    assert hub.model.path == "org/name"
    verify_files(hub)


def test_overrides_checked(suite_dir: Path) -> None:
    path = write(suite_dir, HEAD + SENTIMENT)
    suite = load_suite(path)
    with pytest.raises(UserError) as info:
        apply_overrides(suite, limit=0, batch_size=-1)
    assert info.value.messages == [
        "--limit: must be >= 1, got 0",
        "--batch-size: must be >= 1, got -1",
    ]
    with pytest.raises(UserError) as info:
        verify_files(apply_overrides(suite, model="./nothing-here"))
    assert info.value.messages == ["--model: folder not found: " + str(suite_dir / "nothing-here")]


def test_verify_files_after_loading_without_checks(suite_dir: Path) -> None:
    """The CLI can load with check_files=False, override, then check: a placeholder model
    path in the suite does not matter once --model replaces it."""
    path = write(suite_dir, HEAD.replace("gpt2", "./placeholder") + SENTIMENT)
    suite = load_suite(path, check_files=False)
    with pytest.raises(UserError) as info:
        verify_files(suite)
    assert info.value.messages == [
        "suite.yaml:4:9: model.path: folder not found: " + str(suite_dir / "placeholder")
    ]
    verify_files(apply_overrides(suite, model="base"))


# --- generated reference ------------------------------------------------------------------


def test_suite_reference_is_up_to_date() -> None:
    from harness.config.reference import REFERENCE, render_reference

    assert REFERENCE.read_text(encoding="utf-8") == render_reference(), (
        "docs/suite-reference.md is stale: run `python -m harness.config.reference`"
    )


def test_every_field_is_documented() -> None:
    from harness.config.reference import SECTIONS

    undocumented = [
        f"{model.__name__}.{name}"
        for model, _, _ in SECTIONS
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert undocumented == []
