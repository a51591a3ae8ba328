"""The vLLM backend: the scoring API on vLLM's engine, in this process.

``load_vllm(source)`` checks the folders and fingerprints them as the transformers
backend does (``harness.model.language_model.load_model``), so provenance names the same
files; the engine (``vllm.LLM``) is built on the first request the response cache cannot
answer, and a re-run answered from the cache never imports vLLM. vLLM is an optional
extra (``pip install 'llm-release-harness[vllm]'``, written against vLLM 0.32.0, the
release built on this project's torch); without it the first request is a UserError.

Every request goes to vLLM as token ids (``TokensPrompt``) made by the tokenizer rules
all backends share (``harness.model.tokenized``), so the two backends score the same
tokens:

* a scored row (``harness.model.scoring.ScoreRow``, the hf backend's windows) is the
  prompt ``tokens + [last target]``, asked with ``prompt_logprobs=1``: the engine
  returns each prompt token's log-probability and rank given the tokens before it; the
  row's targets are the last ``len(targets)`` prompt tokens, their log-probabilities
  summed, and greedy means every one of them ranked first;
* generation is greedy (``temperature=0``) with ``max_tokens``, the stop strings and
  the end tokens (EOS, a stop that is one special token); the text is decoded here from
  the token ids up to the first end token and cut at the first stop string, as the hf
  backend does (``harness.model.generation``);
* an adapter is a ``LoRARequest`` on each request; inside ``adapter_disabled`` requests
  go without it (the base model, the same engine).

vLLM needs a prompt shorter than its ``max_model_len`` (the model's window) and a
scored prompt carries its last target too, so this backend scores with a window of
``max_model_len - 2`` tokens (``max_length``): rows inside it are scored exactly as the
hf backend scores them; a row at the edge keeps two context tokens fewer. The cache
keys say ``backend: vllm``, so vLLM's answers never stand in for transformers' ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.model.files import (
    DEFAULT_MAX_LENGTH,
    ModelSource,
    check_weights,
    load_tokenizer,
    max_length_from_files,
    resolve_folder,
)
from harness.model.fingerprint import Fingerprint, fingerprint_folder
from harness.model.loading import resolve_dtype
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
    from harness.model.scoring import ScoreRow

VLLM_VERSION = "0.32.0"
"""The vLLM release this backend is written and tested against (the ``vllm`` extra)."""
NO_VLLM = "backend vllm needs vLLM: pip install 'llm-release-harness[vllm]' (a GPU)"
NO_GROUP = (
    "backend vllm runs in one process and spreads a model over GPUs itself "
    "(model.vllm.tensor_parallel_size); run `harness run` once, not under a launcher "
    "of {size} processes"
)
ENGINE_FAILED = "model '{path}': vLLM could not start its engine: {reason}"
NO_8BIT = (
    "model.quantization: backend vllm quantizes in 4 bits only (bitsandbytes); "
    "remove bits: 8 or use backend hf"
)
RANK_TOO_HIGH = (
    "adapter '{adapter}' has LoRA rank r={rank}, above model.vllm.max_lora_rank {limit}; raise it"
)
SPARE_POSITIONS = 2
"""Window positions this backend leaves free: vLLM wants a prompt shorter than its
max_model_len, and a scored prompt carries its last target."""
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ``max_lora_rank`` values vLLM's engine accepts."""
LORA_NAME = "adapter"
LORA_ID = 1
ENGINE_DEFAULTS: dict[str, Any] = {
    "tensor_parallel_size": 1,
    "gpu_memory_utilization": 0.9,
    "max_lora_rank": 16,
    "enforce_eager": False,
}


@dataclass
class VllmModel(TokenizedModel):
    """A model run by vLLM's engine (see the module docstring); built by ``load_vllm``."""

    source: ModelSource
    folder: Path
    max_length: int
    base: Fingerprint
    dtype: str
    engine_settings: dict[str, Any]
    """vllm.LLM's engine arguments besides model, tokenizer and dtype."""
    tokenizer_folder: Path
    adapter_folder: Path | None = None
    adapter: Fingerprint | None = None
    adapter_base: dict[str, Any] | None = None
    quantization: str | None = None
    load_s: float = 0.0
    device: str = "cuda"
    _engine: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _adapter_off: bool = field(default=False, repr=False)
    _longest_token: int = field(default=0, repr=False)
    _cuts: dict[tuple[int, str], int] = field(default_factory=dict, repr=False)

    # -- what the model is ---------------------------------------------------------------

    @property
    def has_adapter(self) -> bool:
        return self.adapter_folder is not None

    @property
    def fingerprint(self) -> str:
        """The hf backend's identity of the same files: base alone when the adapter is off."""
        if self.adapter is None or self._adapter_off:
            return self.base.digest
        return hashlib.sha256(f"{self.base.digest}+{self.adapter.digest}".encode()).hexdigest()

    @property
    def request_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "max_length": self.max_length,
            "dtype": self.dtype,
            "backend": "vllm",
        }
        if self.quantization is not None:
            settings["quantization"] = self.quantization
        return settings

    @property
    def loading(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"backend": "vllm", "dtype": self.dtype}
        settings.update(self.engine_settings)
        if self.quantization is not None:
            settings["quantization"] = self.quantization
        return settings

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            t = time.perf_counter()
            self._tokenizer = load_tokenizer(self.source, self.tokenizer_folder)
            self.load_s += time.perf_counter() - t
        return self._tokenizer

    @property
    def weights_loaded(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Any:
        """The ``vllm.LLM``, built on first access (loads the weights)."""
        if self._engine is None:
            t = time.perf_counter()
            self._engine = self._build_engine()
            self.load_s += time.perf_counter() - t
        return self._engine

    def _build_engine(self) -> Any:
        try:
            import vllm
        except ImportError:
            raise UserError(NO_VLLM) from None
        kwargs: dict[str, Any] = {
            "model": str(self.folder),
            "tokenizer": str(self.tokenizer_folder),
            "dtype": self.dtype,
            "max_model_len": self.max_length + SPARE_POSITIONS,
            "trust_remote_code": self.source.trust_remote_code,
            "seed": 0,
            "enable_lora": self.has_adapter,
            **{k: v for k, v in self.engine_settings.items() if k != "max_model_len"},
        }
        if not self.has_adapter:
            kwargs.pop("max_lora_rank")
        if self.quantization is not None:
            kwargs["quantization"] = self.quantization
        try:
            return vllm.LLM(**kwargs)
        except UserError:
            raise
        except Exception as exc:  # no GPU, out of memory, an architecture vLLM lacks
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise UserError(ENGINE_FAILED.format(path=self.source.path, reason=reason)) from None

    def lora_request(self) -> Any:
        """The LoRARequest every request carries (None: the base model computes)."""
        if self.adapter_folder is None or self._adapter_off:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(LORA_NAME, LORA_ID, str(self.adapter_folder))

    def _run(self, prompts: list[list[int]], **sampling: Any) -> list[Any]:
        """``LLM.generate`` on token-id prompts with ``SamplingParams(**sampling)``, with
        the adapter when it is on."""
        engine = self.engine  # first: without vLLM this is the UserError saying so
        from vllm import SamplingParams, TokensPrompt

        return list(
            engine.generate(
                [TokensPrompt(prompt_token_ids=p) for p in prompts],
                SamplingParams(**sampling),
                use_tqdm=False,
                lora_request=self.lora_request(),
            )
        )

    # -- scoring -------------------------------------------------------------------------

    def score(self, rows: Sequence[ScoreRow]) -> list[tuple[float, bool, int]]:
        """(sum log-prob, greedy?, n targets) of each row, from the engine's prompt
        log-probabilities (rows with the same tokens are asked once)."""
        prompts: dict[tuple[int, ...], int] = {}
        for row in rows:
            if not row.targets or len(row.targets) > len(row.tokens):
                raise ValueError("a row scores between 1 and len(tokens) targets")
            prompts.setdefault((*row.tokens, row.targets[-1]), len(prompts))
        outputs = []
        if prompts:
            outputs = self._run(  # detokenize=False: no text of the logprobs' tokens
                [list(p) for p in prompts],
                temperature=0.0,
                max_tokens=1,
                prompt_logprobs=1,
                detokenize=False,
            )
        scores = []
        for row in rows:
            prompt = (*row.tokens, row.targets[-1])
            positions = outputs[prompts[prompt]].prompt_logprobs
            n = len(row.targets)
            total, greedy = 0.0, True
            for at in range(len(prompt) - n, len(prompt)):
                entry = positions[at][prompt[at]]
                total += float(entry.logprob)
                greedy = greedy and entry.rank == 1
            scores.append((total, greedy, n))
        return scores

    def loglikelihood(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, bool, int]]:
        """(sum log-prob, greedy?, n tokens) of each continuation given its context,
        tokenized and cut to the window as the hf backend does."""
        requests = loglikelihood_requests(self, pairs, batch_size)

        def compute(indices: list[int]) -> list[Any]:
            from harness.model.scoring import continuation_row

            rows = []
            for i in indices:
                body = requests.bodies[i]
                ctx, cont = self.encode_pair(body["context"], body["continuation"])
                if not cont:
                    raise UserError(f"continuation {body['continuation']!r} encodes to no tokens")
                rows.append(continuation_row(ctx, cont, self.max_length))
            return [list(s) for s in self.score(rows)]

        answers = requests.answer(self.fingerprint, compute, advance=advance)
        return [as_loglikelihood(a) for a in answers]

    def rolling_loglikelihood(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, int]]:
        """(sum log-prob, n tokens) of each whole text, in the hf backend's windows."""
        requests = rolling_requests(self, texts, batch_size)

        def compute(indices: list[int]) -> list[Any]:
            from harness.model.scoring import rolling_totals

            return rolling_totals(
                indices,
                lambda t: self.text_tokens(texts[t]),
                self.prefix_token,
                self.max_length,
                lambda rows: [(lp, n) for lp, _, n in self.score(rows)],
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
        """Greedy continuations, cut at the first stop string; a prompt keeps its last
        ``max_length - max_new_tokens`` tokens, as with the hf backend."""
        requests = generate_requests(
            self, prompts, max_new_tokens=max_new_tokens, stop=stop, batch_size=batch_size
        )
        budget = max(1, self.max_length - max_new_tokens)

        def compute(indices: list[int]) -> list[Any]:
            from harness.model.generation import cut_at_stop, end_tokens

            tok = self.tokenizer
            ends = end_tokens(tok, stop)
            encoded = [
                self.encode(requests.bodies[i]["prompt"])[-budget:] or [self.prefix_token]
                for i in indices
            ]
            outputs = self._run(
                encoded,
                temperature=0.0,
                max_tokens=max_new_tokens,
                stop=list(stop) or None,
                stop_token_ids=sorted(ends) or None,
            )
            texts = []
            for output in outputs:
                ids = list(output.outputs[0].token_ids)
                cut = next((k for k, t in enumerate(ids) if t in ends), len(ids))
                text = tok.decode(ids[:cut], skip_special_tokens=True)
                texts.append(cut_at_stop(text, stop))
            return texts

        answers = requests.answer(self.fingerprint, compute, advance=advance)
        return [str(a) for a in answers]


def load_vllm(source: ModelSource, *, group: ProcessGroup | None = None) -> VllmModel:
    """Check ``source`` and return its vLLM model; the engine starts on first use.

    Folders, weights, dtype and the adapter's base are checked here as for the hf
    backend (``harness.model.language_model.load_model``); vLLM itself is needed only
    when a request reaches the engine. Several processes are refused: vLLM spreads one
    model over GPUs itself (``tensor_parallel_size``)."""
    if group is not None and group.size > 1:
        raise UserError(NO_GROUP.format(size=group.size))
    folder = resolve_folder(source.path, what="model")
    check_weights(folder, what="model", allow_pickle=source.allow_pickle)
    if source.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise UserError(f"model.dtype: unknown dtype '{source.dtype}'")
    dtype = resolve_dtype(source.dtype, folder)
    quantization = None
    if source.quantization is not None:
        if source.quantization.get("bits") == 8:
            raise UserError(NO_8BIT)
        quantization = "bitsandbytes"
    engine = {**ENGINE_DEFAULTS, **(source.vllm or {})}
    engine["max_lora_rank"] = next(
        (r for r in LORA_RANKS if r >= int(engine["max_lora_rank"])), LORA_RANKS[-1]
    )
    adapter_folder = adapter = adapter_base = None
    if source.adapter:
        adapter_folder = resolve_folder(source.adapter, what="adapter")
        check_weights(adapter_folder, what="adapter", allow_pickle=source.allow_pickle)
        _check_rank(adapter_folder, source.adapter, int(engine["max_lora_rank"]))
    base = fingerprint_folder(folder, allow_pickle=source.allow_pickle)
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
        adapter = fingerprint_folder(adapter_folder, allow_pickle=source.allow_pickle)
    if source.tokenizer:
        tok_folder = resolve_folder(source.tokenizer, what="tokenizer")
    elif adapter_folder is not None and (adapter_folder / "tokenizer_config.json").exists():
        tok_folder = adapter_folder
    else:
        tok_folder = folder
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    window = source.max_length or max_length_from_files(folder) or DEFAULT_MAX_LENGTH
    if window <= SPARE_POSITIONS + 1:
        raise UserError(f"model.max_length: backend vllm needs more than {window} tokens")
    engine["max_model_len"] = window
    return VllmModel(
        source=source,
        folder=folder,
        max_length=window - SPARE_POSITIONS,
        base=base,
        dtype=dtype,
        engine_settings=engine,
        tokenizer_folder=tok_folder,
        adapter_folder=adapter_folder,
        adapter=adapter,
        adapter_base=adapter_base,
        quantization=quantization,
    )


def _check_rank(adapter_folder: Path, adapter: str, limit: int) -> None:
    """Refuse an adapter whose LoRA rank the engine would not take (its config's ``r``)."""
    try:
        config = json.loads((adapter_folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # peft reports a missing or broken config when the engine loads it
    rank = config.get("r") if isinstance(config, dict) else None
    if isinstance(rank, int) and rank > limit:
        raise UserError(RANK_TOO_HIGH.format(adapter=adapter, rank=rank, limit=limit))
