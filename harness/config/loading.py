"""How a checkpoint's weights load: the schema shared by a suite's ``model`` and a
fine-tune config's ``base_model``.

One set of loading options for both, so a model is evaluated as it was trained:
the weight dtype (``auto`` reads it from the checkpoint), a device map with memory
limits and a disk offload folder (accelerate), bitsandbytes quantization and the
attention kernel. ``harness.model.loading`` turns them into ``from_pretrained``
arguments; the loaders in ``harness.model.files`` are their one user.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import field_validator, model_validator

from harness.config.schema_base import StrictModel

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
# the attention kernels transformers ships; a kernel from the hub ("kernels-community/...")
# is remote code and is never loaded implicitly
ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*([KMGT]i?B|B)\s*$", re.IGNORECASE)
PLACE = re.compile(r"^(cpu|disk|mps|cuda(:\d+)?)$")

# user-facing messages (tests assert them exactly)
BAD_MEMORY = "must be a size such as '20GiB', '500MB' or '64GB', got {value!r}"
BAD_DEVICE_MAP = (
    "must be one of {names} or a mapping {{module name: device}} whose devices are a GPU "
    "index, cpu, disk, mps or cuda:N"
)
BAD_MEMORY_KEY = "keys must be a GPU index, cpu, mps or disk, got {key!r}"
NEEDS_DEVICE_MAP = "needs device_map (it limits or offloads what the device map places)"
DEVICE_AND_MAP = "set device or device_map, not both (device_map places the model itself)"
FOUR_BIT_ONLY = "{name} applies to 4-bit quantization only (bits: 4)"


class QuantizationSpec(StrictModel):
    """Load the weights quantized by bitsandbytes (pip install 'llm-release-harness[quant]'):
    8-bit (LLM.int8) or 4-bit (NF4/FP4, as QLoRA). Linear layers are quantized at
    load time; embeddings, norms and the output head keep `dtype`."""

    bits: Literal[4, 8]
    """Bits per weight of the quantized linear layers."""
    quant_type: Literal["nf4", "fp4"] = "nf4"
    """4-bit data type: nf4 (normal float, the QLoRA default) or fp4."""
    double_quant: bool = False
    """4-bit: quantize the quantization constants too (about 0.4 bits per weight less)."""
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    """4-bit: the dtype matrix products run in (weights are dequantized to it)."""

    @model_validator(mode="after")
    def _four_bit_options(self) -> QuantizationSpec:
        if self.bits == 8:
            changed = self.model_fields_set & {"quant_type", "double_quant", "compute_dtype"}
            if changed:
                raise ValueError(FOUR_BIT_ONLY.format(name=", ".join(sorted(changed))))
        return self


class ModelLoading(StrictModel):
    """A checkpoint folder and how its weights load (docs/large-models.md)."""

    path: str
    """HF checkpoint folder (relative to the file naming it), or a hub id such as
    'gpt2' or 'org/name'. A string starting with '.', '/' or '~', or naming an existing
    folder, is a local path and must exist; anything else is a hub id (needs network)."""
    allow_pickle: bool = False
    """Load .bin/.pt (pickle) weights; refused unless true, since unpickling runs code."""
    trust_remote_code: bool = False
    """Allow the checkpoint's own Python code (transformers' trust_remote_code)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    """Weight and compute dtype; auto: the checkpoint's own (config.json's `dtype`
    or `torch_dtype`, else its safetensors weights' dtype), resolved before loading and
    recorded as resolved."""
    device_map: str | dict[str, int | str] | None = None
    """Place the model's layers across devices (accelerate): auto, balanced,
    balanced_low_0 or sequential, or an explicit {module name: device} map with a GPU
    index, cpu, disk, mps or cuda:N per module ('' names the whole model). Layers placed
    on cpu or disk are moved to the GPU as they run. Unset: the whole model on `device`."""
    max_memory: dict[str, str] | None = None
    """With device_map: the most each device may hold, e.g. {0: 20GiB, 1: 20GiB,
    cpu: 64GiB}; what does not fit goes to the next device, then to disk."""
    offload_folder: str | None = None
    """With device_map: the folder (relative to the file naming it) for weights
    offloaded to disk."""
    attn_implementation: (
        Literal["eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"] | None
    ) = None
    """The attention kernel (transformers' attn_implementation); unset: transformers'
    default (sdpa where available). Kernels from the hub are not offered: they are
    remote code."""
    quantization: QuantizationSpec | None = None
    """Quantize the linear layers at load time (bitsandbytes); unset: no quantization."""

    @field_validator("device_map")
    @classmethod
    def _device_map(cls, value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, str):
            if value not in DEVICE_MAPS:
                raise ValueError(BAD_DEVICE_MAP.format(names=", ".join(DEVICE_MAPS)))
            return value
        for device in value.values():
            if isinstance(device, bool) or not (
                (isinstance(device, int) and device >= 0)
                or (isinstance(device, str) and PLACE.match(device))
            ):
                raise ValueError(BAD_DEVICE_MAP.format(names=", ".join(DEVICE_MAPS)))
        return value

    @field_validator("max_memory")
    @classmethod
    def _max_memory(cls, value: Any) -> Any:
        if value is None:
            return value
        for key, size in value.items():
            if not (key.isdigit() or key in ("cpu", "mps", "disk")):
                raise ValueError(BAD_MEMORY_KEY.format(key=key))
            if not MEMORY.match(size):
                raise ValueError(BAD_MEMORY.format(value=size))
        return value

    @model_validator(mode="after")
    def _placement(self) -> ModelLoading:
        if self.device_map is None:
            for name in ("max_memory", "offload_folder"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: {NEEDS_DEVICE_MAP}")
        elif getattr(self, "device", "auto") != "auto":
            raise ValueError(DEVICE_AND_MAP)
        return self

    def loading_options(self) -> dict[str, Any]:
        """The options as ``harness.model.files.ModelSource`` takes them."""
        q = self.quantization
        return {
            "dtype": self.dtype,
            "device_map": self.device_map,
            "max_memory": dict(self.max_memory) if self.max_memory else None,
            "offload_folder": self.offload_folder,
            "attn_implementation": self.attn_implementation,
            # 8-bit has none of the 4-bit settings: they would only name defaults unused
            "quantization": (None if q is None else {"bits": 8} if q.bits == 8 else q.model_dump()),
        }
