"""An example's whole context: description, few-shot examples and its prompt, as plain
text or, when the task is chat-formatted, rendered with the chat template.

The runner attaches to each chat-formatted task its ``ChatContext`` (the template and
the settings) before the records are prepared (``attach_chat``); the kinds call
``build`` for a prompt template and ``from_messages`` for a row's own conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.tasks import shots
from harness.tasks.chat import ChatTemplate, checked_messages, conversation
from harness.tasks.shots import ShotText


@dataclass(frozen=True)
class ChatContext:
    """How a chat-formatted task renders its contexts."""

    template: ChatTemplate
    system: str | None
    multiturn: bool

    def describe(self, example: str | None) -> dict[str, Any]:
        """Provenance: template source and hash, system prompt, one rendered example."""
        return {
            **self.template.describe(),
            "system": self.system,
            "fewshot_as_multiturn": self.multiturn,
            "end_of_turn": self.template.end_of_turn(),
            "example": example,
        }


def attach_chat(task: Any, chat: ChatContext | None) -> None:
    """Give a task its chat formatting (None: plain text)."""
    task._chat = chat


def chat_settings(suite: Any, task: Any) -> Any:
    """The task's chat settings in force (its own, else the suite's), None if off."""
    own = getattr(task, "chat", None)
    chosen = own if own is not None else getattr(suite, "chat", None)
    return chosen if chosen is not None and chosen.enabled else None


def chat_of(task: Any) -> ChatContext | None:
    """The task's chat formatting, None for plain text."""
    return getattr(task, "_chat", None)


def build(
    task: Any,
    fields: dict[str, Any],
    file: str,
    line: int,
    *,
    prompt: str,
    shot: ShotText,
    delimiter: str,
) -> str:
    """The context before the answer of the row at ``line`` whose rendered prompt is
    ``prompt``; ``delimiter`` goes between each shot's question and answer."""
    head = shots.description(task, fields, file, line)
    pairs = shots.solved(task, fields, line, shot, file)
    chat = chat_of(task)
    if chat is None:
        return shots.plain(head, pairs, prompt, delimiter, task)
    few = getattr(task, "fewshot", None)
    messages = conversation(
        system=chat.system,
        description=head,
        shots=pairs,
        prompt=prompt,
        target_delimiter=delimiter,
        fewshot_delimiter=few.delimiter if few is not None else "\n\n",
        multiturn=chat.multiturn,
    )
    return chat.template.render(messages, add_generation_prompt=True)


def from_messages(task: Any, fields: dict[str, Any], file: str, line: int) -> str:
    """A row's own conversation (the ``messages`` field), ending with a user turn,
    rendered with the generation prompt; the chat ``system`` prompt goes first unless
    the conversation has its own."""
    chat = chat_of(task)
    if chat is None:
        raise ValueError("a task with `messages` needs chat formatting")
    messages = conversation_of(task, fields, file, line, ends_with="user")
    return chat.template.render(messages, add_generation_prompt=True)


def conversation_of(
    task: Any,
    fields: dict[str, Any],
    file: str,
    line: int,
    *,
    ends_with: str | None = None,
    needs_assistant: bool = False,
) -> list[dict[str, str]]:
    """A row's checked conversation, the chat ``system`` prompt first unless it has one."""
    from harness.tasks.base import require

    value = require(fields, task.messages, file, line)
    messages = checked_messages(
        value, task.messages, file, line, ends_with=ends_with, needs_assistant=needs_assistant
    )
    chat = chat_of(task)
    if chat is not None and chat.system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": chat.system}, *messages]
    return messages
