"""`harness validate SUITE`: check a suite and its data without loading a model, and say
what a run of it will need."""

from __future__ import annotations

import argparse
import os
from typing import Any

from rich.console import Console
from rich.text import Text

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
OK = "ok: {suite}: {tasks} tasks, {examples} examples, {gates} gates"
NEEDS_BASELINE = (
    "{n} {gates} against a baseline run: pass --baseline-results RESULTS_JSON "
    "(without it {they} '{no_baseline}': a warning, or a failure with --require-baseline)"
)


def baseline_note(n: int) -> str:
    """What a run needs for ``n`` gates that compare against a baseline run."""
    from harness.gates.verdicts import NO_BASELINE

    one = n == 1
    return NEEDS_BASELINE.format(
        n=n,
        gates="gate compares" if one else "gates compare",
        they="it reports" if one else "they report",
        no_baseline=NO_BASELINE,
    )


NEEDS_NETWORK = "not checked offline: {where}: {what} needs the network (hub {source})"


def network_parts(suite: Any) -> dict[int, list[str]]:
    """Per task index, the data sources of the task that come from the hub, as
    ``tasks[i].data: dataset 'NAME'`` lines."""
    from harness.config.yaml_marks import format_path
    from harness.data.rows import looks_local, needs_network
    from harness.run import chat_setup

    base = suite.resolve(".")
    found: dict[int, list[str]] = {}
    for i, task in enumerate(suite.tasks):
        shots = getattr(task, "fewshot", None)
        for path, source in ((("tasks", i, "data"), getattr(task, "data", None)),
                             (("tasks", i, "fewshot", "data"), shots and shots.data)):  # fmt: skip
            if source is not None and needs_network(source, base):
                what = f"dataset '{source.dataset}'"
                found.setdefault(i, []).append(
                    NEEDS_NETWORK.format(where=format_path(path), what=what, source="dataset")
                )
        hub = getattr(task, "hub_dataset", None)  # an lm_eval task's own dataset
        if hub:
            what = f"lm-eval task '{task.task}' (dataset '{hub}')"
            where = format_path(("tasks", i, "task"))
            found.setdefault(i, []).append(
                NEEDS_NETWORK.format(where=where, what=what, source="dataset")
            )
        if chat_setup.uses_model_tokenizer(suite, task) and not looks_local(suite.model.path, base):
            own = getattr(task, "chat", None) is not None
            where = format_path(("tasks", i, "chat") if own else ("chat",))
            what = f"the chat template of hub model '{suite.model.path}'"
            found.setdefault(i, []).append(
                NEEDS_NETWORK.format(where=where, what=what, source="model")
            )
    return found


def offline_env() -> bool:
    """Whether the environment switches the hub off."""
    return any(os.environ.get(v, "").strip() not in ("", "0") for v in OFFLINE_VARIABLES)


def validate_command(args: argparse.Namespace) -> int:
    from harness.config.suite import load_suite
    from harness.results.compare import baseline_gates
    from harness.run.runner import prepare_suite

    suite = load_suite(args.suite)
    remote = network_parts(suite) if (args.offline or offline_env()) else {}
    prepared = prepare_suite(suite, skip=set(remote))
    n = sum(len(p.records) for p in prepared)
    line = OK.format(suite=args.suite, tasks=len(suite.tasks), examples=n, gates=len(suite.gates))
    if remote:
        line = line.replace(" tasks,", f" tasks ({len(remote)} not prepared offline, below),", 1)
    relative = len(baseline_gates(suite))
    if relative:
        line += f"; {baseline_note(relative)}"
    text = Text(line)
    text.stylize("green", 0, 2)
    console = Console(stderr=True)
    console.print(text, soft_wrap=True)
    for note in dict.fromkeys(n for notes in remote.values() for n in notes):
        console.print(Text(note, style="yellow"), soft_wrap=True)
    return 0
