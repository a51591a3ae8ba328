"""The scoring API: what tasks, audits and the runner ask of a model.

``ScoringModel`` is the contract between the model layer and everything above it. The
transformers backend (``harness.model.language_model.LanguageModel``) implements it, the
response cache wraps any implementation in another (``harness.model.caching``), and
``harness.model.factory.open_model`` builds the composition a run uses. A new backend
implements this Protocol; the cache, the tasks and the audits then work on it unchanged.

Three request kinds carry the work, batched over many inputs (lm-evaluation-harness's
conventions, docs/architecture.md): ``loglikelihood`` of a continuation given a context,
``rolling_loglikelihood`` of whole texts, greedy ``generate``. The rest describes the
model (fingerprints for provenance and cache keys, window, device, load time) or serves
the audits that work on tokens (the privacy audit's extraction test, explainers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from harness.model.fingerprint import Fingerprint

Advance = Callable[[int], None]
"""Progress callback: called with the number of inputs answered since the last call."""


@runtime_checkable
class ScoringModel(Protocol):
    """A model that scores and generates text in batches (see the module docstring).

    ``isinstance(x, ScoringModel)`` checks that every member is present (on Python 3.11
    by reading it, so on a lazily loaded model it loads the tokenizer): meant for tests.
    """

    @property
    def device(self) -> Any:
        """Where the model runs (a device name or a torch.device)."""

    @property
    def max_length(self) -> int:
        """The context window in tokens."""

    @property
    def base(self) -> Fingerprint:
        """Fingerprint of the base model's files."""

    @property
    def adapter(self) -> Fingerprint | None:
        """Fingerprint of the adapter's files (None without an adapter)."""

    @property
    def has_adapter(self) -> bool: ...

    @property
    def adapter_base(self) -> dict[str, Any] | None:
        """The adapter's recorded base against the base in use
        (harness.model.adapter_base; None without an adapter)."""

    @property
    def fingerprint(self) -> str:
        """Identity of what computes now: the base alone inside ``adapter_disabled``."""

    @property
    def request_settings(self) -> dict[str, Any]:
        """Settings besides the fingerprint that change answers (part of cache keys)."""

    @property
    def loading(self) -> dict[str, Any]:
        """How the weights load (harness.model.loading.load_settings): the resolved
        dtype, and placement, quantization and attention kernel when set."""

    @property
    def load_s(self) -> float:
        """Seconds spent loading weights and tokenizer so far."""

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer."""

    @property
    def prefix_token(self) -> int:
        """Token that conditions the first token of a text (BOS, else EOS)."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as the tokenizer encodes it."""

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Tokens of context and continuation, split as ``loglikelihood`` scores them."""

    def context_tail(self, context: str) -> tuple[str, int]:
        """(what the window keeps of a log-likelihood context, characters cut before it)."""

    def prompt_tail(self, prompt: str, max_new_tokens: int) -> tuple[str, int]:
        """(what the window keeps of a generation prompt, characters cut before it)."""

    def adapter_disabled(self) -> AbstractContextManager[None]:
        """Inside: the base model computes (the adapter switched off, no copy)."""

    def loglikelihood(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int = 8,
        advance: Advance | None = None,
    ) -> list[tuple[float, bool, int]]:
        """(sum log-prob, greedy?, n tokens) of each continuation given its context."""

    def rolling_loglikelihood(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 8,
        advance: Advance | None = None,
    ) -> list[tuple[float, int]]:
        """(sum log-prob, n tokens) of each whole text, every token scored once."""

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        batch_size: int = 8,
        advance: Advance | None = None,
    ) -> list[str]:
        """Greedy continuations, cut at the first stop string."""
