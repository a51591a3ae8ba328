"""Run lm-evaluation-harness (the reference implementation) on local files, offline.

Shared by the agreement tests (``tests/model/test_lmeval_reference.py``) and benchmarks that
compare this harness with lm-eval. Nothing here downloads anything: the model is a
local folder, the data a local JSON-lines file read through the ``json`` dataset
builder, and the hub is switched off before ``lm_eval``, ``datasets`` or
``huggingface_hub`` are imported by this module (and forced off again if another
module imported them first).

Typical use::

    folder = tmp / "tasks"
    write_jsonl(folder / "sst2.jsonl", rows)
    write_multiple_choice_task(folder, "sst2_local", folder / "sst2.jsonl",
                               doc_to_text="Review: {{sentence}}\\nSentiment:",
                               choices=[" negative", " positive"], target="label")
    out = simple_evaluate_local(model_folder, folder, ["sst2_local"], batch_size=16)
    out["results"]["sst2_local"]["acc,none"]
    choice_logliks(out, "sst2_local")  # [[ll per choice] per doc, in data order]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(OFFLINE_ENV)


def force_offline() -> None:
    """Set the offline switches, also in hub/datasets modules imported before us."""
    import sys

    os.environ.update(OFFLINE_ENV)
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    ds = sys.modules.get("datasets.config")
    if ds is not None:
        ds.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
        if hasattr(ds, "HF_DATASETS_OFFLINE"):
            ds.HF_DATASETS_OFFLINE = True  # type: ignore[attr-defined]


def is_offline() -> bool:
    """Whether the hub client (and so transformers and datasets) is in offline mode."""
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


# -- data and task files ------------------------------------------------------------


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(dict(row), ensure_ascii=False) + "\n")
    return path


def read_tsv(path: Path, limit: int | None = None) -> list[dict[str, str]]:
    """A tab-separated file with a header line (e.g. GLUE SST-2) as dicts."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:] if line]
    return rows[:limit] if limit is not None else rows


def _dataset_kwargs(folder: Path, data_file: Path) -> dict[str, Any]:
    """Read ``data_file`` with the ``json`` builder, its Arrow cache kept in ``folder``
    (not in the user's ~/.cache)."""
    return {
        "data_files": {"test": str(Path(data_file).resolve())},
        "cache_dir": str((folder / ".datasets_cache").resolve()),
    }


def _write_task(folder: Path, config: dict[str, Any]) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{config['task']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), "utf-8")
    return path


def write_multiple_choice_task(
    folder: Path,
    name: str,
    data_file: Path,
    *,
    doc_to_text: str,
    choices: Sequence[str],
    target: str,
    target_delimiter: str = "",
    metrics: Sequence[str] = ("acc",),
) -> Path:
    """A zero-shot multiple-choice task over a local jsonl file.

    lm-eval scores the continuation ``target_delimiter + choice`` after the rendered
    ``doc_to_text``; with the default delimiter ``""`` here the choices are used
    verbatim, so ``choices=[" negative", " positive"]`` gives exactly the strings
    this harness scores for a classification task with those choices.
    """
    return _write_task(
        folder,
        {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": _dataset_kwargs(folder, data_file),
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": doc_to_text,
            "doc_to_choice": list(choices),
            "doc_to_target": target,
            "target_delimiter": target_delimiter,
            "num_fewshot": 0,
            "metric_list": [
                {"metric": m, "aggregation": "mean", "higher_is_better": True} for m in metrics
            ],
        },
    )


def write_generation_task(
    folder: Path,
    name: str,
    data_file: Path,
    *,
    doc_to_text: str,
    doc_to_target: str,
    until: Sequence[str],
    max_gen_toks: int,
    filters: Mapping[str, tuple[str, int]],
    exact_match: Mapping[str, Any],
) -> Path:
    """A zero-shot ``generate_until`` task (greedy) over a local jsonl file, scored by
    ``exact_match`` (its options: ``ignore_case``, ``regexes_to_ignore``, ...) under
    each filter of ``filters``: {filter name: (regex pattern, group_select)}, each a
    ``regex`` filter then ``take_first``, as lm-eval's gsm8k.yaml writes them."""
    return _write_task(
        folder,
        {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": _dataset_kwargs(folder, data_file),
            "test_split": "test",
            "output_type": "generate_until",
            "doc_to_text": doc_to_text,
            "doc_to_target": doc_to_target,
            "num_fewshot": 0,
            "generation_kwargs": {
                "until": list(until),
                "do_sample": False,
                "max_gen_toks": max_gen_toks,
            },
            "filter_list": [
                {
                    "name": filter_name,
                    "filter": [
                        {"function": "regex", "regex_pattern": pattern, "group_select": select},
                        {"function": "take_first"},
                    ],
                }
                for filter_name, (pattern, select) in filters.items()
            ],
            "metric_list": [
                {
                    "metric": "exact_match",
                    "aggregation": "mean",
                    "higher_is_better": True,
                    **exact_match,
                }
            ],
        },
    )


class Function(str):
    """A task-file value written as ``!function MODULE.NAME``: a function of a .py file
    beside the task file (lm-eval's own tasks name their Python helpers so)."""


def write_task(
    folder: Path,
    name: str,
    data_files: Mapping[str, Path],
    config: Mapping[str, Any],
    *,
    modules: Mapping[str, str] | None = None,
) -> Path:
    """A task of any shape over local jsonl files, one per split (e.g. ``{"test": ...,
    "dev": ...}``, read with the ``json`` builder, its cache kept in ``folder``).

    ``config`` is the rest of lm-eval's task config, written as given (``doc_to_text``,
    ``fewshot_split``, ``description``...; a :class:`Function` value becomes a
    ``!function`` tag). ``modules`` maps a file name (``utils.py``) to the Python
    source to write beside the task file, for those functions. The folder is indexed
    as a whole, so give each task with its own modules a folder of its own.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for filename, source in (modules or {}).items():
        (folder / filename).write_text(source, "utf-8")
    cache_dir = (folder / ".datasets_cache").resolve()
    full = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {
            "data_files": {split: str(Path(f).resolve()) for split, f in data_files.items()},
            "cache_dir": str(cache_dir),
        },
        **config,
    }
    path = folder / f"{name}.yaml"
    path.write_text(_dump_task(full), "utf-8")
    return path


def _dump_task(config: Mapping[str, Any]) -> str:
    """YAML of a task config, :class:`Function` values under lm-eval's ``!function`` tag."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(
        Function, lambda dumper, value: dumper.represent_scalar("!function", str(value))
    )
    return str(yaml.dump(dict(config), Dumper=Dumper, sort_keys=False, allow_unicode=True))


def write_rolling_task(folder: Path, name: str, data_file: Path, *, text_field: str) -> Path:
    """A perplexity task (``loglikelihood_rolling``) over a local jsonl file."""
    return _write_task(
        folder,
        {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": _dataset_kwargs(folder, data_file),
            "test_split": "test",
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "{{" + text_field + "}}",
            "num_fewshot": 0,
            "metric_list": [
                {"metric": "word_perplexity"},
                {"metric": "byte_perplexity"},
                {"metric": "bits_per_byte"},
            ],
        },
    )


# -- running lm-eval ----------------------------------------------------------------


def model_args(model_folder: Path | str, *, dtype: str = "float32") -> str:
    return f"pretrained={Path(model_folder).resolve()},dtype={dtype}"


def simple_evaluate_local(
    model: Path | str | Any,
    task_folder: Path,
    tasks: Sequence[str],
    *,
    batch_size: int = 16,
    dtype: str = "float32",
    device: str = "cpu",
    limit: int | None = None,
    apply_chat_template: bool = False,
    system_instruction: str | None = None,
    fewshot_as_multiturn: bool | None = None,
) -> dict[str, Any]:
    """``lm_eval.simple_evaluate`` on tasks defined by the YAML files in ``task_folder``.

    ``model`` is a model folder (loaded as ``hf`` with ``dtype``) or an already built
    lm-eval ``LM`` (e.g. from :func:`hf_lm`, to load a model once for several runs).
    Only ``task_folder`` is indexed (``include_defaults=False``: indexing lm-eval's
    thousands of built-in task files costs seconds and is not needed). No stderr
    bootstrap, samples logged. ``apply_chat_template``, ``system_instruction`` and
    ``fewshot_as_multiturn`` are lm-eval's chat options (``--apply_chat_template``...);
    ``fewshot_as_multiturn`` left None keeps lm-eval's default.
    """
    force_offline()
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task_folder), include_defaults=False)
    is_path = isinstance(model, str | Path)
    chat: dict[str, Any] = {
        "apply_chat_template": apply_chat_template,
        "system_instruction": system_instruction,
    }
    if fewshot_as_multiturn is not None:
        chat["fewshot_as_multiturn"] = fewshot_as_multiturn
    out = lm_eval.simple_evaluate(
        model="hf" if is_path else model,
        model_args=model_args(model, dtype=dtype) if is_path else None,
        tasks=list(tasks),
        task_manager=manager,
        batch_size=batch_size,
        device=device,
        limit=limit,
        log_samples=True,
        bootstrap_iters=0,
        **chat,
    )
    if out is None:  # only non-zero ranks of a distributed run get None
        raise RuntimeError("lm_eval.simple_evaluate returned no results")
    return dict(out)


def hf_lm(
    model_folder: Path | str, *, batch_size: int = 16, dtype: str = "float32", device: str = "cpu"
) -> Any:
    """lm-eval's HFLM on a local model folder (for direct request-level calls)."""
    force_offline()
    from lm_eval.models.huggingface import HFLM

    return HFLM(
        pretrained=str(Path(model_folder).resolve()),
        dtype=dtype,
        device=device,
        batch_size=batch_size,
    )


def rolling_logliks(lm: Any, texts: Sequence[str]) -> list[float]:
    """lm-eval's ``loglikelihood_rolling`` of each text: the sum of token log-probs."""
    from lm_eval.api.instance import Instance

    requests = [
        Instance(
            request_type="loglikelihood_rolling",
            doc={"text": t},
            arguments=(t,),
            idx=0,
            metadata=("local", i, 1),
        )
        for i, t in enumerate(texts)
    ]
    return [float(x) for x in lm.loglikelihood_rolling(requests, disable_tqdm=True)]


def loglikelihoods(lm: Any, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
    """lm-eval's ``loglikelihood`` of each (context, continuation)."""
    from lm_eval.api.instance import Instance

    requests = [
        Instance(
            request_type="loglikelihood",
            doc={},
            arguments=(c, x),
            idx=0,
            metadata=("local", i, 1),
        )
        for i, (c, x) in enumerate(pairs)
    ]
    return [(float(ll), bool(g)) for ll, g in lm.loglikelihood(requests, disable_tqdm=True)]


# -- reading results ----------------------------------------------------------------


def samples(out: Mapping[str, Any], task: str) -> list[dict[str, Any]]:
    """The logged samples of one task, in data order (by ``doc_id``)."""
    return sorted(out["samples"][task], key=lambda s: s["doc_id"])


def _ll(resp: Any) -> float:
    """The log-likelihood of one response: ``(ll, is_greedy)`` or a bare float."""
    while isinstance(resp, list | tuple):
        resp = resp[0]
    return float(resp)


def choice_logliks(out: Mapping[str, Any], task: str) -> list[list[float]]:
    """Per document, the log-likelihood of each choice (from ``filtered_resps``)."""
    return [[_ll(r) for r in s["filtered_resps"]] for s in samples(out, task)]


def doc_logliks(out: Mapping[str, Any], task: str) -> list[float]:
    """Per document, the rolling log-likelihood (``loglikelihood_rolling`` tasks)."""
    return [_ll(s["filtered_resps"]) for s in samples(out, task)]


def metric(out: Mapping[str, Any], task: str, name: str, filter_key: str = "none") -> float:
    """An aggregated metric, e.g. ``metric(out, task, "acc")`` -> ``results[task]["acc,none"]``."""
    return float(out["results"][task][f"{name},{filter_key}"])


def request_pairs(out: Mapping[str, Any], task: str) -> list[list[tuple[str, str]]]:
    """Per document, the (context, continuation) of each loglikelihood request."""
    return [[(str(a[0]), str(a[1])) for a in s["arguments"]] for s in samples(out, task)]


def per_doc(out: Mapping[str, Any], task: str, name: str) -> list[float]:
    """Per document, one metric's value as lm-eval logged it (``acc``, ``acc_norm``)."""
    return [float(s[name]) for s in samples(out, task)]
