"""A Hugging Face model card (README.md) rendered from a stored run.

The YAML front matter carries what the Hub reads: ``base_model``, ``datasets``,
``license`` (only when given: nothing in a run says it), ``library_name``, ``tags`` and
``model-index`` with one entry per task and one metric per finite task metric value
(the values exactly as results.json stores them; the CIs go in the body, which the
``model-index`` format has no field for). The body gives the verdict and every gate,
the metrics with their CIs, forgetting (base vs checkpoint), the fairness, privacy and
explanation findings, the fine-tune's data curation, provenance digests and the
commands that reproduce the run.

Everything in the card that comes from a suite, data or a model is untrusted: in the
body it is ``md_escape``-d (no link, image, raw HTML or table cell can start), in the
front matter it is one clean line that the YAML dumper quotes as needed.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from harness import audits as registry
from harness.report import curation_view
from harness.report.formatting import fmt, fmt_ci
from harness.report.markdown import table
from harness.report.safe_text import md_escape, one_line
from harness.report.view import threshold_text
from harness.results.schema import Results

ICON = {"pass": "✅", "warn": "⚠️", "fail": "❌"}
TASK_TYPE = {
    "classification": "text-classification",
    "generation": "text-generation",
    "perplexity": "text-generation",
}
"""The Hub's task type for each task kind (perplexity: the language model itself)."""
EXAMPLES_SHOWN = 3
FLIPS_SHOWN = 5
_META_LIMIT = 300


def render_card(
    results: Results,
    *,
    finetune: Mapping[str, Any] | None = None,
    license: str | None = None,
    results_path: str | None = None,
) -> str:
    """The model card of a run: front matter, then the Markdown body (module doc).

    ``finetune`` is a fine-tune record (harness.results.finetune_record: ``manifest``,
    ``history``, ``files``); by default the one the run embedded (``results.finetune``).
    ``results_path`` names the results file in the reproduction commands.
    """
    doc = results.document()
    if finetune is None and isinstance(doc.get("finetune"), Mapping):
        finetune = doc["finetune"]
    meta = card_metadata(doc, finetune=finetune, license=license)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=10_000)
    body = card_body(doc, finetune=finetune, results_path=results_path)
    return f"---\n{front}---\n\n{body}"


# --- front matter ---------------------------------------------------------------------------


def _verdict(value: Any) -> str:
    return value if isinstance(value, str) and value in ICON else "fail"


def _line(value: Any) -> str:
    return one_line(value, _META_LIMIT)


def _model_name(doc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(base model, adapter) as the suite named them."""
    model = (doc.get("suite") or {}).get("model")
    prov = doc.get("provenance") or {}
    base = model.get("path") if isinstance(model, Mapping) else None
    adapter = model.get("adapter") if isinstance(model, Mapping) else None
    base = base or (prov.get("model") or {}).get("path")
    adapter = adapter or (prov.get("adapter") or {}).get("path")
    return (_line(base) if base else None, _line(adapter) if adapter else None)


def task_datasets(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task id: ``name`` (hub id or data file), ``sha256`` (files), ``split``."""
    out: dict[str, dict[str, Any]] = {}
    for t in (doc.get("suite") or {}).get("tasks") or []:
        if not isinstance(t, Mapping) or "id" not in t:
            continue
        data = t.get("data")
        entry: dict[str, Any] = {"name": None, "sha256": None, "split": None}
        if isinstance(data, Mapping):  # a `datasets` source
            entry["name"] = data.get("dataset")
            entry["split"] = data.get("split")
        elif isinstance(data, str):
            entry["name"] = data
        elif t.get("task"):  # an lm_eval task
            entry["name"] = f"lm-eval {t['task']}"
        out[str(t["id"])] = entry
    for ref in (doc.get("provenance") or {}).get("data") or []:
        task = ref.get("task") if isinstance(ref, Mapping) else None
        if task is None:
            continue
        entry = out.setdefault(str(task), {"name": None, "sha256": None, "split": None})
        if ref.get("path"):
            entry["name"] = ref["path"]  # as the run recorded it (relative to the suite)
        entry["sha256"] = ref.get("sha256")
    for entry in out.values():
        entry["name"] = _line(entry["name"]) if entry["name"] else None
    return out


def card_metadata(
    doc: Mapping[str, Any],
    *,
    finetune: Mapping[str, Any] | None = None,
    license: str | None = None,
) -> dict[str, Any]:
    """The front matter as data (keys in the Hub's usual order)."""
    base, adapter = _model_name(doc)
    datasets = task_datasets(doc)
    names = [d["name"] for d in datasets.values() if d["name"]]
    manifest = (finetune or {}).get("manifest") or {}
    for f in manifest.get("data_files") or [] if isinstance(manifest, Mapping) else []:
        if isinstance(f, Mapping) and f.get("path") and f.get("role") in ("train", "validation"):
            names.append(_line(f["path"]))
    suite_name = _line((doc.get("suite") or {}).get("name") or "suite")
    verdict = _verdict(doc.get("verdict"))
    meta: dict[str, Any] = {}
    if base:
        meta["base_model"] = base
    if names:
        meta["datasets"] = list(dict.fromkeys(names))
    if license:
        meta["license"] = _line(license)
    meta["library_name"] = "peft" if adapter else "transformers"
    meta["tags"] = ["llm-release-harness", f"release-gate-{verdict}"]
    if adapter:
        meta["tags"] += ["peft", "lora"]
    meta["model-index"] = [
        {"name": _line(adapter or base or suite_name), "results": _model_index(doc, datasets)}
    ]
    return meta


def _model_index(doc: Mapping[str, Any], datasets: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for task_id, task in (doc.get("tasks") or {}).items():
        metrics = []
        for output, m in (task.get("metrics") or {}).items():
            value = m.get("value")
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue  # undefined (null): the model-index format needs a number
            metrics.append(
                {
                    "type": _line(m.get("metric") or output),
                    "name": _line(output),
                    "value": value,
                }
            )
        if not metrics:
            continue
        data = datasets.get(task_id) or {}
        dataset: dict[str, Any] = {
            "name": _line(task_id),
            "type": data.get("name") or _line(task_id),
        }
        if data.get("split"):
            dataset["split"] = _line(data["split"])
        kind = str(task.get("kind"))
        out.append(
            {
                "task": {"type": TASK_TYPE.get(kind, "text-generation"), "name": _line(task_id)},
                "dataset": dataset,
                "metrics": metrics,
            }
        )
    return out


# --- body -----------------------------------------------------------------------------------


def card_body(
    doc: Mapping[str, Any],
    *,
    finetune: Mapping[str, Any] | None = None,
    results_path: str | None = None,
) -> str:
    base, adapter = _model_name(doc)
    suite = doc.get("suite") or {}
    verdict = _verdict(doc.get("verdict"))
    title = md_escape(adapter or base or "model")
    lines = [f"# {title}", ""]
    if adapter and base:
        lines += [f"A PEFT adapter of `{_code(base)}`.", ""]
    lines += [
        f"**Release gate: {ICON[verdict]} {verdict.upper()}** on suite "
        f"*{md_escape(suite.get('name', 'suite'))}* "
        f"(harness {md_escape(doc.get('harness_version', '?'))}, "
        f"{md_escape((doc.get('provenance') or {}).get('finished_at') or '?')}).",
        "",
    ]
    if suite.get("description"):
        lines += [md_escape(suite["description"], 600), ""]
    lines += _gates(doc) + _metrics(doc) + _forgetting(doc) + _findings(doc)
    lines += _examples(doc) + _curation(finetune) + _provenance(doc, finetune)
    lines += _reproduce(doc, results_path)
    return "\n".join(lines).rstrip("\n") + "\n"


def _code(text: str) -> str:
    """Text inside a code span: backticks cannot close it early."""
    return one_line(text, _META_LIMIT).replace("`", "'")


def _gates(doc: Mapping[str, Any]) -> list[str]:
    gates = [g for g in doc.get("gates") or [] if isinstance(g, Mapping)]
    if not gates:
        return ["## Gates", "", "The suite sets no gates.", ""]
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
                md_escape(g.get("message", ""), 300),
            ]
        )
    head = ["gate", "verdict", "threshold", "value", "reference", "why"]
    return ["## Gates", "", *table(head, rows), ""]


def _metrics(doc: Mapping[str, Any]) -> list[str]:
    boot = (doc.get("suite") or {}).get("bootstrap") or {}
    level = boot.get("confidence")
    ci = f"{fmt(100 * level, 3)}% CI" if isinstance(level, int | float) else "CI"
    rows = []
    for task_id, task in (doc.get("tasks") or {}).items():
        for output, m in (task.get("metrics") or {}).items():
            arrow = "↑" if m.get("higher_is_better", True) else "↓"
            value = fmt(m.get("value")) if m.get("value") is not None else "undefined"
            rows.append(
                [
                    md_escape(task_id),
                    f"{md_escape(output)} {arrow}",
                    value,
                    fmt_ci(m.get("ci_low"), m.get("ci_high")),
                    fmt(m.get("n")),
                ]
            )
    note = (
        f"Percentile bootstrap {ci} over {fmt(boot.get('samples'))} resamples."
        if rows
        else "No task metrics."
    )
    head = ["task", "metric", "value", ci, "n"]
    return ["## Metrics", "", *table(head, rows, right=3), "", note, ""]


def _forgetting(doc: Mapping[str, Any]) -> list[str]:
    fg = (doc.get("audits") or {}).get("forgetting")
    if not isinstance(fg, Mapping):
        return []
    base = fg.get("baseline") or {}
    kind = "the same model with the adapter disabled"
    if base.get("kind") != "adapter_disabled":
        kind = f"`{_code(str(base.get('path') or '?'))}`"
    rows = []
    for task_id, t in (fg.get("tasks") or {}).items():
        for name, m in (t.get("metrics") or {}).items() if isinstance(t, Mapping) else []:
            b, c = m.get("base") or {}, m.get("checkpoint") or {}
            rows.append(
                [
                    md_escape(task_id),
                    md_escape(name),
                    fmt(b.get("value")),
                    fmt(c.get("value")),
                    fmt(m.get("delta")),
                    fmt_ci(m.get("delta_ci_low"), m.get("delta_ci_high")),
                    fmt(m.get("p_value")),
                ]
            )
    head = ["task", "metric", "base", "fine-tuned", "delta", "delta CI", "p"]
    lines = ["## Forgetting", "", f"Base: {kind}.", "", *table(head, rows, right=5), ""]
    for task_id, t in (fg.get("tasks") or {}).items():
        flips = t.get("flips") if isinstance(t, Mapping) else None
        if not isinstance(flips, Mapping):
            continue
        lost = [r for r in flips.get("correct_to_wrong") or [] if isinstance(r, Mapping)]
        lines += [
            f"{md_escape(task_id)}: {fmt(flips.get('n_correct_to_wrong'))} examples flipped "
            f"correct → wrong, {fmt(flips.get('n_wrong_to_correct'))} wrong → correct.",
            "",
        ]
        if lost:
            rows = [
                [
                    md_escape(r.get("id"), 60),
                    md_escape(r.get("gold"), 80),
                    md_escape(r.get("base_pred"), 80),
                    md_escape(r.get("pred"), 80),
                ]
                for r in lost[:FLIPS_SHOWN]
            ]
            lines += [*table(["id", "gold", "base", "fine-tuned"], rows), ""]
    return lines


def _findings(doc: Mapping[str, Any]) -> list[str]:
    """One line per other audit, from its registered summary (fairness, privacy, explain)."""
    audits = doc.get("audits") or {}
    out = []
    titles = {"fairness": "Fairness", "privacy": "Privacy", "explain": "Explanations"}
    for name in registry.available():
        section = audits.get(name)
        summary = registry.get(name).summary
        if name == "forgetting" or summary is None or not isinstance(section, Mapping):
            continue
        out += [f"### {titles.get(name, md_escape(name))}", "", registry.hook(summary)(section), ""]
    return ["## Audit findings", "", *out] if out else []


def _examples(doc: Mapping[str, Any]) -> list[str]:
    """A few generations beside their references (what the model writes, escaped)."""
    lines = []
    for task_id, task in (doc.get("tasks") or {}).items():
        records = task.get("records") or []
        shown = [r for r in records if isinstance(r, Mapping) and "prediction" in r]
        if not shown:
            continue
        rows = []
        for r in shown[:EXAMPLES_SHOWN]:
            refs = r.get("references")
            ref = refs[0] if isinstance(refs, list) and refs else r.get("reference", "–")
            rows.append(
                [md_escape(r.get("id"), 60), md_escape(r.get("prediction"), 200), md_escape(ref)]
            )
        lines += [f"### {md_escape(task_id)}", "", *table(["id", "output", "reference"], rows), ""]
    return ["## Example outputs", "", *lines] if lines else []


def _curation(finetune: Mapping[str, Any] | None) -> list[str]:
    manifest = (finetune or {}).get("manifest")
    lines = []
    if isinstance(manifest, Mapping):
        rows = [
            [md_escape(k), _shown(manifest.get(k))]
            for k in ("seed", "best_step", "global_steps", "best_val_loss", "best_val_accuracy")
            if manifest.get(k) is not None
        ]
        if rows:
            lines += ["## Fine-tune", "", *table(["setting", "value"], rows), ""]
    view = curation_view.build(manifest)
    if view is None:
        return lines
    rows = [
        [
            ("⚠️ " if f.get("flag") else "") + md_escape(f.get("check"), 120),
            md_escape(f.get("found"), 300),
            md_escape(f.get("action"), 200),
        ]
        for f in view["findings"]
    ]
    lines += ["## Training data curation", "", *table(["check", "found", "action"], rows), ""]
    lines += [f"- ⚠️ {md_escape(a, 400)}" for a in view["alerts"]]
    return lines + ([""] if view["alerts"] else [])


def _provenance(doc: Mapping[str, Any], finetune: Mapping[str, Any] | None) -> list[str]:
    prov = doc.get("provenance") or {}
    rows = []
    suite = prov.get("suite") or {}
    if suite:
        rows.append(["suite", md_escape(suite.get("path")), _digest(suite.get("sha256"))])
    for task_id, d in task_datasets(doc).items():
        rows.append([f"data ({md_escape(task_id)})", md_escape(d["name"]), _digest(d["sha256"])])
    for role in ("model", "adapter"):
        folder = prov.get(role)
        if isinstance(folder, Mapping):
            rows.append([role, md_escape(folder.get("path")), _digest(folder.get("fingerprint"))])
    manifest = (finetune or {}).get("manifest") or {}
    for f in manifest.get("data_files") or [] if isinstance(manifest, Mapping) else []:
        if isinstance(f, Mapping):
            role = f"fine-tune {md_escape(f.get('role') or 'data')}"
            rows.append([role, md_escape(f.get("path")), _digest(f.get("sha256"))])
    for f in (finetune or {}).get("files") or []:
        if isinstance(f, Mapping):
            rows.append(["fine-tune record", md_escape(f.get("path")), _digest(f.get("sha256"))])
    if not rows:
        return []
    versions = prov.get("versions") or {}
    libs = ", ".join(f"{md_escape(k)} {md_escape(v)}" for k, v in versions.items())
    lines = ["## Provenance", "", *table(["what", "path", "sha256"], rows), ""]
    if libs:
        lines += [f"Seed {fmt(prov.get('seed'))}; {libs}.", ""]
    return lines


def _shown(value: Any) -> str:
    return fmt(value) if isinstance(value, int | float) else md_escape(value)


def _digest(value: Any) -> str:
    return f"`{_code(str(value))}`" if value else "–"


def _reproduce(doc: Mapping[str, Any], results_path: str | None) -> list[str]:
    prov = doc.get("provenance") or {}
    suite = str((prov.get("suite") or {}).get("path") or "SUITE.yaml")
    base, adapter = _model_name(doc)
    cmd = ["harness", "run", suite]
    if base:
        cmd += ["--model", base]
    if adapter:
        cmd += ["--adapter", adapter]
    results = results_path or "results.json"
    commands = [
        " ".join(shlex.quote(one_line(c, _META_LIMIT)) for c in cmd),
        f"harness verify {shlex.quote(one_line(results, _META_LIMIT))}",
    ]
    fence = "~~~~"  # no data line can close it: each command is one line without ~~~~
    body = [c.replace(fence, "~ ~ ~ ~") for c in commands]
    return [
        "## How to reproduce",
        "",
        "Re-run the suite on the same files (the digests above), then check that the "
        "inputs and numbers match:",
        "",
        f"{fence}sh",
        *body,
        fence,
        "",
    ]
