"""Data-parallel evaluation across processes started by ``accelerate launch`` (or torchrun).

Every process runs the whole program on the same suite (same data, same seeded audits)
and loads the model on its own device. Only the model's work is divided: each call of
the scoring API (``harness.model.api.ScoringModel``, as ``harness.model.factory.open_model``
builds it) is a collective step in which

* the main process looks the requests up in the response cache and sends what it found
  to the others (``broadcast``), so every process agrees on what is left to compute (the
  wrapper ``harness.model.caching.CachingModel``, on every process);
* the length-sorted batches of the misses are dealt out round-robin (``mine``), each
  process runs its batches, and the answers are gathered to every process
  (``gather``): the backend, built with the group, does this inside its kernels.

A batch holds exactly the rows it holds in a single-process run, so the numbers are the
same to the last bit; metrics, bootstrap, audits and gates then run on the full set in
every process, and only the main process writes the cache and the outputs and prints.
Run directly, nothing here sets anything up: no accelerate state and no torch.distributed
backend exist unless the environment says the process was started as one of several
(docs/scale-out.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

# Set by torchrun (which `accelerate launch --multi_gpu` runs) and by MPI launchers.
_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")

REQUESTS_DIFFER = (
    "the processes built different {kind} requests (digests {digests}); a suite or audit "
    "must build its requests deterministically to run on several processes"
)


def _env_int(names: Sequence[str], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def launched_size() -> int:
    """How many processes the launcher started (1 when run directly)."""
    return max(1, _env_int(_SIZE_VARS, 1))


def launched_rank() -> int:
    """This process's global index as the launcher set it (0 when run directly).

    Read from the environment, so it is known before anything is loaded: a bad suite is
    reported by the main process only.
    """
    return _env_int(_RANK_VARS, 0) if launched_size() > 1 else 0


@dataclass
class ProcessGroup:
    """The processes of one launch, as accelerate's ``PartialState`` sees them."""

    index: int
    size: int
    device: Any  # torch.device of this process
    state: Any

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def mine(self, items: Sequence[T]) -> list[tuple[int, T]]:
        """(position, item) of this process's share: every ``size``-th item (round-robin,
        so with length-sorted batches every process gets long and short ones)."""
        return [(i, items[i]) for i in range(self.index, len(items), self.size)]

    def gather(self, items: list[Any]) -> list[Any]:
        """Every process's ``items`` concatenated in process order, on every process."""
        from accelerate.utils import gather_object

        return list(gather_object(items))

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj`` on every process."""
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=0)[0]

    def check_same(self, kind: str, keys: Sequence[str]) -> None:
        """Raise on every process if the processes are about to answer different requests
        (the shares would not fit together)."""
        digest = hashlib.sha256(json.dumps(list(keys)).encode()).hexdigest()[:12]
        digests = self.gather([digest])
        if len(set(digests)) > 1:
            raise RuntimeError(REQUESTS_DIFFER.format(kind=kind, digests=", ".join(digests)))

    def barrier(self) -> None:
        self.state.wait_for_everyone()

    def model_device(self, requested: str) -> str:
        """The device this process loads the model on: its own accelerator for "auto" or
        an accelerator type without an index, otherwise what the suite names."""
        import torch

        mine = torch.device(self.device)
        if requested == "auto" or (requested == mine.type and mine.type != "cpu"):
            return "cpu" if mine.type == "cpu" else str(mine)
        return requested


_GROUP: ProcessGroup | None = None


def join(*, cpu: bool = False) -> ProcessGroup | None:
    """The process group of this launch, or None when the process runs alone.

    ``cpu`` keeps every process on the CPU (gloo backend); it is implied when no CUDA
    device is visible or ``ACCELERATE_USE_CPU`` is set.
    """
    global _GROUP
    if _GROUP is not None:
        return _GROUP
    if launched_size() < 2:
        return None
    import torch
    from accelerate import PartialState

    use_cpu = (
        cpu
        or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        or not torch.cuda.is_available()
    )
    state = PartialState(cpu=use_cpu)
    if state.num_processes < 2:
        return None
    _GROUP = ProcessGroup(
        index=state.process_index, size=state.num_processes, device=state.device, state=state
    )
    return _GROUP


def current() -> ProcessGroup | None:
    """The group joined by this run, if any."""
    return _GROUP


def is_main() -> bool:
    """Whether this process writes outputs and prints (true when running alone)."""
    return _GROUP.is_main if _GROUP is not None else launched_rank() == 0


def finish() -> None:
    """Wait until every process is done (the main one has written and printed), then
    leave the group. A launcher stops all processes as soon as one exits with a
    non-zero code, so none may leave before the outputs are written."""
    global _GROUP
    if _GROUP is None:
        return
    _GROUP.barrier()
    _GROUP.state.destroy_process_group()
    _GROUP = None
