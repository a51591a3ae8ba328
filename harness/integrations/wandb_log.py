"""A written run logged to Weights & Biases: metrics, config, tags, the report files.

W&B reads its own environment: WANDB_MODE (``offline`` writes the run under WANDB_DIR
for a later ``wandb sync``; ``disabled`` logs nothing), WANDB_PROJECT, WANDB_ENTITY,
WANDB_API_KEY (read by wandb, never logged here). Without WANDB_DIR the run folder is
the output folder's ``wandb/``, beside the reports it logs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.integrations.trackers import Tracked

TAG_LIMIT = 64  # W&B refuses longer tags


def log(run: Tracked, out: Path) -> str:
    """Log ``run`` as one new W&B run; returns its folder (offline) or its page."""
    import wandb

    folder = None if os.environ.get("WANDB_DIR") else str(out)
    tags = [f"{k.removeprefix('harness.')}:{v}"[:TAG_LIMIT] for k, v in run.tags.items()]
    settings = wandb.Settings(console="off", silent=True, save_code=False)
    active = wandb.init(
        name=run.name,
        dir=folder,
        config=dict(run.params),
        tags=tags,
        job_type="evaluation",
        settings=settings,
        reinit="create_new",
    )
    try:
        active.log(dict(run.metrics), step=0)
        active.summary.update(dict(run.tags))
        for path in run.files:  # copied: a later run in the same folder changes no file
            copied = shutil.copy2(path, Path(active.dir) / path.name)
            active.save(str(copied), base_path=active.dir, policy="now")
        where = active.dir if active.offline else active.url
    except BaseException:
        active.finish(exit_code=1)
        raise
    active.finish()
    return str(where)
