"""Third-party chatter out of the console and into a log file in the output folder.

Within :func:`third_party_to_log`, the log records of the model libraries
(transformers, peft, torch, datasets, huggingface_hub, accelerate, evaluate) at
WARNING and above and every Python warning not of our own categories (a category
defined in ``harness`` or ``finetune`` shows as usual) are written to the log file
and, with ``verbose``, to standard error as well; without it the libraries' progress
bars ("Loading weights") are off. Our own console output, errors and ``UserError``
messages are untouched. Everything is restored on exit (tests run in one process).

The file holds library messages only: no argument, environment or data is written.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

LOG_NAME = "harness.log"
LIBRARIES = (
    "transformers",
    "peft",
    "torch",
    "datasets",
    "huggingface_hub",
    "accelerate",
    "evaluate",
)
OURS = ("harness", "finetune")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _LazyFile(logging.FileHandler):
    """A file handler that creates its folder and file at the first record only, so a
    command that stops early (bad input) leaves no output folder behind."""

    def _open(self) -> Any:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def _ours(category: type[Warning]) -> bool:
    return category.__module__.split(".")[0] in OURS


@contextlib.contextmanager
def third_party_to_log(
    log_path: Path, *, verbose: bool = False, stream: TextIO | None = None
) -> Iterator[Path]:
    """Route the libraries' warnings and log records to ``log_path`` (appended; it
    and its folder are created at the first message only) and, with ``verbose``, to ``stream`` (standard error) too."""
    with contextlib.suppress(ImportError):  # its own console handler is set up on import
        import transformers.utils.logging  # noqa: F401
    handler = _LazyFile(log_path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(FORMAT))
    handlers: list[logging.Handler] = [handler]
    out = stream if stream is not None else sys.stderr
    if verbose:
        echo = logging.StreamHandler(out)
        echo.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handlers.append(echo)
    saved = []
    for name in LIBRARIES:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level, list(lg.handlers), lg.propagate))
        lg.handlers = list(handlers)
        lg.propagate = False
        lg.setLevel(logging.WARNING)
    bars = None if verbose else _bars(False)
    shown = warnings.showwarning

    def route(
        message: Any,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if _ours(category):
            shown(message, category, filename, lineno, file, line)
            return
        if issubclass(category, (DeprecationWarning, PendingDeprecationWarning)):
            return  # a library's note to its own callers' developers (torch.jit at import)
        text = warnings.formatwarning(message, category, filename, lineno, line)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(text)
        if verbose:
            out.write(text)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once per location
            warnings.showwarning = route
            yield log_path
    finally:
        for lg, level, old, propagate in saved:
            lg.handlers = old
            lg.propagate = propagate
            lg.setLevel(level)
        handler.close()
        if bars is not None:
            _restore(bars)


def _bars(active: bool) -> dict[str, bool]:
    """Turn the libraries' progress bars on or off; their previous states."""
    before: dict[str, bool] = {}
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        before["transformers"] = bool(hf_logging.is_progress_bar_enabled())
        (hf_logging.enable_progress_bar if active else hf_logging.disable_progress_bar)()
    with contextlib.suppress(ImportError):
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )

        before["huggingface_hub"] = not are_progress_bars_disabled()
        (enable_progress_bars if active else disable_progress_bars)()
    return before


def _restore(before: dict[str, bool]) -> None:
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        if "transformers" in before:
            on = before["transformers"]
            (hf_logging.enable_progress_bar if on else hf_logging.disable_progress_bar)()
    with contextlib.suppress(ImportError):
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        if "huggingface_hub" in before:
            (enable_progress_bars if before["huggingface_hub"] else disable_progress_bars)()
