"""Personal data (PII) in text: the one scanner of the fine-tuner's data step and of the
privacy audit, built on presidio-analyzer and presidio-anonymizer.

Offline by construction: the NLP engine is a blank spaCy English pipeline (a tokenizer,
no model to download), so only presidio's pattern recognizers run: e-mail addresses,
phone numbers (python-phonenumbers, all regions), credit cards (Luhn-checked), IBANs
(checksum-checked), IPv4/IPv6 addresses and US social security numbers, plus
``URL_WITH_CREDENTIALS``, a recognizer of our own for URLs carrying ``user:password@``.
Plain URLs are not counted: they are rarely personal and would drown the rest. When a
spaCy English model with NER (``en_core_web_lg``/``md``/``sm``) is installed, it is
used instead of the blank pipeline and ``PERSON`` is found too.

Presidio's e-mail recognizer checks the domain with tldextract, whose default fetches
the public suffix list from the network; ours uses tldextract's bundled snapshot.
Presidio is imported on first use, never at module import (about 3-8 s on a small CPU).

Spans are made non-overlapping before counting or redacting: a span inside another is
dropped (the e-mail-like ``pass@host`` inside a credential URL), then the higher score
wins among the rest (a ``078-05-1121`` that is both an SSN and a phone number is an
SSN). Redaction replaces each span with ``<TYPE>`` (presidio-anonymizer's ``replace``).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

PATTERN_ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "URL_WITH_CREDENTIALS",
)
NER_ENTITIES = ("PERSON",)
NER_MODELS = ("en_core_web_lg", "en_core_web_md", "en_core_web_sm")
"""spaCy models used for PERSON when installed, in this order of preference."""
SCORE_THRESHOLD = 0.4
"""Minimum presidio score of a counted span. Drops the 'very weak' SSN patterns (any
nine digits, 0.05) and keeps phone numbers (0.4), medium SSNs (0.5), IPs (0.6) and the
checksum-validated kinds (1.0). Context words cannot raise scores here: a blank
pipeline has no lemmas."""

# scheme://user:password@host...; the user and password parts hold no '/', '@' or space
CREDENTIAL_URL = r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]+:[^\s/@]+@[^\s/?#]+[^\s]*"


@dataclass(frozen=True)
class Span:
    """One piece of personal data found in a text."""

    type: str
    start: int
    end: int
    score: float


def counts(spans: Iterable[Span]) -> dict[str, int]:
    """Number of spans per type, by type name."""
    return dict(sorted(Counter(s.type for s in spans).items()))


def resolve_overlaps(spans: Sequence[Span]) -> list[Span]:
    """Non-overlapping spans sorted by start (see the module docstring)."""
    outer = [
        s
        for s in spans
        if not any(
            o is not s
            and o.start <= s.start
            and s.end <= o.end
            and (o.start, o.end) != (s.start, s.end)
            for o in spans
        )
    ]
    kept: list[Span] = []
    for s in sorted(outer, key=lambda x: (-x.score, -(x.end - x.start), x.start, x.type)):
        if all(s.end <= k.start or k.end <= s.start for k in kept):
            kept.append(s)
    return sorted(kept, key=lambda x: x.start)


class Scanner:
    """A configured presidio analyzer and anonymizer (build one with ``scanner()``)."""

    def __init__(self, analyzer: Any, anonymizer: Any, entities: Sequence[str], nlp: str) -> None:
        self._analyzer = analyzer
        self._anonymizer = anonymizer
        self.entities = tuple(entities)
        self.nlp = nlp

    def find(self, text: str) -> list[Span]:
        """The personal data in ``text``: non-overlapping spans, sorted by start."""
        if not text.strip():
            return []
        found = self._analyzer.analyze(
            text=text,
            language="en",
            entities=list(self.entities),
            score_threshold=SCORE_THRESHOLD,
        )
        return resolve_overlaps(
            [Span(r.entity_type, r.start, r.end, float(r.score)) for r in found]
        )

    def redact(self, text: str, spans: Sequence[Span] | None = None) -> str:
        """``text`` with each span replaced by ``<TYPE>``; unchanged when it holds none."""
        spans = self.find(text) if spans is None else spans
        if not spans:
            return text
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        results = [RecognizerResult(s.type, s.start, s.end, s.score) for s in spans]
        out = self._anonymizer.anonymize(
            text=text,
            analyzer_results=results,
            operators={"DEFAULT": OperatorConfig("replace")},
        )
        return str(out.text)

    def describe(self) -> dict[str, Any]:
        """What this scanner looks for and with what (for manifests and results)."""
        from importlib.metadata import version

        return {
            "library": f"presidio-analyzer {version('presidio-analyzer')}",
            "nlp": self.nlp,
            "entities": list(self.entities),
            "score_threshold": SCORE_THRESHOLD,
        }


def installed_ner_model() -> str | None:
    """The first installed spaCy English model with NER (NER_MODELS), else None."""
    import spacy.util

    return next((m for m in NER_MODELS if spacy.util.is_package(m)), None)


@functools.lru_cache(maxsize=4)
def scanner(ner_model: str | None = "auto") -> Scanner:
    """The shared scanner: ``ner_model`` "auto" uses ``installed_ner_model()``; None
    forces the blank pipeline (pattern recognizers only); a name or folder of a spaCy
    pipeline adds PERSON from its NER."""
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        SpacyRecognizer,
        UsSsnRecognizer,
    )
    from presidio_anonymizer import AnonymizerEngine

    offline_tlds = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())

    class OfflineEmailRecognizer(EmailRecognizer):  # type: ignore[misc]
        """Presidio's e-mail recognizer, with the bundled public suffix list."""

        def validate_result(self, pattern_text: str) -> bool:
            return bool(offline_tlds(pattern_text).fqdn)

    model = installed_ner_model() if ner_model == "auto" else ner_model
    recognizers = [
        OfflineEmailRecognizer(),
        PhoneRecognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        PatternRecognizer(
            supported_entity="URL_WITH_CREDENTIALS",
            name="UrlWithCredentialsRecognizer",
            patterns=[Pattern("url with user:password@", CREDENTIAL_URL, 0.9)],
        ),
    ]
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model or "blank"}])
    entities = list(PATTERN_ENTITIES)
    if model is None:
        # set directly: load() would try to download a model named "blank"
        engine.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]
        nlp = "spacy.blank('en') (pattern recognizers only)"
    else:
        engine.load()
        recognizers.append(SpacyRecognizer(supported_entities=list(NER_ENTITIES)))
        entities += NER_ENTITIES
        nlp = f"spaCy {model} (NER: PERSON)"
    registry = RecognizerRegistry(supported_languages=["en"])
    for r in recognizers:
        registry.add_recognizer(r)
    analyzer = AnalyzerEngine(
        registry=registry,
        nlp_engine=engine,
        supported_languages=["en"],
        default_score_threshold=SCORE_THRESHOLD,
    )
    return Scanner(analyzer, AnonymizerEngine(), entities, nlp)
