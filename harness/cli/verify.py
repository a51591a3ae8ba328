"""`harness verify RESULTS.json [--root DIR] [--key PUB.pem]`: exit 1 when any input
file, output file, recomputed number or verdict, or (with --key) the signed statement
does not match (harness.results.verify)."""

from __future__ import annotations

import argparse
from pathlib import Path


def verify_command(args: argparse.Namespace) -> int:
    from harness.results.verify import verify_file

    key = Path(args.key) if getattr(args, "key", None) else None
    checks = verify_file(Path(args.results), Path(args.root) if args.root else None, key)
    for c in checks:
        print(c.line())
    failed = [c for c in checks if c.failed]
    ok = sum(c.status == "ok" for c in checks)
    if failed:
        print(
            f"verify: FAILED: {len(failed)} of {len(checks)} checks found a file changed, "
            "missing or unexpected, or a stored value that differs"
        )
        return 1
    print(f"verify: OK: {ok} checks match")
    return 0
