"""The view-model of the HTML report: results.json -> plain, display-ready data.

Templates only loop and print; every number is formatted, every chart drawn, every
sort and selection made here, from the results document alone. Text that comes from
data or a model is passed through ``safe_text.clean`` (and later autoescaped).

Sections follow the order a reviewer reads: verdict and gates, provenance, task
metrics, audits (each registered audit's section, when present), the fine-tune
data's curation and the fine-tuning run (when the checkpoint carried a manifest or
history), per-example samples. Every per-example table shows the example's input text
beside its id (``example_text``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.report import audits_view, charts, curation_view, privacy_view
from harness.report.example_text import ExampleTexts, record_text, snippet
from harness.report.formatting import flatten, fmt, fmt_ci, short_hash
from harness.report.safe_text import clean, one_line
from harness.tasks import find as find_kind
from harness.tasks.generation import compared

SAMPLE_ROWS = 50
"""Per-example records shown per task (worst first); keeps a 5 x 1,000 report small."""
TEXT_LIMIT = 400
"""Characters of an expected or generated text shown in a table cell."""


def build(results: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the report template shows, in reading order."""
    suite = results.get("suite") or {}
    prov = results.get("provenance") or {}
    tasks = results.get("tasks") or {}
    gate_rows = [gate_row(g) for g in results.get("gates") or []]
    counts = Counter(g["verdict"] for g in gate_rows)
    view: dict[str, Any] = {
        "title": f"Release audit: {one_line(suite.get('name', 'suite'), 120)}",
        "suite_name": one_line(suite.get("name", ""), 120),
        "description": clean(suite.get("description") or "", 600),
        "verdict": str(results.get("verdict", "fail")),
        "gate_counts": {k: counts.get(k, 0) for k in ("pass", "warn", "fail")},
        "gates": gate_rows,
        "harness_version": clean(results.get("harness_version", "")),
        "schema_version": clean(results.get("schema_version", "")),
        "started_at": clean(prov.get("started_at", "")),
        "finished_at": clean(prov.get("finished_at", "")),
        "provenance": provenance(prov, suite, results.get("baseline")),
        "tasks": [task_view(tid, t, results) for tid, t in tasks.items()],
    }
    texts = ExampleTexts(tasks)
    view["audits"] = audits_view.build(results.get("audits") or {}, texts)
    view["finetune"] = finetune_view(results.get("finetune"))
    ft = results.get("finetune")
    view["curation"] = curation_view.build(ft.get("manifest") if isinstance(ft, Mapping) else None)
    view["alerts"] = view["curation"]["alerts"] if view["curation"] else []
    view["samples"] = [samples_view(tid, t, suite) for tid, t in tasks.items()]
    view["toc"] = _toc(view)
    return view


def _toc(view: Mapping[str, Any]) -> list[tuple[str, str]]:
    toc = [("gates", "Gates"), ("provenance", "Provenance"), ("metrics", "Task metrics")]
    toc += [(s["name"], s["title"]) for s in view["audits"]["sections"]]
    if view["audits"].get("other"):
        toc.append(("other-audits", "Other audits"))
    if view["curation"]:
        toc.append(("curation", "Training data"))
    if view["finetune"]:
        toc.append(("finetune", "Fine-tuning"))
    toc.append(("samples", "Examples"))
    return toc


# --- gates ----------------------------------------------------------------------------


def threshold_text(g: Mapping[str, Any]) -> str:
    """The condition of a gate in words: '>= 0.8', 'drop <= 0.01 (significant, a=0.05)'."""
    parts = []
    if g.get("min") is not None:
        parts.append(f"≥ {fmt(g['min'])}")
    if g.get("max") is not None:
        parts.append(f"≤ {fmt(g['max'])}")
    unit = " (relative)" if g.get("relative") else ""
    if g.get("max_drop") is not None:
        parts.append(f"drop ≤ {fmt(g['max_drop'])}{unit}")
    if g.get("max_increase") is not None:
        parts.append(f"increase ≤ {fmt(g['max_increase'])}{unit}")
    if g.get("significant"):
        parts.append(f"if significant (α={fmt(g.get('alpha', 0.05))})")
    return ", ".join(parts) or "–"


def gate_row(g: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "metric": one_line(g.get("metric", "?"), 200),
        "verdict": g.get("verdict") if g.get("verdict") in ("pass", "warn", "fail") else "fail",
        "severity": one_line(g.get("severity", "fail"), 20),
        "threshold": threshold_text(g),
        "value": fmt(g.get("value")),
        "reference": fmt(g.get("reference")),
        "p_value": fmt(g.get("p_value"), 3),
        "message": clean(g.get("message", ""), 600),
        "description": clean(g.get("description") or "", 600),
    }


# --- provenance -----------------------------------------------------------------------


def provenance(
    prov: Mapping[str, Any], suite: Mapping[str, Any], baseline: Any = None
) -> dict[str, Any]:
    files: list[dict[str, str]] = []
    s = prov.get("suite") or {}
    if s:
        files.append(_file_row("suite", s.get("path"), s.get("sha256")))
    for d in prov.get("data") or []:
        label = f"data ({one_line(d.get('task', ''), 60)})"
        path = d.get("path") or "(datasets source)"
        files.append(_file_row(label, path, d.get("sha256")))
    for role in ("model", "adapter"):
        m = prov.get(role) or {}
        for f in m.get("files") or []:
            files.append(
                _file_row(
                    role, f"{m.get('path', '')}/{f.get('name', '')}", f.get("sha256"), f.get("size")
                )
            )
    facts = [
        ("model", clean(((prov.get("model") or {}).get("path")) or "–", 300)),
        ("model fingerprint", clean((prov.get("model") or {}).get("fingerprint") or "–")),
        ("adapter", clean(((prov.get("adapter") or {}).get("path")) or "none", 300)),
        ("adapter fingerprint", clean((prov.get("adapter") or {}).get("fingerprint") or "–")),
        ("run fingerprint", clean(prov.get("fingerprint") or "–")),
        ("seed", clean(prov.get("seed", "–"))),
        ("device", clean(prov.get("device", "–"))),
        ("loading", loading_text(prov.get("loading"))),
        ("batch size", fmt(prov.get("batch_size"))),
        ("max length", fmt(prov.get("max_length"))),
        (
            "bootstrap",
            f"{fmt((suite.get('bootstrap') or {}).get('samples'))} resamples, "
            f"{fmt((suite.get('bootstrap') or {}).get('confidence'))} confidence",
        ),
        ("started", clean(prov.get("started_at", "–"))),
        ("finished", clean(prov.get("finished_at", "–"))),
    ]
    timings = prov.get("timings") or {}
    if timings:
        per_task = ", ".join(
            f"{one_line(k, 60)} {fmt(v)} s" for k, v in (timings.get("tasks") or {}).items()
        )
        facts.append(
            (
                "timings",
                f"load {fmt(timings.get('load_s'))} s; {per_task}; total {fmt(timings.get('total_s'))} s",
            )
        )
    cache = prov.get("cache")
    if isinstance(cache, Mapping):
        state = clean(cache.get("bypassed") or "", 200) or (
            f"{fmt(cache.get('hits'))} hits, {fmt(cache.get('misses'))} misses"
        )
        facts.append(("response cache", state))
    if isinstance(baseline, Mapping) and baseline:
        facts.append(
            (
                "baseline run",
                f"{clean(baseline.get('path') or '–', 300)} (sha256 "
                f"{clean(baseline.get('sha256') or '–', 80)})",
            )
        )
    versions = [(one_line(k, 60), one_line(v, 60)) for k, v in (prov.get("versions") or {}).items()]
    return {"facts": facts, "files": files, "versions": versions}


def loading_text(loading: Any) -> str:
    """How the weights loaded, in one line: ``dtype bfloat16; quantization bits=4,
    quant_type=nf4; device_map auto`` (escaped by the template like every value)."""
    if not isinstance(loading, Mapping) or not loading:
        return "–"
    parts = []
    for key, value in loading.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{one_line(k, 60)}={one_line(v, 60)}" for k, v in value.items())
        parts.append(f"{one_line(key, 40)} {one_line(value, 200)}")
    return clean("; ".join(parts), 400)


def _file_row(role: str, path: Any, sha: Any, size: Any = None) -> dict[str, str]:
    return {
        "role": role,
        "path": clean(path or "–", 300),
        "sha256": clean(sha or "–"),
        "size": fmt(size) if size is not None else "",
    }


def signature(entry: Mapping[str, Any], task_id: str, results: Mapping[str, Any]) -> str:
    """A sacrebleu-style signature: everything needed to reproduce this one number."""
    prov = results.get("provenance") or {}
    boot = (results.get("suite") or {}).get("bootstrap") or {}
    data = {d.get("task"): d for d in prov.get("data") or []}.get(task_id) or {}
    adapter = (prov.get("adapter") or {}).get("fingerprint")
    parts = [
        f"metric:{entry.get('metric', '?')}",
        *(f"{k}:{v}" for k, v in sorted((entry.get("params") or {}).items())),
    ]
    if entry.get("signature"):
        parts.append(str(entry["signature"]))
    parts += [
        f"n:{entry.get('n', '?')}",
        f"boot:{boot.get('samples', '?')}",
        f"ci:{boot.get('confidence', '?')}",
        f"seed:{prov.get('seed', '?')}",
        f"model:{short_hash((prov.get('model') or {}).get('fingerprint'))}",
        f"adapter:{short_hash(adapter) if adapter else 'none'}",
        f"data:{short_hash(data.get('sha256'))}",
        f"harness:{results.get('harness_version', '?')}",
    ]
    return one_line("|".join(parts), 600)


# --- task metrics -----------------------------------------------------------------------


def task_view(task_id: str, task: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    rows = []
    unit, percent = [], []
    for name, m in (task.get("metrics") or {}).items():
        value, lo, hi = m.get("value"), m.get("ci_low"), m.get("ci_high")
        rows.append(
            {
                "name": one_line(name, 120),
                "value": fmt(value),
                "ci": fmt_ci(lo, hi),
                "n": fmt(m.get("n")),
                "direction": "↑" if m.get("higher_is_better", True) else "↓",
                "signature": signature(m, task_id, results),
            }
        )
        point = (str(name), value, lo, hi)
        if _within(point[1:], 0.0, 1.0):
            unit.append(point)
        elif _within(point[1:], 0.0, 100.0):
            percent.append(point)
    chart_list = []
    if unit:
        chart_list.append(charts.interval_chart(unit, title=f"{task_id} (95% CI)", xlim=(0, 1)))
    if percent:
        chart_list.append(
            charts.interval_chart(percent, title=f"{task_id}, 0-100 scale", xlim=(0, 100))
        )
    return {
        "id": one_line(task_id, 120),
        "kind": one_line(task.get("kind", ""), 40),
        "n_examples": fmt(task.get("n_examples")),
        "metrics": rows,
        "charts": [c for c in chart_list if c],
        "chat": chat_view(task.get("chat")),
    }


def chat_view(chat: Any) -> dict[str, Any] | None:
    """A chat-formatted task's template (source, sha256), system prompt and one rendered
    prompt, for the reader to see what the model was given."""
    if not isinstance(chat, Mapping):
        return None
    digest = str(chat.get("template_sha256") or "")
    source = str(chat.get("template") or "")
    return {
        "template": one_line("the tokenizer's" if source == "tokenizer" else source, 200),
        "sha256": one_line(digest, 80),
        "system": one_line(chat.get("system") or "", 300) or "–",
        "multiturn": bool(chat.get("fewshot_as_multiturn")),
        "example": snippet("rendered prompt of the first example", chat.get("example") or ""),
    }


def _within(values: Iterable[Any], low: float, high: float) -> bool:
    vals = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return bool(vals) and all(low <= v <= high for v in vals)


# --- fine-tuning ---------------------------------------------------------------------------


def finetune_view(ft: Any) -> dict[str, Any] | None:
    if not isinstance(ft, Mapping) or not (ft.get("manifest") or ft.get("history")):
        return None
    history = [h for h in ft.get("history") or [] if isinstance(h, Mapping)]
    series = []
    for key, label in (("train_loss", "train loss"), ("val_loss", "validation loss")):
        xs, ys = [], []
        for i, h in enumerate(history):
            y = h.get(key)
            if isinstance(y, int | float) and math.isfinite(y):
                x = h.get("step", i)
                xs.append(float(x) if isinstance(x, int | float) else float(i))
                ys.append(float(y))
        series.append((label, xs, ys))
    summary = []
    vals: list[tuple[float, Any, Any]] = [
        (float(h["val_loss"]), h.get("step"), h.get("epoch"))
        for h in history
        if isinstance(h.get("val_loss"), int | float) and math.isfinite(h["val_loss"])
    ]
    if vals:
        best = min(vals, key=lambda v: v[0])
        summary.append(
            (
                "best validation loss",
                f"{fmt(best[0])} at step {fmt(best[1])} (epoch {fmt(best[2])})",
            )
        )
    trains = [h.get("train_loss") for h in history if isinstance(h.get("train_loss"), int | float)]
    if trains:
        summary.append(("final train loss", fmt(trains[-1])))
    if history:
        summary.append(("logged points", fmt(len(history))))
    manifest = ft.get("manifest")
    manifest = manifest if isinstance(manifest, Mapping) else {}
    # the training texts and canary secrets it lists are shown in the privacy section
    shown = {k: v for k, v in manifest.items() if k != "memorization"}
    return {
        "manifest": flatten(shown),
        "pii": privacy_view.finetune_pii(manifest),
        "summary": summary,
        "chart": charts.line_chart(series, title="learning curves", xlabel="step", ylabel="loss"),
        "problems": [clean(p, 300) for p in ft.get("problems") or []],
    }


# --- per-example samples ---------------------------------------------------------------


_WORD = re.compile(r"\w+", re.UNICODE)


def overlap_f1(prediction: str, references: Sequence[str]) -> float:
    """Best unigram F1 of a prediction against its references (for ranking only)."""
    pred = Counter(_WORD.findall(prediction.lower()))
    best = 0.0
    for ref in references:
        gold = Counter(_WORD.findall(str(ref).lower()))
        common = sum((pred & gold).values())
        if common:
            p, r = common / sum(pred.values()), common / sum(gold.values())
            best = max(best, 2 * p * r / (p + r))
    return best


def _choice(choices: Sequence[Any], i: Any) -> str:
    if isinstance(i, int) and 0 <= i < len(choices):
        return clean(choices[i], 200)
    return clean(i, 200)


def _task_spec(suite: Mapping[str, Any], task_id: str) -> Mapping[str, Any]:
    for t in suite.get("tasks") or []:
        if isinstance(t, Mapping) and t.get("id") == task_id:
            return t
    return {}


def samples_view(task_id: str, task: Mapping[str, Any], suite: Mapping[str, Any]) -> dict[str, Any]:
    """The worst ``SAMPLE_ROWS`` records of a task, worst first, as display rows."""
    kind = task.get("kind")
    task_kind = find_kind(kind)
    records = [r for r in task.get("records") or [] if isinstance(r, Mapping)]
    scored: list[tuple[float, int, Mapping[str, Any]]] = []
    for i, r in enumerate(records):
        scored.append((_badness(kind, r), i, r))
    scored.sort(key=lambda t: (-t[0], t[1]))
    choices = _task_spec(suite, task_id).get("choices") or []
    per_row = not isinstance(choices, list)  # each record carries its own choices
    if per_row:
        choices = []
    rows = []
    errors = 0
    for bad, _, r in scored[:SAMPLE_ROWS]:
        row: dict[str, Any] = {"id": one_line(r.get("id", ""), 120), "line": fmt(r.get("line"))}
        if task_kind is not None and task_kind.has_choices:
            probs = r.get("probs") or []
            gold, pred = r.get("gold"), r.get("pred")
            row.update(
                text=snippet(record_text(r), _scored_text(r) if per_row else r.get("prompt")),
                expected=_choice(r.get("choices") or choices, gold),
                got=_choice(r.get("choices") or choices, pred),
                score=fmt(probs[gold]) if isinstance(gold, int) and gold < len(probs) else "–",
                ok=gold == pred,
            )
        elif task_kind is not None and task_kind.generates:
            refs = r.get("references") or []
            row.update(
                text=snippet(record_text(r), r.get("prompt")),
                expected=clean(" | ".join(str(x) for x in refs), TEXT_LIMIT),
                got=clean(r.get("prediction", ""), TEXT_LIMIT),
                score=fmt(1.0 - bad),
                ok=bad == 0.0,
            )
            if "gold_answers" in r:  # the task extracts answers: both texts are shown
                answer, golds = compared(r)
                row.update(
                    expected_answer=clean(" | ".join(golds), TEXT_LIMIT),
                    answer=clean(answer, TEXT_LIMIT),
                )
        else:
            row.update(
                text=snippet(r.get("text", "")),
                expected="",
                got="",
                score=fmt(bad),
                ok=True,
            )
        errors += 0 if row["ok"] else 1
        rows.append(row)
    headers = {
        "classification": ("gold", "predicted", "p(gold)"),
        "generation": ("reference(s)", "generation", "unigram F1"),
        "perplexity": ("", "", "NLL / token"),
    }.get(str(kind), ("expected", "got", "score"))
    if any("gold_answers" in r for r in records):
        headers = ("reference(s), gold answer", "generation, answer", "answer unigram F1")
    return {
        "id": one_line(task_id, 120),
        "kind": one_line(kind or "", 40),
        "rows": rows,
        "shown": len(rows),
        "total": len(records),
        "headers": headers,
        "text_header": (
            "text"
            if task_kind is not None and not task_kind.has_prompt
            else "input (expand: the prompt)"
        ),
    }


def _scored_text(r: Mapping[str, Any]) -> str:
    """What expanding an example of a task with per-row choices shows: the context and
    every choice as scored, the gold one and the prediction marked."""
    choices = [str(c) for c in r.get("choices") or []]
    contexts = r.get("contexts")
    lines = [str(r.get("prompt", ""))]
    if isinstance(contexts, list):
        lines.append(f"... then each choice's context, and: {r.get('continuation', '')}")
    lines.append("")
    for i, choice in enumerate(choices):
        marks = [
            m for m, hit in (("gold", i == r.get("gold")), ("predicted", i == r.get("pred"))) if hit
        ]
        shown = str(contexts[i]) if isinstance(contexts, list) and i < len(contexts) else choice
        lines.append(f"{i}. {shown}" + (f"   [{', '.join(marks)}]" if marks else ""))
    return "\n".join(lines)


def _badness(kind: Any, r: Mapping[str, Any]) -> float:
    """Higher is worse: 1 - p(gold), 1 - unigram F1, or per-token NLL."""
    task_kind = find_kind(kind)
    try:
        if task_kind is not None and task_kind.has_choices:
            probs, gold = r.get("probs") or [], r.get("gold")
            wrong = 1.0 if r.get("pred") != gold else 0.0
            p = probs[gold] if isinstance(gold, int) and 0 <= gold < len(probs) else 0.0
            return wrong + (1.0 - float(p))
        if task_kind is not None and task_kind.generates:
            pred, refs = compared(r)  # the extracted answer when there is one
            if any(pred.strip() == ref.strip() for ref in refs):
                return 0.0
            return 1.0 - overlap_f1(pred, refs)
        n = r.get("n_tokens") or 0
        return -float(r.get("loglik", 0.0)) / n if n else 0.0
    except (TypeError, ValueError):
        return 0.0
