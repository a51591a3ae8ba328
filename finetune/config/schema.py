"""The fine-tune config (pydantic) and ``load_config``, whose errors point into the YAML.

One YAML file says which base model to adapt, on which data, with which LoRA and
training settings and which safeguards (curation, anti-forgetting, reweighting,
augmentation). It is read like a suite (harness.config.yaml_marks): every problem is reported
at once as ``configs/x.yaml:12:5: training.lr: must be > 0, got 0``. The field
docstrings below are the config reference (docs/finetune-config.md is generated from
them by finetune.config.reference).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from finetune.config.files import field_problems, file_problems
from finetune.config.space import SearchSpec, search_problems

# the lora and training sections (and their messages), re-exported
from finetune.config.training import BAD_EVAL_STEPS as BAD_EVAL_STEPS
from finetune.config.training import BAD_REGEX as BAD_REGEX
from finetune.config.training import BAD_TARGETS as BAD_TARGETS
from finetune.config.training import PACKING_GROUPED as PACKING_GROUPED
from finetune.config.training import WARMUP_BOTH as WARMUP_BOTH
from finetune.config.training import LoraSpec, TrainingSpec
from finetune.config.training import TargetPattern as TargetPattern
from harness.config import yaml_marks
from harness.config.loading import ModelLoading
from harness.config.schema_base import StrictModel
from harness.config.suite import DatasetSource, data_tag
from harness.data.rows import display_path, looks_local, resolve_path, resolve_source
from harness.errors import UserError, located
from harness.sensitive.group_terms import checked_swaps

SCHEMA_VERSION = 1

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

# user-facing messages (tests assert them exactly)
BAD_NAME = "must start with a letter or '_' and hold only letters, digits, '_', '.' and '-'"
VALIDATION_BOTH = "set validation or val_split, not both"
NO_NOISE = "set word_dropout or swap (or both) above 0"
EMPTY_SWAPS = "needs at least one pair of terms to swap"
EMPTY_SWAP_TERM = "terms to swap must not be empty"


class _Strict(StrictModel):
    """Base of the config's schemas (harness.config.schema_base)."""


class DatasetSpec(DatasetSource):
    """Examples from the `datasets` library instead of a local file."""

    dataset: str
    """Name passed to datasets.load_dataset: a hub dataset, a packaged builder (json,
    csv, parquet, ...) or a local folder (relative to the config file)."""
    split: str
    """The split to read (required, so that no run trains on a test split by default)."""
    name: str | None = None
    """The dataset configuration (load_dataset's second argument)."""
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    """load_dataset's data_files; local paths (for packaged builders such as json or csv)
    are relative to the config file."""


Source = Annotated[
    Annotated[str, Tag("file")] | Annotated[DatasetSpec, Tag("datasets")],
    Discriminator(
        data_tag,
        custom_error_type="data_source",
        custom_error_message="must be a file path or a mapping {dataset: NAME, split: SPLIT}",
    ),
]


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


Sources = Annotated[list[Source], BeforeValidator(_listify), Field(min_length=1)]


class BaseModelSpec(ModelLoading):
    """The base model the LoRA adapter is trained on, and how its weights load (as a
    suite's `model` loads them: dtype, device map, quantization; docs/large-models.md).
    `path` is relative to the config file; the base's fingerprint (sha256 of weights,
    config and tokenizer) goes into the manifest. With `quantization` the base is
    prepared for k-bit training (QLoRA: Dettmers et al. 2023)."""


class DataSpec(_Strict):
    """Training and validation data. A row holds a prompt and a completion (the loss
    covers the completion tokens only), a single text (the loss covers all of it), or a
    conversation `{"messages": [{"role": "user", "content": ...}, ...]}` rendered with
    the chat template (`chat`; the loss covers the assistant turns only). A file holds
    chat rows or prompt/completion and text rows, not both (other sources may differ,
    e.g. prompt/completion replay data beside chat training data)."""

    train: Sources
    """Training data: one or more .jsonl/.csv/.tsv files (relative to the config file) or
    `datasets` sources {dataset: NAME, split: train, name: CONFIG, data_files: ...}."""
    validation: Source | None = None
    """Validation data (a file or `datasets` source); default: `val_split` of `train`."""
    val_split: float | None = Field(default=None, gt=0, lt=1)
    """Fraction of the (deduplicated) training rows held out for validation, drawn with
    `training.seed`; 0.1 when neither this nor `validation` is given."""
    prompt_field: str = Field(default="prompt", min_length=1)
    """Field holding the prompt (not trained on: its labels are masked)."""
    completion_field: str = Field(default="completion", min_length=1)
    """Field holding the completion (the trained-on target)."""
    text_field: str = Field(default="text", min_length=1)
    """Field holding a whole text, for rows without prompt/completion."""
    messages_field: str = Field(default="messages", min_length=1)
    """Field holding a chat row's conversation: a list of {role, content} with roles
    system, user and assistant, at least one assistant turn. A row with this field is a
    chat row."""
    add_eos: bool = True
    """Append the tokenizer's end-of-sequence token to every target, so the model learns
    to stop. Not for chat rows: each assistant turn's target already ends with the
    template's end-of-turn marker (`<|im_end|>`, `<|eot_id|>`), where the harness stops
    generating."""

    @model_validator(mode="after")
    def _one_validation(self) -> DataSpec:
        if self.validation is not None and self.val_split is not None:
            raise ValueError(VALIDATION_BOTH)
        return self

    @property
    def holdout(self) -> float:
        """The validation fraction in effect (0 with a validation source)."""
        if self.validation is not None:
            return 0.0
        return self.val_split if self.val_split is not None else 0.1


class ChatSpec(_Strict):
    """How chat rows (`data.messages_field`) become training text: rendered exactly as
    the harness renders a conversation for scoring (harness.tasks.chat: the template's
    `apply_chat_template`, no generation prompt), then tokenized once. When the rendered
    text starts with the tokenizer's BOS (Llama-3-style templates write it) no special
    tokens are added, so a sequence holds exactly one BOS (lm-eval's rule). Labels are
    -100 everywhere except the tokens of the assistant turns: a turn's span runs from the
    end of the generation prompt before it (the whitespace that ends that prompt, e.g.
    its line break, included, as the harness scores a turn: lm-eval's split) through its
    content and the template's end-of-turn marker; a token is a target when any of its characters lies in a span
    (so a token straddling a span's edge is trained on, and every character of an
    answer is covered). Settings only matter when the data has chat rows."""

    template: str = Field(default="tokenizer", min_length=1)
    """`tokenizer`: the base model tokenizer's own chat template (a tokenizer without
    one is an error naming this setting); else a Jinja template file, relative to the
    config file (e.g. chatml.jinja)."""
    train_on: Literal["all", "last"] = "all"
    """Which assistant turns are targets: all of them, or only the last one (earlier
    turns are then context, as few-shot turns are in the harness)."""


class LeakageSpec(_Strict):
    """Overlap of training examples with evaluation data (see `eval_data`)."""

    ngram: int = Field(default=8, ge=1)
    """Word n-gram size of the overlap test. Texts shorter than this are only compared
    for exact (normalized) equality."""
    threshold: float = Field(default=0.8, gt=0, le=1)
    """An example leaks when this share of the n-grams of either text (training or
    evaluation example) occurs in the other (containment)."""
    drop: bool = False
    """Remove leaking examples from the training data (they are always reported;
    `finetune train --fail-on-leakage` makes any leak an error instead)."""


class CurationSpec(_Strict):
    """Data curation before training, reported in the manifest."""

    dedup: bool = True
    """Remove exact duplicates and duplicates after normalization (Unicode NFKC, case,
    punctuation and whitespace) from the training data, and validation rows that repeat a
    training row."""
    leakage: LeakageSpec = Field(default_factory=LeakageSpec)
    """The leakage check against `eval_data`."""
    pii: Literal["report", "redact", "fail"] = "report"
    """Personal data (e-mail addresses, phone numbers, credit cards, IBANs, IP addresses,
    US SSNs, URLs with a password; docs/privacy.md) in the prompts and targets of the
    training, validation, replay and EWC rows, found with presidio. report: counts by
    type go into the manifest; redact: each span is replaced by its type, e.g.
    `<EMAIL_ADDRESS>`, before deduplication; fail: stop with an error naming each
    `FILE line N` and the types found."""


class ValidationSpec(_Strict):
    """What each evaluation measures on the validation rows, and which measure picks the
    checkpoint. The validation loss is always reported: the mean cross-entropy per target
    token, where the targets are the completion's tokens plus the end-of-sequence token
    that `data.add_eos` appends (see "What the validation loss averages" above). When the
    validation completions form a label set (every row has a prompt; 2 to `max_labels`
    distinct completions; at least twice as many rows as completions), each evaluation
    also scores every row as `harness run` scores a classification task (each label's
    log-likelihood as a continuation of the prompt, argmax) and reports the accuracy, the
    majority-class baseline (the share of the most frequent label) and chance (1/k)."""

    metric: Literal["auto", "loss", "accuracy"] = "auto"
    """The measure that picks the best checkpoint (the one saved), drives early stopping
    and ranks `finetune search` trials. accuracy: higher is better, the validation loss
    breaking ties; loss: lower is better; auto: accuracy when the validation completions
    form a label set, else loss. accuracy without a label set is an error."""
    max_labels: int = Field(default=20, ge=2)
    """Most distinct validation completions that still count as a label set. Each
    evaluation scores every label after every validation row: one forward pass per row
    when each label is one token, one per row and label otherwise."""


class ReplaySpec(_Strict):
    """Rehearsal: original-task examples mixed into the training data."""

    data: Sources
    """Original-task data (files or `datasets` sources, same row formats as `data`)."""
    fraction: float = Field(gt=0, lt=1)
    """Share of every epoch's examples drawn from `data`; a fresh seeded sample each
    epoch (repeating examples only when `data` is too small)."""


class KLSpec(_Strict):
    """Learning without Forgetting (Li & Hoiem 2016): a KL term keeps the adapted model's
    next-token distributions close to the base model's on the training inputs. The base
    model is the same model with the adapter disabled (no second copy). Its pass keeps
    only its last hidden states at the trained-on positions; the KL computes the base's
    logits from them a few positions at a time, so no second [positions, vocabulary]
    tensor is held besides the adapted logits."""

    weight: float = Field(gt=0)
    """Weight of KL(base || adapted), averaged over the trained-on positions (those
    whose next token is a target: a completion's tokens and its EOS, every token of a
    text row; not the prompt, not padding)."""
    temperature: float = Field(default=1.0, gt=0)
    """Softmax temperature of both distributions (the term is scaled by its square)."""
    cache_mb: int = Field(default=256, ge=0)
    """Memory (MB) for keeping the base model's last hidden states at the trained-on
    positions of the examples seen so far (hidden size x bytes per value per position,
    e.g. 8 KB for a 4096-wide bfloat16 model): an example seen again (the next epoch)
    needs no adapter-disabled forward pass. Examples are kept in the order first seen
    until the budget is used; 0: no cache."""


class EWCSpec(_Strict):
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017) on the LoRA delta: the
    diagonal Fisher F of each adapted base weight on original-task data, computed once
    before training, weights the penalty weight / 2 * sum F * (scaling * B @ A)^2.
    Needs gradients on the base weights, so not with a quantized base."""

    weight: float = Field(gt=0)
    """Weight of the penalty. F is normalized to mean 1 over the adapted weights, so the
    weight does not depend on the model's size or loss scale."""
    data: Sources
    """Original-task data on which the Fisher is estimated."""
    samples: int = Field(default=64, ge=1)
    """Examples of `data` used for the Fisher (the first ones after a seeded shuffle)."""
    fisher: Literal["full", "factored", "auto"] = "auto"
    """How F is kept, in float32. full: one value per adapted base weight entry (4 bytes
    each: about 28 GB for every linear layer of an 8B model). factored: per weight
    matrix, the row and column sums of the squared gradients only (4 bytes per row and
    column), F_ij ~ r_i * c_j / sum(r), Adafactor's rank-1 approximation (Shazeer & Stern
    2018); the penalty is computed from them without a full-size tensor. auto: full when
    it fits `memory_mb`, else factored. The form and its bytes are recorded in the
    manifest (curation.ewc_fisher)."""
    memory_mb: int = Field(default=1024, ge=1)
    """Memory (MB) the Fisher may take; a run whose chosen form needs more stops before
    computing it, saying how much it needs."""


class AntiForgettingSpec(_Strict):
    """Options that limit forgetting of what the base model could do; any combination."""

    replay: ReplaySpec | None = None
    """Mix original-task data into every epoch."""
    kl_to_base: KLSpec | None = None
    """KL divergence to the base model's predictions (LwF)."""
    ewc: EWCSpec | None = None
    """Fisher-weighted penalty on the LoRA delta (EWC)."""


class ReweightSpec(_Strict):
    """Per-example loss weights that give every group (x label) cell the same total
    weight: w = N / (K * n_cell) for N examples in K non-empty cells."""

    group: str = Field(min_length=1)
    """Field naming each training row's group (e.g. a demographic attribute)."""
    label: str | None = None
    """Field with the row's label; cells are group x label when set, else groups."""


class CounterfactualSpec(_Strict):
    """Counterfactual data augmentation: each training example whose input names a group
    term is added again with every term swapped for its counterpart (both directions,
    whole words, case kept) and the same completion."""

    swaps: dict[str, str]
    """Term pairs, e.g. {he: she, his: her, John: Mary}; "he" and "she" trade places."""

    @field_validator("swaps")
    @classmethod
    def _swaps(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_swaps(value, EMPTY_SWAPS, EMPTY_SWAP_TERM)


class FairnessSpec(_Strict):
    """Bias mitigation in the training data and loss."""

    reweight: ReweightSpec | None = None
    """Balance a group column (and its group x label cells) by per-example weights."""
    counterfactual: CounterfactualSpec | None = None
    """Add group-swapped copies of the training examples (after reweighting: a copy
    keeps its original's weight); copies that would overlap the evaluation data are
    dropped."""


class AugmentationSpec(_Strict):
    """Seeded word-level noise for small datasets: noisy copies of training examples are
    added (the originals are kept). Only training inputs change: the prompt of a
    prompt/completion row, the text of a text row; validation, replay and evaluation data
    never."""

    word_dropout: float = Field(default=0.0, ge=0, lt=1)
    """Probability of deleting each word (at least one word is kept)."""
    swap: float = Field(default=0.0, ge=0, lt=1)
    """Probability of swapping each pair of neighbouring words."""
    copies: int = Field(default=1, ge=1)
    """Noisy copies added per training example."""
    seed: int = 0
    """Seed of the noise; with the same seed every example gets the same noise."""

    @model_validator(mode="after")
    def _some_noise(self) -> AugmentationSpec:
        if not (self.word_dropout or self.swap):
            raise ValueError(NO_NOISE)
        return self


class CanarySpec(_Strict):
    """Canaries (Carlini et al. 2019, "The Secret Sharer"): random secrets of one format,
    `<prefix> d d d ...`, inserted into the training data (the prefix as a prompt, the
    secret as its completion) and recorded in the manifest, so that
    `audits.privacy.canaries` can measure how much the model memorized them
    (docs/privacy.md)."""

    count: int = Field(default=1, ge=1)
    """Canaries inserted."""
    repeats: int = Field(default=10, ge=1)
    """Copies of each canary in the training data (after deduplication, so they stay)."""
    controls: int = Field(default=1, ge=0)
    """Canaries of the same format recorded but never inserted: their exposure shows the
    chance level."""
    prefix: str = Field(default="my PIN is", min_length=1)
    """The text before the secret."""
    digits: int = Field(default=6, ge=1, le=12)
    """Random digits of the secret, separated by spaces: 10^digits possible secrets."""
    seed: int = 0
    """Seed of the secrets."""


class MemorizationSpec(_Strict):
    """What the privacy audit's memorization tests need from the run, in its manifest."""

    canaries: CanarySpec | None = None
    """Insert canaries (off by default)."""
    extraction_examples: int = Field(default=0, ge=0)
    """Training examples (a seeded sample, with their text after redaction) listed in the
    manifest for the verbatim-extraction test of `audits.privacy.extraction`. 0: none,
    since the manifest is embedded in the harness's results."""


class FinetuneConfig(_Strict):
    """A LoRA fine-tuning run: base model, data, adapter, training and safeguards."""

    schema_version: Literal[1]
    """Version of this config format; must be 1."""
    name: str
    """Name of the run; names the default output folder `runs/<name>`."""
    base_model: BaseModelSpec
    """The model to adapt."""
    data: DataSpec
    """Training and validation data."""
    chat: ChatSpec = Field(default_factory=ChatSpec)
    """The chat template and the turns trained on, for chat rows."""
    eval_data: list[str] = Field(default_factory=list)
    """Evaluation data the training data must not leak into: .jsonl/.csv/.tsv files or
    suite files (.yaml, whose tasks' data are used), relative to the config file.
    `finetune train --eval-data` adds more."""
    curation: CurationSpec = Field(default_factory=CurationSpec)
    """Deduplication, the leakage check and the PII scan."""
    lora: LoraSpec = Field(default_factory=LoraSpec)
    """The adapter."""
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    """Optimization settings."""
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    """Validation accuracy on a label set, and the measure that picks the checkpoint."""
    anti_forgetting: AntiForgettingSpec = Field(default_factory=AntiForgettingSpec)
    """Replay, KL-to-base and EWC."""
    fairness: FairnessSpec = Field(default_factory=FairnessSpec)
    """Bias mitigation: group reweighting, counterfactual augmentation."""
    augmentation: AugmentationSpec | None = None
    """Noisy copies of training examples (off by default)."""
    memorization: MemorizationSpec = Field(default_factory=MemorizationSpec)
    """Canaries and training examples recorded for the privacy audit."""
    search: SearchSpec | None = None
    """The search space of `finetune search`."""
    output: str | None = None
    """Output folder, relative to the current directory (default `runs/<name>`)."""

    _source_path: Path | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(BAD_NAME)
        return value

    @property
    def source_path(self) -> Path | None:
        """The config file this config was loaded from (None when built in code)."""
        return self._source_path

    @property
    def output_dir(self) -> Path:
        """Where the adapter, manifest and history go."""
        return resolve_path(self.output or f"runs/{self.name}", Path.cwd())


# settings added after runs were recorded: left out of the record while at their default
LATER_FIELDS: dict[str, tuple[str, ...]] = {
    "base_model": (
        "dtype",
        "device_map",
        "max_memory",
        "offload_folder",
        "attn_implementation",
        "quantization",
    ),
    "data": ("messages_field",),
    "lora": ("use_dora", "use_rslora", "modules_to_save"),
    "training": ("precision", "gradient_checkpointing", "packing"),
}


def config_record(config: FinetuneConfig) -> dict[str, Any]:
    """The config as the manifest and the checkpoint folder record it (JSON). The chat
    settings and the ``LATER_FIELDS`` appear only when set away from their defaults, so
    the record of a run whose config does not mention them is the same as before they
    existed."""
    exclude: dict[str, Any] = {}
    if config.chat == ChatSpec():
        exclude["chat"] = True
    for section, names in LATER_FIELDS.items():
        spec = getattr(config, section)
        fields = type(spec).model_fields
        unset = {
            n for n in names if getattr(spec, n) == fields[n].get_default(call_default_factory=True)
        }
        if unset:
            exclude[section] = unset
    # where the Trainer logs is not how the adapter was made: never recorded
    exclude["training"] = {*exclude.get("training", ()), "report_to"}
    return config.model_dump(mode="json", exclude=exclude)


def located_in(config: FinetuneConfig, path: yaml_marks.Path, message: str) -> str:
    """``FILE:LINE:COL: path: message`` for a problem found after loading (the hardware,
    the loaded model), at the setting's place in the config file; ``path: message`` for
    a config built in code."""
    shown = f"{yaml_marks.format_path(path)}: {message}"
    if config.source_path is None:
        return shown
    file = display_path(config.source_path)
    try:
        marks = yaml_marks.read_mapping(config.source_path, file)[1]
    except (OSError, UserError):  # the file changed since: name it without a line
        return located(file, shown)
    return located(file, shown, *marks.value_at(path))


_TAGS: dict[str, type[BaseModel] | None] = {"datasets": DatasetSpec, "file": None}


def load_config(path: str | Path, *, check_files: bool = True) -> FinetuneConfig:
    """Read, validate and resolve a fine-tune config; every problem raises one UserError.

    Local paths in the result are absolute: model, data and eval data relative to the
    config file, ``output`` relative to the current directory.
    """
    source = resolve_path(path, Path.cwd())
    file = display_path(source)
    raw, marks, problems = yaml_marks.read_mapping(source, file)
    yaml_marks.check_version(raw, marks, file, SCHEMA_VERSION)
    errors = [p.located() for p in problems]
    config: FinetuneConfig | None = None
    try:
        config = FinetuneConfig.model_validate(raw)
    except ValidationError as exc:
        errors += yaml_marks.validation_errors(exc, raw, marks, root=FinetuneConfig, tags=_TAGS)
    if config is not None:
        found = [(p, m, marks.key_at(p)) for p, m in search_problems(config)]
        if check_files:
            missing = file_problems(config, source.parent)
            if not missing:  # the files are there: do they have the fields named?
                missing = field_problems(config, source.parent, marks.values)
            found += [(p, m, marks.value_at(p)) for p, m in missing]
        errors += [(*at, f"{yaml_marks.format_path(p)}: {m}") for p, m, at in found]
    if errors or config is None:
        raise UserError([located(file, msg, line, col) for line, col, msg in sorted(set(errors))])
    config._source_path = source
    return resolve_paths(config, source.parent)


def resolve_paths(config: FinetuneConfig, base: Path) -> FinetuneConfig:
    """Make the config's local paths absolute (see load_config)."""
    if looks_local(config.base_model.path, base):
        config.base_model.path = str(resolve_path(config.base_model.path, base))
    if config.base_model.offload_folder is not None:
        config.base_model.offload_folder = str(resolve_path(config.base_model.offload_folder, base))
    config.data.train = [resolve_source(s, base) for s in config.data.train]
    if config.chat.template != "tokenizer":
        config.chat.template = str(resolve_path(config.chat.template, base))
    if config.data.validation is not None:
        config.data.validation = resolve_source(config.data.validation, base)
    for spec in (config.anti_forgetting.replay, config.anti_forgetting.ewc):
        if spec is not None:
            spec.data = [resolve_source(s, base) for s in spec.data]
    config.eval_data = [str(resolve_path(p, base)) for p in config.eval_data]
    config.output = str(config.output_dir)
    return config
