"""Build the scoring model a run uses: the backend, then the cache composed around it.

``open_model(source, cache=..., group=...)`` is the one entry point. The backend
(``harness.model.language_model.load_model``) gets the process group when it is built,
because the group deals out batches inside the scoring kernels; the response cache wraps
the result (``harness.model.caching.CachingModel``). Nothing is set on a model after it
is built: the runner and the audits that need another model (the forgetting audit's
baseline) call this with the run's cache and group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from harness.model import language_model
from harness.model.api import ScoringModel
from harness.model.caching import CachingModel
from harness.model.files import ModelSource

if TYPE_CHECKING:
    from harness.model.cache import ResponseCache
    from harness.model.distributed import ProcessGroup

__all__ = ["ModelSource", "open_model", "source_of", "unwrapped"]


def source_of(model: Any) -> ModelSource:
    """The ModelSource of a suite's ``model`` section (``suite.model``)."""
    return ModelSource.from_config(model)


def open_model(
    source: ModelSource,
    *,
    cache: ResponseCache | None = None,
    group: ProcessGroup | None = None,
) -> ScoringModel:
    """The model ``source`` names, answering from ``cache`` first and sharing its work
    with ``group``; weights and tokenizer load on first use.

    Alone and without a cache this is the backend itself. With a group each process
    loads the model on its own device (``ProcessGroup.model_device``) and wraps it, also
    the processes without the cache (only the main one holds it): the wrapper is where
    the processes agree on what is left to compute.
    """
    load = backend_loader(source.backend)
    lm: ScoringModel
    if group is None:
        lm = load(source)
    else:  # a group exists only when launched as several processes
        lm = load(replace(source, device=group.model_device(source.device)), group=group)
    if cache is None and group is None:
        return lm
    return CachingModel(lm, cache=cache, group=group)


def backend_loader(backend: str) -> Callable[..., ScoringModel]:
    """The function that builds a ``backend``'s model: ``load(source, group=...)``.

    Each backend's module is imported only when a suite names it (vLLM and the HTTP
    client stay unimported otherwise)."""
    if backend == "hf":
        # looked up on the module at call time: tests put a fake model in its place
        return language_model.load_model
    if backend in ("openai-completions", "openai-chat"):
        from harness.model.served import load_served

        return load_served
    if backend == "vllm":
        from harness.model.vllm_backend import load_vllm

        return load_vllm
    raise ValueError(f"unknown backend {backend!r}")  # the schema allows no other


def unwrapped(lm: ScoringModel) -> ScoringModel:
    """The model under every wrapper: the one that computes (tests hook its forward passes)."""
    while isinstance(lm, CachingModel):
        lm = lm.inner
    return lm
