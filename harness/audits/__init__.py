"""Audits: forgetting, group fairness, explanations and privacy, each a small module over one
engine (harness.audits.base, harness.audits.engine), declared in a suite's `audits:`
section and gateable by the names in docs/gates.md.

Each audit module registers itself (harness.audits.base.register_module); the registry
is the one source the suite schema, its reference, the report and the Markdown summary
are built from. Importing this package registers the built-in audits, in the order they
run. The package sits below the suite schema and the runner: it imports neither, and
reaches the run through its context (AuditContext).
"""

# the registration order is the order audits run in
# isort: off
from harness.audits import forgetting, fairness, explain, privacy  # noqa: F401

# isort: on
from harness.audits.base import (
    Audit,
    AuditConfig,
    AuditContext,
    DocSection,
    available,
    get,
    hook,
    register,
    register_module,
    unregister,
    version,
)
from harness.audits.engine import (
    config_problems,
    data_problems,
    gate_problem,
    is_audit_name,
    preflight,
    resolve_paths,
    run_audits,
)

__all__ = [
    "Audit",
    "AuditConfig",
    "AuditContext",
    "DocSection",
    "available",
    "config_problems",
    "data_problems",
    "gate_problem",
    "get",
    "hook",
    "is_audit_name",
    "preflight",
    "register",
    "register_module",
    "resolve_paths",
    "run_audits",
    "unregister",
    "version",
]
