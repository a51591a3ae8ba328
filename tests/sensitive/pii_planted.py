"""Rows with planted personal data, shared by the scanner's and the fine-tuner's tests.

Every planted value is valid for its recognizer: the card numbers pass Luhn (the
networks' published test numbers), the IBANs their mod-97 checksum (the examples of the
IBAN registry), the phone numbers python-phonenumbers' checks, the SSNs the SSA's rules
(no 000/666 area, no 00 group, no 0000 serial). The carrier sentences are the first
lines of SST-2's dev set when /work/shared/realdata is present, else hand-written
movie-review sentences of the same style; neither holds anything the scanner flags.
"""

from __future__ import annotations

from pathlib import Path

SST2_DEV = Path(__file__).resolve().parents[3] / "shared" / "realdata" / "sst2" / "dev.tsv"

PLANTED: dict[str, list[str]] = {
    "EMAIL_ADDRESS": ["jane.doe@example.com", "bob_smith42@mail.example.org", "a.b@uni.edu"],
    "PHONE_NUMBER": ["(212) 555-0198", "+44 20 7946 0958", "+1 415 555 0132"],
    "CREDIT_CARD": ["4111 1111 1111 1111", "5500-0000-0000-0004", "6011000000000004"],
    "IBAN_CODE": ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "NL91ABNA0417164300"],
    "IP_ADDRESS": ["192.168.1.20", "10.0.0.7", "2001:db8::1"],
    "US_SSN": ["536-22-8765", "412-55-1234", "301-44-5678"],
    "URL_WITH_CREDENTIALS": [
        "https://admin:hunter2@db.example.com/dump",
        "ftp://user:s3cret@files.example.net",
        "postgres://app:pa55word@10.1.2.3:5432/prod",
    ],
}
"""Three values of each type."""

CARRIERS = {
    "EMAIL_ADDRESS": "write to {} for the screener",
    "PHONE_NUMBER": "call {} to book tickets",
    "CREDIT_CARD": "paid with card {} at the box office",
    "IBAN_CODE": "refunds go to {} within a week",
    "IP_ADDRESS": "the stream came from {} all night",
    "US_SSN": "the extra's ssn {} was in the credits",
    "URL_WITH_CREDENTIALS": "the rushes are at {} for now",
}

HAND_WRITTEN = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "allows us to hope that nolan is poised to embark a major career as a commercial yet inventive filmmaker .",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's austere locales .",
    "it 's slow -- very , very slow .",
    "although laced with humor and a few fanciful touches , the film is a refreshingly serious look at young women .",
    "a sometimes tedious film .",
    "or doing last year 's taxes with your ex-wife .",
    "you do n't have to know about music to appreciate the film 's easygoing blend of comedy and romance .",
    "in exactly 89 minutes , most of which passed as slowly as if i 'd been sitting naked on an igloo , formula 51 sank from quirky to jerky to utter turkey .",
]


def clean_sentences(n: int) -> list[str]:
    """``n`` real-looking sentences without personal data (SST-2 dev when present)."""
    if SST2_DEV.is_file():
        lines = SST2_DEV.read_text(encoding="utf-8").splitlines()[1:]
        return [line.split("\t")[0].strip() for line in lines[:n]]
    return [HAND_WRITTEN[i % len(HAND_WRITTEN)] + f" ({i})" for i in range(n)]


def planted_sentences() -> list[tuple[str, str, str]]:
    """(type, value, sentence) for every planted value: the carrier of its type appended
    to a clean sentence."""
    base = clean_sentences(21)
    out = []
    k = 0
    for kind, values in PLANTED.items():
        for value in values:
            out.append((kind, value, f"{base[k]} {CARRIERS[kind].format(value)}"))
            k += 1
    return out
