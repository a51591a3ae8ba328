"""The one place that loads models.

A causal LM from a local folder (or a hub id when online), with an optional PEFT
adapter. Weights load from safetensors only; pickle files (``.bin``, ``.pt``) are
refused unless the user opts in, because unpickling runs arbitrary code. Remote code is
never enabled implicitly (the loading rules are in ``harness.model.files``). Base and
adapter are fingerprinted by the sha256 of their files, so results, caches and reports
can name exactly what was evaluated, and an adapter is checked against the base it was
trained on (``harness.model.adapter_base``).

``LanguageModel`` is the transformers backend of the scoring API
(``harness.model.api.ScoringModel``: ``loglikelihood``, ``rolling_loglikelihood``,
``generate``) that tasks and audits call. It answers every request itself: the response
cache is a wrapper around it (``harness.model.caching``), and ``harness.model.factory``
composes the two. The process group is a constructor argument instead, fixed when the
model is built: it deals out the batches inside the kernels, which no wrapper can reach
without changing the batches. The token-level work is in ``harness.model.scoring`` and
``harness.model.generation``, long texts are bounded by ``harness.model.long_text``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.model.files import (  # re-exported: callers name the loading rules here
    DEFAULT_MAX_LENGTH,
    LOAD_ERRORS,
    NOT_FOUND,
    OPT_IN_RUN,
    OPT_IN_TRAINING,
    PICKLE_ENDS_EARLY,
    PICKLE_ERRORS,
    PICKLE_REFUSED,
    PICKLE_UNREADABLE,
    ModelSource,
    check_weights,
    load_for_training,
    load_tokenizer,
    load_weights,
    max_length_from_files,
    pick_device,
    pick_device_name,
    pickle_failure,
    resolve_folder,
    resolve_max_length,
)
from harness.model.fingerprint import (  # re-exported: the loaders' callers name them here
    WEIGHT_PICKLE,
    WEIGHT_SAFE,
    Fingerprint,
    fingerprint_folder,
)
from harness.model.loading import input_device, load_settings, resolve_dtype
from harness.model.requests import (
    as_loglikelihood,
    as_rolling,
    generate_requests,
    loglikelihood_requests,
    rolling_requests,
)
from harness.model.tokenized import TokenizedModel

if TYPE_CHECKING:
    from harness.model.distributed import ProcessGroup

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "LOAD_ERRORS",
    "NOT_FOUND",
    "OPT_IN_RUN",
    "OPT_IN_TRAINING",
    "PICKLE_ENDS_EARLY",
    "PICKLE_ERRORS",
    "PICKLE_REFUSED",
    "PICKLE_UNREADABLE",
    "WEIGHT_PICKLE",
    "WEIGHT_SAFE",
    "Fingerprint",
    "LanguageModel",
    "ModelSource",
    "check_weights",
    "fingerprint_folder",
    "load_for_training",
    "load_model",
    "max_length_from_files",
    "pick_device",
    "pick_device_name",
    "pickle_failure",
    "resolve_folder",
    "resolve_max_length",
]


@dataclass
class LanguageModel(TokenizedModel):
    """A causal LM (optionally with a PEFT adapter) and its scoring API.

    Weights and tokenizer load on first use: a re-run whose every answer is in the
    response cache never imports torch's model code or reads the weights. What the
    cache keys need (fingerprints, context window, dtype, device) is known without them.
    """

    device: Any
    """Where the model runs: a device name ("cpu", "cuda:0") or a torch.device."""
    max_length: int
    base: Fingerprint
    adapter: Fingerprint | None = None
    has_adapter: bool = False
    dtype_name: str = "torch.float32"
    loading: dict[str, Any] = field(default_factory=lambda: {"dtype": "float32"})
    """How the weights load (harness.model.loading.load_settings): dtype resolved,
    device map, quantization, attention kernel; recorded in provenance."""
    _model: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _load_model: Callable[[], Any] | None = field(default=None, repr=False)
    _load_tokenizer: Callable[[], Any] | None = field(default=None, repr=False)
    _adapter_off: bool = field(default=False, repr=False)
    group: ProcessGroup | None = field(default=None, repr=False)
    """The processes this model shares its batches with (harness.model.distributed);
    given when the model is built (``load_model(source, group=...)``), never set later."""
    load_s: float = field(default=0.0, repr=False)
    """Seconds spent loading weights and tokenizer so far."""
    adapter_base: dict[str, Any] | None = None
    """The adapter's recorded base against the base in use (harness.model.adapter_base)."""
    _longest_token: int = field(default=0, repr=False)
    _cuts: dict[tuple[int, str], int] = field(default_factory=dict, repr=False)
    tokenizer_file: Path | None = field(default=None, repr=False)
    _counter: Any = field(default=None, repr=False)

    def _first_use(self, name: str) -> Any:
        """``self._<name>``, made by ``self._load_<name>`` on first use (timed)."""
        value = getattr(self, f"_{name}")
        if value is None:
            load = getattr(self, f"_load_{name}")
            assert load is not None, f"a LanguageModel needs a {name} or a loader for it"
            t = time.perf_counter()
            value = load()
            setattr(self, f"_{name}", value)
            self.load_s += time.perf_counter() - t
        return value

    @property
    def model(self) -> Any:
        """The transformers (or PEFT) model, loaded on first access."""
        return self._first_use("model")

    @model.setter
    def model(self, value: Any) -> None:
        self._model = value

    @property
    def tokenizer(self) -> Any:
        return self._first_use("tokenizer")

    @property
    def weights_loaded(self) -> bool:
        return self._model is not None

    @property
    def request_settings(self) -> dict[str, Any]:
        """Settings besides the fingerprint that change answers (part of cache keys)."""
        settings = {"max_length": self.max_length, "dtype": self.dtype_name}
        # placement, quantization and kernel only when set: the keys of a model loaded
        # plainly stay what they were before these options existed
        extra = {k: v for k, v in self.loading.items() if k != "dtype"}
        return {**settings, "loading": extra} if extra else settings

    @property
    def fingerprint(self) -> str:
        """Identity of what currently computes: base alone when the adapter is off."""
        if self.adapter is None or self._adapter_off:
            return self.base.digest
        return hashlib.sha256(f"{self.base.digest}+{self.adapter.digest}".encode()).hexdigest()

    @contextlib.contextmanager
    def computing(self) -> Iterator[Any]:
        """The loaded model, with the adapter off inside ``adapter_disabled``."""
        model = self.model
        if self._adapter_off and self.has_adapter:
            with model.disable_adapter():
                yield model
        else:
            yield model

    # -- scoring -------------------------------------------------------------------

    def _score(
        self, rows: Sequence[Any], batch_size: int, *, share_prefixes: bool = True
    ) -> list[Any]:
        """``harness.model.scoring.score_rows`` on the model as it currently computes.
        ``HARNESS_PREFIX_SHARING=0`` in the environment turns prefix sharing off (every
        input run whole, the path before it existed: for comparisons, and a way out
        should a model pass the packing check yet misbehave)."""
        from harness.model.scoring import score_rows

        if os.environ.get("HARNESS_PREFIX_SHARING", "1") == "0":
            share_prefixes = False

        with self.computing() as model:
            return score_rows(
                model,
                rows,
                batch_size=batch_size,
                pad_token=self.pad_token,
                device=self.device,
                group=self.group,
                share_prefixes=share_prefixes,
            )

    def loglikelihood(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, bool, int]]:
        """(sum log-prob, greedy?, n tokens) of each continuation given its context.

        A context longer than the window is cut to what the window keeps before it is
        tokenized (``context_tail``)."""
        requests = loglikelihood_requests(self, pairs, batch_size)

        def compute(indices: list[int]) -> list[Any]:
            from harness.model.scoring import continuation_row  # torch: only when computing

            rows = []
            for i in indices:
                body = requests.bodies[i]
                context, continuation = body["context"], body["continuation"]
                ctx, cont = self.encode_pair(context, continuation)
                if not cont:
                    raise UserError(f"continuation {continuation!r} encodes to no tokens")
                rows.append(continuation_row(ctx, cont, self.max_length))
            scores = self._score(rows, batch_size)
            return [[s.logprob, s.greedy, s.n_targets] for s in scores]

        answers = requests.answer(self.fingerprint, compute, advance=advance)
        return [as_loglikelihood(a) for a in answers]

    def rolling_loglikelihood(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, int]]:
        """(sum log-prob, n tokens) of each whole text, every token scored once."""
        requests = rolling_requests(self, texts, batch_size)

        def compute(indices: list[int]) -> list[Any]:
            from harness.model.scoring import rolling_totals

            def score(rows: list[Any]) -> list[tuple[float, int]]:
                # rolling windows share no context: whole windows, as before
                scores = self._score(rows, batch_size, share_prefixes=False)
                return [(s.logprob, s.n_targets) for s in scores]

            return rolling_totals(
                indices,
                lambda t: self.text_tokens(texts[t]),
                self.prefix_token,
                self.max_length,
                score,
            )

        answers = requests.answer(self.fingerprint, compute, advance=advance)
        return [as_rolling(a) for a in answers]

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Greedy continuations, cut at the first stop string. A prompt longer than the
        window is cut to what the window keeps before it is tokenized (``prompt_tail``);
        the tokens kept are the last ``max_length - max_new_tokens``, as lm-eval does."""
        requests = generate_requests(
            self, prompts, max_new_tokens=max_new_tokens, stop=stop, batch_size=batch_size
        )
        budget = max(1, self.max_length - max_new_tokens)

        def compute(indices: list[int]) -> list[Any]:
            from harness.model.generation import greedy_generate

            with self.computing() as model:
                encoded = [
                    self.encode(requests.bodies[i]["prompt"])[-budget:] or [self.prefix_token]
                    for i in indices
                ]
                return greedy_generate(
                    model,
                    self.tokenizer,
                    encoded,
                    max_new_tokens=max_new_tokens,
                    pad_token=self.pad_token,
                    device=self.device,
                    stop=stop,
                    batch_size=batch_size,
                    group=self.group,
                )

        answers = requests.answer(self.fingerprint, compute, advance=advance)
        return [str(a) for a in answers]


def _placed(lm: LanguageModel, model: Any) -> Any:
    """``model``, with ``lm.device`` set to where a device map put its inputs."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    lm.device = input_device(base, lm.device)
    return model


def load_model(source: ModelSource, *, group: ProcessGroup | None = None) -> LanguageModel:
    """Check ``source`` and return its model; weights and tokenizer load on first use.

    Paths, weight files, dtype and device are checked here; a file that cannot be
    loaded is reported (as a UserError) when first used. With a process ``group`` the
    model scores its share of every batch list (harness.model.distributed); the factory
    (harness.model.factory.open_model) puts the cache lookup shared by the group around it.
    """
    folder = resolve_folder(source.path, what="model")
    check_weights(folder, what="model", allow_pickle=source.allow_pickle)
    if source.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise UserError(f"model.dtype: unknown dtype '{source.dtype}'")
    dtype = resolve_dtype(source.dtype, folder)
    device = pick_device_name(source.device)
    adapter_folder = None
    if source.adapter:
        adapter_folder = resolve_folder(source.adapter, what="adapter")
        check_weights(adapter_folder, what="adapter", allow_pickle=source.allow_pickle)
    tok_folder = folder
    if adapter_folder is not None and (adapter_folder / "tokenizer_config.json").exists():
        tok_folder = adapter_folder
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base = fingerprint_folder(folder, allow_pickle=source.allow_pickle)
    adapter_base = None
    if adapter_folder is not None:
        from harness.model.adapter_base import check_base, compare_base

        adapter_base = compare_base(
            adapter_folder, base, source.path, allow_pickle=source.allow_pickle
        )
        adapter_base["allowed"] = source.allow_base_mismatch
        check_base(
            adapter_base,
            adapter=str(source.adapter),
            model=source.path,
            allowed=source.allow_base_mismatch,
        )
    lm = LanguageModel(
        device=device,
        max_length=0,
        base=base,
        adapter=(
            fingerprint_folder(adapter_folder, allow_pickle=source.allow_pickle)
            if adapter_folder is not None
            else None
        ),
        adapter_base=adapter_base,
        has_adapter=adapter_folder is not None,
        dtype_name=f"torch.{dtype}",
        loading=load_settings(source, dtype),
        _load_model=lambda: _placed(
            lm, load_weights(source, folder, adapter_folder, device, dtype)
        ),
        _load_tokenizer=lambda: load_tokenizer(source, tok_folder),
        group=group,
        tokenizer_file=(
            tok_folder / "tokenizer.json" if (tok_folder / "tokenizer.json").is_file() else None
        ),
    )
    lm.max_length = (
        source.max_length
        or max_length_from_files(folder)
        or resolve_max_length(lm.model.config, lm.tokenizer, None)
    )
    return lm
