"""Command line: parses arguments and calls the public Python API, nothing more.

Exit codes: 0 done, 2 bad input (config, suite, data, model, leakage with
--fail-on-leakage), printed as located one-line messages; 3 internal error (one line
naming the exception and the log file holding its traceback; ``harness.cli.boundary``);
130 interrupted (resume with --resume).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.version import __version__

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
    train.add_argument(
        "--report-to",
        action="append",
        metavar="TRACKERS",
        help="log losses and evaluations to experiment trackers: mlflow, wandb, tensorboard "
        "(comma list or repeated; overrides training.report_to; docs/integrations.md)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' warnings on the console (always in OUT/harness.log)",
    )

    search = sub.add_parser("search", help="hyperparameter search over the config's space")
    search.add_argument("config", help="fine-tune config YAML file with a `search` section")
    search.add_argument("--trials", type=int, help="number of trials (overrides the config)")
    search.add_argument(
        "--sampler", choices=["grid", "random", "tpe"], help="sampler (overrides the config)"
    )
    search.add_argument("--out", help="search folder (default: OUTPUT/search)")
    search.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_select(sub)
    _add_merge(sub)
    return parser


def _add_merge(sub: Any) -> None:
    merge = sub.add_parser(
        "merge",
        help="merge a run's LoRA adapter into its base: a plain checkpoint",
        description="Fold RUN's adapter into the base model its manifest names and write a "
        "plain transformers checkpoint (safetensors, the run's tokenizer, merge.json) that "
        "`harness run` loads as a model. The folder is written whole or not at all.",
    )
    merge.add_argument(
        "run", metavar="RUN", help="`finetune train` output folder (adapter + manifest.json)"
    )
    merge.add_argument(
        "--out", required=True, metavar="DIR", help="folder to write the merged checkpoint to"
    )
    merge.add_argument(
        "--base",
        metavar="PATH",
        help="base model folder (default: the manifest's); its fingerprint must match the "
        "one the run was trained on",
    )
    merge.add_argument(
        "--allow-base-mismatch",
        action="store_true",
        help="merge into a base whose fingerprint differs from the run's",
    )
    merge.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="precision the base loads, merges and is saved in (default: float32)",
    )
    merge.add_argument(
        "--max-shard-size",
        metavar="SIZE",
        help="largest weight file, e.g. 5GB (default: transformers')",
    )
    merge.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    merge.add_argument(
        "--allow-pickle", action="store_true", help="allow .bin/.pt (pickle) weights"
    )
    merge.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the base checkpoint's own Python code",
    )


def _merge(args: argparse.Namespace, console: Any) -> int:
    from finetune.export.merge import merge_adapter
    from harness.data.rows import display_path

    result = merge_adapter(
        args.run,
        args.out,
        base=args.base,
        dtype=args.dtype,
        allow_pickle=args.allow_pickle,
        trust_remote_code=args.trust_remote_code,
        allow_base_mismatch=args.allow_base_mismatch,
        overwrite=args.overwrite,
        max_shard_size=args.max_shard_size,
        console=console,
    )
    shown = f"merged ({args.dtype}): {display_path(result.out)}"
    console.print(shown, markup=False, highlight=False)  # a path is never markup
    return EXIT_OK


def _add_select(sub: Any) -> None:
    from finetune.active.select import DEFAULT_STRATEGY
    from finetune.active.strategies import STRATEGIES

    select = sub.add_parser(
        "select",
        help="choose the unlabelled rows to label next (active learning)",
        description="Score a pool of unlabelled rows on a suite's classification task and "
        "write the BUDGET rows the strategy ranks first, as JSON lines: each row's own "
        "fields plus `score`, `rank` (1 = label first), `strategy` and `why` (cluster, "
        "predicted choice, reason).",
    )
    select.add_argument(
        "--suite", required=True, help="suite whose classification task gives prompt and choices"
    )
    select.add_argument("--task", help="id of that task (default: the suite's only one)")
    select.add_argument(
        "--pool",
        required=True,
        help="unlabelled rows (.jsonl, .csv, .tsv) with the prompt's fields",
    )
    select.add_argument("--budget", type=int, required=True, help="number of rows to choose")
    select.add_argument(
        "--strategy",
        choices=list(STRATEGIES),
        default=DEFAULT_STRATEGY,
        help="how rows are ranked (default: %(default)s): "
        + "; ".join(f"{s.name}: {s.summary}" for s in STRATEGIES.values()),
    )
    select.add_argument("--model", help="base model folder or hub id (overrides the suite's)")
    select.add_argument("--adapter", help="LoRA adapter folder (overrides the suite's)")
    select.add_argument(
        "--out",
        help="output .jsonl: the chosen rows with all their fields plus score, rank, "
        "strategy and why, in rank order (default: POOL.STRATEGY.jsonl beside the pool)",
    )
    select.add_argument(
        "--seed",
        type=int,
        help="seed of `random` and of the clustering strategies (default: the suite's seed)",
    )
    select.add_argument("--batch-size", type=int, help="rows per model call (default: the suite's)")
    select.add_argument(
        "--allow-pickle", action="store_true", help="allow .bin/.pt (pickle) weights"
    )
    select.add_argument("--no-progress", action="store_true", help="no progress bar")


def _select(args: argparse.Namespace, console: Any) -> int:
    from finetune.active.select import select
    from harness.config.suite import apply_overrides, load_suite, verify_files
    from harness.data.rows import display_path

    suite = load_suite(args.suite, check_files=False)
    suite = apply_overrides(
        suite, model=args.model, adapter=args.adapter, batch_size=args.batch_size
    )
    verify_files(suite)
    if args.allow_pickle:
        suite.model.allow_pickle = True
    out, rows = select(
        suite,
        pool=args.pool,
        budget=args.budget,
        strategy=args.strategy,
        task_id=args.task,
        seed=args.seed,
        out=args.out,
        console=console,
        progress=not args.no_progress,
    )
    shown = f"{len(rows)} rows chosen by {args.strategy}: {display_path(out)}"
    console.print(shown, markup=False, highlight=False)  # a path is never markup
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    from finetune.config.schema import load_config
    from harness.cli.boundary import guarded

    console = Console(stderr=True)

    def command() -> int:
        if args.command == "select":
            return _select(args, console)
        if args.command == "merge":
            return _merge(args, console)
        config = load_config(args.config)
        if args.command == "train":
            from finetune.train.run import train
            from harness.integrations.available import split_names
            from harness.quiet import LOG_NAME, third_party_to_log

            out = Path(args.out) if args.out else config.output_dir
            with third_party_to_log(out / LOG_NAME, verbose=args.verbose):
                train(
                    config,
                    eval_data=args.eval_data,
                    fail_on_leakage=args.fail_on_leakage,
                    resume=args.resume,
                    overwrite=args.overwrite,
                    out=args.out,
                    console=console,
                    progress=not args.no_progress,
                    report_to=split_names(args.report_to) if args.report_to else None,
                )
            return EXIT_OK
        from finetune.search.trials import run_search

        run_search(
            config,
            trials=args.trials,
            sampler=args.sampler,
            out=args.out,
            console=console,
            progress=not args.no_progress,
        )
        return EXIT_OK

    # bad input 2, internal error 3 (traceback in a log file), interrupted 130
    return guarded(command, program="finetune", interrupted=INTERRUPTED, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
