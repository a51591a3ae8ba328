"""The one place that loads models.

A causal LM from a local folder (or a hub id when online), with an optional PEFT
adapter. Weights load from safetensors only; pickle files (``.bin``, ``.pt``) are
refused unless the user opts in, because unpickling runs arbitrary code. Remote code is
never enabled implicitly. Base and adapter are fingerprinted by the sha256 of their
files, so results, caches and reports can name exactly what was evaluated.

The scoring API (``loglikelihood``, ``choice_loglikelihoods``,
``rolling_loglikelihood``, ``generate``) is what tasks and audits call; the token-level
work is in ``harness.scoring``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.fingerprint import (  # re-exported: the loaders' callers name them here
    WEIGHT_PICKLE,
    WEIGHT_SAFE,
    Fingerprint,
    fingerprint_folder,
)

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_LENGTH = 2048  # as lm-evaluation-harness when the config names none

PICKLE_REFUSED = (
    "{what} '{path}' has only pickle weights ({files}); refusing to load them because "
    "unpickling can run arbitrary code. Convert them to safetensors, or {opt_in} if you "
    "trust the file"
)
OPT_IN_RUN = "pass --allow-pickle"
OPT_IN_TRAINING = "set base_model.allow_pickle: true in the config"
NOT_FOUND = "{what} '{path}' is not a folder here, and loading it as a hub id failed: {reason}"
PICKLE_UNREADABLE = (
    "{what} '{path}': cannot load the pickle weights {files}: {reason} (pickle weights load "
    "with torch.load(weights_only=True), which reads tensors only and refuses anything else)"
)
PICKLE_ENDS_EARLY = "the file is empty or ends early"


# What transformers, peft and safetensors raise for files they cannot use: unreadable
# or inconsistent files (OSError, ValueError, KeyError), weights that do not fit the
# config (RuntimeError: size mismatch), a damaged safetensors header (SafetensorError).
LOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, RuntimeError)
# What torch.load(weights_only=True) raises for a pickle it refuses or cannot read (a
# global outside its allow-list, an unknown opcode, a truncated file).
PICKLE_ERRORS: tuple[type[BaseException], ...] = (pickle.UnpicklingError, EOFError)
try:
    from safetensors import SafetensorError

    LOAD_ERRORS += (SafetensorError,)
except ImportError:  # pragma: no cover - safetensors is a dependency
    pass


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from and how it may be loaded (mirrors the suite's `model`)."""

    path: str
    adapter: str | None = None
    allow_pickle: bool = False
    trust_remote_code: bool = False
    dtype: str = "float32"
    device: str = "auto"
    max_length: int | None = None
    allow_base_mismatch: bool = False


def check_weights(folder: Path, *, what: str, allow_pickle: bool, opt_in: str = OPT_IN_RUN) -> None:
    """Refuse a folder whose weights are only pickle files (unless allowed); ``opt_in``
    says how the user allows them."""
    safe = [p for p in folder.iterdir() if p.suffix in WEIGHT_SAFE]
    pickled = [p.name for p in folder.iterdir() if p.suffix in WEIGHT_PICKLE]
    if not safe and pickled and not allow_pickle:
        raise UserError(
            PICKLE_REFUSED.format(
                what=what, path=folder, files=", ".join(sorted(pickled)), opt_in=opt_in
            )
        )
    if not safe and not pickled:
        raise UserError(f"{what} '{folder}' holds no weight files (*.safetensors)")


def resolve_folder(path: str, *, what: str) -> Path:
    """A local folder as is; otherwise a hub id fetched (or found in the local cache)."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local.resolve()
    if local.exists():
        raise UserError(f"{what} '{path}' is a file; expected a model folder")
    if path.startswith((".", "/", "~")):
        raise UserError(f"{what} '{path}': folder not found")
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                repo_id=path,
                allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.bin"],
            )
        )
    except Exception as exc:  # offline, unknown repo, bad id: all are user errors here
        raise UserError(NOT_FOUND.format(what=what, path=path, reason=_short(exc))) from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def pickle_failure(what: str, path: str, folder: Path, exc: BaseException) -> UserError:
    """The UserError for pickle weights in ``folder`` that torch.load refused or could not
    read, naming the files and torch's reason without its generic preamble."""
    files = ", ".join(sorted(p.name for p in folder.iterdir() if p.suffix in WEIGHT_PICKLE))
    lines = [line.strip() for line in str(exc).splitlines()[1:]]
    useful = [
        line.removeprefix("WeightsUnpickler error:").strip()
        for line in lines
        if line and not line.startswith(("Please file an issue", "Check the documentation"))
    ]
    reason = next((line for line in useful if line), "")[:300].rstrip(".")
    if isinstance(exc, EOFError) or not reason:
        reason = PICKLE_ENDS_EARLY if isinstance(exc, EOFError) else _short(exc)
    return UserError(PICKLE_UNREADABLE.format(what=what, path=path, files=files, reason=reason))


def pick_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"model.device: {exc}") from None


def resolve_max_length(config: Any, tokenizer: Any, override: int | None) -> int:
    """The context window: explicit override, then the config, then the tokenizer."""
    if override:
        return int(override)
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        return tok_max
    return DEFAULT_MAX_LENGTH


@dataclass
class LanguageModel:
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
    _model: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _load_model: Callable[[], Any] | None = field(default=None, repr=False)
    _load_tokenizer: Callable[[], Any] | None = field(default=None, repr=False)
    _adapter_off: bool = field(default=False, repr=False)
    cache: Any = field(default=None, repr=False)
    """A harness.cache.ResponseCache: scoring answers are looked up there first."""
    group: Any = field(default=None, repr=False)
    """A harness.distributed.ProcessGroup: scoring is shared among its processes."""
    load_s: float = field(default=0.0, repr=False)
    """Seconds spent loading weights and tokenizer so far."""
    adapter_base: dict[str, Any] | None = None
    """The adapter's recorded base against the base in use (harness.adapter_base)."""

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
        return {"max_length": self.max_length, "dtype": self.dtype_name}

    @property
    def fingerprint(self) -> str:
        """Identity of what currently computes: base alone when the adapter is off."""
        if self.adapter is None or self._adapter_off:
            return self.base.digest
        return hashlib.sha256(f"{self.base.digest}+{self.adapter.digest}".encode()).hexdigest()

    @property
    def prefix_token(self) -> int:
        """Token that conditions the first token of a text (BOS, else EOS, as lm-eval)."""
        tok = self.tokenizer
        if tok.bos_token_id is not None:
            return int(tok.bos_token_id)
        return int(tok.eos_token_id)

    @property
    def pad_token(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return int(pad if pad is not None else 0)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def text_tokens(self, text: str) -> list[int]:
        """Tokens of a text scored from its start: without the BOS that some tokenizers
        put first (Llama's, a BERT's [CLS]), as the prefix token conditions the first."""
        tokens = self.encode(text)
        return tokens[1:] if tokens and tokens[0] == self.prefix_token else tokens

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """Run the base model: the same weights with the adapter switched off (no copy).

        Only a flag here (the weights may not be loaded yet): every computation runs
        inside ``computing``, which switches the adapter off while the flag is set.
        """
        if not self.has_adapter:
            yield
            return
        self._adapter_off = True
        try:
            yield
        finally:
            self._adapter_off = False

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

    def _score(self, rows: Sequence[Any], batch_size: int) -> list[Any]:
        """``harness.scoring.score_rows`` on the model as it currently computes."""
        from harness.scoring import score_rows

        with self.computing() as model:
            return score_rows(
                model,
                rows,
                batch_size=batch_size,
                pad_token=self.pad_token,
                device=self.device,
                group=self.group,
            )

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Tokens of context and continuation, as lm-eval splits them.

        Trailing whitespace of the context moves to the continuation, the pair is
        encoded whole and split at the length of the encoded context.
        """
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        if not context:
            return [self.prefix_token], self.text_tokens(continuation)
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx) :]

    def loglikelihood(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, bool, int]]:
        """(sum log-prob, greedy?, n tokens) of each continuation given its context."""
        from harness.cache import cached_map

        def compute(indices: list[int]) -> list[Any]:
            from harness.scoring import continuation_row  # torch: only on misses

            rows = []
            for i in indices:
                context, continuation = pairs[i]
                ctx, cont = self.encode_pair(context, continuation)
                if not cont:
                    raise UserError(f"continuation {continuation!r} encodes to no tokens")
                rows.append(continuation_row(ctx, cont, self.max_length))
            scores = self._score(rows, batch_size)
            return [[s.logprob, s.greedy, s.n_targets] for s in scores]

        settings = self.request_settings
        answers = cached_map(
            self.cache,
            self.fingerprint,
            "loglikelihood",
            [{"context": c, "continuation": t, **settings} for c, t in pairs],
            compute,
            chunk=batch_size * 8,
            size=lambda i: len(pairs[i][0]) + len(pairs[i][1]),
            advance=advance,
            group=self.group,
        )
        return [(float(a[0]), bool(a[1]), int(a[2])) for a in answers]

    def rolling_loglikelihood(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, int]]:
        """(sum log-prob, n tokens) of each whole text, every token scored once."""
        from harness.cache import cached_map

        def compute(indices: list[int]) -> list[Any]:
            from harness.scoring import windows_for_rolling

            rows = []
            owner = []
            for t in indices:
                windows = windows_for_rolling(
                    self.text_tokens(texts[t]), self.prefix_token, self.max_length
                )
                rows.extend(windows)
                owner.extend([t] * len(windows))
            scores = self._score(rows, batch_size)
            totals = dict.fromkeys(indices, 0.0)
            counts = dict.fromkeys(indices, 0)
            for t, s in zip(owner, scores, strict=True):
                totals[t] += s.logprob
                counts[t] += s.n_targets
            return [[totals[t], counts[t]] for t in indices]

        settings = self.request_settings
        answers = cached_map(
            self.cache,
            self.fingerprint,
            "rolling_loglikelihood",
            # "bos": the BOS a tokenizer adds is the prefix, not a target (answers cached
            # before that rule lack the field, so they are not reused)
            [{"text": text, "bos": "prefix", **settings} for text in texts],
            compute,
            chunk=batch_size * 4,
            size=lambda i: len(texts[i]),
            advance=advance,
            group=self.group,
        )
        return [(float(a[0]), int(a[1])) for a in answers]

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Greedy continuations, cut at the first stop string."""
        from harness.cache import cached_map

        def compute(indices: list[int]) -> list[Any]:
            from harness.generation import greedy_generate

            with self.computing():
                return greedy_generate(
                    self,
                    [prompts[i] for i in indices],
                    max_new_tokens=max_new_tokens,
                    stop=stop,
                    batch_size=batch_size,
                    group=self.group,
                )

        settings = self.request_settings
        request = {"max_new_tokens": max_new_tokens, "stop": list(stop), **settings}
        answers = cached_map(
            self.cache,
            self.fingerprint,
            "generate",
            [{"prompt": p, **request} for p in prompts],
            compute,
            chunk=batch_size * 4,
            size=lambda i: len(prompts[i]),
            advance=advance,
            group=self.group,
        )
        return [str(a) for a in answers]


def max_length_from_files(folder: Path) -> int | None:
    """The context window as ``resolve_max_length`` finds it, read from config.json
    without loading anything; None when it does not say (then the loaded config and
    tokenizer decide)."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def pick_device_name(name: str) -> Any:
    """``pick_device`` without importing torch when the name is explicit."""
    import re

    if re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        return name
    return pick_device(name)


def load_model(source: ModelSource) -> LanguageModel:
    """Check ``source`` and return its model; weights and tokenizer load on first use.

    Paths, weight files, dtype and device are checked here; a file that cannot be
    loaded is reported (as a UserError) when first used.
    """
    folder = resolve_folder(source.path, what="model")
    check_weights(folder, what="model", allow_pickle=source.allow_pickle)
    if source.dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"model.dtype: unknown dtype '{source.dtype}'")
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
        from harness.adapter_base import check_base, compare_base

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
        dtype_name=f"torch.{source.dtype}",
        _load_model=lambda: _load_weights(source, folder, adapter_folder, device),
        _load_tokenizer=lambda: _load_tokenizer(source, tok_folder),
    )
    lm.max_length = (
        source.max_length
        or max_length_from_files(folder)
        or resolve_max_length(lm.model.config, lm.tokenizer, None)
    )
    return lm


def _load_tokenizer(source: ModelSource, tok_folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(tok_folder, trust_remote_code=source.trust_remote_code)
    except LOAD_ERRORS as exc:
        raise UserError(f"model '{source.path}': cannot load: {_short(exc)}") from None


def _load_weights(
    source: ModelSource, folder: Path, adapter_folder: Path | None, device: Any
) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=getattr(torch, source.dtype),
            use_safetensors=None if source.allow_pickle else True,  # None: safetensors first
            trust_remote_code=source.trust_remote_code,
        )
    except PICKLE_ERRORS as exc:
        raise pickle_failure("model", source.path, folder, exc) from None
    except LOAD_ERRORS as exc:
        raise UserError(f"model '{source.path}': cannot load: {_short(exc)}") from None
    if adapter_folder is not None:
        try:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter_folder, is_trainable=False)
        except PICKLE_ERRORS as exc:
            raise pickle_failure("adapter", str(source.adapter), adapter_folder, exc) from None
        except LOAD_ERRORS as exc:
            raise UserError(f"adapter '{source.adapter}': cannot load: {_short(exc)}") from None
    model.to(device)
    model.eval()
    from harness.scoring import fuse_activations

    fuse_activations(model)
    return model


def load_for_training(source: ModelSource) -> tuple[Any, Any, Fingerprint]:
    """(model, tokenizer, base fingerprint) of a base model to fine-tune.

    The same rules as ``load_model`` (safetensors only unless allowed, remote code only
    when asked, every failure a UserError), but the model stays on the CPU in train mode
    for the Trainer to place, and a tokenizer without a padding token pads with EOS.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_folder(source.path, what="base model")
    check_weights(
        folder, what="base model", allow_pickle=source.allow_pickle, opt_in=OPT_IN_TRAINING
    )
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        source.dtype
    )
    if dtype is None:
        raise UserError(f"model.dtype: unknown dtype '{source.dtype}'")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=dtype,
            use_safetensors=None if source.allow_pickle else True,  # None: safetensors first
            trust_remote_code=source.trust_remote_code,
        )
        tokenizer = AutoTokenizer.from_pretrained(
            folder, trust_remote_code=source.trust_remote_code
        )
    except PICKLE_ERRORS as exc:
        raise pickle_failure("base model", source.path, folder, exc) from None
    except LOAD_ERRORS as exc:
        raise UserError(f"base model '{source.path}': cannot load: {_short(exc)}") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise UserError(f"base model '{source.path}': the tokenizer has no EOS or pad token")
        tokenizer.pad_token = tokenizer.eos_token
    model.train()
    return model, tokenizer, fingerprint_folder(folder, allow_pickle=source.allow_pickle)
