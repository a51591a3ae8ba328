"""The one exception type for bad user input (suite, config, data, model path).

The CLI prints each of its lines and exits with code 2; it never shows a traceback.
Messages are located: ``suites/x.yaml:12:5: gates[2].min: ...`` or
``data.jsonl line 41: missing field 'label'``.
"""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """Bad input that the user can fix. Carries one or more located messages."""

    def __init__(self, messages: str | Iterable[str]) -> None:
        self.messages: list[str] = [messages] if isinstance(messages, str) else list(messages)
        if not self.messages:
            self.messages = ["invalid input"]
        super().__init__("\n".join(self.messages))


def located(file: str, message: str, line: int | None = None, col: int | None = None) -> str:
    """Format ``FILE:LINE:COL: message`` (line and column 1-based, each optional)."""
    where = file
    if line is not None:
        where += f":{line}"
        if col is not None:
            where += f":{col}"
    return f"{where}: {message}"


def row_error(file: str, line: int, message: str) -> str:
    """Format a data-row error: ``FILE line N: message``."""
    return f"{file} line {line}: {message}"
