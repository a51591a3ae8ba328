"""View-model of the fine-tune data curation (manifest ``curation``, finetune.data.curate).

One row per check: what was checked, what it found (the numbers), what was done with
it, flagged when it leaves a problem in the training data (leaking rows kept, personal
data only reported). The rows each check lists (leaks, duplicates, personal data,
reweighting cells) follow in collapsed tables, open when flagged. A key this module
does not know is shown flattened, so a new curation step is never lost. Locations and
names come from the training data and are untrusted: they are cleaned and autoescaped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.report.formatting import flatten, fmt, fmt_fields
from harness.report.safe_text import clean, one_line

LISTED_SHOWN = 50
"""Rows of each listed table shown (the manifest counts all)."""

# the findings' wording (tests assert it exactly)
LEAKAGE_CHECK = "leakage into the evaluation data ({sources})"
LEAKAGE_FOUND = (
    "{leaking} of {checked} training rows overlap the {texts} evaluation texts: "
    "{exact} exact, {ngram} sharing ≥ {threshold} of their {n}-grams"
)
LEAKAGE_NONE = "none of {checked} training rows overlaps the {texts} evaluation texts"
LEAKAGE_UNCHECKED = "not checked: no evaluation data given (eval_data)"
LEAKAGE_DROPPED = "removed ({dropped} rows; curation.leakage.drop)"
LEAKAGE_KEPT = "KEPT in the training data; set curation.leakage.drop: true to remove them"
LEAKAGE_ALERT = (
    "Training data: {leaking} training rows overlap the evaluation data and were kept; "
    "scores on that data may be inflated."
)
Part = tuple[list[dict[str, str]], list[dict[str, Any]], list[str]]
"""What one curation step adds: findings, listed tables, alerts."""
PII_ACTIONS = {
    "report": "reported only: the rows were trained on as they are",
    "redact": "redacted: each span replaced by its type",
    "fail": "refused (curation.pii: fail)",
}


def _num(x: Any) -> int | float | None:
    return x if isinstance(x, int | float) and not isinstance(x, bool) else None


def _count(x: Any) -> int:
    return int(x) if isinstance(x, int) and not isinstance(x, bool) else 0


def _share(x: Any) -> str:
    v = _num(x)
    return "–" if v is None else f"{v:.0%}"


def _rows(items: Any) -> list[Mapping[str, Any]]:
    return [x for x in items or [] if isinstance(x, Mapping)]


def _list(x: Any) -> str:
    if isinstance(x, Sequence) and not isinstance(x, str):
        return ", ".join(one_line(v, 200) for v in x) or "–"
    return one_line(x, 200) if x is not None else "–"


def _finding(check: str, found: str, action: str, flag: bool = False) -> dict[str, str]:
    return {"check": check, "found": found, "action": action, "flag": "worse" if flag else ""}


def _listed(
    title: str, headers: list[str], rows: list[list[str]], total: Any, flag: bool = False
) -> dict[str, Any]:
    n = _count(total) or len(rows)
    more = n - min(len(rows), LISTED_SHOWN)
    return {
        "title": title,
        "headers": headers,
        "rows": rows[:LISTED_SHOWN],
        "more": f"… and {fmt(more)} more (counted, not listed)" if more > 0 else "",
        "open": flag,
    }


def leakage(
    lk: Mapping[str, Any], spec: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, Any] | None, str]:
    """(the finding, the listed leaks, an alert for the report's header or '')."""
    sources = lk.get("eval_sources")
    check = LEAKAGE_CHECK.format(sources=_list(sources))
    if not sources:
        return _finding(check, LEAKAGE_UNCHECKED, "–", flag=True), None, ""
    leaking, dropped = _count(lk.get("leaking")), _count(lk.get("dropped"))
    numbers = {
        "leaking": fmt(leaking),
        **fmt_fields(lk, "checked", "exact", "ngram"),
        "texts": fmt(lk.get("eval_texts")),
        "threshold": _share(spec.get("threshold")),
        "n": fmt(spec.get("ngram")),
    }
    if not leaking:
        return _finding(check, LEAKAGE_NONE.format(**numbers), "–"), None, ""
    kept = dropped < leaking
    action = LEAKAGE_DROPPED.format(dropped=fmt(dropped)) if dropped else LEAKAGE_KEPT
    rows = [
        [
            one_line(r.get("train", "–"), 200),
            one_line(r.get("eval", "–"), 200),
            one_line(r.get("kind", "–"), 20),
            fmt(r.get("overlap")),
        ]
        for r in _rows(lk.get("listed"))
    ]
    listed = _listed(
        "training rows overlapping the evaluation data",
        ["training row", "evaluation example it overlaps most", "match", "overlap"],
        rows,
        leaking,
        flag=kept,
    )
    alert = LEAKAGE_ALERT.format(leaking=fmt(leaking - dropped)) if kept else ""
    finding = _finding(check, LEAKAGE_FOUND.format(**numbers), action, flag=kept)
    return finding, listed, alert


def pii(p: Mapping[str, Any], spec: Mapping[str, Any]) -> Part:
    mode = one_line(p.get("mode") or "–", 20)
    scanner = p.get("scanner")
    library = one_line(scanner.get("library"), 80) if isinstance(scanner, Mapping) else ""
    check = f"personal data ({library})" if library else "personal data"
    n = _count(p.get("rows_with_pii"))
    counts = p.get("counts")
    counts = counts if isinstance(counts, Mapping) else {}
    kinds = ", ".join(f"{one_line(k, 60)} {fmt(v)}" for k, v in counts.items() if v)
    found = f"{fmt(n)} of {fmt(p.get('rows_scanned'))} rows" + (f": {kinds}" if kinds else "")
    action = PII_ACTIONS.get(mode, mode) if n else "–"
    flag = bool(n) and mode == "report"
    rows = [
        [
            one_line(r.get("where", "–"), 200),
            one_line(r.get("role", "–"), 40),
            _list(r.get("types")),
        ]
        for r in _rows(p.get("listed"))
    ]
    listed = [_listed("rows with personal data", ["row", "role", "types"], rows, n, flag)]
    return [_finding(check, found, action, flag)], listed if rows else [], []


def duplicates(dup: Mapping[str, Any], spec: Mapping[str, Any]) -> Part:
    n = _count(dup.get("exact")) + _count(dup.get("normalized"))
    found = f"{fmt(dup.get('exact'))} exact, {fmt(dup.get('normalized'))} after normalization"
    rows = [
        [
            one_line(r.get("removed", "–"), 200),
            one_line(r.get("duplicate_of", "–"), 200),
            one_line(r.get("kind", "–"), 20),
        ]
        for r in _rows(dup.get("listed"))
    ]
    listed = [_listed("duplicates removed", ["removed", "duplicate of", "kind"], rows, n)]
    return [_finding("duplicates", found, "removed" if n else "–")], listed if rows else [], []


def validation_split(split: Mapping[str, Any], spec: Mapping[str, Any]) -> Part:
    found = (
        f"a seeded split: {_share(split.get('fraction'))} of the rows "
        f"(seed {fmt(split.get('seed'))})"
    )
    return [_finding("validation data", found, "held out of training")], [], []


def validation_overlap(overlap: Mapping[str, Any], spec: Mapping[str, Any]) -> Part:
    n = _count(overlap.get("removed"))
    found = f"{fmt(n)} validation rows repeat a training row"
    rows = [
        [one_line(r.get("removed", "–"), 200), one_line(r.get("duplicate_of", "–"), 200)]
        for r in _rows(overlap.get("listed"))
    ]
    listed = [_listed("validation rows removed", ["removed", "repeats"], rows, n)]
    action = "removed from validation" if n else "–"
    return [_finding("validation vs training", found, action)], listed if rows else [], []


def reweight(rw: Mapping[str, Any], spec: Mapping[str, Any]) -> Part:
    cells = _rows(rw.get("cells"))
    weights = [w for w in (_num(c.get("weight")) for c in cells) if w is not None]
    span = f"; weights {fmt(min(weights))} to {fmt(max(weights))}" if weights else ""
    finding = _finding(
        f"group balance ({_list(rw.get('by'))})",
        f"{fmt(len(cells))} cells{span}",
        "loss weighted so each cell counts equally",
    )
    by = rw.get("by")
    names = [str(n) for n in by] if isinstance(by, list) else []
    rows = [
        [one_line(c.get(n, "–"), 120) for n in names] + [fmt(c.get("count")), fmt(c.get("weight"))]
        for c in cells
    ]
    headers = [one_line(n, 60) for n in names] + ["rows", "weight"]
    listed = [_listed("reweighting cells", headers, rows, len(rows))]
    return [finding], listed if rows else [], []


def counterfactual(cf: Mapping[str, Any], spec: Mapping[str, Any]) -> Part:
    swaps = cf.get("swaps")
    pairs = ", ".join(f"{k} → {v}" for k, v in swaps.items()) if isinstance(swaps, Mapping) else ""
    found = (
        f"{fmt(cf.get('added'))} swapped copies of {fmt(cf.get('originals'))} rows "
        f"({fmt(cf.get('unchanged'))} without a swappable term, "
        f"{fmt(cf.get('dropped_leaking'))} dropped as leaking)"
    )
    check = f"counterfactual copies ({clean(pairs, 200)})"
    return [_finding(check, found, "added to training")], [], []


def augmentation(aug: Mapping[str, Any], spec: Mapping[str, Any]) -> Part:
    found = f"{fmt(aug.get('added'))} noisy copies of {fmt(aug.get('originals'))} rows"
    return [_finding("augmentation", found, "added to training")], [], []


def leakage_part(lk: Mapping[str, Any], spec: Mapping[str, Any]) -> Part:
    lspec = spec.get("leakage")
    finding, leaks, alert = leakage(lk, lspec if isinstance(lspec, Mapping) else {})
    return [finding], [leaks] if leaks else [], [alert] if alert else []


# the curation steps in the order finetune.data.curate runs them: (key, section or count label)
STEPS: list[tuple[str, Callable[[Mapping[str, Any], Mapping[str, Any]], Part] | str]] = [
    ("train_rows", "training rows loaded"),
    ("duplicates", duplicates),
    ("leakage", leakage_part),
    ("validation_split", validation_split),
    ("validation_rows", "validation rows (from the validation file)"),
    ("validation_overlap", validation_overlap),
    ("pii", pii),
    ("reweight", reweight),
    ("counterfactual", counterfactual),
    ("augmentation", augmentation),
    ("replay_pool", "replay rows (anti-forgetting)"),
    ("ewc_examples", "EWC examples (anti-forgetting)"),
    ("canary_rows", "canary rows inserted (privacy audit)"),
    ("train_examples", "training examples after curation"),
    ("validation_examples", "validation examples after curation"),
]


def build(manifest: Any) -> dict[str, Any] | None:
    """The curation section, or None when the manifest has no curation report."""
    if not isinstance(manifest, Mapping) or not isinstance(manifest.get("curation"), Mapping):
        return None
    cur: Mapping[str, Any] = manifest["curation"]
    config = manifest.get("config")
    spec = config.get("curation") if isinstance(config, Mapping) else None
    spec = spec if isinstance(spec, Mapping) else {}
    findings: list[dict[str, str]] = []
    listed: list[dict[str, Any]] = []
    alerts: list[str] = []
    done = set()
    for key, step in STEPS:
        value = cur.get(key)
        if isinstance(step, str) and key in cur and not isinstance(value, Mapping | list):
            findings.append(_finding(step, fmt(value), "–"))
        elif callable(step) and isinstance(value, Mapping):
            f, ls, al = step(value, spec)
            findings, listed, alerts = findings + f, listed + ls, alerts + al
        else:
            continue
        done.add(key)
    if "duplicates" not in cur and spec.get("dedup") is False:
        at = 1 if "train_rows" in done else 0
        findings.insert(at, _finding("duplicates", "not checked (curation.dedup: false)", "–"))
    other = {k: v for k, v in cur.items() if k not in done}
    # a step this module does not know (or a damaged one) is shown as it is
    for key, value in flatten(other) if other else []:
        findings.append(_finding(key, value, "–"))
    return {"findings": findings, "listed": listed, "alerts": alerts}


def summary(manifest: Any) -> list[str]:
    """The flagged findings as plain sentences (for the Markdown summary); [] if none."""
    view = build(manifest)
    if view is None:
        return []
    return [f"{f['check']}: {f['found']}; {f['action']}" for f in view["findings"] if f["flag"]]
