"""Audits on chat tasks: explanations need a prompt template (a task reading whole
conversations is refused at its line); counterfactual swaps re-render chat prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.suite import load_suite
from harness.errors import UserError

SUITE = """schema_version: 1
name: chat-audits
model: {path: ./model}
chat: {system: be brief}
tasks:
  - id: conv
    kind: classification
    data: rows.jsonl
    messages: conv
    choices: ["no", "yes"]
    label: label
audits:
  explain: {task: conv}
"""


def test_explain_refuses_a_task_reading_conversations(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"conv": [], "label": 0}\n')
    (tmp_path / "s.yaml").write_text(SUITE)
    with pytest.raises(UserError) as info:
        load_suite(tmp_path / "s.yaml", check_files=False)
    [message] = [m for m in info.value.messages if "explain" in m]
    assert message.endswith(
        "audits.explain.task: task 'conv' reads whole conversations (`messages`); "
        "explanations vary one field of a prompt template"
    )
