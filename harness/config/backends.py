"""Where a suite's model runs: the backend and its settings (schema).

``hf`` loads a checkpoint with transformers (the loading options of
harness.config.loading apply); ``openai-completions`` and ``openai-chat`` ask a running
OpenAI-compatible server (vLLM, TGI, llama.cpp's server) for the model it serves;
``vllm`` runs vLLM's engine in this process. For a served model ``path`` is the name
the server serves the base under and ``adapter`` the name of a LoRA it serves beside it
(vLLM's ``--lora-modules``): the forgetting audit's base model is then the same server
asked for ``path``. ``CAPABILITIES`` says what each backend computes
(harness.config.capabilities refuses a suite that asks a backend for more); the
backends themselves are in harness.model (harness.model.served for the servers).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from harness.config.schema_base import StrictModel

BACKENDS = ("hf", "openai-completions", "openai-chat", "vllm")
SERVED = ("openai-completions", "openai-chat")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")

# user-facing messages (tests assert them exactly)
BAD_URL = "must be an http:// or https:// URL such as http://127.0.0.1:8000/v1, got {value!r}"
BAD_ENV = "must be the NAME of an environment variable holding the key (e.g. OPENAI_API_KEY)"
NEEDS_ENDPOINT = "backend {backend} needs endpoint: {{base_url: ...}}"
ONLY_FOR = "applies to backend {backends} only (this model's backend is {backend})"


class EndpointSpec(StrictModel):
    """An OpenAI-compatible server (backend openai-completions or openai-chat)."""

    base_url: str
    """The API's base URL, ending before `/completions`, e.g. http://127.0.0.1:8000/v1."""
    api_key_env: str | None = None
    """The NAME of the environment variable holding the API key, sent as a bearer
    token. The key itself is never written to results, cache keys or logs, and a suite
    cannot hold it."""
    concurrency: int = Field(default=4, ge=1, le=256)
    """Requests in flight at once."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Seconds to wait for one response before it counts as failed (and is retried)."""
    max_retries: int = Field(default=5, ge=0, le=20)
    """Retries of a request that failed with 429, a 5xx status, a timeout or a broken
    connection, after 1, 2, 4, ... seconds (at most 30; a Retry-After header is
    honoured); then the run stops with an error naming the server. Answers received
    before are kept in the response cache, so a re-run resumes."""

    prompt_format: Literal["tokens", "text"] = "tokens"
    """How prompts are sent to /completions: `tokens`, the ids the local tokenizer
    encodes (the server scores exactly the tokens the hf backend scores; vLLM takes
    them), or `text` for a server that takes no token ids: log-likelihoods then split
    context from continuation by the echoed `text_offset`, and perplexity is refused."""
    echo_max_tokens: int = Field(default=1, ge=0, le=16)
    """`max_tokens` of an echo request (log-likelihoods): 1, as lm-eval sends it (vLLM
    refuses 0; llama.cpp's server reads 0 as "until the window is full"); 0 for a server
    that takes it. The prompt is cut to the window less these tokens."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Fields added to every /completions and /chat/completions request, for a server
    whose defaults are not greedy: llama.cpp's server applies `repeat_penalty` 1.1 even
    at temperature 0, so gate it with `{repeat_penalty: 1.0}`. Part of the cache key;
    the fields the backend sets (model, prompt, echo, max_tokens, ...) win."""

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not URL.match(value):
            raise ValueError(BAD_URL.format(value=value))
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(BAD_ENV)
        return value


class VllmSpec(StrictModel):
    """vLLM's engine in this process (backend vllm; `pip install vllm`, a GPU)."""

    tensor_parallel_size: int = Field(default=1, ge=1)
    """GPUs the model is split across."""
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    """Share of each GPU's memory vLLM may take (weights, KV cache)."""
    max_lora_rank: int = Field(default=16, ge=1)
    """The largest LoRA rank the engine accepts (at least the adapter's r)."""
    enforce_eager: bool = False
    """Run without CUDA graphs (slower, starts faster, less memory)."""


Backend = Literal["hf", "openai-completions", "openai-chat", "vllm"]


# --- what each backend can compute (harness.config.capabilities checks suites by it) ---

LOGLIKELIHOODS = "log-likelihoods"
GENERATION = "generation"
CAPABILITIES: dict[str, frozenset[str]] = {
    "hf": frozenset({LOGLIKELIHOODS, GENERATION}),
    "openai-completions": frozenset({LOGLIKELIHOODS, GENERATION}),
    "openai-chat": frozenset({GENERATION}),
    "vllm": frozenset({LOGLIKELIHOODS, GENERATION}),
}
"""The request kinds a backend answers: log-likelihoods (loglikelihood and
rolling_loglikelihood of the scoring API) and greedy generation. A chat API returns
text only: no log-probabilities of a given continuation."""
INSTEAD = {LOGLIKELIHOODS: "use openai-completions"}
"""What to use instead when a backend lacks a capability (shown in the error)."""
