"""A signed, in-toto-style statement of a run: what was evaluated and what was decided.

``harness run --sign KEY.pem`` (an Ed25519 private key, PEM, unencrypted) writes
``attestation.json`` beside results.json, in the same atomic set: a DSSE envelope

    {"payloadType": "application/vnd.in-toto+json",
     "payload": base64(statement),
     "signatures": [{"keyid": "sha256:<hex of the raw public key>", "sig": base64(sig)}]}

whose payload is the statement as canonical JSON (keys sorted, no spaces, UTF-8)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "results.json", "digest": {"sha256": ...}}, ... every written
                 file, then "model:<path>", "adapter:<path>" (their fingerprints) and
                 "suite:<path>" (its sha256), from the provenance],
     "predicateType": PREDICATE_TYPE,
     "predicate": {"verdict": ..., "gates": [{"metric", "verdict", "value", "message"}]}}

and ``sig`` is the Ed25519 signature of DSSE's pre-authentication encoding
``"DSSEv1 <len(type)> <type> <len(payload)> <payload>"`` (``pae``). ``harness verify
--key PUB.pem`` checks the signature, then every subject against the files and the
provenance, and the predicate against results.json (``check_attestation``).

The private key is read into memory only: it is never written to results, caches or
logs, and errors name the key file, never its content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.data.hashing import sha256_file
from harness.errors import UserError
from harness.results.digests import (
    DIGESTS_NAME,
    MAX_BYTES,
    build_digests,
    canonical_json,
    sha256_bytes,
)
from harness.results.schema import Results

ATTESTATION_NAME = "attestation.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://llm-release-harness.dev/attestation/release-gate/v1"
MAX_KEY_BYTES = 64 * 1024
NOT_PRIVATE = "{path}: not an unencrypted Ed25519 private key in PEM ({reason})"
NOT_PUBLIC = "{path}: not an Ed25519 public key in PEM ({reason})"
CANNOT_READ_KEY = "{path}: cannot read the key: {reason}"


def _key_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_KEY_BYTES)
    except OSError as exc:
        raise UserError(CANNOT_READ_KEY.format(path=path, reason=exc.strerror or exc)) from None


class Signer:
    """An Ed25519 private key loaded from a PEM file, held in memory only."""

    def __init__(self, path: Path) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(_key_bytes(path), password=None)
        except (ValueError, TypeError) as exc:
            # the message of cryptography never holds key material; keep it short anyway
            reason = str(exc).split("\n")[0][:120] or type(exc).__name__
            raise UserError(NOT_PRIVATE.format(path=path, reason=reason)) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise UserError(NOT_PRIVATE.format(path=path, reason=f"a {type(key).__name__}"))
        self._key = key
        self.keyid = key_id(key.public_key())

    def __repr__(self) -> str:  # never the key
        return f"Signer(keyid={self.keyid!r})"

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def key_id(public_key: Any) -> str:
    """``sha256:<hex>`` of the raw 32 bytes of an Ed25519 public key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def load_public_key(path: Path) -> Any:
    """An Ed25519 public key from a PEM file (a located UserError otherwise)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(_key_bytes(path))
    except (ValueError, TypeError) as exc:
        reason = str(exc).split("\n")[0][:120] or type(exc).__name__
        raise UserError(NOT_PUBLIC.format(path=path, reason=reason)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(NOT_PUBLIC.format(path=path, reason=f"a {type(key).__name__}"))
    return key


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature is computed over."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def input_subjects(results: Results) -> list[dict[str, Any]]:
    """The model, adapter and suite digests of the provenance, as statement subjects."""
    prov = results.provenance
    out: list[dict[str, Any]] = []
    if prov is None:
        return out
    for role, folder in (("model", prov.model), ("adapter", prov.adapter)):
        if folder is not None and folder.fingerprint:
            out.append({"name": f"{role}:{folder.path}", "digest": {"sha256": folder.fingerprint}})
    if prov.suite is not None and prov.suite.sha256:
        out.append({"name": f"suite:{prov.suite.path}", "digest": {"sha256": prov.suite.sha256}})
    return out


def predicate(results: Results) -> dict[str, Any]:
    """What the run decided: its verdict and each gate's value, verdict and message."""
    gates = [
        {"metric": g.metric, "verdict": g.verdict, "value": g.value, "message": g.message}
        for g in results.gates
    ]
    return {"verdict": results.verdict, "gates": gates}


def statement(results: Results, files: Mapping[str, str | bytes]) -> dict[str, Any]:
    """The in-toto statement of a run whose written outputs are ``files`` (by name)."""
    subjects = [
        {"name": name, "digest": {"sha256": sha256_bytes(_payload(data))}}
        for name, data in sorted(files.items())
    ]
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects + input_subjects(results),
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate(results),
    }


def envelope(signer: Signer, stmt: Mapping[str, Any]) -> str:
    """attestation.json text: the DSSE envelope of ``stmt`` signed by ``signer``."""
    payload = canonical_json(stmt)
    sig = signer.sign(pae(PAYLOAD_TYPE, payload))
    doc = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": signer.keyid, "sig": base64.b64encode(sig).decode("ascii")}],
    }
    return json.dumps(doc, indent=1) + "\n"


def _payload(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def seal(
    files: Mapping[str, str], results: Results, signer: Signer | None = None
) -> dict[str, tuple[str, str]]:
    """The files that seal a run's outputs ``{file name: text}``: ``{"digests":
    ("digests.json", text)}``, and with a ``signer`` ``"attestation"`` (module doc)."""
    out = {"digests": (DIGESTS_NAME, build_digests(files))}
    if signer is not None:
        signed = {**files, DIGESTS_NAME: out["digests"][1]}
        out["attestation"] = (ATTESTATION_NAME, envelope(signer, statement(results, signed)))
    return out


# -- checking ---------------------------------------------------------------------------


def _open_envelope(path: Path, public_key: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The statement of a signed envelope, or why it cannot be trusted."""
    from cryptography.exceptions import InvalidSignature

    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read(MAX_BYTES).decode("utf-8"))
        payload_type = doc["payloadType"]
        payload = base64.b64decode(doc["payload"], validate=True)
        sigs = [base64.b64decode(s["sig"], validate=True) for s in doc["signatures"]]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error) as e:
        return None, f"unreadable envelope ({type(e).__name__})"
    if payload_type != PAYLOAD_TYPE:
        return None, f"payloadType {payload_type!r}, not {PAYLOAD_TYPE!r}"
    good = False
    for sig in sigs:
        try:
            public_key.verify(sig, pae(payload_type, payload))
            good = True
            break
        except InvalidSignature:
            continue
    if not good:
        return None, "the signature does not verify with this key"
    try:
        stmt = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "signed payload is not JSON"
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE:
        return None, "signed payload is not an in-toto statement"
    return stmt, None


def check_attestation(
    folder: Path, results: Results, public_key: Any
) -> Iterator[tuple[str, str, str | None, str | None]]:
    """``(what, status, signed, found)`` for the signature, each subject and the
    predicate (status ok | mismatch | missing)."""
    path = folder / ATTESTATION_NAME
    if not path.is_file():
        yield ATTESTATION_NAME, "missing", "a signed statement", None
        return
    stmt, problem = _open_envelope(path, public_key)
    if stmt is None:
        yield f"{ATTESTATION_NAME} signature", "mismatch", "valid", problem
        return
    yield f"{ATTESTATION_NAME} signature", "ok", key_id(public_key), None
    inputs = {s["name"]: s["digest"]["sha256"] for s in input_subjects(results)}
    subjects = stmt.get("subject")
    for subject in subjects if isinstance(subjects, list) else []:
        name = str(subject.get("name")) if isinstance(subject, dict) else "?"
        digest = subject.get("digest") if isinstance(subject, dict) else None
        signed = digest.get("sha256") if isinstance(digest, dict) else None
        if ":" in name:  # model:, adapter:, suite: (their files are checked by verify)
            found = inputs.pop(name, None)
            status = "ok" if found == signed else "mismatch"
            yield f"subject {name}", status, signed, found or "not in results.json"
        elif Path(name).name != name or name in ("", ".", ".."):
            yield f"subject {name}", "mismatch", signed, "not a file name of this folder"
        elif not (folder / name).is_file():
            yield f"subject {name}", "missing", signed, None
        else:
            found = sha256_file(folder / name)
            yield f"subject {name}", "ok" if found == signed else "mismatch", signed, found
    for name, found in inputs.items():  # in results.json's provenance, not signed
        yield f"subject {name}", "mismatch", "not in the statement", found
    signed_pred = stmt.get("predicate")
    found_pred = predicate(results)
    if not isinstance(signed_pred, dict):
        yield "predicate", "mismatch", "a verdict and gates", "none"
        return
    yield from _compare("predicate.verdict", signed_pred.get("verdict"), found_pred["verdict"])
    signed_gates, found_gates = signed_pred.get("gates"), found_pred["gates"]
    if not isinstance(signed_gates, list) or len(signed_gates) != len(found_gates):
        count = len(signed_gates) if isinstance(signed_gates, list) else "no"
        yield "predicate.gates", "mismatch", f"{count} gates", f"{len(found_gates)} gates"
        return
    differences = [
        finding
        for i, (signed, found) in enumerate(zip(signed_gates, found_gates, strict=True))
        for key in ("metric", "verdict", "value", "message")
        for finding in _compare(
            f"predicate.gates[{i}].{key}",
            signed.get(key) if isinstance(signed, dict) else None,
            found[key],
            quiet=True,
        )
    ]
    yield from differences or [("predicate.gates", "ok", f"{len(found_gates)} gates", None)]


def _compare(
    what: str, signed: Any, found: Any, *, quiet: bool = False
) -> Iterator[tuple[str, str, str | None, str | None]]:
    """A mismatch when the signed and the found value differ (as canonical JSON); an
    ok finding too unless ``quiet``."""
    same = canonical_json(signed) == canonical_json(json.loads(canonical_json(found)))
    if not same:
        yield what, "mismatch", _short(signed), _short(found)
    elif not quiet:
        yield what, "ok", _short(signed), _short(found)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."
