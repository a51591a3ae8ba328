"""How the config's `lora` and `training` options reach peft, the model and the Trainer.

Mixed precision and gradient checkpointing are TrainingArguments; the adapter is a
peft LoraConfig; a quantized base (bitsandbytes 4- or 8-bit) is prepared for k-bit
training first (QLoRA, Dettmers et al. 2023: the frozen base quantized, the adapter
trained in higher precision). Every trained weight is kept in float32, the optimizer's
master copy, whatever the dtype the base was loaded in. Problems the config alone cannot
show (the device, the loaded model) are UserErrors located in the config file.
"""

from __future__ import annotations

from typing import Any

from finetune.config.schema import FinetuneConfig, TargetPattern, located_in
from harness.errors import UserError

# torch's non-reentrant checkpointing: needs no inputs that require gradients (the
# reentrant one does, which peft works around with enable_input_require_grads)
CHECKPOINTING = {"use_reentrant": False}

# user-facing messages (tests assert them exactly)
FP16_ON_CPU = (
    "fp16 mixed precision needs a GPU: on the CPU the Trainer (accelerate) ignores it and "
    "trains in float32; use bf16 or fp32"
)
BF16_UNSUPPORTED = "this GPU has no bfloat16 support (NVIDIA Ampere or newer has); use fp16 or fp32"
EWC_QUANTIZED = (
    "needs gradients of the adapted base weights for its Fisher, and a quantized base has "
    "none; use kl_to_base or replay with a quantized base, or load the base unquantized"
)
NO_SUCH_MODULE = "the base model has no module '{name}' (nor one whose name ends in '.{name}')"
HALF_BASE_SAVED = (
    "the base is loaded in {dtype} and training.precision is fp32, so the float32 copies "
    "of these modules cannot run between its layers; set training.precision: bf16 (or fp16 "
    "on a GPU), or load the base in float32"
)


def is_quantized(model: Any) -> bool:
    """Whether the base was loaded quantized by bitsandbytes (4- or 8-bit)."""
    return bool(
        getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    )


def precision_arguments(config: FinetuneConfig) -> dict[str, Any]:
    """TrainingArguments for `training.precision`. bf16 with no bfloat16 accelerator runs
    on the CPU (the Trainer then needs ``use_cpu``); fp16 is checked against the device
    by ``check_device``."""
    precision = config.training.precision
    if precision == "fp16":
        return {"fp16": True}
    if precision == "fp32":
        return {}
    import torch
    from transformers.utils import is_torch_bf16_gpu_available

    if is_torch_bf16_gpu_available():
        return {"bf16": True}
    if torch.accelerator.is_available():  # a GPU (CUDA, MPS, ...) without bfloat16
        raise UserError(located_in(config, ("training", "precision"), BF16_UNSUPPORTED))
    return {"bf16": True, "use_cpu": True}


def check_device(config: FinetuneConfig, args: Any) -> None:
    """Refuse fp16 where the Trainer would silently not use it: accelerate enables fp16
    autocast and loss scaling only off the CPU."""
    if config.training.precision == "fp16" and args.device.type == "cpu":
        raise UserError(located_in(config, ("training", "precision"), FP16_ON_CPU))


def checkpointing_arguments(config: FinetuneConfig) -> dict[str, Any]:
    """TrainingArguments for `training.gradient_checkpointing` (transformers 5's names;
    ``gradient_checkpointing`` is their deprecated alias)."""
    if not config.training.gradient_checkpointing:
        return {}
    return {"activation_checkpointing": True, "activation_checkpointing_kwargs": CHECKPOINTING}


def prepare_base(config: FinetuneConfig, model: Any) -> Any:
    """The loaded base, ready for an adapter: a quantized one prepared for k-bit training
    (peft's prepare_model_for_kbit_training: base frozen, its unquantized weights such as
    norms and embeddings in float32, checkpointing as configured); the options that
    cannot work with it refused."""
    if not is_quantized(model):
        return model
    if config.anti_forgetting.ewc is not None:
        raise UserError(located_in(config, ("anti_forgetting", "ewc"), EWC_QUANTIZED))
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=config.training.gradient_checkpointing,
        gradient_checkpointing_kwargs=CHECKPOINTING,
    )


def lora_config(config: FinetuneConfig, model: Any) -> Any:
    """The peft LoraConfig of `lora`, for ``model`` (checked to hold every module of
    `lora.modules_to_save`)."""
    from peft import LoraConfig

    spec = config.lora
    names = [name for name, _ in model.named_modules()]
    for i, wanted in enumerate(spec.modules_to_save):
        if not any(n == wanted or n.endswith("." + wanted) for n in names):
            message = NO_SUCH_MODULE.format(name=wanted)
            raise UserError(located_in(config, ("lora", "modules_to_save", i), message))
    half = {str(p.dtype).removeprefix("torch.") for p in model.parameters()} & {
        "bfloat16",
        "float16",
    }
    if spec.modules_to_save and half and config.training.precision == "fp32":
        message = HALF_BASE_SAVED.format(dtype=" and ".join(sorted(half)))
        raise UserError(located_in(config, ("lora", "modules_to_save"), message))
    targets = spec.target_modules
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=targets.regex if isinstance(targets, TargetPattern) else targets,
        use_dora=spec.use_dora,
        use_rslora=spec.use_rslora,
        modules_to_save=list(spec.modules_to_save) or None,
        task_type="CAUSAL_LM",
        # GPT-2 style Conv1D layers store W transposed (peft would warn and fix it)
        fan_in_fan_out=any(type(m).__name__ == "Conv1D" for m in model.modules()),
    )


def float32_masters(model: Any) -> None:
    """Keep every trained weight in float32, in place: peft already upcasts the LoRA
    matrices and DoRA magnitudes of a half-precision base, not the full copies of
    `lora.modules_to_save`, which AdamW would otherwise update in bfloat16/float16
    (updates below its precision lost; fp16 loss scaling refuses half gradients)."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
