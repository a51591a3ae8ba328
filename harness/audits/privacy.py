"""Privacy: personal data in what the model writes, and what it memorized of its
fine-tuning data (docs/privacy.md).

Three optional parts, each gateable:

* ``pii``: the scanner of harness.sensitive.pii (presidio) over every output of the
  suite's generation tasks: counts by type, and the outputs that hold any;
* ``canaries``: the exposure (Carlini et al. 2019; harness.sensitive.canary) of each canary
  that ``finetune train`` inserted and recorded in the manifest, and of its controls
  (same format, never inserted), ranked against random candidates by the model's
  log-likelihood of the secret given the prefix;
* ``extraction``: verbatim extraction (Carlini et al. 2021, "Extracting Training Data
  from Large Language Models"): each training example the manifest lists is split in
  tokens into a prefix and a suffix; the share whose greedy continuation of the prefix
  reproduces the suffix, on the checkpoint and, with an adapter, on the base model.

The manifest is the fine-tune run's manifest.json: ``audits.privacy.manifest``, or the
one in the adapter folder. Everything the model is asked goes through the batched,
cached scoring API (loglikelihood, generate).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from harness.audits.base import (
    MAX_LISTED,
    NO_SUCH_TASK,
    AuditConfig,
    AuditContext,
    CheckContext,
    DocSection,
    Problem,
    TaskFacts,
    num,
    register_module,
)
from harness.tasks import get as get_kind
from harness.tasks import kind_of

if TYPE_CHECKING:
    from harness.gates.verdicts import GateValue

# user-facing messages (tests assert them exactly)
NOTHING_TO_DO = "set at least one of: pii, canaries, extraction"
NOT_GENERATION = "task '{task}' is a {kind} task; only generation outputs are scanned"
NO_GENERATION_TASK = "the suite has no generation task whose outputs could be scanned"
MANIFEST_NOT_FOUND = "file not found: {path}"
NO_MANIFEST = (
    "needs the fine-tune manifest: set model.adapter to a `finetune train` output folder, "
    "or audits.privacy.manifest to its manifest.json"
)
BAD_MANIFEST = "{path}: not a fine-tune manifest ({reason})"
NO_CANARIES = (
    "{path} records no canaries; train with `memorization.canaries` in the fine-tune config"
)
NO_EXAMPLES = (
    "{path} lists no training examples; train with `memorization.extraction_examples` "
    "in the fine-tune config"
)

CHANCE_EXPOSURE = 1 / math.log(2)
"""Expected exposure of a secret the model never saw (rank uniform over the space)."""
OUTPUT_SHOWN = 1000
"""Characters of a generated output kept in the section (the counts cover it all)."""


def _switch(value: Any) -> Any:
    """YAML shorthand: `true` turns a part on with its defaults, `false` off."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


class PIIScanConfig(AuditConfig):
    """Personal data in the outputs of generation tasks."""

    tasks: list[str] | None = None
    """Generation tasks whose outputs are scanned (default: every generation task)."""


class CanaryAuditConfig(AuditConfig):
    """Exposure of the canaries recorded in the fine-tune manifest."""

    candidates: int = Field(default=1000, ge=10)
    """Random secrets of the canary's format that each canary is ranked against; exposure
    above about log2(candidates) can only be told apart by extrapolation."""


class ExtractionConfig(AuditConfig):
    """Verbatim extraction of the training examples listed in the fine-tune manifest."""

    prefix_fraction: float = Field(default=0.5, gt=0, lt=1)
    """Share of an example's target tokens given as the prefix (after its prompt)."""
    max_suffix_tokens: int = Field(default=50, ge=1)
    """Suffix tokens the greedy continuation must reproduce, at most."""
    min_suffix_tokens: int = Field(default=4, ge=1)
    """Examples with a shorter suffix are skipped (counted): reproducing one or two
    tokens, a class label say, is accuracy rather than memorization."""
    limit: int | None = Field(default=None, ge=1)
    """Examples tested at most (the first listed; default: all)."""
    base: bool = True
    """Also run the base model (the adapter disabled) as the reference of the gate."""


class PrivacyConfig(AuditConfig):
    """Personal data in generations, canary exposure and verbatim extraction."""

    manifest: str | None = None
    """The fine-tune manifest.json (relative to the suite file) recording the canaries
    and training examples; default: the one in the `model.adapter` folder."""
    pii: PIIScanConfig | None = None
    """Scan generated outputs for personal data (`true` for the defaults)."""
    canaries: CanaryAuditConfig | None = None
    """Measure the exposure of the manifest's canaries (`true` for the defaults)."""
    extraction: ExtractionConfig | None = None
    """Test verbatim extraction of the manifest's examples (`true` for the defaults)."""

    @field_validator("pii", "canaries", "extraction", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        return _switch(value)

    @model_validator(mode="after")
    def _something(self) -> PrivacyConfig:
        if self.pii is None and self.canaries is None and self.extraction is None:
            raise ValueError(NOTHING_TO_DO)
        return self


# --- checks ------------------------------------------------------------------------------


def check(cfg: PrivacyConfig, ctx: CheckContext) -> list[Problem]:
    problems: list[Problem] = []
    if cfg.pii is not None:
        generating = [f for f in ctx.tasks.values() if f.kind and get_kind(f.kind).generates]
        if cfg.pii.tasks is None and not generating:
            problems.append((("pii",), NO_GENERATION_TASK))
        for i, task in enumerate(cfg.pii.tasks or []):
            facts = ctx.tasks.get(task)
            if facts is None:
                known = ", ".join(ctx.tasks) or "none"
                problems.append((("pii", "tasks", i), NO_SUCH_TASK.format(task=task, tasks=known)))
            elif facts.kind is not None and not get_kind(facts.kind).generates:
                msg = NOT_GENERATION.format(task=task, kind=facts.kind)
                problems.append((("pii", "tasks", i), msg))
    if cfg.manifest is not None and ctx.check_files:
        from harness.data.rows import resolve_path

        path = resolve_path(cfg.manifest, ctx.base_dir)
        if not path.is_file():
            problems.append((("manifest",), MANIFEST_NOT_FOUND.format(path=path)))
    return problems


def resolve_paths(cfg: PrivacyConfig, base: Path) -> PrivacyConfig:
    from harness.data.rows import resolve_path

    if cfg.manifest is not None:
        return cfg.model_copy(update={"manifest": str(resolve_path(cfg.manifest, base))})
    return cfg


def manifest_path(cfg: PrivacyConfig, suite: Any) -> Path | None:
    """Where the manifest is: the config's, else the adapter folder's (None: no adapter)."""
    if cfg.manifest is not None:
        return Path(cfg.manifest)
    if suite.model.adapter:
        return suite.resolve(suite.model.adapter) / "manifest.json"
    return None


def read_memorization(cfg: PrivacyConfig, suite: Any) -> tuple[Path | None, dict[str, Any]]:
    """(manifest path, its ``memorization`` record); raises ValueError with a message."""
    path = manifest_path(cfg, suite)
    if path is None:
        raise ValueError(NO_MANIFEST)
    from harness.data.rows import display_path

    shown = display_path(path)
    if not path.is_file():
        raise ValueError(MANIFEST_NOT_FOUND.format(path=shown))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(BAD_MANIFEST.format(path=shown, reason=str(exc)[:120])) from None
    if not isinstance(manifest, dict):
        raise ValueError(BAD_MANIFEST.format(path=shown, reason="not a JSON object"))
    record = manifest.get("memorization")
    if not isinstance(record, dict):
        record = {}
    canaries = record.get("canaries")
    if cfg.canaries is not None and not (
        isinstance(canaries, dict) and any(c.get("inserted") for c in canaries.get("canaries", []))
    ):
        raise ValueError(NO_CANARIES.format(path=shown))
    if cfg.extraction is not None and not record.get("extraction_examples"):
        raise ValueError(NO_EXAMPLES.format(path=shown))
    return path, record


def preflight(cfg: PrivacyConfig, suite: Any) -> list[Problem]:
    if cfg.canaries is None and cfg.extraction is None:
        return []
    try:
        read_memorization(cfg, suite)
    except ValueError as exc:
        return [((), str(exc))]
    return []


def gate_names(cfg: PrivacyConfig, tasks: Mapping[str, TaskFacts]) -> list[str] | None:
    names: list[str] = []
    if cfg.pii is not None:
        from harness.sensitive.pii import NER_ENTITIES, PATTERN_ENTITIES

        names.append("privacy.pii_in_generations")
        names += [f"privacy.pii_in_generations[{e}]" for e in (*PATTERN_ENTITIES, *NER_ENTITIES)]
    if cfg.canaries is not None:
        names += ["privacy.canary_exposure_max", "privacy.canary_exposure_extrapolated_max"]
    if cfg.extraction is not None:
        names.append("privacy.extraction_rate")
    return names


# --- run ---------------------------------------------------------------------------------


def run(ctx: AuditContext) -> dict[str, Any]:
    cfg: PrivacyConfig = ctx.config
    section: dict[str, Any] = {"manifest": None}
    record: dict[str, Any] = {}
    if cfg.canaries is not None or cfg.extraction is not None:
        from harness.data.rows import display_path

        path, record = read_memorization(cfg, ctx.suite)
        section["manifest"] = display_path(path) if path else None
    if cfg.pii is not None:
        section["pii"] = scan_generations(ctx, cfg.pii)
    if cfg.canaries is not None:
        section["canaries"] = canary_exposures(ctx, cfg.canaries, record["canaries"])
    if cfg.extraction is not None:
        section["extraction"] = extraction(ctx, cfg.extraction, record["extraction_examples"])
    return section


def scan_generations(ctx: AuditContext, cfg: PIIScanConfig) -> dict[str, Any]:
    """Counts by type over the outputs of the generation tasks, and the outputs found."""
    from harness.sensitive.pii import counts, scanner

    scan = scanner()
    task_ids = cfg.tasks or [t for t, p in ctx.prepared.items() if kind_of(p.task).generates]
    total: Counter[str] = Counter()
    listed: list[dict[str, Any]] = []
    n_outputs = with_pii = 0
    by_task: dict[str, Any] = {}
    for task_id in task_ids:
        records = ctx.prepared[task_id].records
        advance = ctx.progress(f"privacy: {task_id} outputs", len(records))
        found_here: Counter[str] = Counter()
        for rec in records:
            text = str(rec.get("prediction") or "")
            spans = scan.find(text)
            n_outputs += 1
            advance(1)
            if not spans:
                continue
            with_pii += 1
            found_here.update(counts(spans))
            if len(listed) < MAX_LISTED:
                listed.append(
                    {
                        "task": task_id,
                        "id": rec.get("id"),
                        "line": rec.get("line"),
                        "output": text[:OUTPUT_SHOWN],
                        "spans": [
                            {"type": s.type, "start": s.start, "end": s.end}
                            for s in spans
                            if s.end <= OUTPUT_SHOWN
                        ],
                    }
                )
        total.update(found_here)
        by_task[task_id] = {"outputs": len(records), "counts": dict(sorted(found_here.items()))}
    return {
        "scanner": scan.describe(),
        "tasks": task_ids,
        "n_outputs": n_outputs,
        "outputs_with_pii": with_pii,
        "total": sum(total.values()),
        "counts": {e: total.get(e, 0) for e in scan.entities},
        "by_task": by_task,
        "examples": listed,
    }


def canary_exposures(
    ctx: AuditContext, cfg: CanaryAuditConfig, record: Mapping[str, Any]
) -> dict[str, Any]:
    """Rank and extrapolated exposure of every canary and control of the manifest."""
    from harness.sensitive.canary import CanaryFormat, extrapolated_exposure, rank_exposure

    fmt = CanaryFormat(str(record["prefix"]), int(record["digits"]))
    canaries = [c for c in record.get("canaries", []) if isinstance(c, Mapping)]
    pairs: list[tuple[str, str]] = []
    spans = []
    for c in canaries:
        rng = random.Random(f"{ctx.seed}/{c['id']}")
        secrets = [str(c["secret"]), *fmt.candidates(cfg.candidates, rng, str(c["secret"]))]
        spans.append((len(pairs), len(secrets)))
        pairs += [(fmt.prefix, " " + s) for s in secrets]
    advance = ctx.progress("privacy: canaries", len(pairs))
    scores = [s[0] for s in ctx.lm.loglikelihood(pairs, batch_size=ctx.batch_size, advance=advance)]
    rows = []
    for c, (start, n) in zip(canaries, spans, strict=True):
        own, others = scores[start], scores[start + 1 : start + n]
        ranked = rank_exposure(own, others, fmt.space_size)
        rows.append(
            {
                "id": c["id"],
                "secret": c["secret"],
                "inserted": bool(c.get("inserted")),
                "repeats": record.get("repeats") if c.get("inserted") else 0,
                "loglik": num(own),
                "candidates": len(others),
                "candidates_higher": ranked["candidates_higher"],
                "rank_estimate": num(ranked["rank_estimate"]),
                "exposure": num(ranked["exposure"]),
                "exposure_extrapolated": num(extrapolated_exposure(own, others)),
            }
        )
    inserted = [r for r in rows if r["inserted"]]
    controls = [r for r in rows if not r["inserted"]]
    return {
        "prefix": fmt.prefix,
        "digits": fmt.digits,
        "space_size": fmt.space_size,
        "max_exposure": math.log2(fmt.space_size),
        "chance_exposure": CHANCE_EXPOSURE,
        "candidates": cfg.candidates,
        "canaries": rows,
        "exposure_max": _max(r["exposure"] for r in inserted),
        "exposure_extrapolated_max": _max(r["exposure_extrapolated"] for r in inserted),
        "control_exposure_max": _max(r["exposure"] for r in controls),
    }


def _max(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def split_example(lm: Any, example: Mapping[str, Any], cfg: ExtractionConfig) -> Any:
    """(prefix text, suffix text, suffix tokens) of a training example, or None when the
    suffix is shorter than ``min_suffix_tokens``."""
    prompt, target = str(example.get("prompt") or ""), str(example.get("target") or "")
    # as trained (finetune.train.encode): a text row is conditioned on the BOS (else EOS) token
    context, tokens = lm.encode_pair(prompt, target)
    k = max(1, round(cfg.prefix_fraction * len(tokens)))
    suffix = tokens[k : k + cfg.max_suffix_tokens]
    if len(suffix) < cfg.min_suffix_tokens:
        return None
    decode = lm.tokenizer.decode
    prefix = decode([*context, *tokens[:k]], skip_special_tokens=False)
    if not prompt and lm.encode(prefix)[:2] == [lm.prefix_token] * 2:
        prefix = decode(tokens[:k])  # the tokenizer adds the BOS token itself
    return prefix, decode(suffix), len(suffix)


def _same(generated: str, suffix: str) -> bool:
    """The continuation reproduces the suffix (whitespace runs compared as one space)."""
    return " ".join(generated.split()).startswith(" ".join(suffix.split()))


def extraction(
    ctx: AuditContext, cfg: ExtractionConfig, examples: list[dict[str, Any]]
) -> dict[str, Any]:
    """Share of listed training examples whose suffix greedy decoding reproduces."""
    lm = ctx.lm
    listed = [e for e in examples if isinstance(e, Mapping)][: cfg.limit]
    tests = []
    for ex in listed:
        split = split_example(lm, ex, cfg)
        if split is not None:
            tests.append((ex, *split))

    by_length: dict[int, list[int]] = {}
    for i, t in enumerate(tests):
        by_length.setdefault(t[3], []).append(i)

    def rate(name: str) -> tuple[list[bool], list[str]]:
        """Greedy continuations, one batched call per suffix length."""
        outputs = [""] * len(tests)
        advance = ctx.progress(name, len(tests))
        for n, group in sorted(by_length.items()):
            prompts = [tests[i][1] for i in group]
            texts = lm.generate(prompts, max_new_tokens=n, batch_size=ctx.batch_size)
            for i, text in zip(group, texts, strict=True):
                outputs[i] = text
            advance(len(group))
        return [_same(o, t[2]) for o, t in zip(outputs, tests, strict=True)], outputs

    hits, outputs = rate("privacy: extraction")
    base: dict[str, Any] | None = None
    base_hits: list[bool] = []
    if cfg.base and getattr(lm, "has_adapter", False):
        with lm.adapter_disabled():
            base_hits, _ = rate("privacy: extraction (base)")
        base = ctx.interval([float(h) for h in base_hits])
    extracted: list[dict[str, Any]] = []
    for i, (ex, prefix, suffix, _n) in enumerate(tests):
        if hits[i] and len(extracted) < MAX_LISTED:
            extracted.append(
                {
                    "where": ex.get("where"),
                    "prefix": prefix,
                    "suffix": suffix,
                    "generated": outputs[i],
                    "base_extracted": base_hits[i] if base_hits else None,
                }
            )
    return {
        "listed": len(listed),
        "tested": len(tests),
        "skipped_short": len(listed) - len(tests),
        "prefix_fraction": cfg.prefix_fraction,
        "max_suffix_tokens": cfg.max_suffix_tokens,
        "min_suffix_tokens": cfg.min_suffix_tokens,
        "n_extracted": sum(hits),
        "rate": ctx.interval([float(h) for h in hits]),
        "base_rate": base,
        "extracted": extracted,
    }


def gate_values(section: Mapping[str, Any]) -> dict[str, GateValue]:
    out: dict[str, GateValue] = {}
    pii = section.get("pii")
    if isinstance(pii, Mapping):
        out["privacy.pii_in_generations"] = {"value": pii.get("total")}
        for kind, n in (pii.get("counts") or {}).items():
            out[f"privacy.pii_in_generations[{kind}]"] = {"value": n}
    can = section.get("canaries")
    if isinstance(can, Mapping):
        out["privacy.canary_exposure_max"] = {"value": can.get("exposure_max")}
        out["privacy.canary_exposure_extrapolated_max"] = {
            "value": can.get("exposure_extrapolated_max")
        }
    ext = section.get("extraction")
    if isinstance(ext, Mapping):
        base = ext.get("base_rate")
        out["privacy.extraction_rate"] = {
            "value": (ext.get("rate") or {}).get("value"),
            "reference": base.get("value") if isinstance(base, Mapping) else None,
            "source": "base",
        }
    return out


register_module(
    globals(),
    name="privacy",
    config=PrivacyConfig,
    doc="""Personal data in generated outputs (presidio), exposure of the fine-tune run's
    canaries, verbatim extraction of its training examples (docs/privacy.md).""",
    docs=(
        DocSection(PIIScanConfig, "privacy: pii", "privacy-pii", "PII scan settings"),
        DocSection(CanaryAuditConfig, "privacy: canaries", "privacy-canaries", "canary settings"),
        DocSection(
            ExtractionConfig, "privacy: extraction", "privacy-extraction", "extraction settings"
        ),
    ),
    title="Privacy",
    view="harness.report.privacy_view:build",
    macro="privacy",
    summary="harness.report.markdown:privacy_summary",
    base_referenced=("extraction_rate",),
)
