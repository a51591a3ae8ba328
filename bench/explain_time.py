"""How much of the explain audit's time is the model's: SHAP and LIME on SST-2 dev.

A suite with one classification task (SST-2 dev sentences, ``Review: ...\\nSentiment:``
-> `` negative`` / `` positive``) and an ``explain`` audit (both methods, 20 examples)
runs through the harness CLI in this process, on the benchmark GPT-2
(bench/eval_vs_lmeval.py builds it). The audit records, per method, the time spent in
the batched model calls (``model_time_s``) and the wall time of explaining the examples
(``wall_time_s``, without shap's one-off warm-up, reported as ``setup_s``); their ratio
is the share of the explanation time that is model work. Target (issue 7): >= 0.8.

With ``--profile`` the run is profiled (cProfile) and the functions holding the most
time outside the model are printed, to see where the rest goes.

    .venv/bin/python bench/explain_time.py [--samples 20] [--max-evals 300] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import REALDATA, write_section  # noqa: E402

TARGET = 0.8


def write_suite(work: Path, model: Path, args: argparse.Namespace) -> Path:
    import yaml

    lines = (REALDATA / "sst2" / "dev.tsv").read_text().splitlines()[1:]
    rows = [
        {"sentence": line.rsplit("\t", 1)[0], "label": int(line.rsplit("\t", 1)[1])}
        for line in lines[: args.rows]
    ]
    data = work / "sst2.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    suite = work / "suite.yaml"
    doc = {
        "schema_version": 1,
        "name": "bench-explain",
        "model": {"path": str(model)},
        "batch_size": args.batch_size,
        "bootstrap": {"samples": 0},
        "tasks": [
            {
                "id": "sst2",
                "kind": "classification",
                "data": str(data),
                "prompt": "Review: {{ sentence }}\nSentiment:",
                "choices": [" negative", " positive"],
                "label": "label",
                "metrics": ["accuracy"],
            }
        ],
        "audits": {
            "explain": {
                "task": "sst2",
                "methods": ["shap", "lime"],
                "samples": args.samples,
                "max_evals": args.max_evals,
            }
        },
    }
    suite.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return suite


def profile_summary(stats: Any, top: int = 15) -> list[str]:
    """The functions with the most own time (tottime), and where torch's share is."""
    rows = []
    for (file, line, name), (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items():
        rows.append((tottime, cumtime, f"{Path(file).name}:{line}({name})", file))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    in_torch = sum(r[0] for r in rows if "/torch/" in r[3] or r[2].startswith("~:0(<"))
    out = [f"profile: {total:.1f}s own time in total, {in_torch:.1f}s in torch or builtins"]
    out += [f"  {t:7.2f}s own {c:7.2f}s cum  {where}" for t, c, where, _ in rows[:top]]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20, help="examples explained")
    parser.add_argument("--max-evals", type=int, default=300, help="budget per example")
    parser.add_argument("--rows", type=int, default=100, help="SST-2 dev rows in the task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--profile", action="store_true", help="profile the run (cProfile)")
    parser.add_argument("--no-readme", action="store_true", help="do not update bench/README.md")
    args = parser.parse_args()
    if not REALDATA.is_dir():
        print("skipped: ../shared/realdata is absent")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch

    from bench.eval_vs_lmeval import CACHE, build_model
    from harness.cli.main import main as harness

    torch.set_num_threads(args.threads)
    model = build_model(CACHE / "gpt2-20m")
    work = Path(tempfile.mkdtemp(prefix="bench-explain-"))
    suite = write_suite(work, model, args)
    os.environ["HARNESS_CACHE_DIR"] = str(work / "cache")  # cold: no cached scores
    load_before = os.getloadavg()
    cmd = ["run", str(suite), "--out", str(work / "out"), "--no-progress"]
    start = time.perf_counter()
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        code = profiler.runcall(harness, cmd)
        stats = pstats.Stats(profiler)
    else:
        code = harness(cmd)
    wall = time.perf_counter() - start
    if code not in (0, 1):
        print(f"harness run exited {code}")
        return 2
    section = json.loads((work / "out" / "results.json").read_text())["audits"]["explain"]
    load_after = os.getloadavg()
    table = [
        "| method | calls | texts | forward passes | model time (s) | wall time (s) | "
        "setup (s) | model / wall | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ok = True
    for method, m in section["methods"].items():
        share = m["model_time_s"] / m["wall_time_s"] if m["wall_time_s"] else float("nan")
        ok &= share >= TARGET
        table.append(
            f"| {method} | {m['calls']} | {m['texts']} | {m['forward_passes']} | "
            f"{m['model_time_s']:.2f} | {m['wall_time_s']:.2f} | {m['setup_s']:.2f} | "
            f"{share:.3f} | >= {TARGET} |"
        )
    notes = [
        "",
        f"{section['samples']} SST-2 dev examples, max_evals {section['max_evals']}, batch "
        f"size {args.batch_size}, {args.threads} torch thread(s), cold score cache; whole "
        f"`harness run` {wall:.1f}s{' (under cProfile)' if args.profile else ''}.",
        f"Load average (1, 5, 15 min) before {', '.join(f'{x:.1f}' for x in load_before)}, "
        f"after {', '.join(f'{x:.1f}' for x in load_after)}.",
    ]
    body = "\n".join([*table, *notes])
    print(body)
    if args.profile:
        print("\n".join(profile_summary(stats)))
    if not args.no_readme:
        write_section(
            "explain_time", body, "python bench/explain_time.py " + " ".join(sys.argv[1:])
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
