"""Issue 17 acceptance: chat provenance and the response cache.

Each chat-formatted task's results carry where its template came from and the sha256 of
its text, the system prompt, the few-shot layout, the end-of-turn marker and one
rendered example (the first record's prompt). The system prompt and the template are
part of every request (they are in the rendered context), so a re-run with the same
settings is answered from the cache, and one with another system prompt or another
template computes again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import lmeval_peer as peer
from tests.tiny_models import CHATML_TEMPLATE

pytestmark = pytest.mark.slow

ROWS = [
    {"text": "the movie was great", "label": 1, "answer": "good"},
    {"text": "the plot was boring", "label": 0, "answer": "bad"},
    {"text": "they loved the actor", "label": 1, "answer": "good"},
]
# the same layout as ChatML with a space after each role: other text, other prompts
OTHER_TEMPLATE = CHATML_TEMPLATE.replace("{{ m['role'] }}\n", "{{ m['role'] }} \n")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_suite(folder: Path, model: Path, system: str, template: str = "chatml.jinja") -> Path:
    peer.write_jsonl(folder / "reviews.jsonl", ROWS)
    (folder / "chatml.jinja").write_text(CHATML_TEMPLATE, "utf-8")
    (folder / "other.jinja").write_text(OTHER_TEMPLATE, "utf-8")
    tasks = [
        {"id": "sentiment", "kind": "classification", "data": "reviews.jsonl",
         "prompt": "Review: {{ text }}\nSentiment:", "choices": ["negative", "positive"],
         "label": "label", "metrics": ["accuracy"]},
        {"id": "verdict", "kind": "generation", "data": "reviews.jsonl",
         "prompt": "In one word, was this review good or bad? {{ text }}",
         "reference": "answer", "max_new_tokens": 4, "metrics": ["exact_match"],
         "chat": {"template": template, "system": system, "fewshot_as_multiturn": True}},
    ]  # fmt: skip
    suite = {
        "schema_version": 1,
        "name": "chat-provenance",
        "model": {"path": str(model), "device": "cpu", "dtype": "float32"},
        "chat": {"system": system},
        "tasks": tasks,
        "bootstrap": {"samples": 0},
        "cache": True,
    }
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), "utf-8")
    return path


def run(folder: Path, model: Path, system: str, template: str = "chatml.jinja") -> dict[str, Any]:
    from harness.config.suite import load_suite
    from harness.run.runner import run_suite

    suite = load_suite(write_suite(folder, model, system, template))
    return dict(run_suite(suite, show_progress=False).model_dump(mode="json"))


def cache_counts(results: dict[str, Any]) -> tuple[int, int]:
    stats = results["provenance"]["cache"]
    return stats["hits"], stats["misses"]


def test_chat_provenance_in_each_tasks_results(chatml_gpt2: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    results = run(tmp_path, chatml_gpt2, "You are terse.")
    tokenizer_template = AutoTokenizer.from_pretrained(chatml_gpt2).chat_template
    sentiment, verdict = results["tasks"]["sentiment"], results["tasks"]["verdict"]
    assert sentiment["chat"] == {
        "template": "tokenizer",
        "template_sha256": sha256(tokenizer_template),
        "system": "You are terse.",
        "fewshot_as_multiturn": False,
        "end_of_turn": "<|im_end|>",
        "example": sentiment["records"][0]["prompt"],
    }
    assert verdict["chat"] == {
        "template": str(tmp_path / "chatml.jinja"),
        "template_sha256": sha256((tmp_path / "chatml.jinja").read_text("utf-8")),
        "system": "You are terse.",
        "fewshot_as_multiturn": True,
        "end_of_turn": "<|im_end|>",
        "example": verdict["records"][0]["prompt"],
    }
    assert sentiment["chat"]["example"] == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nReview: the movie was great\nSentiment:<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_plain_tasks_have_no_chat_provenance(chatml_gpt2: Path, tmp_path: Path) -> None:
    from harness.config.suite import load_suite
    from harness.run.runner import run_suite

    path = write_suite(tmp_path, chatml_gpt2, "You are terse.")
    suite = yaml.safe_load(path.read_text("utf-8"))
    suite["chat"] = {"enabled": False}
    suite["tasks"] = suite["tasks"][:1]
    path.write_text(yaml.safe_dump(suite, sort_keys=False), "utf-8")
    results = run_suite(load_suite(path), show_progress=False).model_dump(mode="json")
    task = results["tasks"]["sentiment"]
    assert "chat" not in task
    assert task["records"][0]["prompt"] == "Review: the movie was great\nSentiment:"


def test_cache_key_changes_with_the_system_prompt_and_the_template(
    chatml_gpt2: Path, tmp_path: Path
) -> None:
    n_requests = 2 * len(ROWS) + len(ROWS)  # two choices per review, one generation
    first = run(tmp_path, chatml_gpt2, "You are terse.")
    assert cache_counts(first) == (0, n_requests)
    again = run(tmp_path, chatml_gpt2, "You are terse.")
    assert cache_counts(again) == (n_requests, 0)
    assert again["tasks"]["verdict"]["records"] == first["tasks"]["verdict"]["records"]
    other_system = run(tmp_path, chatml_gpt2, "You are verbose.")
    assert cache_counts(other_system) == (0, n_requests)
    prompts = [r["prompt"] for r in other_system["tasks"]["sentiment"]["records"]]
    assert all("You are verbose." in p for p in prompts)
    # another template (the generation task's own) recomputes that task only
    other_template = run(tmp_path, chatml_gpt2, "You are verbose.", template="other.jinja")
    assert cache_counts(other_template) == (2 * len(ROWS), len(ROWS))
    chat = other_template["tasks"]["verdict"]["chat"]
    assert chat["template_sha256"] == sha256(OTHER_TEMPLATE) != sha256(CHATML_TEMPLATE)
