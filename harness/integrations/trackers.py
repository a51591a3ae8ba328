"""`harness run --log-to mlflow,wandb,tensorboard`: a written run, logged to trackers.

Everything logged is read back from the output folder after ``harness run`` wrote it:
results.json through the one guarded reader (``load_results``) and the report files
as they are on disk; nothing is run again. One ``Tracked`` record, built from the
``Results``, is what every tracker logs, under the same names (docs/integrations.md):

- metrics: ``TASK/OUTPUT`` with ``TASK/OUTPUT_ci_low`` and ``TASK/OUTPUT_ci_high``
  (a null value is left out); per gate ``gate/NAME`` (1 pass, 0.5 warn, 0 fail) and
  ``gate/NAME_value``; ``verdict`` (same scale);
- params: the provenance digests (suite, data per task, model, adapter, the combined
  fingerprint), the settings a number depends on (seed, bootstrap, device, lengths)
  and the library versions;
- tags: ``harness.verdict`` and ``harness.gate.NAME`` (pass | warn | fail);
- artifacts: results.json, report.html, junit.xml, summary.md, digests.json (and
  attestation.json when signed).

A tracker's own settings come from its own environment variables (MLFLOW_TRACKING_URI,
WANDB_MODE, WANDB_DIR, ...); nothing here reads a key or writes one. A tracker that
fails after the run (a server down) is a warning: the outputs are written, the exit
code stays the gates' (docs/integrations.md says why).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.integrations.available import require, split_names
from harness.results.schema import Results
from harness.results.store import load_results

SCORES = {"pass": 1.0, "warn": 0.5, "fail": 0.0}
"""A verdict as a number, so trackers can plot and filter on it."""

# user-facing messages (tests assert them exactly)
NOT_LOGGED = (
    "warning: --log-to {name}: the run was not logged ({error}); its outputs in {out} are "
    "complete: log them later with python -m harness.integrations.trackers {out} {name}"
)
LOGGED = "logged to {name}: {where}"

# what harness run writes, in the order trackers receive them (harness.report.render)
ARTIFACT_KEYS = ("results", "html", "junit", "md", "digests", "attestation")


@dataclass
class Tracked:
    """One run as every tracker logs it (module doc): names are tracker-safe."""

    name: str
    """The run's name: the suite and the evaluated folder (adapter, else model)."""
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    summary: str = ""
    """summary.md's text, shown as text where a tracker renders Markdown."""


def safe_name(name: str) -> str:
    """``name`` in the characters every tracker accepts in a key (letters, digits,
    ``_ - . /`` and spaces): ``f1[negative]`` is ``f1.negative``, anything else ``_``."""
    name = re.sub(r"[^\w.\- /]", "_", name.replace("[", ".").replace("]", ""))
    # no part a path could resolve differently (MLflow refuses "", ".", "..x", "/x")
    parts = [part.strip().lstrip(".") for part in name.split("/")]
    return "/".join(part for part in parts if part) or "_"


def metric_key(task: str, output: str) -> str:
    return f"{safe_name(task)}/{safe_name(output)}"


def gate_keys(results: Results) -> list[str]:
    """One key per gate, in order: its value's name, ``_2``, ``_3``... on repeats."""
    keys: list[str] = []
    for gate in results.gates:
        base = safe_name(gate.metric)
        key, n = base, 1
        while key in keys:
            n += 1
            key = f"{base}_{n}"
        keys.append(key)
    return keys


def _params(results: Results) -> dict[str, str]:
    out: dict[str, Any] = {
        "suite.name": results.suite.name,
        "harness_version": results.harness_version,
        "seed": results.suite.seed,
        "bootstrap.samples": results.suite.bootstrap.samples,
        "bootstrap.confidence": results.suite.bootstrap.confidence,
    }
    prov = results.provenance
    if prov is not None:
        out["suite.sha256"] = prov.suite.sha256 if prov.suite else None
        for ref in prov.data:
            out[f"data.{safe_name(ref.task or '_')}.sha256"] = ref.sha256
        for role, folder in (("model", prov.model), ("adapter", prov.adapter)):
            if folder is not None:
                out[f"{role}.path"] = folder.path
                out[f"{role}.fingerprint"] = folder.fingerprint
        out["fingerprint"] = prov.fingerprint
        for key in ("device", "max_length", "batch_size", "processes", "started_at"):
            out[key] = getattr(prov, key)
        for lib, version in prov.versions.items():
            out[f"versions.{safe_name(lib)}"] = version
    if results.baseline is not None:
        out["baseline.path"] = results.baseline.path
        out["baseline.sha256"] = results.baseline.sha256
    return {k: str(v) for k, v in out.items() if v is not None}


def tracked(results: Results, files: Sequence[Path] = (), summary: str = "") -> Tracked:
    """What a tracker logs of ``results`` (module doc)."""
    prov = results.provenance
    folder = prov.adapter if prov and prov.adapter else prov.model if prov else None
    subject = Path(folder.path).name if folder is not None and folder.path else ""
    run = Tracked(
        name=f"{results.suite.name}-{subject}" if subject else results.suite.name,
        params=_params(results),
        files=list(files),
        summary=summary,
    )
    for task_id, task in results.tasks.items():
        for output, m in task.metrics.items():
            key = metric_key(task_id, output)
            for suffix, value in (("", m.value), ("_ci_low", m.ci_low), ("_ci_high", m.ci_high)):
                if value is not None:
                    run.metrics[key + suffix] = float(value)
    for key, gate in zip(gate_keys(results), results.gates, strict=True):
        run.metrics[f"gate/{key}"] = SCORES[gate.verdict]
        if gate.value is not None:
            run.metrics[f"gate/{key}_value"] = float(gate.value)
        run.tags[f"harness.gate.{key}"] = gate.verdict
    run.metrics["verdict"] = SCORES[results.verdict]
    run.tags["harness.verdict"] = results.verdict
    run.tags["harness.suite"] = results.suite.name
    return run


def _loggers() -> dict[str, Callable[[Tracked, Path], str]]:
    from harness.integrations import mlflow_log, tensorboard_log, wandb_log

    return {"mlflow": mlflow_log.log, "wandb": wandb_log.log, "tensorboard": tensorboard_log.log}


def redact(text: str) -> str:
    """``text`` with the credentials a URL may carry (``https://user:token@host``) hidden."""
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", text)


def log_outputs(
    names: Sequence[str], paths: Mapping[str, Path], warn: Callable[[str], None]
) -> list[str]:
    """Log the written run at ``paths`` (``harness run``'s outputs by kind, results
    first) to each tracker in ``names``. Returns where each went; a tracker that fails
    is a warning through ``warn``, never an exception."""
    results_path = Path(paths["results"])
    out = results_path.parent
    results = load_results(results_path)
    files = [Path(paths[k]) for k in ARTIFACT_KEYS if k in paths and Path(paths[k]).is_file()]
    md = paths.get("md")
    summary = Path(md).read_text(encoding="utf-8") if md and Path(md).is_file() else ""
    run = tracked(results, files, summary)
    done = []
    loggers = _loggers()
    for name in names:
        try:
            done.append(LOGGED.format(name=name, where=loggers[name](run, out)))
        except Exception as exc:  # a tracker is a side channel: the gates decide
            error = redact(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            warn(NOT_LOGGED.format(name=name, error=error[:300], out=out))
    return done


def prepare(values: Sequence[str] | str | None) -> Callable[[Mapping[str, Path]], list[str]]:
    """The trackers of ``--log-to`` checked now (unknown or not installed: UserError,
    before the run), and the function that logs the written outputs to them after it.
    Warnings go to standard error."""
    import sys

    names = require(split_names(values), "--log-to")

    def log(paths: Mapping[str, Path]) -> list[str]:
        if not names or not paths:
            return []
        return log_outputs(names, paths, lambda line: print(line, file=sys.stderr))

    return log


def log_folder(names: Sequence[str] | str, out: Path) -> list[str]:
    """Log an output folder written earlier (``harness run``'s) to trackers: the way
    to log a run whose tracker was down. Raises UserError on a bad name or folder."""
    import sys

    from harness.report.render import FILE_NAMES

    checked = require(split_names(names), "--log-to")
    paths = {"results": out / "results.json"}
    paths.update({fmt: out / name for fmt, name in FILE_NAMES.items()})
    paths.update({"digests": out / "digests.json", "attestation": out / "attestation.json"})
    return log_outputs(checked, paths, lambda line: print(line, file=sys.stderr))


USAGE = "usage: python -m harness.integrations.trackers OUT_FOLDER mlflow,wandb,tensorboard"


def main(argv: Sequence[str]) -> int:
    """Log an output folder again (module doc): exit 0 when every tracker took it, 2 when
    one did not or the arguments are bad."""
    import sys

    from harness.errors import UserError

    if len(argv) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    names = split_names(argv[1])
    try:
        done = log_folder(names, Path(argv[0]))
    except UserError as exc:
        for line in exc.messages:
            print(f"error: {line}", file=sys.stderr)
        return 2
    for line in done:
        print(line)
    return 0 if len(done) == len(names) else 2


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
