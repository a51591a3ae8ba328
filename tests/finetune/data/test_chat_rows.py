"""Chat rows ({messages: [...]}) through loading and every curation step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune.config.schema import AugmentationSpec, CounterfactualSpec, load_config
from finetune.data.augment import augment
from finetune.data.counterfactual import swapped_copies
from finetune.data.curate import curate
from finetune.data.examples import MIXED_FORMS, Example, dedup, load_examples
from finetune.data.leakage import check_leakage
from finetune.data.privacy import PIIReport, extraction_sample, scan_pii
from finetune.data.reweight import balance_weights
from harness.errors import UserError
from tests.finetune.conftest import write_config, write_jsonl

NAMES = ("prompt", "completion", "text")


def chat(*turns: str, **fields: Any) -> dict[str, Any]:
    """A chat row: alternating user/assistant contents after an optional 'S:' system turn."""
    system = [{"role": "system", "content": turns[0][2:]}] if turns[0].startswith("S:") else []
    rest = turns[len(system) :]
    roles = ("user", "assistant")
    messages = system + [{"role": roles[i % 2], "content": c} for i, c in enumerate(rest)]
    return {"messages": messages, **fields}


def example(messages: list[dict[str, str]], line: int = 1, **fields: Any) -> Example:
    pairs = tuple((m["role"], m["content"]) for m in messages)
    return Example("", "", "c.jsonl", line, {"messages": messages, **fields}, messages=pairs)


def test_chat_rows_load_as_conversations(tmp_path: Path) -> None:
    rows = [chat("S:be brief", "hi", "hello", "sum", "two", group="a")]
    write_jsonl(tmp_path / "c.jsonl", rows)
    (ex,) = load_examples([str(tmp_path / "c.jsonl")], NAMES)
    assert ex.is_chat and ex.prompt == ex.target == ""
    assert ex.message_dicts() == rows[0]["messages"]
    assert ex.text == "be brief\nhi\nhello\nsum\ntwo"
    assert ex.input_text == "be brief\nhi\nsum"
    assert ex.fields["group"] == "a"


def test_malformed_chat_rows_are_located(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]},
        {"messages": "hello"},
        {"prompt": "q", "completion": "a"},
    ]
    write_jsonl(tmp_path / "c.jsonl", lines)
    with pytest.raises(UserError) as err:
        load_examples(["c.jsonl"], NAMES)
    mixed = MIXED_FORMS.format(form="prompt/completion", first="chat", line=1)
    assert err.value.messages == [
        "c.jsonl line 2: messages[0]: unknown role 'robot' (roles: system, user, assistant)",
        "c.jsonl line 3: messages[0]: missing content",
        "c.jsonl line 4: messages: the conversation has no assistant turn",
        "c.jsonl line 5: messages: expected a list of {role, content} messages, got str",
        f"c.jsonl line 6: {mixed}",
    ]


def test_a_chat_row_in_a_prompt_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(
        tmp_path / "p.jsonl", [{"prompt": "q", "completion": "a"}, {"text": "t"}, chat("q", "a")]
    )
    with pytest.raises(UserError) as err:
        load_examples(["p.jsonl"], NAMES)
    assert err.value.messages == [
        "p.jsonl line 3: " + MIXED_FORMS.format(form="chat", first="prompt/completion", line=1)
    ]


def test_dedup_compares_roles_and_normalized_contents() -> None:
    a = example(chat("Hi there!", "Hello.")["messages"], 1)
    same = example(chat("Hi there!", "Hello.")["messages"], 2)
    normal = example(chat("hi   THERE", "hello")["messages"], 3)
    other_role = example(
        [{"role": "system", "content": "Hi there!"}, {"role": "assistant", "content": "Hello."}], 4
    )
    kept, report = dedup([a, same, normal, other_role])
    assert [ex.line for ex in kept] == [1, 4]
    assert (report.exact, report.normalized) == (1, 1)


def test_leakage_reads_the_contents(tmp_path: Path) -> None:
    question = "what is the capital city of the small country named in this long question"
    write_jsonl(tmp_path / "eval.jsonl", [{"question": question, "answer": "x"}])
    leaking = example(chat(question, "paris")["messages"], 1)
    clean = example(
        chat("a different question about some other topic entirely today", "no")["messages"], 2
    )
    report = check_leakage([leaking, clean], [str(tmp_path / "eval.jsonl")], n=8, threshold=0.8)
    assert [leak.train for leak in report.leaks] == ["c.jsonl line 1"]
    assert report.leaks[0].kind == "exact"  # the user content equals the question


def test_pii_report_redact_and_fail_per_message() -> None:
    messages = chat(
        "S:support bot", "mail me at jane.doe@example.com", "sure, jane.doe@example.com"
    )["messages"]
    ex = example(messages, 7)
    report = PIIReport("report")
    assert scan_pii([ex], "train", report) == [ex]
    assert report.as_dict()["counts"]["EMAIL_ADDRESS"] == 2
    (redacted,) = scan_pii([ex], "train", PIIReport("redact"))
    assert redacted.message_dicts() == [
        {"role": "system", "content": "support bot"},
        {"role": "user", "content": "mail me at <EMAIL_ADDRESS>"},
        {"role": "assistant", "content": "sure, <EMAIL_ADDRESS>"},
    ]
    with pytest.raises(UserError) as err:
        scan_pii([ex], "train", PIIReport("fail"))
    tail = "(curation.pii is 'fail'; 'redact' replaces it)"
    assert err.value.messages == [
        f"c.jsonl line 7: personal data in 'messages[1].content': EMAIL_ADDRESS {tail}",
        f"c.jsonl line 7: personal data in 'messages[2].content': EMAIL_ADDRESS {tail}",
    ]


def test_counterfactual_swaps_every_message_and_keeps_the_turns() -> None:
    ex = example(
        chat("S:He is the judge", "What did she say?", "She said his case is closed.")["messages"]
    )
    plain = example(chat("what time is it", "noon")["messages"], 2)
    spec = CounterfactualSpec(swaps={"he": "she", "his": "her"})
    (copy,) = swapped_copies([ex, plain], spec)
    assert copy.message_dicts() == [
        {"role": "system", "content": "She is the judge"},
        {"role": "user", "content": "What did he say?"},
        {"role": "assistant", "content": "He said her case is closed."},
    ]
    assert copy.augmented and copy.file == "c.jsonl (swapped)" and copy.weight == ex.weight


def test_augment_noises_system_and_user_turns_only() -> None:
    messages = chat(
        "S:answer in one short word please", "what colour is the clear daytime sky", "blue sky"
    )["messages"]
    ex = example(messages)
    spec = AugmentationSpec(word_dropout=0.5, copies=3, seed=1)
    out = augment([ex], spec)
    assert out[0] is ex and len(out) == 4
    for copy in out[1:]:
        assert [r for r, _ in copy.messages] == ["system", "user", "assistant"]
        assert copy.messages[2] == ("assistant", "blue sky")
        assert copy.augmented
    assert any(copy.messages[:2] != ex.messages[:2] for copy in out[1:])
    assert augment([ex], spec) == out  # seeded


def test_reweight_reads_the_row_fields() -> None:
    rows = [("a", "x"), ("a", "x"), ("a", "y"), ("b", "x")]
    examples = [
        example(chat(f"q{i}", f"a{i}")["messages"], i, group=g, label=y)
        for i, (g, y) in enumerate(rows, start=1)
    ]
    weights, report = balance_weights(examples, "group", "label")
    # 4 examples in 3 cells: w = 4 / (3 * n_cell)
    assert weights == pytest.approx([2 / 3, 2 / 3, 4 / 3, 4 / 3])
    assert len(report["cells"]) == 3


def test_extraction_sample_of_a_chat_row() -> None:
    ex = example(chat("S:sys", "q1", "a1", "q2", "a2")["messages"])
    assert extraction_sample([ex], 1, 0) == [
        {"where": "c.jsonl line 1", "prompt": "sys\nq1\na1\nq2\n", "target": "a2"}
    ]


def test_curate_chat_rows_with_canaries(chatml_gpt2: Path, tmp_path: Path) -> None:
    rows = [chat("S:be brief", f"question {i}", f"answer {i}") for i in range(8)]
    rows.append(chat("S:be brief", "question 0", "answer 0"))  # a duplicate
    write_jsonl(tmp_path / "train.jsonl", rows)
    path = write_config(
        tmp_path,
        chatml_gpt2,
        memorization={
            "canaries": {"count": 1, "repeats": 3, "controls": 1},
            "extraction_examples": 2,
        },
    )
    curated = curate(load_config(path))
    assert curated.report["duplicates"]["exact"] == 1
    chats = [ex for ex in curated.train + curated.validation if ex.is_chat]
    assert len(chats) == 8
    canary = [ex for ex in curated.train if ex.file == "canaries"]
    # canaries stay prompt/completion rows: the audit scores the secret after the prefix
    assert len(canary) == 3 and all(not ex.is_chat and ex.prompt == "my PIN is" for ex in canary)
    listed = curated.memorization["extraction_examples"]
    assert len(listed) == 2 and all(e["prompt"].startswith("be brief\nquestion ") for e in listed)
    json.dumps(curated.report)  # the report stays JSON for the manifest
