"""Where a model comes from and how its files load: the rules of ``harness.model.language_model``.

Paths and hub ids resolve to folders; weights load from safetensors only, pickle files
(``.bin``, ``.pt``) only when the user opts in (unpickling runs arbitrary code), and then
through torch's restricted unpickler; remote code is never enabled implicitly. Every
file that cannot be used is a UserError naming it. ``harness.model.language_model`` builds the scoring
model on these loaders, and ``load_for_training`` serves the fine-tuner by the same
rules.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.model.fingerprint import WEIGHT_PICKLE, WEIGHT_SAFE, Fingerprint, fingerprint_folder

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
    device_map: str | dict[str, Any] | None = None
    """accelerate's device map (``auto`` or {module: device}); None: all on ``device``."""
    max_memory: dict[Any, str] | None = None
    offload_folder: str | None = None
    attn_implementation: str | None = None
    quantization: dict[str, Any] | None = None
    """bitsandbytes settings: {bits, quant_type, double_quant, compute_dtype}."""
    backend: str = "hf"
    """hf | openai-completions | openai-chat | vllm (harness.config.backends)."""
    endpoint: dict[str, Any] | None = None
    """A served model's server: {base_url, api_key_env, concurrency, timeout_s,
    max_retries}; never the key itself."""
    tokenizer: str | None = None
    """A served model's tokenizer folder or hub id (None: the model's own)."""
    vllm: dict[str, Any] | None = None
    """vLLM engine settings."""

    @classmethod
    def from_config(cls, model: Any) -> ModelSource:
        """The source a suite's ``model`` section names (``harness.config.suite``)."""
        return cls(
            path=str(model.path),
            adapter=str(model.adapter) if model.adapter else None,
            allow_pickle=model.allow_pickle,
            trust_remote_code=model.trust_remote_code,
            device=model.device,
            max_length=model.max_length,
            allow_base_mismatch=model.allow_base_mismatch,
            **model.loading_options(),
            **model.backend_options(),
        )


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


def tokenizer_of(source: ModelSource) -> Any:
    """The tokenizer a run of ``source`` uses (the adapter's when it ships one), loaded
    without the weights: what a chat template is read from before any model loads."""
    folder = resolve_folder(source.path, what="model")
    if source.adapter:
        adapter = resolve_folder(source.adapter, what="adapter")
        if (adapter / "tokenizer_config.json").exists():
            folder = adapter
    return load_tokenizer(source, folder)


def load_tokenizer(source: ModelSource, tok_folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(tok_folder, trust_remote_code=source.trust_remote_code)
    except LOAD_ERRORS as exc:
        raise UserError(f"model '{source.path}': cannot load: {_short(exc)}") from None


def load_weights(
    source: ModelSource, folder: Path, adapter_folder: Path | None, device: Any, dtype: str
) -> Any:
    """The model of ``source`` (its dtype resolved to ``dtype``), in eval mode: on
    ``device`` as a whole, or where its device map (or quantization) placed it."""
    from transformers import AutoModelForCausalLM

    from harness.model.loading import placed, pretrained_kwargs

    kwargs = pretrained_kwargs(source, dtype, device)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
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
    if not placed(source):
        model.to(device)
    model.eval()
    from harness.model.scoring import fuse_activations

    fuse_activations(model)
    return model


def training_device() -> Any:
    """Where this process trains: its GPU under a launcher (``LOCAL_RANK``), the first
    GPU, else the CPU (what the Trainer would pick; a quantized base is placed there as
    it loads)."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
    return pick_device("auto")


def load_for_training(source: ModelSource) -> tuple[Any, Any, Fingerprint]:
    """(model, tokenizer, base fingerprint) of a base model to fine-tune.

    The same rules and loading options as ``load_model`` (safetensors only unless
    allowed, remote code only when asked, dtype, device map, quantization: every
    failure a UserError), but an unplaced model stays on the CPU in train mode for the
    Trainer to place, and a tokenizer without a padding token pads with EOS.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.model.loading import pretrained_kwargs, resolve_dtype

    folder = resolve_folder(source.path, what="base model")
    check_weights(
        folder, what="base model", allow_pickle=source.allow_pickle, opt_in=OPT_IN_TRAINING
    )
    if source.dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise UserError(f"model.dtype: unknown dtype '{source.dtype}'")
    kwargs = pretrained_kwargs(source, resolve_dtype(source.dtype, folder), training_device())
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
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
