"""Chat formatting of a suite's tasks, set up before their records are prepared: which
tasks are chat-formatted (a task's own `chat`, else the suite's), the template each
uses (loaded once per template, from the model's tokenizer or a file), and the
combinations a chat task cannot have, reported at the suite's lines."""

from __future__ import annotations

from typing import Any

from harness.errors import UserError
from harness.tasks.context import chat_settings as settings_of

NEEDS_CHAT = "`messages` needs chat formatting: add `chat: {{enabled: true}}` to the {where}"
NO_CHAT_LM_EVAL = (
    "lm_eval tasks are formatted by lm-eval, not by `chat`: set `chat: {enabled: false}` "
    "on this task"
)
NO_CHAT_PARTIAL = "partial scoring (`continuation`) cannot be chat-formatted"


def uses_model_tokenizer(suite: Any, task: Any) -> bool:
    """Whether preparing the task loads the model's tokenizer (to render chats)."""
    if settings_of(suite, task) is None or task.kind == "lm_eval":
        return False
    return task.kind != "perplexity" or bool(getattr(task, "messages", None))


def chat_problems(suite: Any, task: Any, i: int) -> list[tuple[tuple[Any, ...], str]]:
    """(path in the suite, message) of what a task's chat settings cannot do."""
    settings = settings_of(suite, task)
    own = getattr(task, "chat", None) is not None
    where: tuple[Any, ...] = ("tasks", i, "chat") if own else ("chat",)
    if settings is None:
        if getattr(task, "messages", None):
            return [(("tasks", i, "messages"), NEEDS_CHAT.format(where="suite or this task"))]
        return []
    if task.kind == "lm_eval":
        return [(where, NO_CHAT_LM_EVAL)]
    if getattr(task, "continuation", None) is not None:
        return [(("tasks", i, "continuation"), NO_CHAT_PARTIAL)]
    return []


def attach(suite: Any, task: Any, i: int, loaded: dict[str, Any]) -> None:
    """Give ``task`` its chat formatting (or none); ``loaded`` caches templates by
    setting across the suite's tasks. A template that cannot be loaded raises a
    UserError located at the setting."""
    from harness.audits.base import locate as suite_error
    from harness.model.factory import source_of
    from harness.model.files import tokenizer_of
    from harness.tasks.chat import load_template
    from harness.tasks.context import ChatContext, attach_chat

    settings = settings_of(suite, task)
    if settings is None or not uses_model_tokenizer(suite, task):
        attach_chat(task, None)
        return
    if settings.template not in loaded:
        own = getattr(task, "chat", None) is not None
        where = ("tasks", i, "chat", "template") if own else ("chat", "template")
        try:
            tokenizer = tokenizer_of(source_of(suite.model))
            loaded[settings.template] = load_template(
                tokenizer, settings.template, suite.resolve("."), suite.model.path
            )
        except UserError as exc:
            raise UserError([suite_error(suite, where, m) for m in exc.messages]) from None
    chat = ChatContext(loaded[settings.template], settings.system, settings.fewshot_as_multiturn)
    attach_chat(task, chat)
