"""The command lines' error boundary: every way a command ends has its own exit code.

``harness`` and ``finetune`` run each command through :func:`guarded`:

=====  =========================================================================
code   meaning
=====  =========================================================================
0      done (``harness``: no gate of severity ``fail`` failed)
1      ``harness`` only: a gate failed. Nothing else exits 1, because CI reads 1 as
       "the checkpoint failed its gates".
2      bad input (a ``UserError``): one located line per problem, ``error: ...``
3      internal error: a failure nobody anticipated (a bug, a plug-in or a library
       raising). One line, ``internal error: <Type>: <message> (traceback in
       <log>)``; the full traceback is in that log file.
130    interrupted (Ctrl-C)
=====  =========================================================================

The log of an internal error goes to ``errors/`` in the response cache folder
(``$HARNESS_CACHE_DIR``, else ``~/.cache/llm-release-harness``), never into a run's
output folder (which holds exactly the run's own files); if that folder cannot be
written, to the system temporary folder.

While a command runs, the libraries that load models (transformers, huggingface_hub,
datasets, evaluate, peft, torch) are kept quiet: their log warnings, progress bars and
Python warnings would otherwise add lines to what must be a one-line error. Set
``TRANSFORMERS_VERBOSITY=warning`` (or ``info``) to see transformers' messages again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

EXIT_OK, EXIT_GATE_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

INTERNAL_ERROR = "internal error: {error} (traceback in {log})"
INTERNAL_ERROR_NO_LOG = "internal error: {error} (the traceback could not be kept: {reason})"
MESSAGE_LIMIT = 300  # characters of the exception's message shown on the one line

# Environment read by each library when it is first imported; set only if the user has
# not chosen a value.
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_VERBOSITY": "error",
    "DATASETS_VERBOSITY": "error",
    "EVALUATE_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}
QUIET_LOGGERS = ("transformers", "huggingface_hub", "datasets", "evaluate", "peft", "bitsandbytes")
# silenced before they are imported: bitsandbytes warns while it is being imported (its
# optional CPU kernel from the hub is refused as untrusted), inside a quiet command
QUIET_BEFORE_IMPORT = ("bitsandbytes",)
QUIET_WARNINGS = (
    r"(transformers|huggingface_hub|datasets|evaluate|peft|accelerate|torch|bitsandbytes)(\.|$)"
)


def guarded(
    command: Callable[[], int],
    *,
    program: str,
    interrupted: str,
    argv: Sequence[str] | None = None,
    speaks: Callable[[], bool] = lambda: True,
) -> int:
    """Run ``command`` and map every way it can end to an exit code (module doc).

    ``speaks()`` says whether this process prints bad-input messages (one of several
    processes of a scaled-out run: only the main one does). ``argv`` (default
    ``sys.argv[1:]``) is recorded in the log. ``SystemExit`` passes through."""
    from harness.errors import UserError

    with quiet_libraries():
        try:
            return int(command())
        except UserError as exc:
            if speaks():
                for line in exc.messages:
                    print(f"error: {_one_line(line)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print(interrupted, file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:  # the boundary: anything else is an internal error
            args = sys.argv[1:] if argv is None else list(argv)
            print(internal_error(exc, program, args), file=sys.stderr)
            return EXIT_INTERNAL


def internal_error(exc: BaseException, program: str, argv: Sequence[str] = ()) -> str:
    """Keep the traceback of ``exc`` in a log file; the one line that names it."""
    message = _one_line(str(exc), MESSAGE_LIMIT)
    error = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    try:
        log = write_log(exc, program, argv)
    except Exception as failure:  # noqa: BLE001 - out of memory, disk full, ...: say so
        reason = _one_line(str(failure) or type(failure).__name__, MESSAGE_LIMIT)
        return INTERNAL_ERROR_NO_LOG.format(error=error, reason=reason)
    return INTERNAL_ERROR.format(error=error, log=log)


def log_dirs() -> list[Path]:
    """Where error logs go, in order of preference (module doc)."""
    import tempfile

    from harness.model.cache import default_dir

    return [default_dir() / "errors", Path(tempfile.gettempdir())]


def write_log(exc: BaseException, program: str, argv: Sequence[str] = ()) -> Path:
    """Write the traceback of ``exc`` (and what ran) to a new file readable by the
    user only (tracebacks may quote data); return its path."""
    from harness.version import __version__

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    name = f"{program}-error-{stamp}-{os.getpid()}.log"
    text = "".join(
        [
            f"{program} {__version__}, Python {sys.version.split()[0]}, {stamp}\n",
            f"command: {' '.join([program, *argv])}\n\n",
            *traceback.format_exception(exc),
        ]
    )
    last: OSError | None = None
    for folder in log_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
                fh.write(text)
            return path
        except OSError as error:
            last = error
    assert last is not None
    raise last


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence the model-loading libraries' warnings and progress bars (module doc);
    everything is restored afterwards."""
    saved_env = {k: os.environ.get(k) for k in QUIET_ENV}
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # libraries imported before (a test, a notebook) no longer read the environment
    loggers = [
        logging.getLogger(name)
        for name in QUIET_LOGGERS
        if name in logging.root.manager.loggerDict or name in QUIET_BEFORE_IMPORT
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.ERROR))
    bars = _transformers_bars(False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=QUIET_WARNINGS)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if bars is not None:
            _transformers_bars(bars)
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _transformers_bars(active: bool) -> bool | None:
    """Turn transformers' progress bars on or off if it is already imported (importing
    it costs seconds); the previous state, or None."""
    hf_logging = sys.modules.get("transformers.utils.logging")
    if hf_logging is None:
        return None
    before = bool(hf_logging.is_progress_bar_enabled())
    (hf_logging.enable_progress_bar if active else hf_logging.disable_progress_bar)()
    return before


def _one_line(text: str, limit: int | None = None) -> str:
    from harness.report.safe_text import one_line

    return one_line(text, limit).strip()
