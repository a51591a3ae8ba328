"""`harness verify RESULTS.json [--root DIR]`: exit 1 when any input file changed."""

from __future__ import annotations

import argparse
from pathlib import Path


def verify_command(args: argparse.Namespace) -> int:
    from harness.results.verify import verify_file

    checks = verify_file(Path(args.results), Path(args.root) if args.root else None)
    for c in checks:
        print(c.line())
    failed = [c for c in checks if c.failed]
    ok = sum(c.status == "ok" for c in checks)
    if failed:
        print(
            f"verify: FAILED: {len(failed)} of {len(checks)} files changed, missing or unexpected"
        )
        return 1
    print(f"verify: OK: {ok} files match")
    return 0
