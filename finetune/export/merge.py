"""``merge_adapter``: a fine-tune run's LoRA adapter folded into its base model.

The result is a plain transformers checkpoint (safetensors, sharded as transformers
shards large models) with the run's tokenizer (which carries the chat template the run
trained with, when its tokenizer has one) and ``merge.json`` saying what was merged, so
``harness run`` loads it as a model of its own (suite ``model: {path: DIR}``), with no
adapter and no peft at scoring time.

What is merged is checked first, before anything loads:

* RUN is a finished ``finetune train`` output folder: ``manifest.json`` (whose
  ``base_model`` names the base and its fingerprint), ``adapter_config.json`` and the
  adapter's weights;
* the base (the manifest's path, or ``base`` to point elsewhere) is loaded by the
  harness's rules (``harness.model.files``: safetensors only unless ``allow_pickle``, no
  remote code unless ``trust_remote_code``) and must have the fingerprint the run
  recorded, unless ``allow_base_mismatch``: an adapter merged into other weights is a
  different model (``harness.model.adapter_base`` makes the same check at evaluation);
* the base must be stored unquantized: W + BA needs the real weights. A run trained on
  a quantized base (QLoRA) merges into the unquantized base, loaded in ``dtype``; the
  merged model then differs from the adapter on the quantized base by the quantization
  error, and the merge says so.

The base loads in ``dtype`` (float32 by default): the merged weights are computed and
saved in that precision. float32 costs 4 bytes per parameter in memory (32 GB for an 8B
model); bfloat16 and float16 halve that and round the merged weights to their precision.

The output folder is written whole or not at all (``finetune.export.folder``); an
existing non-empty folder is replaced only with ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.export.folder import staged_folder
from finetune.train.manifest import MANIFEST, library_versions
from harness.data.rows import display_path, resolve_path
from harness.errors import UserError
from harness.version import __version__

MERGE_RECORD = "merge.json"
MERGE_VERSION = 1
DTYPES = ("float32", "bfloat16", "float16")
ADAPTER_CONFIG = "adapter_config.json"

# user-facing messages (tests assert them exactly)
NOT_A_RUN = "{run}: not a fine-tune output folder ({reason})"
NO_FOLDER = "folder not found"
NO_MANIFEST = "no manifest.json; `finetune train` writes it when the run finishes"
BAD_MANIFEST = "manifest.json is not a JSON object"
NO_BASE_RECORD = "manifest.json names no base_model path and fingerprint"
NO_ADAPTER = "no adapter_config.json"
BAD_ADAPTER = "adapter_config.json is not a JSON object"
BASE_GONE = (
    "{run}: the base model it was trained on, '{path}', is not here; pass --base with "
    "that model's folder"
)
OUT_IS_FILE = "--out {out}: is a file, not a folder"
OUT_NOT_EMPTY = "--out {out}: the folder exists and is not empty; pass --overwrite to replace it"
OUT_HOLDS_INPUT = "--out {out}: would replace the {what} being merged ({path})"
BASE_MISMATCH = (
    "base model '{base}' has fingerprint {actual}, but the adapter of {run} was trained on "
    "{expected} (manifest.json base_model.fingerprint); pass --allow-base-mismatch to merge "
    "into it anyway"
)
QUANTIZED_BASE = (
    "base model '{base}' is stored quantized ({method}); merging needs its unquantized "
    "weights: pass --base with the unquantized checkpoint"
)
QUANTIZED_RUN = (
    "{run} was trained on a {bits}-bit quantized base; the merge loads the base "
    "unquantized in {dtype}, so the merged model differs from the adapter on the "
    "quantized base by the quantization error"
)
CANNOT_WRITE = "--out {out}: cannot write: {reason}"
BAD_SHARD_SIZE = "--max-shard-size: must be a size such as 5GB or 500MB, got '{size}'"
SHARD_SIZE = re.compile(r"[1-9][0-9]*(KB|MB|GB|KiB|MiB|GiB)")
BAD_DTYPE = "--dtype: must be one of {choices}, got '{dtype}'"


@dataclass(frozen=True)
class Run:
    """A finished fine-tune output folder, as ``read_run`` found it."""

    folder: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    adapter_config: dict[str, Any]


@dataclass(frozen=True)
class MergeResult:
    """What a merge wrote: the folder, its ``merge.json`` record, the warnings given."""

    out: Path
    record: dict[str, Any]
    warnings: tuple[str, ...]


def merge_adapter(
    run: str | Path,
    out: str | Path,
    *,
    base: str | None = None,
    dtype: str = "float32",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    allow_base_mismatch: bool = False,
    overwrite: bool = False,
    max_shard_size: str | None = None,
    console: Any = None,
) -> MergeResult:
    """Merge RUN's adapter into its base and write the checkpoint to ``out`` (module doc).

    Relative paths are taken from the current directory. Bad input raises UserError
    before anything is written; ``console`` (rich) shows the warnings as they arise."""
    from harness.model.adapter_base import compare_base
    from harness.model.files import OPT_IN_RUN, check_weights, resolve_folder
    from harness.model.fingerprint import fingerprint_folder

    if dtype not in DTYPES:
        raise UserError(BAD_DTYPE.format(choices=", ".join(DTYPES), dtype=dtype))
    if max_shard_size is not None and not SHARD_SIZE.fullmatch(max_shard_size):
        raise UserError(BAD_SHARD_SIZE.format(size=max_shard_size))
    found = read_run(run)
    run_folder, manifest = found.folder, found.manifest
    base_path = base if base is not None else str(manifest["base_model"]["path"])
    if base is None and Path(base_path).is_absolute() and not Path(base_path).is_dir():
        raise UserError(BASE_GONE.format(run=display_path(run_folder), path=base_path))
    base_folder = resolve_folder(base_path, what="base model")
    target = check_out(out, overwrite, inputs={"run": run_folder, "base model": base_folder})
    check_weights(base_folder, what="base model", allow_pickle=allow_pickle, opt_in=OPT_IN_RUN)
    check_weights(run_folder, what="adapter", allow_pickle=allow_pickle, opt_in=OPT_IN_RUN)
    check_unquantized(base_folder, base_path)

    base_fp = fingerprint_folder(base_folder, allow_pickle=allow_pickle)
    against = compare_base(run_folder, base_fp, base_path, allow_pickle=allow_pickle)
    against["allowed"] = allow_base_mismatch
    if against["match"] is False and not allow_base_mismatch:
        raise UserError(
            BASE_MISMATCH.format(
                base=base_path,
                actual=against["actual"],
                run=display_path(run_folder),
                expected=against["expected"],
            )
        )
    warnings = []
    trained_quantized = _trained_quantization(manifest)
    if trained_quantized is not None:
        bits = trained_quantized.get("bits", "?")
        warnings.append(QUANTIZED_RUN.format(run=display_path(run_folder), bits=bits, dtype=dtype))
    if console is not None:
        for line in warnings:
            console.print(f"warning: {line}", style="yellow", markup=False, highlight=False)

    merged, tokenizer = _merged_model(
        base_folder, base_path, run_folder, dtype, allow_pickle, trust_remote_code
    )
    record: dict[str, Any] = {
        "merge_version": MERGE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "harness_version": __version__,
        "libraries": library_versions(),
        "dtype": dtype,
        "base_model": base_fp.as_dict(),
        "adapter": fingerprint_folder(run_folder, allow_pickle=allow_pickle).as_dict(),
        "adapter_base": against,
        "run": {"path": str(run_folder), "manifest_sha256": found.manifest_sha256},
        "lora": _lora_summary(found.adapter_config),
        "trained_on_quantized_base": trained_quantized,
        "warnings": warnings,
    }
    write_checkpoint(target, merged, tokenizer, record, max_shard_size=max_shard_size)
    return MergeResult(out=target, record=record, warnings=tuple(warnings))


def write_checkpoint(
    target: Path, model: Any, tokenizer: Any, record: dict[str, Any], *, max_shard_size: str | None
) -> None:
    """Save model, tokenizer and ``record`` (as merge.json, with the fingerprint the
    harness will give the folder) to ``target``, whole or not at all."""
    from harness.model.fingerprint import fingerprint_folder

    save: dict[str, Any] = {"safe_serialization": True}
    if max_shard_size is not None:
        save["max_shard_size"] = max_shard_size
    try:
        with staged_folder(target) as staging:
            model.save_pretrained(str(staging), **save)
            tokenizer.save_pretrained(str(staging))
            # what the harness will name this model by (merge.json itself is not hashed)
            digest = fingerprint_folder(staging, allow_pickle=False).digest
            record["merged"] = {"fingerprint": digest}
            text = json.dumps(record, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
            (staging / MERGE_RECORD).write_text(text, encoding="utf-8")
    except OSError as exc:  # a full disk, no permission: nothing was left behind
        reason = exc.strerror or str(exc)
        raise UserError(CANNOT_WRITE.format(out=display_path(target), reason=reason)) from None


def read_run(run: str | Path) -> Run:
    """The run folder with its manifest and adapter config, or a UserError saying why the
    folder is not a finished fine-tune run."""
    folder = resolve_path(run, Path.cwd())
    shown = display_path(folder)
    if not folder.is_dir():
        raise UserError(NOT_A_RUN.format(run=shown, reason=NO_FOLDER))
    raw = _read_bytes(folder / MANIFEST, NOT_A_RUN.format(run=shown, reason=NO_MANIFEST))
    manifest = _json_object(raw)
    if manifest is None:
        raise UserError(NOT_A_RUN.format(run=shown, reason=BAD_MANIFEST))
    recorded = manifest.get("base_model")
    if not (
        isinstance(recorded, dict)
        and isinstance(recorded.get("path"), str)
        and isinstance(recorded.get("fingerprint"), str)
    ):
        raise UserError(NOT_A_RUN.format(run=shown, reason=NO_BASE_RECORD))
    adapter_raw = _read_bytes(
        folder / ADAPTER_CONFIG, NOT_A_RUN.format(run=shown, reason=NO_ADAPTER)
    )
    adapter_config = _json_object(adapter_raw)
    if adapter_config is None:
        raise UserError(NOT_A_RUN.format(run=shown, reason=BAD_ADAPTER))
    return Run(folder, manifest, hashlib.sha256(raw).hexdigest(), adapter_config)


def _read_bytes(path: Path, missing: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(missing) from None
    except OSError as exc:
        raise UserError(f"{display_path(path)}: cannot read: {exc.strerror or exc}") from None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def check_out(out: str | Path, overwrite: bool, *, inputs: dict[str, Path]) -> Path:
    """The output folder, absolute; refused when it is a file, holds files (unless
    ``overwrite``), or is or holds one of the ``inputs`` (never replaced, even with
    ``overwrite``)."""
    target = resolve_path(out, Path.cwd())
    shown = display_path(target)
    for what, path in inputs.items():
        if path.resolve().is_relative_to(target.resolve()):
            raise UserError(OUT_HOLDS_INPUT.format(out=shown, what=what, path=display_path(path)))
    if target.exists() and not target.is_dir():
        raise UserError(OUT_IS_FILE.format(out=shown))
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise UserError(OUT_NOT_EMPTY.format(out=shown))
    return target


def check_unquantized(folder: Path, shown: str) -> None:
    """Refuse a checkpoint stored quantized (its config.json has a quantization_config)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # transformers reports a missing or broken config when it loads
    quantization = config.get("quantization_config") if isinstance(config, dict) else None
    if quantization:
        method = "unknown method"
        if isinstance(quantization, dict):
            method = str(quantization.get("quant_method", method))
        raise UserError(QUANTIZED_BASE.format(base=shown, method=method))


def _trained_quantization(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The quantization the run's base was trained under (config base_model.quantization)."""
    config = manifest.get("config")
    base = config.get("base_model") if isinstance(config, dict) else None
    quantization = base.get("quantization") if isinstance(base, dict) else None
    return quantization if isinstance(quantization, dict) and quantization else None


def _lora_summary(config: dict[str, Any]) -> dict[str, Any]:
    """The adapter settings that decide what the merge adds (adapter_config.json)."""
    keys = ("peft_type", "r", "lora_alpha", "use_rslora", "use_dora", "target_modules")
    return {k: config.get(k) for k in keys if k in config} | {
        "modules_to_save": config.get("modules_to_save")
    }


def _merged_model(
    base_folder: Path,
    base_path: str,
    run_folder: Path,
    dtype: str,
    allow_pickle: bool,
    trust_remote_code: bool,
) -> tuple[Any, Any]:
    """(the base with the adapter merged in and peft's layers removed, the run's tokenizer)."""
    from harness.model.files import (
        LOAD_ERRORS,
        PICKLE_ERRORS,
        ModelSource,
        load_for_training,
        load_tokenizer,
        pickle_failure,
    )

    source = ModelSource(
        path=str(base_folder),
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
        dtype=dtype,
    )
    model, _tokenizer, _fingerprint = load_for_training(source)
    if _is_quantized(model):
        method = getattr(getattr(model, "hf_quantizer", None), "quantization_config", None)
        shown = str(getattr(method, "quant_method", "bitsandbytes"))
        raise UserError(QUANTIZED_BASE.format(base=base_path, method=shown))
    model.eval()
    try:
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(model, str(run_folder), is_trainable=False)
    except PICKLE_ERRORS as exc:
        raise pickle_failure("adapter", str(run_folder), run_folder, exc) from None
    except LOAD_ERRORS as exc:
        text = str(exc).strip().splitlines()
        reason = text[0][:300] if text else type(exc).__name__
        raise UserError(f"adapter '{display_path(run_folder)}': cannot load: {reason}") from None
    merged = peft_model.merge_and_unload()
    tok_folder = run_folder if (run_folder / "tokenizer_config.json").exists() else base_folder
    return merged, load_tokenizer(source, tok_folder)


def _is_quantized(model: Any) -> bool:
    return bool(
        getattr(model, "hf_quantizer", None) is not None
        or getattr(model, "is_loaded_in_4bit", False)
        or getattr(model, "is_loaded_in_8bit", False)
    )
