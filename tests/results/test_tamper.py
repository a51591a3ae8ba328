"""Tamper evidence (issue 23): `harness verify` finds an edited metric, gate verdict,
per-example record, report byte or signature, names it and exits 1; an untouched run
verifies with and without a key."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.results.verify import MISMATCH, OK, Check, verify_file

GATES = (
    "  - {metric: sentiment.accuracy, min: 0.0}\n"
    "  - {metric: lm.perplexity, max: 1.0}\n"
    "  - {metric: summarize.rougeL, min: 0.99, severity: warn}\n"
)


def write_keys(folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private, public = folder / "signing.pem", folder / "public.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Path:
    """A signed run of the tiny model on three tasks; ``out/`` holds its files and
    ``keys/`` the key pair."""
    from tests.cli.test_cli import write_suite

    root = tmp_path_factory.mktemp("signed")
    keys = root / "keys"
    keys.mkdir()
    private, _ = write_keys(keys)
    suite = write_suite(root, tiny_gpt2, GATES)
    out = root / "out"
    code = main(["run", str(suite), "--out", str(out), "--no-progress", "--sign", str(private)])
    assert code == 1  # the perplexity gate fails by design
    return root


@pytest.fixture
def run(signed_run: Path, tmp_path: Path) -> Path:
    """A private copy of the signed run (relative paths as in the original)."""
    dest = tmp_path / "run"
    shutil.copytree(signed_run, dest)
    return dest


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.failed]


def edit(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def verify(run: Path, key: bool = False) -> tuple[int, list[Check], str]:
    results = run / "out" / "results.json"
    pub = run / "keys" / "public.pem"
    checks = verify_file(results, root=run.parent, key=pub if key else None)
    argv = ["verify", str(results), "--root", str(run.parent)]
    argv += ["--key", str(pub)] if key else []
    return main(argv), checks, ""


def test_the_run_writes_digests_and_a_signed_statement(signed_run: Path) -> None:
    out = signed_run / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "attestation.json",
        "digests.json",
        "junit.xml",
        "report.html",
        "results.json",
        "summary.md",
    ]
    digests = json.loads((out / "digests.json").read_text())
    assert set(digests["files"]) == {"results.json", "report.html", "junit.xml", "summary.md"}
    assert set(digests["records"]) == {"sentiment", "summarize", "lm"}
    envelope = json.loads((out / "attestation.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    names = [s["name"] for s in statement["subject"]]
    assert "results.json" in names and "digests.json" in names
    assert any(n.startswith("model:") for n in names) and any(n.startswith("suite:") for n in names)
    assert statement["predicate"]["verdict"] == "fail"
    assert [g["metric"] for g in statement["predicate"]["gates"]] == [
        "sentiment.accuracy",
        "lm.perplexity",
        "summarize.rougeL",
    ]
    # no secret in any output: the private key's PEM body is nowhere
    secret = (signed_run / "keys" / "signing.pem").read_text().splitlines()[1]
    for p in out.iterdir():
        assert secret not in p.read_text(), p.name


@pytest.mark.parametrize("key", [False, True])
def test_an_untouched_run_verifies(
    signed_run: Path, key: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks, _ = verify(signed_run, key)
    assert failed(checks) == [], [c.line() for c in failed(checks)]
    roles = {c.role for c in checks if c.status == OK}
    assert {"output", "recompute"} <= roles
    assert ("signature" in roles) is key
    recomputed = {c.path for c in checks if c.role == "recompute" and c.status == OK}
    assert {"tasks.sentiment.metrics.accuracy", "gates[0] sentiment.accuracy", "verdict"} <= (
        recomputed
    )
    assert code == 0
    assert "verify: OK" in capsys.readouterr().out


def test_a_changed_metric_value_is_named(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = run / "out" / "results.json"
    stored = json.loads(results.read_text())["tasks"]["sentiment"]["metrics"]["accuracy"]["value"]
    edit(results, lambda d: d["tasks"]["sentiment"]["metrics"]["accuracy"].update(value=0.91))
    code, checks, _ = verify(run)
    bad = {c.path: c for c in failed(checks)}
    assert code == 1
    value = bad["tasks.sentiment.metrics.accuracy.value"]
    assert (value.expected, value.actual) == ("0.91", repr(stored))
    assert "results.json" in bad  # the digest beside it
    out = capsys.readouterr().out
    assert f"tasks.sentiment.metrics.accuracy.value: stored 0.91, recomputed {stored!r}" in out


def test_a_changed_gate_verdict_is_named(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = run / "out" / "results.json"

    def to_pass(doc: dict[str, Any]) -> None:
        doc["gates"][1]["verdict"] = "pass"
        doc["verdict"] = "warn"

    edit(results, to_pass)
    code, checks, _ = verify(run)
    bad = {c.path: (c.expected, c.actual) for c in failed(checks) if c.role == "recompute"}
    assert bad == {"gates[1].verdict": ("pass", "fail"), "verdict": ("warn", "fail")}
    assert code == 1
    assert "gates[1].verdict: stored pass, recomputed fail" in capsys.readouterr().out
    # with the key: the signed subject results.json and the signed gate verdict
    signed = {c.path for c in failed(verify(run, key=True)[1]) if c.role == "signature"}
    assert signed == {"subject results.json", "predicate.gates[1].verdict", "predicate.verdict"}


def test_deleted_gates_are_found(run: Path) -> None:
    def drop(doc: dict[str, Any]) -> None:
        doc["gates"] = []
        doc["verdict"] = "pass"

    edit(run / "out" / "results.json", drop)
    _, checks, _ = verify(run)
    bad = {c.path for c in failed(checks) if c.role == "recompute"}
    assert {"gates", "gates[0].verdict", "gates[1].verdict", "verdict"} <= bad


def test_a_changed_record_is_named(run: Path) -> None:
    """One example's prediction edited (its stored statistics kept): the statistics
    recomputed from the record differ, and so does the task's records digest."""
    results = run / "out" / "results.json"
    doc = json.loads(results.read_text())
    record = doc["tasks"]["sentiment"]["records"][0]
    wrong = 1 - record["pred"] if isinstance(record.get("pred"), int) else None
    assert wrong is not None, record.keys()
    edit(results, lambda d: d["tasks"]["sentiment"]["records"][0].update(pred=wrong))
    code, checks, _ = verify(run)
    paths = {c.path for c in failed(checks)}
    assert code == 1
    assert "tasks.sentiment.records" in paths  # the records digest
    assert any(p.startswith("tasks.sentiment.records[0]") and ".stats.accuracy" in p for p in paths)


def test_a_changed_record_statistic_changes_the_metric(run: Path) -> None:
    results = run / "out" / "results.json"

    def flip(doc: dict[str, Any]) -> None:
        stats = doc["tasks"]["sentiment"]["records"][0]["stats"]
        stats["accuracy"] = [1.0 - stats["accuracy"][0]]

    edit(results, flip)
    _, checks, _ = verify(run)
    paths = {c.path for c in failed(checks)}
    assert "tasks.sentiment.metrics.accuracy.value" in paths
    assert any(p.startswith("tasks.sentiment.records[0]") for p in paths)


def test_a_changed_byte_of_the_report_is_named(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run / "out" / "report.html"
    data = bytearray(report.read_bytes())
    data[len(data) // 2] ^= 0x01
    report.write_bytes(bytes(data))
    code, checks, _ = verify(run)
    assert [(c.role, c.path, c.status) for c in failed(checks)] == [
        ("output", "report.html", MISMATCH)
    ]
    assert code == 1
    # with the key the signed subject is named too
    code, checks, _ = verify(run, key=True)
    assert {c.path for c in failed(checks)} == {"report.html", "subject report.html"}
    assert code == 1
    assert "report.html" in capsys.readouterr().out


def test_a_changed_signature_is_detected(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = run / "out" / "attestation.json"
    envelope = json.loads(path.read_text())
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 0x01
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    path.write_text(json.dumps(envelope))
    assert verify(run)[0] == 0  # without a key the signature is not read
    code, checks, _ = verify(run, key=True)
    assert [(c.role, c.path) for c in failed(checks)] == [
        ("signature", "attestation.json signature")
    ]
    assert code == 1
    assert "does not verify" in capsys.readouterr().out


def test_a_changed_statement_is_detected(run: Path) -> None:
    """A statement re-encoded with a pass verdict but the old signature fails."""
    path = run / "out" / "attestation.json"
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["verdict"] = "pass"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(envelope))
    code, checks, _ = verify(run, key=True)
    assert [c.path for c in failed(checks)] == ["attestation.json signature"]
    assert code == 1


def test_a_run_re_signed_with_another_key_is_refused(run: Path, tmp_path: Path) -> None:
    """Everything edited consistently and signed with the editor's own key: the public
    key of the real signer refuses it."""
    from harness.results.attest import Signer, envelope, statement
    from harness.results.store import load_results

    other, _ = write_keys(tmp_path)
    out = run / "out"
    results = load_results(out / "results.json")
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "attestation.json"}
    (out / "attestation.json").write_text(envelope(Signer(other), statement(results, files)))
    assert verify(run)[0] == 0
    code, checks, _ = verify(run, key=True)
    assert code == 1 and [c.path for c in failed(checks)] == ["attestation.json signature"]


def test_a_missing_attestation_fails_with_a_key(run: Path) -> None:
    (run / "out" / "attestation.json").unlink()
    code, checks, _ = verify(run, key=True)
    assert code == 1 and [c.path for c in failed(checks)] == ["attestation.json"]


def test_a_bad_key_is_one_located_error(
    tiny_gpt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli.test_cli import write_suite

    bad = tmp_path / "key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    suite = write_suite(tmp_path, tiny_gpt2, GATES)
    argv = ["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress", "--sign", str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Ed25519 private key" in err and "not a key" not in err
    assert not (tmp_path / "out").exists()


RELATIVE = (
    "  - {metric: sentiment.accuracy, max_drop: 0.0}\n"
    "  - {metric: lm.perplexity, max_increase: 0.5, relative: true, significant: true}\n"
    "  - {metric: summarize.rougeL, min: 0.0, severity: warn}\n"
)


@pytest.mark.parametrize(
    ("flags", "exit_code"),
    [([], 0), (["--require-baseline"], 1), (["--baseline-results", "BASE"], 0)],
)
def test_relative_gates_recompute_without_a_false_alarm(
    signed_run: Path, tiny_gpt2: Path, tmp_path: Path, flags: list[str], exit_code: int
) -> None:
    """Gates checked without a baseline (warn), with one required (fail) and against a
    baseline run (references and p-values from it) all verify as written."""
    from tests.cli.test_cli import write_suite

    suite = write_suite(tmp_path, tiny_gpt2, RELATIVE)
    base = str(signed_run / "out" / "results.json")
    flags = [base if f == "BASE" else f for f in flags]
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress", *flags]) == exit_code
    checks = verify_file(out / "results.json", root=tmp_path.parent)
    assert failed(checks) == [], [c.line() for c in failed(checks)]
    gates = [c for c in checks if c.role == "recompute" and c.path.startswith("gates[")]
    assert len(gates) == 3


def test_a_key_of_another_kind_is_one_located_error(
    signed_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from harness.errors import UserError
    from harness.results.attest import Signer

    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "ec.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(UserError, match="not an unencrypted Ed25519 private key"):
        Signer(private)
    public = tmp_path / "ec.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    results = str(signed_run / "out" / "results.json")
    assert main(["verify", results, "--key", str(public)]) == 2
    assert "not an Ed25519 public key" in capsys.readouterr().err
    assert main(["verify", results, "--key", str(tmp_path / "none.pem")]) == 2
    assert "cannot read the key" in capsys.readouterr().err
