"""Chat formatting: a conversation rendered with the model's chat template, as the model
is served.

``ChatTemplate`` holds the template (the tokenizer's own, or a Jinja file given in the
suite) and the tokenizer that renders it (``apply_chat_template``: the reference every
test compares with), its sha256 for cache keys and provenance, and the end-of-turn
marker generation stops at. ``conversation`` lays out a task's context as messages the
way lm-evaluation-harness does with ``--apply_chat_template``: the system prompt and the
task's description in a system turn; the few-shot examples either folded into the one
user turn (as plain text) or, with ``fewshot_as_multiturn``, as user/assistant turns.
``assistant_spans`` gives the character spans of the assistant turns of a rendered
conversation: what the fine-tuner trains on, rendered exactly as the harness scores it.

Conversations in data rows (a ``messages`` field) are checked by ``checked_messages``;
every problem is an error located at the row.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError, row_error

ROLES = ("system", "user", "assistant")

NO_TEMPLATE = (
    "the tokenizer of {model} has no chat template; set `chat.template` to a Jinja file "
    "(e.g. chatml.jinja)"
)
TEMPLATE_NOT_FOUND = "chat template file not found: {path}"
NOT_A_LIST = "{field}: expected a list of {{role, content}} messages, got {type}"
BAD_MESSAGE = "{field}[{i}]: {problem}"
EMPTY = "{field}: the conversation is empty"
NEEDS_ASSISTANT = "{field}: the conversation has no assistant turn"
ENDS_WITH = "{field}: the last message must be a {role} turn (got {got})"
NOT_PREFIX_STABLE = (
    "the chat template renders a conversation's start differently from the whole "
    "conversation, so assistant turns cannot be located in it"
)


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template and the tokenizer that renders it."""

    tokenizer: Any
    text: str
    """The Jinja source of the template."""
    source: str
    """``tokenizer`` (the model's own) or the template file's path."""

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool) -> str:
        """The conversation as the model reads it (``apply_chat_template``, untokenized)."""
        return str(
            self.tokenizer.apply_chat_template(
                [dict(m) for m in messages],
                chat_template=self.text,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
            )
        )

    @functools.cache  # noqa: B019 - one template per run, kept for the run
    def end_of_turn(self) -> str | None:
        """What the template writes right after an assistant message (stripped): the
        marker a generation stops at (``<|im_end|>``, ``<|eot_id|>``); None if nothing."""
        mark = "\u2063answer\u2063"
        text = self.render(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": mark}],
            add_generation_prompt=False,
        )
        after = text[text.index(mark) + len(mark) :] if mark in text else ""
        stripped = after.strip()
        if not stripped:
            return None
        special = [t for t in getattr(self.tokenizer, "all_special_tokens", []) if t]
        for token in sorted(special, key=len, reverse=True):
            if stripped.startswith(token):
                return str(token)
        return stripped.split()[0]

    def describe(self) -> dict[str, Any]:
        """Provenance: where the template came from and its sha256."""
        return {"template": self.source, "template_sha256": self.sha256}


def load_template(tokenizer: Any, setting: str, base_dir: Path, model: str) -> ChatTemplate:
    """The chat template of a task: the tokenizer's own (``setting == "tokenizer"``) or
    the Jinja file ``setting`` (relative to ``base_dir``)."""
    if setting == "tokenizer":
        text = getattr(tokenizer, "chat_template", None)
        if isinstance(text, dict):  # several named templates: the default one
            text = text.get("default")
        if not isinstance(text, str) or not text.strip():
            raise UserError(NO_TEMPLATE.format(model=model))
        return ChatTemplate(tokenizer, text, "tokenizer")
    path = Path(setting).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise UserError(TEMPLATE_NOT_FOUND.format(path=path))
    return ChatTemplate(tokenizer, path.read_text(encoding="utf-8"), str(path))


def delimit(prefix: str | None, suffix: str | None, delimiter: str) -> str:
    """``prefix`` and ``suffix`` joined by ``delimiter`` unless one of them already
    has whitespace at the join (how lm-eval joins a system prompt and a description)."""
    if not prefix:
        return suffix or ""
    if not suffix:
        return prefix
    if prefix[-1].isspace() or suffix[0].isspace():
        return prefix + suffix
    return prefix + delimiter + suffix


def conversation(
    *,
    system: str | None,
    description: str,
    shots: Sequence[tuple[str, str]],
    prompt: str,
    target_delimiter: str,
    fewshot_delimiter: str,
    multiturn: bool,
) -> list[dict[str, str]]:
    """The messages of one example's context (see the module docstring)."""
    messages: list[dict[str, str]] = []
    head = delimit(system, description, fewshot_delimiter)
    if head:
        messages.append({"role": "system", "content": head})
    if multiturn:
        for question, answer in shots:
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "user", "content": prompt})
    else:
        solved = "".join(q + target_delimiter + a + fewshot_delimiter for q, a in shots)
        messages.append({"role": "user", "content": solved + prompt})
    return messages


def checked_messages(
    value: Any,
    field: str,
    file: str,
    line: int,
    *,
    ends_with: str | None = None,
    needs_assistant: bool = False,
) -> list[dict[str, str]]:
    """A row's conversation as a list of ``{role, content}``; every problem is an error
    located at the row. ``ends_with``: the role the last message must have."""

    def bad(message: str) -> UserError:
        return UserError(row_error(file, line, message))

    if not isinstance(value, list):
        raise bad(NOT_A_LIST.format(field=field, type=type(value).__name__))
    if not value:
        raise bad(EMPTY.format(field=field))
    out = []
    for i, message in enumerate(value):
        problem = _message_problem(message)
        if problem:
            raise bad(BAD_MESSAGE.format(field=field, i=i, problem=problem))
        out.append({"role": message["role"], "content": message["content"]})
    if needs_assistant and not any(m["role"] == "assistant" for m in out):
        raise bad(NEEDS_ASSISTANT.format(field=field))
    if ends_with is not None and out[-1]["role"] != ends_with:
        raise bad(ENDS_WITH.format(field=field, role=ends_with, got=out[-1]["role"]))
    return out


def _message_problem(message: Any) -> str | None:
    if not isinstance(message, dict):
        return f"expected a mapping {{role, content}}, got {type(message).__name__}"
    role = message.get("role")
    if role not in ROLES:
        return f"unknown role {role!r} (roles: {', '.join(ROLES)})"
    if "content" not in message or message["content"] is None:
        return "missing content"
    if not isinstance(message["content"], str):
        return f"content must be text, got {type(message['content']).__name__}"
    extra = sorted(set(message) - {"role", "content"})
    if extra:
        return f"unknown key {extra[0]!r} (a message has role and content)"
    return None


def assistant_spans(
    template: ChatTemplate, messages: Sequence[Mapping[str, str]]
) -> tuple[str, list[tuple[int, int]]]:
    """(the rendered conversation, the character span of each assistant turn in it).

    A turn's span starts where the generation prompt before it ends, less its trailing
    whitespace (ChatML's line break after ``<|im_start|>assistant``): as lm-eval scores
    a continuation, the whitespace that ends a context belongs to what follows it. It
    ends where the rendering up to and including the turn ends, without the whitespace
    between turns: the content and the template's end-of-turn marker, what a generation
    must produce. The harness scores exactly these spans and the fine-tuner trains on
    them. A template whose rendering of a conversation's start is not a prefix of the
    whole rendering is refused (UserError)."""
    full = template.render(messages, add_generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = template.render(messages[:i], add_generation_prompt=True) if i else ""
        through = template.render(messages[: i + 1], add_generation_prompt=False)
        if not (full.startswith(through) and through.startswith(before)):
            raise UserError(NOT_PREFIX_STABLE)
        spans.append((len(before.rstrip()), len(through.rstrip())))
    return full, spans
