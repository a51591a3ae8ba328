"""harness.sensitive.pii: exact counts of planted personal data, clean text untouched,
typed redaction, overlap rules, offline operation and the optional NER model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.sensitive.pii import PATTERN_ENTITIES, Span, counts, resolve_overlaps, scanner
from tests.sensitive.pii_planted import PLANTED, SST2_DEV, clean_sentences, planted_sentences


@pytest.fixture(scope="module")
def scan():  # type: ignore[no-untyped-def]
    return scanner(None)


def test_every_planted_value_is_found_once_with_its_type(scan) -> None:  # type: ignore[no-untyped-def]
    spans = []
    for kind, value, sentence in planted_sentences():
        found = scan.find(sentence)
        assert [(s.type, sentence[s.start : s.end]) for s in found] == [(kind, value)], sentence
        spans += found
    assert counts(spans) == {k: len(v) for k, v in sorted(PLANTED.items())}
    assert set(PLANTED) == set(PATTERN_ENTITIES)


def test_redact_replaces_each_span_with_its_type_and_leaves_clean_text(scan) -> None:  # type: ignore[no-untyped-def]
    for kind, value, sentence in planted_sentences():
        redacted = scan.redact(sentence)
        assert redacted == sentence.replace(value, f"<{kind}>")
    for sentence in clean_sentences(50):
        assert scan.find(sentence) == []
        assert scan.redact(sentence) is sentence


@pytest.mark.skipif(not SST2_DEV.is_file(), reason="needs ../shared/realdata (SST-2)")
def test_no_false_positives_on_real_reviews(scan) -> None:  # type: ignore[no-untyped-def]
    """SST-2's 872 dev sentences hold no personal data; the scanner flags none of them
    (measured: 0 findings, about 1 ms per sentence). Numbers such as '89 minutes',
    'formula 51' or years must not count."""
    lines = SST2_DEV.read_text(encoding="utf-8").splitlines()[1:]
    flagged = [line for line in lines if scan.find(line.split("\t")[0])]
    assert flagged == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a credential URL holds an e-mail-like 'hunter2@db.example.com': one span
        ("see https://admin:hunter2@db.example.com/x", [("URL_WITH_CREDENTIALS", 4, 42)]),
        # plain URLs are not personal data here (module docstring)
        ("see https://example.com/a?b=c and www.example.org", []),
        # both an SSN (0.5) and a phone number (0.4): the higher score wins
        ("ssn 078-05-1121", [("US_SSN", 4, 15)]),
        # invalid checksums and the SSA's never-issued numbers are not found
        ("card 4111 1111 1111 1112, iban GB82 WEST 1234 5698 7654 33, ssn 666-12-3456", []),
        # any nine digits is only a 'very weak' SSN (0.05 < the threshold)
        ("order 536228765 shipped", []),
        ("my PIN is 4 8 1 9 0 3", []),  # the canary format is not personal data
    ],
)
def test_overlaps_and_what_does_not_count(
    scan, text: str, expected: list[tuple[str, int, int]]
) -> None:  # type: ignore[no-untyped-def]
    assert [(s.type, s.start, s.end) for s in scan.find(text)] == expected


def test_resolve_overlaps_rules() -> None:
    outer = Span("URL_WITH_CREDENTIALS", 0, 30, 0.9)
    inner = Span("EMAIL_ADDRESS", 10, 30, 1.0)
    low = Span("PHONE_NUMBER", 40, 51, 0.4)
    high = Span("US_SSN", 40, 51, 0.5)
    partial = Span("IP_ADDRESS", 48, 60, 0.6)
    assert resolve_overlaps([inner, low, outer, high, partial]) == [outer, partial]
    assert resolve_overlaps([low, high]) == [high]
    assert resolve_overlaps([]) == []


def test_presidio_is_imported_lazily_and_needs_no_network(tmp_path: Path) -> None:
    """In a fresh process: importing the audits (as `harness run` does) leaves presidio
    unimported; then, with sockets refusing to connect, the scanner is built and finds an
    e-mail address, so nothing is fetched (presidio's own e-mail recognizer would fetch
    the public suffix list; spaCy models are never downloaded)."""
    code = (
        "import socket, sys\n"
        "import harness.audits, harness.config.suite\n"
        "print('presidio_analyzer' in sys.modules)\n"
        "def refuse(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "from harness.sensitive.pii import scanner\n"
        "s = scanner(None)\n"
        "print([x.type for x in s.find('mail jane.doe@example.com now')])\n"
    )
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["False", "['EMAIL_ADDRESS']"]
    assert "network used" not in out.stderr
    assert not (tmp_path / "cache" / "python-tldextract").exists()


def test_an_installed_ner_model_adds_person(tmp_path: Path) -> None:
    """With a spaCy pipeline that has NER (here a blank one with an entity ruler, saved
    to a folder: no model can be downloaded in tests), PERSON is found beside the
    pattern types."""
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": [{"LOWER": "jane"}, {"LOWER": "doe"}]}])
    nlp.to_disk(tmp_path / "ner")
    scan = scanner(str(tmp_path / "ner"))
    assert "PERSON" in scan.entities and scan.describe()["nlp"].startswith("spaCy ")
    text = "Jane Doe wrote from jane.doe@example.com"
    assert [(s.type, text[s.start : s.end]) for s in scan.find(text)] == [
        ("PERSON", "Jane Doe"),
        ("EMAIL_ADDRESS", "jane.doe@example.com"),
    ]
    assert scan.redact(text) == "<PERSON> wrote from <EMAIL_ADDRESS>"
