"""A ModelSource's loading options as ``from_pretrained`` takes them.

The suite's ``model`` and the fine-tune config's ``base_model`` share these options
(harness.config.loading); the loaders of ``harness.model.files`` call
``pretrained_kwargs`` so that evaluation and training load a checkpoint alike. What
changes the numbers (dtype, quantization, attention kernel, placement) is also named by
``load_settings``, which the response cache keys and provenance record: ``dtype: auto``
is resolved from the checkpoint's files first, so a key never says "auto".
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError

if TYPE_CHECKING:
    from harness.model.files import ModelSource

# safetensors header dtypes -> torch dtype names (floating types only)
_SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float32"}
_CONFIG_DTYPES = {
    "float32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "float16": "float16",
    "half": "float16",
}

NO_BITSANDBYTES = (
    "model.quantization needs bitsandbytes, which is not installed: "
    "pip install 'llm-release-harness[quant]'"
)


def resolve_dtype(dtype: str, folder: Path) -> str:
    """The concrete dtype ``dtype`` names for the checkpoint in ``folder``.

    ``auto`` is the checkpoint's own: config.json's ``dtype`` (transformers 5) or
    ``torch_dtype``, else the dtype of the first floating tensor in its safetensors
    weights, else float32 (as transformers' ``dtype="auto"`` falls back)."""
    if dtype != "auto":
        return dtype
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    if isinstance(config, dict):
        for key in ("dtype", "torch_dtype"):
            named = config.get(key)
            if isinstance(named, str) and named.removeprefix("torch.") in _CONFIG_DTYPES:
                return _CONFIG_DTYPES[named.removeprefix("torch.")]
    for weights in sorted(folder.glob("*.safetensors")):
        found = _safetensors_dtype(weights)
        if found is not None:
            return found
    return "float32"


def _safetensors_dtype(path: Path) -> str | None:
    """The dtype of the first floating tensor in a safetensors file's header (the
    header is read alone: 8 bytes of length, then JSON)."""
    try:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > 100 << 20:  # not a header a real file has
                return None
            header = json.loads(fh.read(length))
    except (OSError, ValueError, struct.error):
        return None
    if not isinstance(header, dict):
        return None
    for name, entry in header.items():
        if name != "__metadata__" and isinstance(entry, dict):
            found = _SAFETENSORS_DTYPES.get(str(entry.get("dtype")))
            if found is not None:
                return found
    return None


def load_settings(source: ModelSource, dtype: str) -> dict[str, Any]:
    """What changes a loaded model's numbers besides its files: the resolved ``dtype``
    and every loading option set away from its default. Part of the response cache's
    keys (a model loaded otherwise is another model) and of provenance."""
    settings: dict[str, Any] = {"dtype": dtype}
    for name in ("device_map", "max_memory", "offload_folder", "attn_implementation"):
        value = getattr(source, name)
        if value is not None:
            settings[name] = value
    if source.quantization is not None:
        settings["quantization"] = dict(source.quantization)
    return settings


def pretrained_kwargs(source: ModelSource, dtype: str, device: Any = "cpu") -> dict[str, Any]:
    """``from_pretrained`` arguments for ``source`` with its dtype resolved to ``dtype``;
    ``device`` (resolved, never "auto") is where a quantized model without a device map
    goes whole."""
    import torch

    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, dtype),
        "use_safetensors": None if source.allow_pickle else True,  # None: safetensors first
        "trust_remote_code": source.trust_remote_code,
    }
    if source.attn_implementation is not None:
        kwargs["attn_implementation"] = source.attn_implementation
    if source.device_map is not None:
        kwargs["device_map"] = source.device_map
        if source.max_memory:
            kwargs["max_memory"] = {
                (int(k) if str(k).isdigit() else k): v for k, v in source.max_memory.items()
            }
        if source.offload_folder is not None:
            kwargs["offload_folder"] = source.offload_folder
    if source.quantization is not None:
        kwargs["quantization_config"] = bitsandbytes_config(dict(source.quantization))
        if source.device_map is None:  # bitsandbytes quantizes as the weights are placed
            kwargs["device_map"] = {"": _device_index(device)}
    return kwargs


def bitsandbytes_config(q: dict[str, Any]) -> Any:
    """transformers' BitsAndBytesConfig for a ``quantization`` section."""
    import importlib.util

    import torch

    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(NO_BITSANDBYTES)
    from transformers import BitsAndBytesConfig

    if q["bits"] == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.get("quant_type", "nf4"),
        bnb_4bit_use_double_quant=bool(q.get("double_quant", False)),
        bnb_4bit_compute_dtype=getattr(torch, q.get("compute_dtype", "bfloat16")),
    )


def _device_index(device: Any) -> Any:
    """A device as a device map's value: a GPU index, or the device's name."""
    import torch

    place = device if isinstance(device, torch.device) else torch.device(device)
    if place.type == "cuda":
        return place.index if place.index is not None else torch.cuda.current_device()
    return place.type


def placed(source: ModelSource) -> bool:
    """Whether accelerate placed the model (a device map, given or implied by
    quantization): then it must not be moved as a whole."""
    return source.device_map is not None or source.quantization is not None


def input_device(model: Any, fallback: Any) -> Any:
    """Where a placed model takes its inputs: the device of its input embeddings'
    module in the device map (accelerate's hooks move everything else), the first GPU
    when the embeddings are offloaded, else ``fallback``."""
    device_map = getattr(model, "hf_device_map", None)
    if not device_map:
        return fallback
    embed = model.get_input_embeddings()
    names = {id(m): n for n, m in model.named_modules()}
    name = names.get(id(embed), "")
    best = None
    for key, place in device_map.items():
        if (name == key or name.startswith(key + ".") or key == "") and (
            best is None or len(key) > len(best[0])
        ):
            best = (key, place)
    place = best[1] if best is not None else next(iter(device_map.values()))
    if place in ("cpu", "disk"):
        gpus = [p for p in device_map.values() if isinstance(p, int)]
        return f"cuda:{gpus[0]}" if gpus else "cpu"
    return f"cuda:{place}" if isinstance(place, int) else place
