"""A written run logged to MLflow: metrics, params, tags, the report files as artifacts.

Where it goes is MLflow's own configuration: MLFLOW_TRACKING_URI (a server, or a local
store such as ``sqlite:///mlflow.db``; unset, MLflow's default), MLFLOW_EXPERIMENT_NAME
or MLFLOW_EXPERIMENT_ID, and a server's MLFLOW_TRACKING_TOKEN or username and password,
which MLflow reads itself and which are never logged here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.integrations.trackers import Tracked

# MLflow's limits on a param's and a tag's value (mlflow.utils.validation)
PARAM_LIMIT = 6000
TAG_LIMIT = 8000


def log(run: Tracked, out: Path) -> str:
    """Log ``run`` as one new MLflow run; returns its id and where it is."""
    import mlflow

    # its store's schema messages (INFO) are not ours to print
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        return _log(mlflow, run)
    finally:
        logger.setLevel(level)


def _log(mlflow: Any, run: Tracked) -> str:
    with mlflow.start_run(run_name=run.name) as active:
        mlflow.log_params({k: v[:PARAM_LIMIT] for k, v in run.params.items()})
        mlflow.set_tags({k: v[:TAG_LIMIT] for k, v in run.tags.items()})
        mlflow.log_metrics(run.metrics, step=0)
        for path in run.files:
            mlflow.log_artifact(str(path))
        run_id = active.info.run_id
    return f"run {run_id} at {mlflow.get_tracking_uri()}"
