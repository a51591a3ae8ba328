"""docs/results.schema.json: the JSON Schema of results.json, generated from the model.

``python -m harness.results.schema_doc`` rewrites it from ``harness.results.schema``;
``--check`` exits 1 when the file is stale (tests/results/test_schema_doc.py checks
it too). The schema describes what ``load_results`` accepts: the typed sections with
their fields, the open sections (audits, records, the suite's own sections) as objects
of any content, and unknown keys allowed everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config.schema_docs import write_generated
from harness.results.schema import RESULTS_SCHEMA_VERSION, Results

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "results.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def results_schema() -> dict[str, Any]:
    """The JSON Schema of results.json (``Results``, validation mode)."""
    schema = Results.model_json_schema(mode="validation")
    head = {
        "$schema": DIALECT,
        "$comment": (
            f"results.json, schema_version {RESULTS_SCHEMA_VERSION}. Generated from "
            "harness/results/schema.py by `python -m harness.results.schema_doc`; "
            "do not edit by hand."
        ),
    }
    return {**head, **schema}


def render_schema() -> str:
    return json.dumps(results_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/results.schema.json, or with --check exit 1 if it is stale."""
    return write_generated(SCHEMA_FILE, render_schema(), "harness.results.schema_doc", argv)


if __name__ == "__main__":
    raise SystemExit(main())
