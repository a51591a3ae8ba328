"""Re-check the provenance of a stored run: is everything still what was evaluated?

``verify`` recomputes the sha256 of every file a results.json names in its
provenance (the suite file, each data file including those an audit reads, every hashed
file of the base model and of the adapter, the fine-tune manifest/history, the baseline
results of a relative gate)
and compares them with the stored digests. A weight file that appeared in a model or
adapter folder after the run is reported too: it would change what loads. Relative
paths are taken from ``root`` (default: the current directory, as during the run).

``verify_file`` also checks the run's own outputs: the digests of results.json and the
renderings stored in digests.json (harness.results.digests), every task metric, its
CI and every gate verdict recomputed from the stored per-example records
(harness.results.recompute), and with a public key the signed statement
(harness.results.attest). Digests stored beside the files detect careless edits only
(whoever edits a file can rewrite them); the signature, made with a key the editor does
not hold, is what makes the run tamper-evident (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.hashing import sha256_file
from harness.errors import UserError
from harness.results.attest import check_attestation, load_public_key
from harness.results.digests import DIGESTS_NAME, output_differences, read_digests
from harness.results.recompute import recompute_differences
from harness.results.schema import Folder, Results
from harness.results.store import load_results

OK, MISMATCH, MISSING, UNEXPECTED, SKIPPED = "ok", "mismatch", "missing", "unexpected", "skipped"
OUTPUT, RECOMPUTE, SIGNATURE = "output", "recompute", "signature"
NO_DIGESTS = "no digests.json beside results.json (a run of an older harness?)"
NO_PROVENANCE = "{path}: no provenance section; nothing to verify"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class Check:
    """The outcome for one file."""

    role: str  # suite | data (<task>) | model | adapter | finetune | baseline | output
    # | recompute | signature
    path: str
    status: str  # ok | mismatch | missing | unexpected | skipped
    expected: str | None = None
    actual: str | None = None
    words: tuple[str, str] = ("expected", "found")
    """How ``expected`` and ``actual`` are named in ``line`` (a recomputed value is
    ``stored``/``recomputed``)."""

    @property
    def failed(self) -> bool:
        return self.status in (MISMATCH, MISSING, UNEXPECTED)

    def line(self) -> str:
        text = f"{self.status.upper():<10} {self.role:<16} {self.path}"
        if self.status == MISMATCH and self.role == RECOMPUTE:
            text += f": {self.words[0]} {self.expected}, {self.words[1]} {self.actual}"
        elif self.status == MISMATCH:
            a, b = (f"{w:<{max(map(len, self.words))}}" for w in self.words)
            text += f"\n{'':<28}{a} {self.expected}\n{'':<28}{b} {self.actual}"
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


def output_checks(path: Path, document: Any) -> list[Check]:
    """The run's own files against digests.json beside ``path`` (results.json), and each
    task's records against their digest (``document``: results.json parsed)."""
    folder = Path(path).parent
    try:
        digests = read_digests(folder)
    except ValueError as exc:
        return [Check(OUTPUT, DIGESTS_NAME, MISMATCH, "a digests file", str(exc))]
    if digests is None:
        return [Check(OUTPUT, DIGESTS_NAME, SKIPPED, NO_DIGESTS)]
    return [
        Check(OUTPUT, what, status, stored, found)
        for what, status, stored, found in output_differences(folder, digests, document)
    ]


def signature_checks(path: Path, results: Results, key: Path) -> list[Check]:
    """The signed statement beside ``path`` checked with the public key in ``key``."""
    public_key = load_public_key(key)
    return [
        Check(SIGNATURE, what, status, signed, found, ("signed", "found"))
        for what, status, signed, found in check_attestation(Path(path).parent, results, public_key)
    ]


def verify_file(path: Path, root: Path | None = None, key: Path | None = None) -> list[Check]:
    """``verify`` on a stored results.json, then its outputs' digests, the recomputed
    metrics and gates, and with ``key`` (a PEM public key) the signed statement. A bad
    results file or key is a UserError."""
    results = load_results(path)
    try:
        checks = verify(results, root)
    except ValueError:
        raise UserError(NO_PROVENANCE.format(path=path)) from None
    # the records as the file holds them (the model keeps them as parsed)
    document = {"tasks": {t: {"records": task.records} for t, task in results.tasks.items()}}
    checks += output_checks(path, document)
    checks += [
        Check(RECOMPUTE, what, status, stored, found, ("stored", "recomputed"))
        for what, status, stored, found in recompute_differences(results)
    ]
    if key is not None:
        checks += signature_checks(path, results, key)
    return checks
