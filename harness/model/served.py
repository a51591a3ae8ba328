"""Served models: the scoring API over an OpenAI-compatible server (vLLM, TGI, llama.cpp).

``load_served(source)`` builds the backend a suite's ``model.backend`` names:

* ``openai-completions`` (``CompletionsModel``): everything. Log-likelihoods come from
  ``/completions`` with ``echo: true`` and ``logprobs: 1``: the server returns the
  log-probability of every prompt token given the ones before it, so a context and its
  continuation are sent as one prompt and the continuation's positions are summed
  (lm-evaluation-harness's ``local-completions`` does the same). Prompts are sent as
  token ids encoded by the local tokenizer (``model.tokenizer``), so the server scores
  exactly the tokens the transformers backend scores, split alike
  (harness.model.tokenized). Greedy generation is ``temperature: 0`` with the stops.
* ``openai-chat`` (``ChatModel``): generation only, each prompt sent as one user
  message to ``/chat/completions`` (the server applies its chat template); asking it
  for log-likelihoods is a UserError naming the capability (a suite that needs them is
  refused when it is validated: harness.config.capabilities).

What identifies the model (fingerprints, cache keys, provenance) is the server's URL,
the served name, what ``GET /models`` reports of it and the tokenizer's files, never the
API key. With an adapter, ``path`` and ``adapter`` are two names on one server (vLLM's
``--lora-modules``); ``adapter_disabled`` sends the requests to ``path``.

Where servers differ the request format is a setting of the endpoint (``prompt_format``:
token ids or text; ``echo_max_tokens``: 1, as lm-eval sends, since vLLM refuses 0 and
llama.cpp reads 0 as "until the window is full"; a server that takes 0 may be given 0).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.model.files import DEFAULT_MAX_LENGTH, ModelSource, load_tokenizer
from harness.model.fingerprint import Fingerprint, fingerprint_folder
from harness.model.http_client import Endpoint, MalformedResponse, ServerClient
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

# user-facing messages (tests assert them)
NO_GROUP = (
    "backend {backend} runs in one process (the server parallelizes the requests: "
    "raise model.endpoint.concurrency instead of launching several processes)"
)
NEEDS_TOKENIZER = (
    "backend {backend} needs model.tokenizer: a local tokenizer folder or hub id of the "
    "served model (to split contexts from continuations and fit prompts to the window)"
)
NOT_SERVED = "server {url} does not serve model '{name}' (it serves: {names})"
NO_CAPABILITY = (
    "backend {backend} cannot compute {what}: it gives no log-likelihoods "
    "(use backend openai-completions)"
)
TEXT_NEEDS_OFFSETS = (
    "server {url}: with model.endpoint.prompt_format: text the echoed log-probabilities "
    "need a text_offset per token, and the server gave none"
)
ROLLING_NEEDS_TOKENS = (
    "backend {backend}: perplexity needs token-id prompts (model.endpoint.prompt_format: "
    "tokens), which the server must accept"
)
TOKENIZER_NOT_FOUND = (
    "model.tokenizer '{path}': not a folder here, and fetching it failed: {reason}"
)

VOLATILE = ("created", "permission")
"""Fields of a ``/models`` entry that change on every call (vLLM stamps the time and a
random id into them): left out of the identity, so a cache survives a restart."""
TOKENIZER_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken"]


@dataclass
class ServedModel(TokenizedModel):
    """What every served backend shares: the client, the names, identity, tokenizer."""

    client: ServerClient
    backend: str
    name: str
    """The name the server serves the base under (``model.path``)."""
    adapter_name: str | None
    base: Fingerprint
    adapter: Fingerprint | None
    max_length: int
    served: dict[str, Any] | None
    """What ``GET /models`` reported of the model (recorded in provenance)."""
    load_s: float = 0.0
    prompt_format: str = "tokens"
    echo_max_tokens: int = 1
    extra_body: dict[str, Any] = field(default_factory=dict)
    """``model.endpoint.extra_body``: fields added to every request (ours win)."""
    _load_tokenizer: Callable[[], Any] | None = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _adapter_off: bool = field(default=False, repr=False)
    _longest_token: int = field(default=0, repr=False)
    _cuts: dict[tuple[int, str], int] = field(default_factory=dict, repr=False)

    @property
    def tokenizer(self) -> Any:  # type: ignore[override]
        if self._tokenizer is None:
            if self._load_tokenizer is None:
                raise UserError(NEEDS_TOKENIZER.format(backend=self.backend))
            t = time.perf_counter()
            self._tokenizer = self._load_tokenizer()
            self.load_s += time.perf_counter() - t
        return self._tokenizer

    @property
    def device(self) -> str:
        return self.client.url

    @property
    def has_adapter(self) -> bool:
        return self.adapter_name is not None

    @property
    def adapter_base(self) -> dict[str, Any] | None:
        return None  # the server decides which base a LoRA runs on

    @property
    def fingerprint(self) -> str:
        if self.adapter is None or self._adapter_off:
            return self.base.digest
        return hashlib.sha256(f"{self.base.digest}+{self.adapter.digest}".encode()).hexdigest()

    @property
    def request_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"max_length": self.max_length, "backend": self.backend}
        if self.extra_body:  # absent when empty: the keys of plain requests stay as they were
            settings["extra_body"] = self.extra_body
        return settings

    @property
    def loading(self) -> dict[str, Any]:
        return {"backend": self.backend, "endpoint": self.client.url, "served": self.served}

    @property
    def model_name(self) -> str:
        """The name requests go to now: the base's inside ``adapter_disabled``."""
        if self.adapter_name is None or self._adapter_off:
            return self.name
        return self.adapter_name

    # -- generation: both backends -------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Greedy continuations (``temperature: 0``), cut at the first stop string here
        too (a server may keep a stop it matched across tokens, or end at EOS only)."""
        from harness.model.generation import cut_at_stop

        requests = generate_requests(
            self, prompts, max_new_tokens=max_new_tokens, stop=stop, batch_size=batch_size
        )

        def compute(indices: list[int]) -> list[Any]:
            bodies = [
                self._generate_body(requests.bodies[i]["prompt"], max_new_tokens, stop)
                for i in indices
            ]
            path = self._generate_path
            texts = self.client.post_many(path, bodies, kind=path.strip("/"), read=self._read_text)
            return [cut_at_stop(t, stop) for t in texts]

        answers = requests.answer(self.fingerprint, compute, advance=advance)
        return [str(a) for a in answers]

    _generate_path = "/completions"

    def _generate_body(
        self, prompt: str, max_new_tokens: int, stop: Sequence[str]
    ) -> dict[str, Any]:
        if self.prompt_format == "tokens":
            budget = max(1, self.max_length - max_new_tokens)
            sent: Any = self.encode(prompt)[-budget:] or [self.prefix_token]
        else:  # the text the window keeps (the server adds its own BOS)
            sent = prompt
        body: dict[str, Any] = {
            "model": self.model_name,
            "prompt": sent,
            "max_tokens": max_new_tokens,
            "temperature": 0,
        }
        if stop:
            body["stop"] = list(stop)
        return {**self.extra_body, **body}

    @staticmethod
    def _read_text(data: Any) -> str:
        try:
            text = data["choices"][0]["text"]
        except (KeyError, IndexError, TypeError):
            raise MalformedResponse("no choices[0].text") from None
        if not isinstance(text, str):
            raise MalformedResponse("choices[0].text is not a string")
        return text


@dataclass
class CompletionsModel(ServedModel):
    """Backend openai-completions: log-likelihoods by echo, greedy generation."""

    def _echo(self, prompts: Sequence[Any]) -> list[Any]:
        """Echo requests of ``prompts`` (token ids; a text is sent as it is)."""
        bodies = [
            self.extra_body
            | {
                "model": self.model_name,
                "prompt": p if isinstance(p, str) else [int(t) for t in p],
                "echo": True,
                "max_tokens": self.echo_max_tokens,
                "logprobs": 1,
                "temperature": 0,
            }
            for p in prompts
        ]
        return self.client.post_many("/completions", bodies, kind="completions", read=_read_echo)

    def _window(self) -> int:
        """The longest echo prompt: the server's window holds it and the tokens asked for."""
        return max(2, self.max_length - self.echo_max_tokens)

    def loglikelihood(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, bool, int]]:
        """(sum log-prob, greedy?, n tokens) of each continuation given its context.

        Context and continuation go as one prompt of at most ``max_length -
        echo_max_tokens`` tokens (left-truncated); the continuation's positions are read
        from the echoed log-probabilities. Greedy: at every continuation position the
        server's top token is the token there, compared as the text the server reports
        (two tokens with the same text, or a tie, can make it differ from an argmax)."""
        requests = loglikelihood_requests(self, pairs, batch_size)

        def compute(indices: list[int]) -> list[Any]:
            if self.prompt_format == "text":
                return self._text_loglikelihood([requests.bodies[i] for i in indices])
            prompts, n_cont = [], []
            for i in indices:
                body = requests.bodies[i]
                ctx, cont = self.encode_pair(body["context"], body["continuation"])
                if not cont:
                    raise UserError(f"continuation {body['continuation']!r} encodes to no tokens")
                whole = (list(ctx) + list(cont))[-self._window() :]
                prompts.append(whole)
                # the first token of a prompt has no log-probability: a continuation
                # that fills the whole window is scored from its second token
                n_cont.append(min(len(cont), len(whole) - 1))
            echoes = self._echo(prompts)
            out = []
            for prompt, n, echo in zip(prompts, n_cont, echoes, strict=True):
                out.append(_continuation_score(echo, len(prompt), n))
            return out

        answers = requests.answer(self.fingerprint, compute, advance=advance)
        return [as_loglikelihood(a) for a in answers]

    def _text_loglikelihood(self, bodies: Sequence[dict[str, Any]]) -> list[Any]:
        """Scores of context + continuation sent as text (``prompt_format: text``, for a
        server that takes no token ids): the server tokenizes, and the continuation is
        the tokens that start at or after the context's end (``text_offset``; trailing
        whitespace of the context moves to the continuation, as ``encode_pair`` does). A token the server merges across the
        boundary counts as context, so a score can differ from the token-id one."""
        texts = [b["context"] + b["continuation"] for b in bodies]
        out = []
        for body, text, echo in zip(bodies, texts, self._echo(texts), strict=True):
            offsets = echo["offsets"]
            if not isinstance(offsets, list) or len(offsets) != len(echo["tokens"]):
                raise UserError(TEXT_NEEDS_OFFSETS.format(url=self.client.url))
            n_prompt = sum(1 for o in offsets if o < len(text))
            start = len(body["context"].rstrip())  # its trailing space goes on, as encode_pair
            n = sum(1 for k, o in enumerate(offsets[:n_prompt]) if k > 0 and o >= start)
            if n == 0:
                raise UserError(f"continuation {body['continuation']!r} encodes to no tokens")
            out.append(_continuation_score(echo, n_prompt, n))
        return out

    def rolling_loglikelihood(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, int]]:
        """(sum log-prob, n tokens) of each whole text: the windows of
        harness.model.scoring.rolling_windows (the first after the prefix token, every
        token scored once), each window one echo request (token ids only: windows of
        text would not cut where the tokens do)."""
        if self.prompt_format != "tokens":
            raise UserError(ROLLING_NEEDS_TOKENS.format(backend=self.backend))
        requests = rolling_requests(self, texts, batch_size)

        def compute(indices: list[int]) -> list[Any]:
            from harness.model.scoring import rolling_windows

            prompts, owners, n_targets = [], [], []
            width = self._window() - 1  # a window's input and its last target fit
            for t in indices:
                tokens = self.text_tokens(texts[t])
                for row in rolling_windows(tokens, self.prefix_token, width):
                    prompts.append([*row.tokens, row.targets[-1]])
                    owners.append(t)
                    n_targets.append(len(row.targets))
            echoes = self._echo(prompts)
            totals = dict.fromkeys(indices, 0.0)
            counts = dict.fromkeys(indices, 0)
            for t, prompt, n, echo in zip(owners, prompts, n_targets, echoes, strict=True):
                logprob, _, _ = _continuation_score(echo, len(prompt), n)
                totals[t] += logprob
                counts[t] += n
            return [[totals[t], counts[t]] for t in indices]

        answers = requests.answer(self.fingerprint, compute, advance=advance)
        return [as_rolling(a) for a in answers]


@dataclass
class ChatModel(ServedModel):
    """Backend openai-chat: generation only, each prompt one user message."""

    _generate_path = "/chat/completions"

    def _generate_body(
        self, prompt: str, max_new_tokens: int, stop: Sequence[str]
    ) -> dict[str, Any]:
        if self._load_tokenizer is not None:  # with a tokenizer the window cut applies
            prompt = self.prompt_tail(prompt, max_new_tokens)[0]
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_new_tokens,
            "temperature": 0,
        }
        if stop:
            body["stop"] = list(stop)
        return {**self.extra_body, **body}

    @staticmethod
    def _read_text(data: Any) -> str:
        try:
            text = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise MalformedResponse("no choices[0].message.content") from None
        if text is None:
            return ""
        if not isinstance(text, str):
            raise MalformedResponse("choices[0].message.content is not a string")
        return text

    def tail(self, text: str, n_tokens: int) -> tuple[str, int]:
        if self._load_tokenizer is None:
            return text, 0  # no tokenizer: the server's window decides
        return super().tail(text, n_tokens)

    def loglikelihood(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, bool, int]]:
        raise UserError(NO_CAPABILITY.format(backend=self.backend, what="log-likelihoods"))

    def rolling_loglikelihood(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, int]]:
        raise UserError(NO_CAPABILITY.format(backend=self.backend, what="perplexity"))


def _read_echo(data: Any) -> dict[str, Any]:
    """The echoed log-probabilities of a completions answer (checked, not interpreted)."""
    try:
        logprobs = data["choices"][0]["logprobs"]
        token_logprobs = logprobs["token_logprobs"]
        tokens = logprobs["tokens"]
    except (KeyError, IndexError, TypeError):
        raise MalformedResponse("no choices[0].logprobs.token_logprobs and tokens") from None
    if not isinstance(token_logprobs, list) or not isinstance(tokens, list):
        raise MalformedResponse("choices[0].logprobs.token_logprobs is not a list")
    top = logprobs.get("top_logprobs") or [None] * len(tokens)
    offsets = logprobs.get("text_offset")
    return {"token_logprobs": token_logprobs, "tokens": tokens, "top": top, "offsets": offsets}


def _continuation_score(echo: dict[str, Any], n_prompt: int, n: int) -> list[Any]:
    """[sum log-prob, greedy?, n] of the last ``n`` of the ``n_prompt`` echoed tokens."""
    logprobs, tokens, top = echo["token_logprobs"], echo["tokens"], echo["top"]
    if len(logprobs) < n_prompt or len(tokens) < n_prompt or len(top) < n_prompt:
        raise UserError(
            f"the server echoed {len(logprobs)} log-probabilities for a prompt of {n_prompt} "
            "tokens (does it take token-id prompts? see model.endpoint.prompt_format)"
        )
    total, greedy = 0.0, True
    for k in range(n_prompt - n, n_prompt):
        value = logprobs[k]
        if not isinstance(value, int | float):
            raise UserError(f"the server gave no log-probability for prompt token {k}")
        total += float(value)
        best = top[k]
        if not isinstance(best, dict) or not best:
            greedy = False
            continue
        greedy = greedy and max(best, key=lambda t: best[t]) == tokens[k]
    return [total, greedy, n]


def _tokenizer_folder(name: str) -> Path:
    """A local tokenizer folder, or a hub id's tokenizer files (never its weights)."""
    local = Path(name).expanduser()
    if local.is_dir():
        return local.resolve()
    if name.startswith((".", "/", "~")) or local.exists():
        raise UserError(f"model.tokenizer '{name}': folder not found")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, allow_patterns=TOKENIZER_FILES))
    except Exception as exc:  # offline, unknown repo: a user error here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(TOKENIZER_NOT_FOUND.format(path=name, reason=first)) from None


def served_entries(client: ServerClient) -> dict[str, dict[str, Any]]:
    """``GET /models``: what the server serves, by name (without the volatile fields)."""

    def read(data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise MalformedResponse("no data list")
        return data

    listing = client._call("GET", "/models", None, "models", read)
    out = {}
    for entry in listing["data"]:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            out[entry["id"]] = {k: v for k, v in entry.items() if k not in VOLATILE}
    return out


def _identity(
    backend: str, url: str, name: str, entry: dict[str, Any], tokenizer: Fingerprint | None
) -> Fingerprint:
    canonical = json.dumps(
        {
            "backend": backend,
            "base_url": url,
            "model": name,
            "served": entry,
            "tokenizer": tokenizer.digest if tokenizer is not None else None,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    files = tokenizer.files if tokenizer is not None else ()
    return Fingerprint(path=f"{url}#{name}", files=files, digest=digest)


def load_served(
    source: ModelSource,
    group: ProcessGroup | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> CompletionsModel | ChatModel:
    """The served model ``source`` names (backend openai-completions or openai-chat):
    asks the server what it serves (``GET /models``); the tokenizer loads on first use."""
    backend = source.backend
    if group is not None:
        raise UserError(NO_GROUP.format(backend=backend))
    t = time.perf_counter()
    settings = dict(source.endpoint or {})
    client = ServerClient(Endpoint.from_dict(settings), sleep=sleep)
    entries = served_entries(client)
    for name in (source.path, source.adapter):
        if name is not None and name not in entries:
            shown = ", ".join(sorted(entries)) or "nothing"
            raise UserError(NOT_SERVED.format(url=client.url, name=name, names=shown))
    tok_print: Fingerprint | None = None
    load_tok: Callable[[], Any] | None = None
    if source.tokenizer is not None:
        folder = _tokenizer_folder(source.tokenizer)
        tok_print = fingerprint_folder(folder, allow_pickle=False)

        def load_tok() -> Any:
            return load_tokenizer(source, folder)

    elif backend == "openai-completions":
        raise UserError(NEEDS_TOKENIZER.format(backend=backend))
    entry = entries[source.path]
    base = _identity(backend, client.url, source.path, entry, tok_print)
    adapter = None
    if source.adapter is not None:
        adapter = _identity(backend, client.url, source.adapter, entries[source.adapter], tok_print)
    max_length = source.max_length or entry.get("max_model_len") or DEFAULT_MAX_LENGTH
    served = (
        entry if source.adapter is None else {"base": entry, "adapter": entries[source.adapter]}
    )
    cls = CompletionsModel if backend == "openai-completions" else ChatModel
    return cls(
        client=client,
        backend=backend,
        name=source.path,
        adapter_name=source.adapter,
        base=base,
        adapter=adapter,
        max_length=int(max_length),
        served=served,
        load_s=time.perf_counter() - t,
        prompt_format=str(settings.get("prompt_format") or "tokens"),
        echo_max_tokens=int(settings.get("echo_max_tokens", 1)),
        extra_body=dict(settings.get("extra_body") or {}),
        _load_tokenizer=load_tok,
    )
