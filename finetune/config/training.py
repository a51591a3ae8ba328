"""The fine-tune config's `lora` and `training` sections: the adapter and the optimization.

Split from finetune.config.schema (which re-exports both) to keep each module short; the
field docstrings are the config reference like the rest of the schema's.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from harness.config.schema_base import StrictModel

# user-facing messages (tests assert them exactly)
BAD_TARGETS = "must be 'all-linear', a list of module names or a mapping regex: PATTERN"
BAD_REGEX = "regex: not a valid regular expression ({reason})"
BAD_EVAL_STEPS = "must be 'auto' or a number of steps (1 or more)"
WARMUP_BOTH = "set warmup_steps or warmup_ratio, not both"
PACKING_GROUPED = (
    "set packing or group_by_length, not both: a packed batch has no padding for "
    "group_by_length to save"
)


class TargetPattern(StrictModel):
    """Target modules chosen by a regular expression (`lora.target_modules: {regex: ...}`)."""

    regex: str
    """A Python regular expression that must match a module's whole dotted name (peft's
    rule), e.g. `.*\\.(q_proj|v_proj)`, or `.*layers\\.(2[4-9]|3[01])\\..*_proj` for
    the projections of the last 8 of 32 layers."""


def _check_targets(value: Any) -> Any:
    if value == "all-linear" or isinstance(value, TargetPattern):
        return value
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return value
    if isinstance(value, dict) and list(value) == ["regex"] and isinstance(value["regex"], str):
        try:
            re.compile(value["regex"])
        except re.error as exc:
            raise ValueError(BAD_REGEX.format(reason=exc)) from None
        if value["regex"]:
            return TargetPattern(regex=value["regex"])
    raise ValueError(BAD_TARGETS)


class LoraSpec(StrictModel):
    """The LoRA adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
    Models"): W + (alpha / r) * B @ A on each target module. The adapter's weights are
    trained and stored in float32 whatever the base's dtype (`training.precision`). On a
    quantized base (bitsandbytes 4- or 8-bit) this is QLoRA (Dettmers et al. 2023): the
    base is prepared for k-bit training (peft's prepare_model_for_kbit_training: frozen,
    its unquantized weights in float32); `anti_forgetting.ewc` needs an unquantized base."""

    r: int = Field(default=8, ge=1)
    """Rank of the update."""
    alpha: int = Field(default=16, ge=1)
    """Scaling numerator: the update is multiplied by alpha / r."""
    dropout: float = Field(default=0.05, ge=0, lt=1)
    """Dropout on the adapter's input."""
    target_modules: Annotated[str | list[str] | TargetPattern, BeforeValidator(_check_targets)] = (
        "all-linear"
    )
    """Module names (or name suffixes) to adapt, e.g. [c_attn] or [q_proj, v_proj];
    "all-linear" adapts every linear layer except the output head; {regex: PATTERN}
    adapts the modules whose whole dotted name matches PATTERN (a single name is a list
    of one name, not a pattern)."""
    use_dora: bool = False
    """Weight-decomposed LoRA (Liu et al. 2024, "DoRA"): each adapted weight is split
    into a magnitude vector, trained, and a direction, updated by the LoRA matrices.
    Often better at low ranks; each step costs more. The harness loads the adapter as
    any other (peft)."""
    use_rslora: bool = False
    """Rank-stabilized LoRA (Kalajdzievski 2023, "A Rank Stabilization Scaling Factor
    for Fine-Tuning with LoRA"): the update is scaled by alpha / sqrt(r) instead of
    alpha / r, so a higher rank does not shrink it."""
    modules_to_save: list[str] = Field(default_factory=list)
    """Modules trained in full beside the adapter and stored in it, by name or name
    suffix as in `target_modules`, e.g. [lm_head]. Each is a full float32 copy with its
    optimizer state: an output head of 128k words at width 4096 adds 0.5 B trained
    parameters. On a base in bfloat16/float16 it needs `training.precision` bf16 or
    fp16 (its float32 output must be cast back by autocast)."""


def _check_eval_steps(value: Any) -> Any:
    if value == "auto" or (type(value) is int and value >= 1):
        return value
    raise ValueError(BAD_EVAL_STEPS)


class TrainingSpec(StrictModel):
    """Optimization (transformers.Trainer with AdamW)."""

    epochs: int = Field(default=3, ge=1)
    """Passes over the training data."""
    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimizer steps (overrides `epochs`)."""
    lr: float = Field(default=2e-4, gt=0)
    """Peak learning rate."""
    scheduler: Literal["linear", "cosine", "constant_with_warmup", "step"] = "linear"
    """Learning-rate schedule after warmup: linear or cosine decay to 0, constant, or step
    (multiplied by `step_gamma` every `step_size` optimizer steps, as torch's StepLR)."""
    step_size: int = Field(default=100, ge=1)
    """Optimizer steps between two decays of the step schedule."""
    step_gamma: float = Field(default=0.5, gt=0, le=1)
    """Decay factor of the step schedule."""
    warmup_steps: int = Field(default=0, ge=0)
    """Steps of linear warmup from 0 to `lr`."""
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    """Warmup as a fraction of all optimizer steps (instead of `warmup_steps`)."""
    batch_size: int = Field(default=8, ge=1)
    """Examples per device and forward pass (training and evaluation)."""
    grad_accumulation: int = Field(default=1, ge=1)
    """Forward passes whose gradients are summed before each optimizer step."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW weight decay."""
    max_grad_norm: float = Field(default=1.0, gt=0)
    """Gradient clipping norm."""
    seed: int = 42
    """Seed of the LoRA initialization, data order, dropout and the validation split."""
    max_length: int = Field(default=512, ge=8)
    """Tokens per example; longer examples are cut (counted in the manifest), and an
    example whose prompt alone fills it is dropped."""
    eval_steps: Annotated[int | Literal["auto"], BeforeValidator(_check_eval_steps)] = "auto"
    """Optimizer steps (1 or more) between two evaluations (and checkpoints); training
    loss is logged at the same steps. The last step is always evaluated. auto: about 10
    evaluations per run (every ceil(steps / 10) steps), or one per epoch when an epoch is
    shorter than that, so the learning-curve diagnosis has points on any run length; the
    interval used is `eval_steps` in manifest.json."""
    early_stopping_patience: int | None = Field(default=3, ge=1)
    """Stop after this many evaluations without a better validation measure
    (`validation.metric`; null: never). The checkpoint with the best measure is the one
    saved either way."""
    group_by_length: bool = False
    """Batch examples of similar length together (less padding, slightly less random)."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Mixed precision (torch autocast, through the Trainer): bf16 or fp16 run the
    matrix products of training and evaluation in half precision, fp32 runs them in the
    weights' own dtype. The trained weights (LoRA matrices, DoRA magnitudes,
    `lora.modules_to_save`) stay float32 master copies either way; the frozen base
    keeps the dtype it is loaded in (`base_model.dtype`: load it in bfloat16 to halve
    its memory; a base in bfloat16 also runs in bfloat16 under fp32, only the adapter in
    float32). bf16 runs on the CPU and on GPUs with bfloat16 (NVIDIA Ampere or newer);
    fp16 needs a GPU, and scales the loss against underflow (on the CPU it is refused:
    the Trainer would silently train in float32)."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations during the backward pass instead of keeping
    them (torch's non-reentrant checkpointing): activation memory falls from every
    layer's to about one layer's, for about a third more compute per step. The losses
    and gradients are the same as without."""
    packing: bool = False
    """Pack each batch's examples into one row without padding
    (finetune.train.encode.PackedCollator): position ids restart at every example and
    no token attends across examples, so each example's loss is the unpacked one. Not
    with `group_by_length`, which only saves padding that a packed batch does not have."""
    report_to: list[Literal["mlflow", "wandb", "tensorboard"]] = Field(default_factory=list)
    """Experiment trackers the Trainer logs the losses and evaluations to (transformers'
    own integrations; `finetune train --report-to` overrides it; empty: none). Each is
    configured by its own environment (MLFLOW_TRACKING_URI, WANDB_MODE, WANDB_PROJECT,
    TENSORBOARD_LOGGING_DIR; TensorBoard's default folder is
    OUTPUT/checkpoints/runs/) and needs `pip install 'llm-release-harness[trackers]'`,
    checked before the data is read. Not part of the run's record: a resumed run may
    log elsewhere (docs/integrations.md)."""

    @model_validator(mode="after")
    def _consistent(self) -> TrainingSpec:
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError(WARMUP_BOTH)
        if self.packing and self.group_by_length:
            raise ValueError(PACKING_GROUPED)
        return self
