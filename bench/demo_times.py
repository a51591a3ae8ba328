"""How long the demo takes: `make demo` from a fresh clone, then `harness demo` cold and warm.

Targets (issue 6): `make demo` from a fresh clone, install included, < 600 s on 2 cores;
the demo after install with no cached base model < 180 s; with the base cached < 90 s.
Each figure is measured here, in this run, and written to bench/README.md.

    .venv/bin/python bench/demo_times.py              # cold + warm demo
    .venv/bin/python bench/demo_times.py --fresh-clone # also clone + make demo

The fresh clone gets its own .venv (pip's download cache is whatever this machine has:
the registry is the only network) and its own empty HARNESS_CACHE_DIR.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import run_timed, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "make demo, fresh clone": 600.0,
    "demo, base not cached": 180.0,
    "demo, base cached": 90.0,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fresh-clone", action="store_true", help="also time `make demo` in a clone"
    )
    args = parser.parse_args()
    rows: list[tuple[str, float, int]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="demo-bench-") as tmp:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        if args.fresh_clone:
            clone = Path(tmp) / "clone"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
            t = run_timed(
                ["make", "demo"], env={**env, "HARNESS_CACHE_DIR": f"{tmp}/c0"}, cwd=clone
            )
            rows.append(("make demo, fresh clone", t.wall_s, t.returncode))
        harness = str(Path(sys.executable).with_name("harness"))
        cache = f"{tmp}/c1"
        for label in ("demo, base not cached", "demo, base cached"):
            t = run_timed(
                [harness, "demo", "--out", f"{tmp}/out"],
                env={**env, "HARNESS_CACHE_DIR": cache},
                cwd=ROOT,
            )
            rows.append((label, t.wall_s, t.returncode))
    lines = [
        "| run | wall (s) | target (s) | ratio to target | exit |",
        "|---|---|---|---|---|",
    ]
    for label, wall, code in rows:
        target = TARGETS[label]
        lines.append(f"| {label} | {wall:.0f} | {target:.0f} | {wall / target:.2f} | {code} |")
    lines.append("")
    lines.append(
        f"Load average when the run started: {load_before:.2f} "
        "(2 cores; a load above 2 means other work shared the CPU)."
    )
    body = "\n".join(lines)
    print(body)
    command = "python bench/demo_times.py" + (" --fresh-clone" if args.fresh_clone else "")
    write_section("demo_times", body, command)
    return 0 if all(code == 0 for _, _, code in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
