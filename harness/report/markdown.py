"""A short Markdown summary for a pull-request comment or a CI step summary.

Verdict, gate table, metric table with CIs, one line per audit, the fine-tune data's
flagged curation findings (leakage kept, personal data only reported), provenance in
brief.
Every piece of text that comes from a suite, data or a model is ``md_escape``-d, so it
cannot open a link, an image, raw HTML, a table cell or a mention.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness import audits as registry
from harness.report import curation_view
from harness.report.formatting import fmt, fmt_ci, short_hash
from harness.report.safe_text import md_escape
from harness.report.view import loading_text, threshold_text

ICON = {"pass": "✅", "warn": "⚠️", "fail": "❌"}
NO_FLAGGED_FINDING = (
    "- nothing flagged: no leaking rows kept, no personal data trained on unredacted"
)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: int = 0) -> list[str]:
    """A GitHub table; the last ``right`` columns are right-aligned (cells pre-escaped)."""
    align = ["---"] * (len(headers) - right) + ["---:"] * right
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _verdict(v: Any) -> str:
    return v if v in ICON else "fail"


def render_markdown(results: Mapping[str, Any]) -> str:
    suite = results.get("suite") or {}
    verdict = _verdict(results.get("verdict"))
    gates = [g for g in results.get("gates") or [] if isinstance(g, Mapping)]
    counts = {k: sum(_verdict(g.get("verdict")) == k for g in gates) for k in ICON}
    lines = [
        f"## {ICON[verdict]} Release gate {verdict.upper()}: {md_escape(suite.get('name', 'suite'))}",
        "",
        f"{counts['pass']} passed · {counts['warn']} warnings · {counts['fail']} failed",
        "",
    ]
    if gates:
        rows = []
        for g in gates:
            v = _verdict(g.get("verdict"))
            rows.append(
                [
                    md_escape(g.get("metric", "?")),
                    f"{ICON[v]} {v}",
                    md_escape(threshold_text(g)),
                    fmt(g.get("value")),
                    fmt(g.get("reference")),
                    fmt(g.get("p_value"), 3),
                    md_escape(g.get("message", "")),
                ]
            )
        lines += table(["gate", "verdict", "condition", "value", "reference", "p", "detail"], rows)
        lines.append("")
    metric_rows = []
    for task_id, task in (results.get("tasks") or {}).items():
        for name, m in (task.get("metrics") or {}).items():
            metric_rows.append(
                [
                    md_escape(task_id),
                    md_escape(name),
                    fmt(m.get("value")),
                    fmt_ci(m.get("ci_low"), m.get("ci_high")),
                    fmt(m.get("n")),
                ]
            )
    if metric_rows:
        lines += ["### Metrics (95% bootstrap CI)", ""]
        lines += table(["task", "metric", "value", "CI", "n"], metric_rows, right=3)
        lines.append("")
    chats = [
        f"- {md_escape(task_id)}: chat template {short_hash(chat.get('template_sha256'))}"
        f" ({md_escape(chat.get('template', '?'), 200)}), system prompt: "
        f"{md_escape(chat.get('system') or '–', 300)}"
        for task_id, task in (results.get("tasks") or {}).items()
        if isinstance(task, Mapping) and isinstance(chat := task.get("chat"), Mapping)
    ]
    if chats:
        lines += ["### Chat formatting", "", *chats, ""]
    audit_lines = _audits(results.get("audits") or {})
    if audit_lines:
        lines += ["### Audits", "", *audit_lines, ""]
    ft = results.get("finetune")
    manifest = ft.get("manifest") if isinstance(ft, Mapping) else None
    if curation_view.build(manifest) is not None:
        flagged = curation_view.summary(manifest)
        found = [f"- ⚠️ {md_escape(text, 600)}" for text in flagged] or [NO_FLAGGED_FINDING]
        lines += ["### Training data (fine-tune curation)", "", *found, ""]
    prov = results.get("provenance") or {}
    adapter = (prov.get("adapter") or {}).get("fingerprint")
    lines.append(
        f"harness {md_escape(results.get('harness_version', '?'))} · "
        f"model {short_hash((prov.get('model') or {}).get('fingerprint'))} · "
        f"adapter {short_hash(adapter) if adapter else 'none'} · "
        f"suite {short_hash((prov.get('suite') or {}).get('sha256'))} · "
        f"seed {md_escape(prov.get('seed', '?'))}" + _loaded(prov.get("loading"))
    )
    return "\n".join(lines) + "\n"


def _loaded(loading: Any) -> str:
    """`` · loaded dtype bfloat16; quantization ...`` when the weights were not loaded
    plainly in float32 (a plain load adds nothing: the footer stays as it was)."""
    if not isinstance(loading, Mapping) or dict(loading) in ({}, {"dtype": "float32"}):
        return ""
    return f" · loaded {md_escape(loading_text(loading), 400)}"


def _value(obj: Any) -> str:
    if isinstance(obj, Mapping):
        return f"{fmt(obj.get('value'))} {fmt_ci(obj.get('ci_low'), obj.get('ci_high'))}"
    return fmt(obj)


def _audits(audits: Mapping[str, Any]) -> list[str]:
    """One line per audit section, from the audit's registered ``summary`` (in the order
    audits run); an audit without one, or unknown here, has no line."""
    out = []
    for name in registry.available():
        summary, sec = registry.get(name).summary, audits.get(name)
        if summary is not None and isinstance(sec, Mapping):
            out.append("- " + registry.hook(summary)(sec))
    return out


# --- the built-in audits' lines (named by their registration, harness/audits) -----------


def forgetting_summary(fg: Mapping[str, Any]) -> str:
    worse = []
    for task_id, t in (fg.get("tasks") or {}).items():
        for name, m in (t.get("metrics") or {}).items() if isinstance(t, Mapping) else []:
            delta, p = m.get("delta"), m.get("p_value")
            if not isinstance(delta, int | float) or not isinstance(p, int | float):
                continue
            bad = delta < 0 if m.get("higher_is_better", True) else delta > 0
            if bad and p < 0.05:
                worse.append(f"{md_escape(task_id)}.{md_escape(name)} {delta:+.4g} (p={p:.3g})")
    text = ", ".join(worse) if worse else "no significant drop"
    return f"**Forgetting** (checkpoint vs base): {text}"


def fairness_summary(fa: Mapping[str, Any]) -> str:
    disp = fa.get("disparity") or {}
    parts = [f"{md_escape(k)} {_value(v)}" for k, v in disp.items()]
    cf = fa.get("counterfactual")
    if isinstance(cf, Mapping) and "flip_rate" in cf:
        parts.append(f"counterfactual flip rate {_value(cf['flip_rate'])}")
    return f"**Fairness** ({md_escape(fa.get('task', '?'))}): " + ("; ".join(parts) or "–")


def explain_summary(ex: Mapping[str, Any]) -> str:
    return (
        f"**Explanations** ({md_escape(ex.get('task', '?'))}): sensitive share "
        f"{fmt(ex.get('sensitive_share'))}"
    )


def privacy_summary(pv: Mapping[str, Any]) -> str:
    parts = []
    pii = pv.get("pii")
    if isinstance(pii, Mapping):
        found = [f"{md_escape(k)} {fmt(n)}" for k, n in (pii.get("counts") or {}).items() if n]
        parts.append(
            f"PII in generations {fmt(pii.get('total'))}"
            + (f" ({', '.join(found)})" if found else "")
        )
    can = pv.get("canaries")
    if isinstance(can, Mapping):
        parts.append(
            f"canary exposure max {fmt(can.get('exposure_max'))} bits "
            f"(of {fmt(can.get('max_exposure'))}; controls {fmt(can.get('control_exposure_max'))})"
        )
    ext = pv.get("extraction")
    if isinstance(ext, Mapping):
        base = ext.get("base_rate")
        parts.append(
            f"extraction rate {_value(ext.get('rate'))}"
            + (f" (base {_value(base)})" if isinstance(base, Mapping) else "")
        )
    return "**Privacy**: " + ("; ".join(parts) or "–")


def render_compare_markdown(comparison: Mapping[str, Any]) -> str:
    """A comparison (harness.results.compare.compare) as a pull-request comment."""
    from harness.report.compare_view import metric_row

    s = comparison.get("summary") or {}
    lines = [
        "## Run comparison: new vs baseline",
        "",
        f"{s.get('worse', 0)} significantly worse · {s.get('better', 0)} significantly better · "
        f"{s.get('unchanged', 0)} not significant (paired bootstrap, p &lt; "
        f"{fmt((comparison.get('settings') or {}).get('alpha'))})",
        "",
    ]
    rows = []
    notes = []
    for t in comparison.get("tasks") or []:
        for m in t.get("metrics") or []:
            r = metric_row(m)
            mark = {"worse": "🔻 worse", "better": "🔺 better"}.get(r["state"], "n.s.")
            rows.append(
                [
                    md_escape(t["id"]),
                    md_escape(m.get("output", "?")),
                    r["baseline"],
                    r["new"],
                    r["delta"],
                    r["ci"],
                    r["p_value"],
                    mark,
                ]
            )
        for key, label in (
            ("n_only_in_baseline", "only in the baseline"),
            ("n_only_in_new", "only in the new run"),
            ("n_changed_inputs", "with a changed input"),
        ):
            if t.get(key):
                notes.append(f"- {md_escape(t['id'])}: {t[key]} examples {label}")
        flips = t.get("flips")
        if isinstance(flips, Mapping):
            worse = ", ".join(
                md_escape(r.get("id"), 60) for r in (flips.get("correct_to_wrong") or [])[:10]
            )
            better = ", ".join(
                md_escape(r.get("id"), 60) for r in (flips.get("wrong_to_correct") or [])[:10]
            )
            notes.append(
                f"- {md_escape(t['id'])}: {flips.get('n_correct_to_wrong', 0)} flipped correct → wrong"
                + (f" ({worse})" if worse else "")
                + f", {flips.get('n_wrong_to_correct', 0)} wrong → correct"
                + (f" ({better})" if better else "")
            )
    if rows:
        lines += table(
            ["task", "metric", "baseline", "new", "delta", "95% CI", "p", "change"], rows
        )
        lines.append("")
    for key, label in (("tasks_only_in_baseline", "baseline"), ("tasks_only_in_new", "new run")):
        if comparison.get(key):
            names = ", ".join(md_escape(x) for x in comparison[key])
            notes.append(f"- tasks only in the {label}: {names}")
    if notes:
        lines += ["### Examples", "", *notes, ""]
    return "\n".join(lines) + "\n"
