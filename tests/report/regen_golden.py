"""Regenerate the golden skeleton of the HTML report (an explicit, reviewed step).

    .venv/bin/python -m tests.report.regen_golden            # report.skeleton only
    .venv/bin/python -m tests.report.regen_golden --results  # also results.json

The skeleton is rebuilt from tests/golden/results.json. ``--results`` first rewrites
that file from tests.report.synthetic (seed 0), e.g. after the results schema grows.
Review the diff of tests/golden/ before committing it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
RESULTS = GOLDEN / "results.json"
SKELETON = GOLDEN / "report.skeleton"


def main(argv: list[str]) -> int:
    from harness.atomic import write_atomic
    from harness.report.html import render_html
    from harness.results.store import dumps
    from tests.report.skeleton import skeleton
    from tests.report.synthetic import as_results, make_results

    if "--results" in argv:
        write_atomic(RESULTS, dumps(as_results(make_results(3, 12, seed=0, samples=50))))
        print(f"wrote {RESULTS}")
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    write_atomic(SKELETON, skeleton(render_html(as_results(results))))
    print(f"wrote {SKELETON}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
