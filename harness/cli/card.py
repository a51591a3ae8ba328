"""`harness card RESULTS.json [--finetune-run DIR] [--out README.md]`: a model card."""

from __future__ import annotations

import argparse
from pathlib import Path

NO_FINETUNE_RECORD = (
    "{dir}: no manifest.json or history.jsonl of `finetune train` (--finetune-run names "
    "the fine-tune's output folder)"
)


def card_command(args: argparse.Namespace) -> int:
    from harness.cli.report import emit
    from harness.errors import UserError
    from harness.report.model_card import render_card
    from harness.results.finetune_record import finetune_record
    from harness.results.store import load_results

    results = load_results(Path(args.results))
    record = None
    out = args.out
    if args.finetune_run:
        folder = Path(args.finetune_run)
        record = finetune_record(str(folder)) if folder.is_dir() else None
        if record is None:
            raise UserError(NO_FINETUNE_RECORD.format(dir=folder))
        out = out or str(folder / "README.md")
    text = render_card(results, finetune=record, license=args.license, results_path=args.results)
    emit(text, "model card", out)
    return 0
