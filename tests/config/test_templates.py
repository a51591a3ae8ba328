"""The suite templates shipped in suites/templates/ validate as shipped, and run.

A user copies a template for a real model, so each must pass `harness validate` as is
(its example data is bundled beside it). The classification template also runs end to
end on a tiny model, so its audits and gate names are real, not only well-formed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main
from tests.audits.conftest import make_adapter

TEMPLATES = sorted((Path(__file__).resolve().parents[2] / "suites" / "templates").glob("*.yaml"))


def test_the_templates_are_shipped() -> None:
    assert [p.stem for p in TEMPLATES] == [
        "chat-release",
        "ci-regression",
        "classification-release",
        "summarization-release",
    ]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
def test_template_validates(template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # offline: the chat template's tokenizer is a hub model's (listed, not fetched)
    assert main(["validate", "--offline", str(template)]) == 0
    assert "ok:" in capsys.readouterr().err


def test_classification_template_runs_on_a_tiny_model(tmp_path: Path, tiny_gpt2: Path) -> None:
    template = TEMPLATES[2]
    out = tmp_path / "out"
    adapter = make_adapter(tiny_gpt2, tmp_path / "adapter", scale=0.5)
    argv = ["run", str(template), "--model", str(tiny_gpt2), "--adapter", str(adapter)]
    code = main([*argv, "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    # a random tiny model fails the accuracy gate: the verdict is computed, not assumed
    assert code == 1
    names = {g["metric"] for g in results["gates"]}
    assert "fairness.tickets.worst_group.accuracy" in names
    assert set(results["audits"]) == {"forgetting", "fairness", "explain"}


def test_chat_template_runs_on_a_tiny_chat_model(tmp_path: Path, llama3_chat: Path) -> None:
    template = TEMPLATES[0]
    assert template.stem == "chat-release"
    out = tmp_path / "out"
    code = main(["run", str(template), "--model", str(llama3_chat), "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert code == 1  # a random tiny model fails the accuracy gate
    tickets, replies = results["tasks"]["tickets"], results["tasks"]["replies"]
    assert tickets["chat"]["system"].startswith("You are the support assistant")
    prompt = tickets["records"][0]["prompt"]
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>system")
    assert prompt.count("<|start_header_id|>assistant") == 3  # 2 shots as turns + the reply
    assert all(len(r["spans"]) >= 1 for r in replies["records"])
