"""A written run logged to TensorBoard: scalars for the metrics and gates, text for the
rest (params, tags, summary.md).

TensorBoard has no server to send to: the run is an event file in a log folder,
HARNESS_TENSORBOARD_DIR if set, else the output folder's ``tensorboard/``, one
subfolder per run (named by the run and its start time), which ``tensorboard --logdir``
shows side by side. Written with TensorBoard's own event writer: no TensorFlow, no
torch. Scalars are float64 tensors at step 0 (exactly results.json's numbers).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.integrations.trackers import Tracked

DIR_ENV = "HARNESS_TENSORBOARD_DIR"


def log_dir(run: Tracked, out: Path) -> Path:
    """The folder ``run``'s event file goes to (module doc)."""
    root = Path(os.environ[DIR_ENV]) if os.environ.get(DIR_ENV) else out / "tensorboard"
    started = re.sub(r"[^0-9T]", "", run.params.get("started_at", ""))[:15]
    name = re.sub(r"[^\w.\-]", "_", run.name) + (f"-{started}" if started else "")
    return root / name


def _value(tag: str, plugin: Any, tensor: Any, description: str = "") -> Any:
    from tensorboard.compat.proto import summary_pb2

    metadata = plugin.create_summary_metadata(display_name=tag, description=description)
    return summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=metadata)


def log(run: Tracked, out: Path) -> str:
    """Write ``run``'s event file; returns its folder."""
    import numpy as np
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.scalar import metadata as scalar_plugin
    from tensorboard.plugins.text import metadata as text_plugin
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    folder = log_dir(run, out)
    values = [
        _value(k, scalar_plugin, tensor_util.make_tensor_proto(np.float64(v)))
        for k, v in run.metrics.items()
    ]
    texts = {f"params/{k}": v for k, v in run.params.items()}
    texts.update({f"tags/{k}": v for k, v in run.tags.items()})
    if run.summary:
        texts["summary"] = run.summary
    for tag, text in texts.items():
        tensor = tensor_util.make_tensor_proto(np.array(text.encode("utf-8"), dtype=object))
        values.append(_value(tag, text_plugin, tensor))
    writer = EventFileWriter(str(folder))
    try:
        writer.add_event(
            event_pb2.Event(
                wall_time=time.time(), step=0, summary=summary_pb2.Summary(value=values)
            )
        )
    finally:
        writer.close()
    return str(folder)
