"""Command line: parses arguments and calls the public Python API, nothing more.

Exit codes: 0 every gate passed (warnings allowed), 1 a gate failed (and nothing else),
2 bad input (suite, config, data, model path, a results file), printed as located
one-line messages, or an output that cannot be written; 3 internal error (one line
naming the exception and the log file holding its traceback); 130 interrupted
(Ctrl-C). See ``harness.cli.boundary``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from harness.cli.boundary import guarded
from harness.version import __version__

INTERRUPTED = (
    "interrupted: nothing was written; the model answers computed so far are in the "
    "response cache, so running the same command again resumes from them"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Release-gating audit harness for fine-tuned language models.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate a checkpoint against a suite and its gates")
    run.add_argument("suite", help="suite YAML file")
    run.add_argument("--model", help="base model folder or hub id (overrides the suite)")
    run.add_argument(
        "--adapter",
        action="append",
        help="PEFT adapter folder (overrides the suite); repeat it to evaluate several adapters "
        "of one base: one run each in OUT/<adapter name>/, the base answers computed once, "
        "and OUT/trend.html",
    )
    run.add_argument("--out", help="output folder (overrides the suite's `output`)")
    run.add_argument("--limit", type=int, help="cap on examples per task (sampled with the seed)")
    run.add_argument("--batch-size", type=int, help="examples per forward pass")
    run.add_argument(
        "--baseline-results",
        metavar="RESULTS_JSON",
        help="results.json of a baseline run: the reference of relative gates (max_drop...)",
    )
    run.add_argument(
        "--require-baseline",
        action="store_true",
        help="fail gates that compare against a baseline run when --baseline-results is not given "
        "(default: they report 'no baseline')",
    )
    run.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow loading pickle weights (.bin/.pt); they can run code",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--no-cache", action="store_true", help="do not use the response cache")
    run.add_argument(
        "--sign",
        metavar="KEY_PEM",
        help="Ed25519 private key (PEM): write attestation.json, a signed statement of the "
        "run (docs/security.md)",
    )
    run.add_argument(
        "--log-to",
        action="append",
        metavar="TRACKERS",
        help="also log the written run to experiment trackers: mlflow, wandb, tensorboard "
        "(comma list or repeated; pip install 'llm-release-harness[trackers]'; "
        "docs/integrations.md)",
    )

    val = sub.add_parser("validate", help="check a suite and its data without loading a model")
    val.add_argument("suite", help="suite YAML file")
    val.add_argument(
        "--offline",
        action="store_true",
        help="do not fetch hub datasets: check everything else and list what needs the "
        "network (the default when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set)",
    )

    rep = sub.add_parser("report", help="re-render a stored run (results.json)")
    rep.add_argument("results", help="results.json of a run")
    rep.add_argument("--format", choices=("html", "junit", "md"), default="html")
    rep.add_argument("--out", help="output file (default: standard output)")

    cmp = sub.add_parser("compare", help="compare a run with a baseline run (paired bootstrap)")
    cmp.add_argument("baseline", help="results.json of the baseline run")
    cmp.add_argument("new", help="results.json of the new run")
    cmp.add_argument("--format", choices=("md", "html"), default="md")
    cmp.add_argument("--out", help="output file (default: standard output)")
    cmp.add_argument(
        "--samples", type=int, help="bootstrap resamples (default: the new run's suite setting)"
    )

    ver = sub.add_parser(
        "verify",
        help="re-hash a run's inputs and outputs, recompute its metrics and gates; exit 1 on change",
    )
    ver.add_argument("results", help="results.json of a run")
    ver.add_argument("--root", help="folder relative paths are taken from (default: cwd)")
    ver.add_argument(
        "--key",
        metavar="PUBLIC_KEY_PEM",
        help="Ed25519 public key (PEM): also check the run's signed attestation.json",
    )

    card = sub.add_parser("card", help="write a Hugging Face model card (README.md) of a run")
    card.add_argument("results", help="results.json of a run")
    card.add_argument(
        "--finetune-run",
        metavar="DIR",
        help="output folder of `finetune train`: its manifest (data curation, data files) "
        "goes into the card, and the card into DIR/README.md unless --out says otherwise",
    )
    card.add_argument("--license", help="license id for the card's metadata (e.g. apache-2.0)")
    card.add_argument("--out", help="output file (default: DIR/README.md, else standard output)")

    trend = sub.add_parser("trend", help="chart gated metrics across runs (checkpoints, releases)")
    trend.add_argument("runs", nargs="+", metavar="RUN", help="results.json files (or run folders)")
    trend.add_argument("--out", help="output HTML file (default: standard output)")
    trend.add_argument(
        "--best",
        metavar="METRIC",
        help="name the best run by this metric (<task>.<output> or a gated value; "
        "default: the first gate's)",
    )

    demo = sub.add_parser("demo", help="run the embedded demo (tiny model, offline, minutes)")
    demo.add_argument("--out", default="reports/demo", help="output folder (default reports/demo)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' warnings on the console (always in OUT/harness.log)",
    )
    return parser


# subcommand -> "module:function", imported only when that subcommand runs
COMMANDS = {
    name: f"harness.cli.{name}:{name}_command"
    for name in ("run", "validate", "report", "compare", "verify", "card", "trend", "demo")
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def command() -> int:
        module, _, function = COMMANDS[args.command].partition(":")
        return int(getattr(importlib.import_module(module), function)(args))

    def speaks() -> bool:  # one of several processes: the main one reports for all
        from harness.model.distributed import is_main

        return is_main()

    return guarded(command, program="harness", interrupted=INTERRUPTED, argv=argv, speaks=speaks)


if __name__ == "__main__":
    raise SystemExit(main())
