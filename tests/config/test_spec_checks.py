"""Suite checks beyond the schema (harness.config.checks): metrics against the registry,
gates against what tasks and audits produce, files on disk. Messages are exact, as in
test_spec.py, against the same small fake metric registry."""

from __future__ import annotations

from pathlib import Path

from harness.config.suite import (
    TASK_CLASSES,
    DatasetSource,
    Gate,
    load_suite,
    task_outputs,
)
from tests.config.suite_files import HEAD, SENTIMENT, errors, write

# --- checks beyond the schema -------------------------------------------------------------


def test_duplicate_task_ids(suite_dir: Path) -> None:
    path = write(suite_dir, HEAD + SENTIMENT + SENTIMENT)
    assert errors(path) == [
        "suite.yaml:12:9: tasks[1].id: duplicate task id 'sentiment' (first used by tasks[0])"
    ]


def test_metric_errors(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        HEAD
        + SENTIMENT
        + """\
    metrics:
      - accuracy
      - f2
      - bleu
      - {name: f1, averge: macro}
      - {name: f1, average: median}
      - {name: accuracy, k: 1}
      - {average: macro}
      - 5
""",
    )
    assert errors(path) == [
        "suite.yaml:14:9: tasks[0].metrics[1]: unknown metric 'f2'; available: accuracy, f1",
        "suite.yaml:15:9: tasks[0].metrics[2]: metric 'bleu' does not apply to "
        "classification tasks; available: accuracy, f1",
        "suite.yaml:16:28: tasks[0].metrics[3].averge: unknown parameter 'averge' of metric "
        "'f1'; allowed: average, positive",
        "suite.yaml:17:9: tasks[0].metrics[4]: average must be one of binary, macro, micro, "
        "weighted, per_class",
        "suite.yaml:18:29: tasks[0].metrics[5].k: unknown parameter 'k': metric 'accuracy' "
        "takes no parameters",
        "suite.yaml:19:9: tasks[0].metrics[6].name: missing required field",
        "suite.yaml:20:9: tasks[0].metrics[7]: must be a metric name or a mapping "
        "{name: NAME, <param>: VALUE}",
    ]


def test_duplicate_metric_output(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        HEAD + SENTIMENT + "    metrics: [accuracy, f1, {name: f1, average: binary}]\n",
    )
    assert errors(path) == [
        "suite.yaml:12:29: tasks[0].metrics[2]: output 'f1' is already produced by metrics[1]"
    ]


def test_gate_errors(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        HEAD
        + SENTIMENT
        + """\
    metrics: [accuracy, f1]
gates:
  - {metric: sentiment.accuracy, min: 0.8}
  - {metric: sentiment.acc, min: 0.8}
  - {metric: nope.rougeL, min: 0.2, severity: warn}
  - {metric: sentiment.f1, min: 0.9, max: 0.5}
  - {metric: sentiment.f1}
  - {metric: sentimentf1, min: 1}
  - {metric: sentiment.f1, max: .nan, severity: block}
""",
    )
    assert errors(path) == [
        "suite.yaml:15:14: gates[1].metric: task 'sentiment' produces no 'acc'; "
        "it produces: accuracy, f1",
        "suite.yaml:16:14: gates[2].metric: no task 'nope'; tasks: sentiment",
        "suite.yaml:17:43: gates[3].max: must be >= min (0.9)",
        "suite.yaml:18:5: gates[4]: needs at least one of: min, max, max_drop, max_increase",
        "suite.yaml:19:14: gates[5].metric: must be '<task id>.<output>', "
        "e.g. 'sentiment.accuracy'",
        "suite.yaml:20:33: gates[6].max: must be a finite number, got nan",
        "suite.yaml:20:49: gates[6].severity: must be one of 'fail' or 'warn', got 'block'",
    ]


def test_gate_on_an_invalid_task_reports_only_the_task(suite_dir: Path) -> None:
    """No cascade: a task whose schema fails does not make its gates 'unknown output'."""
    path = write(
        suite_dir,
        HEAD
        + SENTIMENT.replace("label: label", "label: 5")
        + "gates: [{metric: sentiment.x, min: 1}]\n",
    )
    assert errors(path) == [
        "suite.yaml:11:12: tasks[0].label: must be a field name or a mapping {expr: EXPRESSION}, got 5"
    ]


def test_gate_thresholds_are_declared_by_field() -> None:
    """Adding a threshold (e.g. max_drop) is one field made with _threshold()."""
    assert Gate.thresholds() == ["min", "max", "max_drop", "max_increase"]
    gate = Gate(metric="a.f1[negative]", max=1)
    assert (gate.task_id, gate.output) == ("a", "f1[negative]")


def test_files_checked(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        """
        schema_version: 1
        name: gate
        model: {path: ./no-base, adapter: ckpts/run1/final}
        tasks:
          - id: a
            kind: perplexity
            data: missing.jsonl
            text: text
            metrics: [perplexity, ./my_metric.py]
          - id: b
            kind: perplexity
            data: notes.json
            text: text
          - id: c
            kind: perplexity
            data: {dataset: ./local_ds, split: test}
            text: text
        """,
    )
    missing = [
        "suite.yaml:3:15: model.path: folder not found: " + str(suite_dir / "no-base"),
        "suite.yaml:3:35: model.adapter: folder not found: " + str(suite_dir / "ckpts/run1/final"),
        "suite.yaml:7:11: tasks[0].data: file not found: " + str(suite_dir / "missing.jsonl"),
        "suite.yaml:9:27: tasks[0].metrics[1]: metric plug-in not found: "
        + str(suite_dir / "my_metric.py"),
        "suite.yaml:12:11: tasks[1].data: unsupported file type '.json'; use .jsonl, .csv or .tsv",
        "suite.yaml:16:21: tasks[2].data.dataset: folder not found: " + str(suite_dir / "local_ds"),
    ]
    assert errors(path) == missing
    # without file checks only the file type is still an error
    assert errors(path, check_files=False) == [missing[4]]


def test_hub_ids_are_not_checked(suite_dir: Path) -> None:
    path = write(suite_dir, HEAD.replace("gpt2", "org/name") + SENTIMENT)
    assert load_suite(path).model.path == "org/name"


def test_plugin_metric_output_is_the_file_stem(suite_dir: Path) -> None:
    (suite_dir / "metrics").mkdir()
    (suite_dir / "metrics" / "toxicity.py").write_text("# an evaluate metric\n")
    path = write(
        suite_dir,
        HEAD
        + SENTIMENT
        + """\
    metrics: [accuracy, ./metrics/toxicity.py]
gates: [{metric: sentiment.toxicity, max: 0.1}]
""",
    )
    suite = load_suite(path)
    assert suite.tasks[0].metrics[1].name == str(suite_dir / "metrics" / "toxicity.py")
    assert task_outputs(suite.tasks[0]) == ["accuracy", "toxicity"]


def test_tag_names_are_not_field_names() -> None:
    """Union tags are dropped from error locs: a field of the same name would be too."""
    fields = {name for cls in (*TASK_CLASSES.values(), DatasetSource) for name in cls.model_fields}
    assert not fields & {*TASK_CLASSES, "file", "datasets"}
