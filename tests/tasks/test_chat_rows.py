"""Issue 17 acceptance: malformed chat rows and chat settings a task cannot have are
located errors (``FILE line N: ...`` for a row, ``suite.yaml:LINE:COL: path: ...`` for
a setting), all reported by ``prepare_suite`` before any weights load, and ``harness
run`` exits 2 on each of them with no traceback.

Only the tokenizers of the tiny models are read (the chat template); the messages are
the constants of harness.tasks.chat and harness.run.chat_setup, spelled out here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import lmeval_peer as peer

USER = {"role": "user", "content": "Is this review positive? a great film"}
ASSISTANT = {"role": "assistant", "content": "yes"}
GOOD = {"messages": [USER], "label": 1}

# (task kind and its settings, the bad row's `messages`, the error after "line 2: ")
CLASSIFY: dict[str, Any] = {"kind": "classification", "choices": ["no", "yes"], "label": "label"}
PERPLEXITY: dict[str, Any] = {"kind": "perplexity", "score": "assistant"}
MALFORMED = {
    "unknown role": (
        CLASSIFY,
        [USER, {"role": "bot", "content": "hello"}, USER],
        "messages[1]: unknown role 'bot' (roles: system, user, assistant)",
    ),
    "missing content": (CLASSIFY, [{"role": "user"}], "messages[0]: missing content"),
    "null content": (CLASSIFY, [{"role": "user", "content": None}], "messages[0]: missing content"),
    "not a list": (
        CLASSIFY,
        "Is this review positive?",
        "messages: expected a list of {role, content} messages, got str",
    ),
    "a message not a mapping": (
        CLASSIFY,
        ["hello"],
        "messages[0]: expected a mapping {role, content}, got str",
    ),
    "empty": (CLASSIFY, [], "messages: the conversation is empty"),
    "ends with the assistant": (
        CLASSIFY,
        [USER, ASSISTANT],
        "messages: the last message must be a user turn (got assistant)",
    ),
    "no assistant turn to score": (
        PERPLEXITY,
        [{"role": "system", "content": "be brief"}, USER],
        "messages: the conversation has no assistant turn",
    ),
}


def task_entry(settings: dict[str, Any], **more: Any) -> dict[str, Any]:
    entry = {"id": "chat", "data": "rows.jsonl", "messages": "messages", **settings, **more}
    metric = "perplexity" if settings["kind"] == "perplexity" else "accuracy"
    return {**entry, "metrics": [metric]}


def write_suite(
    folder: Path, model: Path, tasks: list[dict[str, Any]], chat: dict[str, Any] | None = None
) -> Path:
    """A suite over ``folder``/rows.jsonl, one task or flow mapping per line (so a
    setting's line is easy to find)."""
    lines = [
        "schema_version: 1",
        "name: chat-rows",
        f"model: {{path: {json.dumps(str(model))}, device: cpu}}",
        "bootstrap: {samples: 0}",
    ]
    if chat is not None:
        lines.append(f"chat: {json.dumps(chat)}")
    lines.append("tasks:")
    lines += [f"  - {json.dumps(task)}" for task in tasks]
    path = folder / "suite.yaml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def line_of(suite: Path, text: str) -> int:
    return next(i for i, line in enumerate(suite.read_text().splitlines(), 1) if text in line)


def prepare_errors(suite: Path) -> list[str]:
    from harness.config.suite import load_suite
    from harness.errors import UserError
    from harness.run.runner import prepare_suite

    with pytest.raises(UserError) as caught:
        prepare_suite(load_suite(suite))
    return list(caught.value.messages)


def run_exit_code(suite: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from harness.cli.main import main

    capsys.readouterr()
    code = main(["run", str(suite), "--out", str(suite.parent / "out"), "--no-progress"])
    return code, capsys.readouterr().err


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the suite's folder, so data files are named as `rows.jsonl`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_chat_row_is_one_located_error_and_exits_2(
    case: str, here: Path, chatml_gpt2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, messages, problem = MALFORMED[case]
    good = {**GOOD, "messages": [USER, ASSISTANT]} if settings is PERPLEXITY else GOOD
    peer.write_jsonl(here / "rows.jsonl", [good, {"messages": messages, "label": 0}])
    suite = write_suite(here, chatml_gpt2, [task_entry(settings)], chat={"enabled": True})
    assert prepare_errors(suite) == [f"rows.jsonl line 2: {problem}"]
    code, err = run_exit_code(suite, capsys)
    assert code == 2
    assert f"rows.jsonl line 2: {problem}" in err and "Traceback" not in err


def test_good_chat_rows_prepare(here: Path, chatml_gpt2: Path) -> None:
    """The counterpart of the malformed rows: the same suites with good rows prepare."""
    from harness.config.suite import load_suite
    from harness.run.runner import prepare_suite

    peer.write_jsonl(here / "rows.jsonl", [GOOD, {"messages": [USER, ASSISTANT, USER], "label": 0}])
    suite = write_suite(here, chatml_gpt2, [task_entry(CLASSIFY)], chat={"enabled": True})
    (prepared,) = prepare_suite(load_suite(suite))
    assert str(dict(prepared.records[1])["prompt"]).endswith("<|im_start|>assistant\n")


# -- settings a chat task cannot have: located at the suite's line -------------------


def test_messages_without_chat(here: Path, chatml_gpt2: Path) -> None:
    peer.write_jsonl(here / "rows.jsonl", [GOOD])
    suite = write_suite(here, chatml_gpt2, [task_entry(CLASSIFY)])
    (error,) = prepare_errors(suite)
    line = line_of(suite, '"messages": "messages"')
    assert error.startswith(f"suite.yaml:{line}:")
    assert error.endswith(
        "tasks[0].messages: `messages` needs chat formatting: add `chat: {enabled: true}` "
        "to the suite or this task"
    )


def test_chat_on_an_lm_eval_task(here: Path, chatml_gpt2: Path) -> None:
    peer.write_jsonl(here / "mc.jsonl", [{"text": "a good film", "label": 1}])
    peer.write_multiple_choice_task(
        here / "tasks", "mc_local", here / "mc.jsonl",
        doc_to_text="{{text}}", choices=[" no", " yes"], target="label",
    )  # fmt: skip
    task = {"id": "mc", "kind": "lm_eval", "task": "mc_local", "include_path": "tasks/",
            "chat": {"system": "be brief"}, "metrics": ["accuracy"]}  # fmt: skip
    suite = write_suite(here, chatml_gpt2, [task])
    (error,) = prepare_errors(suite)
    assert error.startswith(f"suite.yaml:{line_of(suite, 'lm_eval')}:")
    assert error.endswith(
        "tasks[0].chat: lm_eval tasks are formatted by lm-eval, not by `chat`: "
        "set `chat: {enabled: false}` on this task"
    )


def test_suite_chat_on_an_lm_eval_task_points_at_the_suite_setting(
    here: Path, chatml_gpt2: Path
) -> None:
    peer.write_jsonl(here / "mc.jsonl", [{"text": "a good film", "label": 1}])
    peer.write_multiple_choice_task(
        here / "tasks", "mc_local", here / "mc.jsonl",
        doc_to_text="{{text}}", choices=[" no", " yes"], target="label",
    )  # fmt: skip
    task = {"id": "mc", "kind": "lm_eval", "task": "mc_local", "include_path": "tasks/",
            "metrics": ["accuracy"]}  # fmt: skip
    suite = write_suite(here, chatml_gpt2, [task], chat={"enabled": True})
    (error,) = prepare_errors(suite)
    assert error.startswith(f"suite.yaml:{line_of(suite, 'chat:')}:")
    assert ": chat: lm_eval tasks are formatted by lm-eval" in error


def test_chat_with_partial_scoring(here: Path, chatml_gpt2: Path) -> None:
    peer.write_jsonl(here / "rows.jsonl", [{"sentence": "the film", "label": 1}])
    task = {"id": "partial", "kind": "classification", "data": "rows.jsonl",
            "prompt": "{{ sentence }} {{ choice }}", "continuation": "was seen",
            "choices": ["no", "yes"], "label": "label", "metrics": ["accuracy"]}  # fmt: skip
    suite = write_suite(here, chatml_gpt2, [task], chat={"enabled": True})
    (error,) = prepare_errors(suite)
    assert error.startswith(f"suite.yaml:{line_of(suite, 'continuation')}:")
    assert error.endswith(
        "tasks[0].continuation: partial scoring (`continuation`) cannot be chat-formatted"
    )


def test_template_file_not_found(here: Path, chatml_gpt2: Path) -> None:
    peer.write_jsonl(here / "rows.jsonl", [GOOD])
    suite = write_suite(
        here, chatml_gpt2, [task_entry(CLASSIFY)], chat={"template": "templates/none.jinja"}
    )
    (error,) = prepare_errors(suite)
    assert error.startswith(f"suite.yaml:{line_of(suite, 'none.jinja')}:")
    missing = here / "templates" / "none.jinja"
    assert error.endswith(f"chat.template: chat template file not found: {missing}")


def test_template_from_a_file(here: Path, tiny_gpt2: Path) -> None:
    """A tokenizer without a template is fine when the suite gives one as a file."""
    from harness.config.suite import load_suite
    from harness.run.runner import prepare_suite
    from tests.tiny_models import CHATML_TEMPLATE

    (here / "chatml.jinja").write_text(CHATML_TEMPLATE, "utf-8")
    peer.write_jsonl(here / "rows.jsonl", [GOOD])
    suite = write_suite(here, tiny_gpt2, [task_entry(CLASSIFY)], chat={"template": "chatml.jinja"})
    (prepared,) = prepare_suite(load_suite(suite))
    content = USER["content"]
    expected = f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
    assert dict(prepared.records[0])["prompt"] == expected


@pytest.mark.parametrize("own", [False, True], ids=["suite", "task"])
def test_tokenizer_without_a_template(
    own: bool, here: Path, tiny_gpt2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    peer.write_jsonl(here / "rows.jsonl", [GOOD])
    chat = {"system": "be brief"}
    entry = task_entry(CLASSIFY, chat=chat) if own else task_entry(CLASSIFY)
    suite = write_suite(here, tiny_gpt2, [entry], chat=None if own else chat)
    (error,) = prepare_errors(suite)
    where = "tasks[0].chat.template" if own else "chat.template"
    line = line_of(suite, '"chat": {' if own else "chat:")
    assert error.startswith(f"suite.yaml:{line}:")
    assert error.endswith(
        f"{where}: the tokenizer of {tiny_gpt2} has no chat template; set `chat.template` "
        "to a Jinja file (e.g. chatml.jinja)"
    )
    code, err = run_exit_code(suite, capsys)
    assert code == 2 and "has no chat template" in err and "Traceback" not in err
