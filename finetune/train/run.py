"""``train``: one LoRA fine-tuning run, from config to an auditable output folder.

transformers.Trainer runs the loop (schedulers, gradient accumulation, checkpoints,
resume, early stopping, accelerate scale-out); peft adds the adapter. This module
wires the curated data, the loss terms (finetune.train.trainer) and the run record
(finetune.train.manifest) together. The output folder holds the adapter (safetensors), the
tokenizer, manifest.json and history.jsonl, and ``checkpoints/`` for resuming, so
``harness run SUITE --adapter OUT`` audits it directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.config.files import eval_path_problems
from finetune.config.schema import FinetuneConfig, config_record, located_in
from finetune.data.curate import Curated, curate
from finetune.train.diagnose import diagnose, print_diagnosis
from finetune.train.manifest import (
    MANIFEST,
    base_manifest,
    finite,
    history_from_log,
    write_run_record,
)
from finetune.train.validation import resolve_metric
from harness.atomic import write_atomic
from harness.data.rows import display_path, resolve_path
from harness.errors import UserError

CHECKPOINTS = "checkpoints"
RUN_CONFIG = "run-config.json"  # the resolved config a resumable run started with

# user-facing messages (tests assert them exactly)
RUN_EXISTS = "{out} already holds a run; pass --resume to continue it or --overwrite to start over"
NO_CHECKPOINT = "{out}: no checkpoint to resume from (looked in {folder})"
CONFIG_CHANGED = (
    "{out}: the config differs from the one the run started with ({fields}); "
    "resume with the same config, or start over with --overwrite"
)
TOO_FEW_TOKENS = "no {role} example fits in training.max_length ({n} tokens)"


@dataclass
class TrainResult:
    """What a run produced."""

    output_dir: Path
    manifest: dict[str, Any]
    history: list[dict[str, Any]]


def with_overrides(
    config: FinetuneConfig,
    *,
    eval_data: Sequence[str] = (),
    out: str | None = None,
    report_to: Sequence[str] | None = None,
) -> FinetuneConfig:
    """A copy with command-line additions: evaluation data (relative to the cwd, checked
    to exist), the output folder and the trackers (each checked to import)."""
    from harness.integrations.available import require

    new = config.model_copy(deep=True)
    new._source_path = config._source_path
    errors = []
    for path in eval_data:
        full = resolve_path(path, Path.cwd())
        errors += [f"--eval-data {path}: {msg}" for msg in eval_path_problems(full)]
        new.eval_data.append(str(full))
    if errors:
        raise UserError(errors)
    if out is not None:
        new.output = str(resolve_path(out, Path.cwd()))
    if report_to is not None:
        new.training.report_to = require(report_to, "--report-to")  # type: ignore[assignment]
    else:
        require(new.training.report_to, "training.report_to")
    return new


def _check_output(config: FinetuneConfig, resume: bool, overwrite: bool) -> str | None:
    """Check the output folder before any work; returns the checkpoint to resume from."""
    from transformers.trainer_utils import get_last_checkpoint

    out = config.output_dir
    folder = out / CHECKPOINTS
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if resume:
        if last is None:
            raise UserError(
                NO_CHECKPOINT.format(out=display_path(out), folder=display_path(folder))
            )
        started = json.loads((folder / RUN_CONFIG).read_text(encoding="utf-8"))
        resolved = config_record(config)
        changed = [
            k for k in sorted(set(started) | set(resolved)) if started.get(k) != resolved.get(k)
        ]
        if changed:
            raise UserError(CONFIG_CHANGED.format(out=display_path(out), fields=", ".join(changed)))
        return last
    if (last is not None or (out / MANIFEST).exists()) and not overwrite:
        raise UserError(RUN_EXISTS.format(out=display_path(out)))
    return None


def _start_output(config: FinetuneConfig) -> None:
    """A fresh checkpoint folder, holding the config the run starts with."""
    folder = config.output_dir / CHECKPOINTS
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    text = json.dumps(config_record(config), indent=1)
    write_atomic(folder / RUN_CONFIG, text)


def train(
    config: FinetuneConfig,
    *,
    eval_data: Sequence[str] = (),
    fail_on_leakage: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    out: str | None = None,
    console: Any = None,
    progress: bool = False,
    callbacks: Sequence[Any] = (),
    report_to: Sequence[str] | None = None,
) -> TrainResult:
    """Curate the data, fine-tune, and write the output folder (see the module docstring).

    ``callbacks`` are extra transformers TrainerCallbacks. Bad input raises UserError;
    ``KeyboardInterrupt`` leaves the last checkpoint for ``resume=True``.
    """
    from rich.console import Console

    console = console or Console(stderr=True, quiet=True)
    if int(os.environ.get("RANK", "0")) > 0:  # data-parallel: the main process prints
        console = Console(stderr=True, quiet=True)
    config = with_overrides(config, eval_data=eval_data, out=out, report_to=report_to)
    checkpoint = _check_output(config, resume, overwrite)
    curated = curate(config, config.eval_data, fail_on_leakage=fail_on_leakage)
    print_curation(curated.report, console)
    v = config.validation
    metric, labels = resolve_metric(v.metric, v.max_labels, curated.validation)
    from finetune.train.progress import RichProgressCallback
    from finetune.train.trainer import EvaluationLineCallback

    # a bar only on a terminal; elsewhere one plain line per evaluation
    bar = progress and bool(getattr(console, "is_terminal", False))
    title = f"fine-tuning {config.name}"
    shown = RichProgressCallback(console, title) if bar else EvaluationLineCallback(console)
    extra = [shown, *callbacks]
    trainer, fingerprint = _build_trainer(config, curated, extra, metric, labels)
    if checkpoint is None and trainer.is_world_process_zero():  # only now: a failed
        _start_output(config)  # curation leaves an earlier run intact; one writer
    trainer.train(resume_from_checkpoint=checkpoint)
    return _finish(config, curated, trainer, fingerprint, console, metric)


def _build_trainer(
    config: FinetuneConfig,
    curated: Curated,
    callbacks: Sequence[Any],
    metric: str,
    labels: list[str] | None,
) -> tuple[Any, Any]:
    import torch
    from peft import get_peft_model
    from transformers import EarlyStoppingCallback, PrinterCallback, TrainingArguments, set_seed

    from finetune.train import options
    from finetune.train.encode import (
        Collator,
        PackedCollator,
        ReplayMix,
        encode_examples,
        replay_count,
    )
    from finetune.train.forgetting import diagonal_fisher
    from finetune.train.trainer import (
        EpochCallback,
        FinalEvalCallback,
        FinetuneTrainer,
    )
    from finetune.train.validation import build_label_task
    from harness.model.language_model import ModelSource, load_for_training, resolve_max_length

    t, af = config.training, config.anti_forgetting
    source = ModelSource(
        path=config.base_model.path,
        allow_pickle=config.base_model.allow_pickle,
        trust_remote_code=config.base_model.trust_remote_code,
        **config.base_model.loading_options(),
    )
    model, tokenizer, fingerprint = load_for_training(source)
    set_seed(t.seed)
    model = options.prepare_base(config, model)
    lora = options.lora_config(config, model)
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        message = str(exc).splitlines()[0][:300]
        raise UserError(located_in(config, ("lora", "target_modules"), message)) from None
    options.float32_masters(model)
    for peft_config in model.peft_config.values():
        ordered_sets(peft_config)

    chat = chat_encoding(config, curated, tokenizer)

    def encoded(examples: Any, role: str) -> list[dict[str, Any]]:
        enc = encode_examples(examples, tokenizer, t.max_length, config.data.add_eos, chat)
        curated.report.setdefault("encoding", {})[role] = enc.as_dict()
        if not enc.features:
            raise UserError(TOO_FEW_TOKENS.format(role=role, n=t.max_length))
        return enc.features

    train_set: Any = encoded(curated.train, "train")
    extra = [FinalEvalCallback(), *callbacks]
    if af.replay is not None:
        n = replay_count(len(train_set), af.replay.fraction)
        train_set = ReplayMix(train_set, encoded(curated.replay, "replay"), n, t.seed)
        curated.report["replay_per_epoch"] = n
        extra.append(EpochCallback(train_set))
    val_set = encoded(curated.validation, "validation")
    label_task = None
    if labels is not None:  # scored in the model's whole window, as the harness does
        window = resolve_max_length(model.config, tokenizer, None)
        label_task = build_label_task(curated.validation, labels, tokenizer, window)
    # eval_steps auto: FinetuneTrainer sets the interval once it knows the run's length
    every = 1 if t.eval_steps == "auto" else t.eval_steps
    if t.early_stopping_patience is not None:
        extra.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    args = TrainingArguments(
        output_dir=str(config.output_dir / CHECKPOINTS),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        learning_rate=t.lr,
        lr_scheduler_type="constant" if t.scheduler == "step" else t.scheduler,
        warmup_steps=t.warmup_steps or t.warmup_ratio,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accumulation,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        eval_strategy="steps",
        eval_steps=every,
        logging_strategy="steps",
        logging_steps=every,
        save_strategy="steps",
        save_steps=every,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_accuracy_rank" if metric == "accuracy" else "eval_loss",
        greater_is_better=metric == "accuracy",
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        remove_unused_columns=False,
        prediction_loss_only=True,
        report_to=list(t.report_to) or "none",  # the trackers' own integrations
        disable_tqdm=True,  # progress is ours (finetune.train.progress)
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        **options.precision_arguments(config),
        **options.checkpointing_arguments(config),
    )
    options.check_device(config, args)
    pad_id = int(tokenizer.pad_token_id)
    # packing: padding-free batches whose position ids restart at every example
    collator: Any = PackedCollator(pad_id) if t.packing else Collator(pad_id)
    fisher = None
    if af.ewc is not None:
        model.to(args.device)
        ewc_rows, pad = encoded(curated.ewc, "ewc"), int(tokenizer.pad_token_id)
        fisher = diagonal_fisher(model, ewc_rows, pad, af.ewc.fisher, af.ewc.memory_mb)
        curated.report["ewc_fisher"] = fisher.plan.describe()  # in the manifest's curation
    trainer = FinetuneTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=extra,
        kl=(af.kl_to_base.weight, af.kl_to_base.temperature) if af.kl_to_base else None,
        kl_cache_mb=af.kl_to_base.cache_mb if af.kl_to_base else 0,
        label_task=label_task,
        pad_id=int(tokenizer.pad_token_id),
        fisher=fisher,
        ewc_weight=af.ewc.weight if af.ewc else 0.0,
        step_schedule=(t.step_size, t.step_gamma) if t.scheduler == "step" else None,
        auto_eval=t.eval_steps == "auto",
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log as a raw dict
    return trainer, fingerprint


def chat_encoding(config: FinetuneConfig, curated: Curated, tokenizer: Any) -> Any:
    """The chat template and turns of ``config.chat`` when any example is a chat row
    (recorded in the curation report), else None: data without chat rows needs no
    template."""
    from finetune.train.encode import ChatEncoding
    from harness.tasks.chat import load_template

    sets = (curated.train, curated.validation, curated.replay, curated.ewc)
    if not any(ex.is_chat for examples in sets for ex in examples):
        return None
    base = config.source_path.parent if config.source_path else Path.cwd()
    template = load_template(tokenizer, config.chat.template, base, config.base_model.path)
    chat = ChatEncoding(template, config.chat.train_on)
    curated.report["chat"] = chat.describe()
    return chat


def ordered_sets(config: Any) -> None:
    """Replace each set-valued field of a peft config (``target_modules`` becomes a set)
    by a sorted list, in place. peft writes a set to adapter_config.json in iteration
    order, which changes with PYTHONHASHSEED, so two runs of one config would write
    different bytes and get different adapter fingerprints; a list keeps its order and
    matches modules the same way."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, (set, frozenset)):
            setattr(config, field.name, sorted(value, key=str))


def _finish(
    config: FinetuneConfig,
    curated: Curated,
    trainer: Any,
    fingerprint: Any,
    console: Any,
    metric: str,
) -> TrainResult:
    from finetune.data.examples import file_hashes
    from finetune.train.trainer import EvaluationLineCallback
    from harness.data.rows import sha256_file
    from harness.model.language_model import fingerprint_folder

    out = config.output_dir
    history = history_from_log(trainer.state.log_history)
    trainer.remove_callback(EvaluationLineCallback)  # the next evaluation is not a step
    saved = trainer.evaluate()  # the best checkpoint, loaded at the end
    if not trainer.is_world_process_zero():  # data-parallel: the main process writes
        return TrainResult(output_dir=out, manifest={}, history=history)
    trainer.model.save_pretrained(str(out), safe_serialization=True)
    trainer.processing_class.save_pretrained(str(out))
    task = trainer.label_task
    evidence = None
    if task is not None:
        evidence = {k: saved[f"eval_{k}"] for k in ("accuracy", "correct", "n", "majority")}
        evidence["chance"] = saved["eval_chance"]
    diagnosis = diagnose(history, validation=evidence)
    state = trainer.state
    best = next((h for h in history if h["step"] == state.best_global_step), None)
    d, af = config.data, config.anti_forgetting
    files = file_hashes("train", d.train)
    files += file_hashes("validation", [d.validation]) if d.validation is not None else []
    files += file_hashes("replay", af.replay.data) if af.replay else []
    files += file_hashes("ewc", af.ewc.data) if af.ewc else []
    files += [{"role": "eval", "path": p, "sha256": sha256_file(p)} for p in config.eval_data]
    manifest = {
        **base_manifest(),
        "base_model": fingerprint.as_dict(),
        "adapter": fingerprint_folder(out, allow_pickle=False).as_dict(),
        "data_files": files,
        "config": config_record(config),
        "seed": config.training.seed,
        "validation_metric": metric,
        "validation": task.describe() if task is not None else None,
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "final_val_loss": history[-1]["val_loss"] if history else None,
        "final_val_accuracy": history[-1].get("val_accuracy") if history else None,
        "best_step": state.best_global_step,
        "best_val_loss": (
            finite(state.best_metric) if metric == "loss" else best and best["val_loss"]
        ),
        "best_val_accuracy": best.get("val_accuracy") if best else None,
        "saved_val_loss": finite(saved["eval_loss"]),
        "saved_val_accuracy": saved.get("eval_accuracy"),
        "eval_steps": state.eval_steps,  # the interval used (eval_steps: auto resolved)
        "global_steps": state.global_step,
        "max_steps": state.max_steps,
        "stopped_early": state.global_step < state.max_steps,
        "curation": curated.report,
        "memorization": curated.memorization,
        "diagnosis": diagnosis,
    }
    write_run_record(out, manifest, history)
    print_diagnosis(diagnosis, console)
    loss, acc = (_shown(manifest[k]) for k in ("best_val_loss", "best_val_accuracy"))
    shown = f"best validation loss {loss}"
    if metric == "accuracy":
        shown = f"best validation accuracy {acc} (loss {loss})"
    console.print(
        f"{shown} at step {manifest['best_step']} (of {state.global_step}); "
        f"adapter: {display_path(out)}",
        markup=False,
        highlight=False,
    )
    return TrainResult(output_dir=out, manifest=manifest, history=history)


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def print_curation(report: dict[str, Any], console: Any) -> None:
    """One line per curation step that changed something."""
    dup = report.get("duplicates", {})
    console.print(
        f"data: {report['train_rows']} training rows, "
        f"{dup.get('exact', 0)} exact and {dup.get('normalized', 0)} normalized duplicates removed",
        markup=False,
        highlight=False,
    )
    leak = report.get("leakage", {})
    if leak.get("leaking"):
        console.print(
            f"leakage: {leak['leaking']} training example(s) overlap the evaluation "
            f"data ({leak['exact']} exact, {leak['ngram']} n-gram); listed in the manifest",
            style="yellow",
            markup=False,
        )
    pii = report.get("pii", {})
    if pii.get("rows_with_pii"):
        found = ", ".join(f"{t} {n}" for t, n in pii["counts"].items() if n)
        done = "redacted" if pii["mode"] == "redact" else "kept (curation.pii: report)"
        shown = f"personal data: {pii['rows_with_pii']} row(s) ({found}); {done}"
        console.print(shown, style="yellow", markup=False)
