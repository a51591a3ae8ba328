"""Does the suite's backend compute what its tasks and audits ask for?

Checked when a suite is validated, so a suite that needs log-likelihoods from a
backend that gives none (openai-chat) is refused before any request is sent, with the
error located at the task or audit that needs them. Two tables decide: what each
backend computes (``harness.config.backends.CAPABILITIES``) and what each task kind
and audit needs (``KIND_NEEDS`` and ``AUDIT_NEEDS`` here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from harness.config import yaml_marks
from harness.config.backends import CAPABILITIES, GENERATION, INSTEAD, LOGLIKELIHOODS

NEEDS = "{what} needs {capability}, which backend {backend} does not give{instead}"

KIND_NEEDS: dict[str, str] = {
    "classification": LOGLIKELIHOODS,  # each choice scored by its log-likelihood
    "perplexity": LOGLIKELIHOODS,
    "generation": GENERATION,
}
"""The capability a task kind scores by (an lm_eval task: the kind it is scored as)."""

Need = tuple[tuple[Any, ...], str, str]
"""(where in the audit's section, what needs it, the capability)."""


def _kind_need(kinds: Mapping[str, str | None], task: Any) -> str | None:
    kind = kinds.get(task) if isinstance(task, str) else None
    return KIND_NEEDS.get(kind) if kind else None


def _explain(section: dict[str, Any], kinds: Mapping[str, str | None]) -> list[Need]:
    return [(("task",), "explain (it scores the task's choices)", LOGLIKELIHOODS)]


def _privacy(section: dict[str, Any], kinds: Mapping[str, str | None]) -> list[Need]:
    if section.get("canaries") in (None, False):
        return []
    return [(("canaries",), "privacy canary exposure", LOGLIKELIHOODS)]


def _fairness(section: dict[str, Any], kinds: Mapping[str, str | None]) -> list[Need]:
    needs: list[Need] = []
    task = section.get("task")
    need = _kind_need(kinds, task)
    if need is not None and isinstance(task, str):
        needs.append((("task",), f"fairness on {kinds[task]} task '{task}'", need))
    if section.get("pairs") is not None:
        needs.append((("pairs",), "fairness stereotype pairs", LOGLIKELIHOODS))
    return needs


def _forgetting(section: dict[str, Any], kinds: Mapping[str, str | None]) -> list[Need]:
    tasks = section.get("tasks")
    needs: list[Need] = []
    for i, task in enumerate(tasks if isinstance(tasks, list) else []):
        need = _kind_need(kinds, task)
        if need is not None and isinstance(task, str):
            needs.append((("tasks", i), f"forgetting on {kinds[task]} task '{task}'", need))
    return needs


AUDIT_NEEDS: dict[str, Callable[[dict[str, Any], Mapping[str, str | None]], list[Need]]] = {
    "explain": _explain,
    "privacy": _privacy,
    "fairness": _fairness,
    "forgetting": _forgetting,
}
"""What each audit's section needs beyond its tasks' own scoring (an audit not listed
needs nothing of its own: counterfactuals, PII scans and extraction generate or rescore
through the task)."""


def _message(what: str, capability: str, backend: str) -> str:
    instead = INSTEAD.get(capability)
    return NEEDS.format(
        what=what,
        capability=capability,
        backend=backend,
        instead=f" ({instead})" if instead else "",
    )


def capability_problems(
    raw: dict[str, Any], scored: Mapping[int, str | None]
) -> list[tuple[yaml_marks.Path, str]]:
    """Located problems of the tasks and audits the suite's backend cannot compute;
    ``scored``: the kind each lm_eval task (by index) is scored as."""
    model = raw.get("model")
    backend = model.get("backend", "hf") if isinstance(model, dict) else "hf"
    can = CAPABILITIES.get(backend) if isinstance(backend, str) else None
    if can is None:
        return []  # an unknown backend is the schema's error
    problems: list[tuple[yaml_marks.Path, str]] = []
    kinds: dict[str, str | None] = {}
    tasks = raw.get("tasks")
    for i, task in enumerate(tasks if isinstance(tasks, list) else []):
        if not isinstance(task, dict):
            continue
        kind = task.get("kind")
        if kind == "lm_eval":
            kind = scored.get(i)
        if not isinstance(kind, str):
            continue
        if isinstance(task.get("id"), str):
            kinds.setdefault(task["id"], kind)
        need = KIND_NEEDS.get(kind)
        if need is not None and need not in can:
            what = kind if task.get("kind") == kind else f"lm_eval task scored as {kind}"
            problems.append((("tasks", i, "kind"), _message(what, need, backend)))
    audits = raw.get("audits")
    for name, needs_of in AUDIT_NEEDS.items():
        section = audits.get(name) if isinstance(audits, dict) else None
        if not isinstance(section, dict):
            continue
        for where, what, need in needs_of(section, kinds):
            if need not in can:
                problems.append((("audits", name, *where), _message(what, need, backend)))
    return problems
