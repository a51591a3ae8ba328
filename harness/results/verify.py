"""Re-check the provenance of a stored run: is everything still what was evaluated?

``verify`` recomputes the sha256 of every file a results.json names in its
provenance (the suite file, each data file including those an audit reads, every hashed
file of the base model and of the adapter, the fine-tune manifest/history, the baseline
results of a relative gate)
and compares them with the stored digests. A weight file that appeared in a model or
adapter folder after the run is reported too: it would change what loads. Relative
paths are taken from ``root`` (default: the current directory, as during the run).

This makes a compliance report tamper-evident with respect to its inputs; it does not
authenticate results.json itself (anyone who can edit it can edit the digests).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.hashing import sha256_file
from harness.errors import UserError
from harness.results.schema import Folder, Results
from harness.results.store import load_results

OK, MISMATCH, MISSING, UNEXPECTED, SKIPPED = "ok", "mismatch", "missing", "unexpected", "skipped"
NO_PROVENANCE = "{path}: no provenance section; nothing to verify"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class Check:
    """The outcome for one file."""

    role: str  # suite | data (<task>) | model | adapter | finetune | baseline
    path: str
    status: str  # ok | mismatch | missing | unexpected | skipped
    expected: str | None = None
    actual: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in (MISMATCH, MISSING, UNEXPECTED)

    def line(self) -> str:
        text = f"{self.status.upper():<10} {self.role:<16} {self.path}"
        if self.status == MISMATCH:
            text += f"\n{'':<28}expected {self.expected}\n{'':<28}found    {self.actual}"
        elif self.status == SKIPPED and self.expected:
            text += f" ({self.expected})"
        return text


def _resolve(path: str, root: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def check_file(role: str, path: str | None, expected: Any, root: Path) -> Check:
    """Compare one file's sha256 with ``expected``."""
    if not path:
        return Check(role, "(no path)", SKIPPED, "not a local file")
    if not isinstance(expected, str) or not expected:
        return Check(role, path, SKIPPED, "no digest recorded")
    full = _resolve(path, root)
    if not full.is_file():
        return Check(role, path, MISSING, expected)
    try:
        actual = sha256_file(full)
    except OSError as exc:
        return Check(role, path, MISSING, expected, f"unreadable: {exc.strerror or exc}")
    return Check(role, path, OK if actual == expected else MISMATCH, expected, actual)


def _folder_checks(role: str, entry: Folder, root: Path) -> Iterator[Check]:
    folder = entry.path
    if folder is None:
        return
    listed = set()
    for f in entry.files:
        listed.add(f.name)
        yield check_file(role, str(Path(folder) / f.name), f.sha256, root)
    base = _resolve(folder, root)
    if base.is_dir():
        for p in sorted(base.iterdir()):
            if p.is_file() and p.suffix in WEIGHT_SUFFIXES and p.name not in listed:
                yield Check(
                    role, str(Path(folder) / p.name), UNEXPECTED, "weight file not in the run"
                )


def _audit_data_checks(audits: Any, root: Path) -> Iterator[Check]:
    """Data files an audit read itself (e.g. fairness.pairs): any ``{path, sha256}``
    entry of an audit's section."""
    if not isinstance(audits, Mapping):
        return
    for name, section in audits.items():
        if not isinstance(section, Mapping):
            continue
        for key, entry in section.items():
            if isinstance(entry, Mapping) and {"path", "sha256"} <= entry.keys():
                path = entry.get("path")
                if isinstance(path, str):
                    yield check_file(f"data ({name}.{key})", path, entry.get("sha256"), root)


def verify(results: Results, root: Path | None = None) -> list[Check]:
    """One Check per file named in the results' provenance (see module doc)."""
    root = Path.cwd() if root is None else root
    prov = results.provenance
    if prov is None:
        raise ValueError("no provenance")
    checks: list[Check] = []
    if prov.suite is not None:
        checks.append(check_file("suite", prov.suite.path, prov.suite.sha256, root))
    for d in prov.data:
        role = f"data ({d.task if 'task' in d.model_fields_set else '?'})"
        if d.path is None:
            checks.append(Check(role, "(datasets source)", SKIPPED, "not a local file"))
        else:
            checks.append(check_file(role, d.path, d.sha256, root))
    for role, entry in (("model", prov.model), ("adapter", prov.adapter)):
        if entry is not None:
            checks.extend(_folder_checks(role, entry, root))
    checks.extend(_audit_data_checks(results.audits, root))
    if results.finetune is not None:
        for f in results.finetune.files:
            checks.append(check_file("finetune", f.path, f.sha256, root))
    base = results.baseline
    if base is not None and base.path:
        checks.append(check_file("baseline", base.path, base.sha256, root))
    return checks


def verify_file(path: Path, root: Path | None = None) -> list[Check]:
    """``verify`` on a stored results.json; a bad results file is a UserError."""
    results = load_results(path)
    try:
        return verify(results, root)
    except ValueError:
        raise UserError(NO_PROVENANCE.format(path=path)) from None
