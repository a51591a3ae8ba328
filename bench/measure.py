"""Measuring for the benchmarks: timed subprocesses, the machine, the README section writer.

Every benchmark measures this harness and a peer in the same run on the same machine
and prints ratios; the figures land in bench/README.md between markers owned by the
script that produced them, with the date, the machine and the command.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
README = Path(__file__).resolve().parent / "README.md"


@dataclass(frozen=True)
class Timed:
    wall_s: float
    peak_rss_mb: float
    returncode: int


def run_timed(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Timed:
    """Run a command; wall time and the child's peak RSS (from wait4's rusage)."""
    full_env = {**os.environ, **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=full_env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {code}:\n{err[-3000:]}")
    return Timed(wall_s=wall, peak_rss_mb=usage.ru_maxrss / 1024, returncode=code)


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def write_section(name: str, body: str, command: str) -> None:
    """Replace this benchmark's section of bench/README.md (created if absent)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"<!-- {name}:start -->\n### {name}\n\n"
        f"Measured {stamp} on {machine()} with `{command}`.\n\n{body.strip()}\n"
        f"<!-- {name}:end -->"
    )
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    pattern = re.compile(
        rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)


def python() -> str:
    return sys.executable
