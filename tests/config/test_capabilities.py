"""A suite asks its backend only for what it computes: a chat API gives no
log-likelihoods, so tasks and audits that score by them are refused at validation,
located at the task or audit (harness.config.capabilities)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.capabilities import AUDIT_NEEDS, KIND_NEEDS
from harness.config.suite import load_suite
from harness.errors import UserError
from tests.config.suite_files import errors, write

CHAT = """\
  backend: openai-chat
  path: served-model
  endpoint: {base_url: 'http://127.0.0.1:8000/v1'}
"""
TASKS = """\
  - id: sentiment
    kind: classification
    data: reviews.jsonl
    prompt: "{{ text }}"
    choices: [" negative", " positive"]
    label: label
  - id: summarize
    kind: generation
    data: reviews.jsonl
    prompt: "{{ text }}"
    reference: label
    metrics: [bleu]
  - id: lm
    kind: perplexity
    data: reviews.jsonl
    text: text
"""
AUDITS = """\
audits:
  forgetting:
    tasks: [summarize, lm]
    baseline: other-served-model
  explain:
    task: sentiment
  fairness:
    task: sentiment
    group: [label]
"""
NEEDS_LL = "which backend openai-chat does not give (use openai-completions)"


def suite(backend: str, tasks: str = TASKS, audits: str = "") -> str:
    return "schema_version: 1\nname: chat\nmodel:\n" + backend + "tasks:\n" + tasks + audits


def test_chat_refuses_what_needs_loglikelihoods_located(suite_dir: Path) -> None:
    path = write(suite_dir, suite(CHAT, audits=AUDITS))
    assert errors(path) == [
        f"suite.yaml:9:11: tasks[0].kind: classification needs log-likelihoods, {NEEDS_LL}",
        f"suite.yaml:21:11: tasks[2].kind: perplexity needs log-likelihoods, {NEEDS_LL}",
        "suite.yaml:26:24: audits.forgetting.tasks[1]: forgetting on perplexity task 'lm' "
        f"needs log-likelihoods, {NEEDS_LL}",
        "suite.yaml:29:11: audits.explain.task: explain (it scores the task's choices) needs "
        f"log-likelihoods, {NEEDS_LL}",
        "suite.yaml:31:11: audits.fairness.task: fairness on classification task 'sentiment' "
        f"needs log-likelihoods, {NEEDS_LL}",
    ]


def test_chat_runs_generation_tasks(suite_dir: Path) -> None:
    tasks = TASKS.split("  - id: summarize\n")[1].split("  - id: lm\n")[0]
    loaded = load_suite(write(suite_dir, suite(CHAT, "  - id: summarize\n" + tasks)))
    assert loaded.model.backend == "openai-chat"


@pytest.mark.parametrize(
    "backend",
    [
        "  path: gpt2\n",
        CHAT.replace("openai-chat", "openai-completions") + "  tokenizer: gpt2\n",
    ],
)
def test_backends_with_loglikelihoods_take_every_task(suite_dir: Path, backend: str) -> None:
    load_suite(write(suite_dir, suite(backend)), check_files=False)


def test_the_tables_name_every_task_kind_and_the_scoring_audits() -> None:
    from harness import audits
    from harness.config.schema import TASK_CLASSES

    assert set(KIND_NEEDS) == set(TASK_CLASSES) - {"lm_eval"}  # lm_eval: its scored kind
    assert set(AUDIT_NEEDS) <= set(audits.available())


@pytest.mark.parametrize(
    ("audits", "expected"),
    [
        (
            "audits:\n  privacy:\n    manifest: m.json\n    canaries: true\n    extraction: true\n",
            ["audits.privacy.canaries: privacy canary exposure needs log-likelihoods"],
        ),
        ("audits:\n  privacy:\n    manifest: m.json\n    extraction: true\n", []),
        (
            "audits:\n  fairness:\n    task: summarize\n    group: [label]\n    pairs: p.csv\n",
            ["audits.fairness.pairs: fairness stereotype pairs needs log-likelihoods"],
        ),
    ],
)
def test_audit_parts_that_score_by_loglikelihood(
    suite_dir: Path, audits: str, expected: list[str]
) -> None:
    tasks = "  - id: summarize\n" + TASKS.split("  - id: summarize\n")[1].split("  - id: lm")[0]
    path = write(suite_dir, suite(CHAT, tasks, audits))
    try:
        load_suite(path, check_files=False)
        found: list[str] = []
    except UserError as exc:  # other errors of the section are not ours here
        found = [m for m in exc.messages if "log-likelihoods" in m]
    assert [m.split(": ", 1)[1].split(",")[0] for m in found] == expected
