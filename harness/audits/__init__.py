"""Audits: forgetting, group fairness, explanations and privacy, each a small module over one
engine (harness.audits.base, harness.audits.engine), declared in a suite's `audits:`
section and gateable by the names in docs/gates.md.

Importing this package registers the built-in audits, in the order they run.
"""

# the registration order is the order audits run in
# isort: off
from harness.audits import forgetting, fairness, explain, privacy  # noqa: F401

# isort: on
from harness.audits.base import Audit, AuditConfig, AuditContext, available, get, register
from harness.audits.engine import (
    config_problems,
    data_problems,
    gate_problem,
    is_audit_name,
    preflight,
    resolve_paths,
    run_audits,
)
from harness.audits.explain import ExplainConfig
from harness.audits.fairness import CounterfactualConfig, FairnessConfig, PairsConfig
from harness.audits.forgetting import ForgettingConfig
from harness.audits.privacy import PrivacyConfig

__all__ = [
    "Audit",
    "AuditConfig",
    "AuditContext",
    "CounterfactualConfig",
    "ExplainConfig",
    "FairnessConfig",
    "ForgettingConfig",
    "PairsConfig",
    "PrivacyConfig",
    "available",
    "config_problems",
    "data_problems",
    "gate_problem",
    "get",
    "is_audit_name",
    "preflight",
    "register",
    "resolve_paths",
    "run_audits",
]
