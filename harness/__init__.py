"""Release-gating audit harness for fine-tuned language models.

The public API is re-exported lazily so that ``import harness`` and
``harness --help`` stay fast: torch and transformers load only when a model does.
"""

from __future__ import annotations

from harness.version import __version__

__all__ = ["__version__", "UserError", "load_suite", "run_suite"]


def __getattr__(name: str) -> object:
    if name == "UserError":
        from harness.errors import UserError

        return UserError
    if name == "load_suite":
        from harness.config.suite import load_suite

        return load_suite
    if name == "run_suite":
        from harness.run.runner import run_suite

        return run_suite
    raise AttributeError(name)
