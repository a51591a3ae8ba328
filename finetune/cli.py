"""Command line: parses arguments and calls the public Python API, nothing more.

Exit codes: 0 done, 2 bad input (config, data, model, leakage with --fail-on-leakage),
printed as located one-line messages; 130 interrupted (resume with --resume).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness import __version__

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130
INTERRUPTED = "interrupted; continue from the last checkpoint with --resume"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune", description="LoRA fine-tuning whose checkpoints the harness audits."
    )
    parser.add_argument("--version", action="version", version=f"finetune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="curate the data and train a LoRA adapter")
    train.add_argument("config", help="fine-tune config YAML file")
    train.add_argument(
        "--eval-data",
        action="append",
        default=[],
        metavar="PATH",
        help="evaluation data file or suite to check for leakage (repeatable)",
    )
    train.add_argument(
        "--fail-on-leakage",
        action="store_true",
        help="stop (exit 2) if a training example overlaps the evaluation data",
    )
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument(
        "--overwrite", action="store_true", help="start over in an output folder holding a run"
    )
    train.add_argument("--out", help="output folder (overrides the config's `output`)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    search = sub.add_parser("search", help="hyperparameter search over the config's space")
    search.add_argument("config", help="fine-tune config YAML file with a `search` section")
    search.add_argument("--trials", type=int, help="number of trials (overrides the config)")
    search.add_argument(
        "--sampler", choices=["grid", "random", "tpe"], help="sampler (overrides the config)"
    )
    search.add_argument("--out", help="search folder (default: OUTPUT/search)")
    search.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    from finetune.config import load_config
    from harness.errors import UserError

    console = Console(stderr=True)
    try:
        config = load_config(args.config)
        if args.command == "train":
            from finetune.train import train

            train(
                config,
                eval_data=args.eval_data,
                fail_on_leakage=args.fail_on_leakage,
                resume=args.resume,
                overwrite=args.overwrite,
                out=args.out,
                console=console,
                progress=not args.no_progress,
            )
            return EXIT_OK
        from finetune.search import run_search

        run_search(
            config,
            trials=args.trials,
            sampler=args.sampler,
            out=args.out,
            console=console,
            progress=not args.no_progress,
        )
        return EXIT_OK
    except UserError as exc:
        for line in exc.messages:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
