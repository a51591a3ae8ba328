"""Explanations of a classification task's predictions: SHAP and LIME word attributions.

Both methods call ONE batched probability function: a list of texts (the explained
input field, perturbed) -> class probabilities, each text rendered into the task's
prompt and its choices scored by log-likelihood through ``ScoringModel.loglikelihood``
(batched, cached), exactly as the task scores them. SHAP uses the partition algorithm
over ``shap.maskers.Text`` built on the model's own tokenizer (Lundberg & Lee 2017,
"A Unified Approach to Interpreting Model Predictions"); LIME fits a local linear model
to word-removal perturbations (Ribeiro et al. 2016, "Why Should I Trust You?").
``max_evals`` bounds both: SHAP's evaluation budget and LIME's ``num_samples``.

Token attributions (SHAP) are summed per word so the two methods rank the same units.
Each example is explained for the choice the checkpoint predicted. The global ranking
is the mean |attribution| of each word over the explained examples, and
``sensitive_share`` the share of all attribution mass that falls on the sensitive terms:
a model that decides on group words rather than content shows them at the top.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
from pydantic import Field, field_validator

from harness.audits.base import (
    NO_SUCH_TASK,
    NOT_CLASSIFICATION,
    NOT_FIXED_CHOICES,
    AuditConfig,
    AuditContext,
    CheckContext,
    Problem,
    TaskFacts,
    choice_names,
    data_label,
    field_typos,
    num,
    register_module,
)
from harness.errors import UserError, row_error
from harness.tasks import get as get_kind
from harness.tasks.prompt_template import template_fields

if TYPE_CHECKING:
    from harness.gates.verdicts import GateValue

Method = Literal["shap", "lime"]
RANKING_SIZE = 30

DUPLICATE_METHOD = "method '{method}' is listed twice"
NOT_ONE_WORD = "sensitive terms are single words; '{term}' is not"
FIELD_AMBIGUOUS = (
    "the prompt of task '{task}' reads {n} fields ({fields}); set `field` to the one "
    "whose words are explained"
)
FIELD_NOT_IN_PROMPT = (
    "the prompt of task '{task}' does not read field '{field}' (it reads: {fields})"
)
FIELD_MISSING = "audits.explain.field: missing text field '{field}'"
GROUP_MISSING = "audits.explain.group: missing field '{field}'"
NOT_INSTALLED = (
    "audits.explain.methods: {method} is not installed; pip install 'llm-release-harness[explain]'"
)
MESSAGES_TASK = (
    "task '{task}' reads whole conversations (`messages`); explanations vary one field "
    "of a prompt template"
)


def _all_methods() -> list[Method]:
    return ["shap", "lime"]


class ExplainConfig(AuditConfig):
    """Word attributions of a classification task's predictions (SHAP, LIME)."""

    task: str
    """Id of the classification task whose predictions are explained."""
    methods: list[Method] = Field(default_factory=lambda: _all_methods(), min_length=1)
    """Explainers to run: shap (partition algorithm, the model's tokenizer as masker)
    and/or lime (LimeTextExplainer)."""
    samples: int = Field(default=12, ge=1)
    """Examples explained, chosen stratified by group and label (seeded)."""
    max_evals: int = Field(default=300, ge=10)
    """Budget per example: SHAP's max_evals, and LIME's num_samples."""
    sensitive_terms: list[str] = Field(default_factory=list)
    """Words whose share of the attribution mass is reported (`sensitive_share`),
    compared case-insensitively, e.g. [he, she, black, white, muslim, christian]."""
    field: str | None = None
    """The input field whose words are attributed (default: the only field the task's
    prompt reads)."""
    group: list[str] | None = None
    """Field(s) to stratify the samples by (default: `audits.fairness.group` when the
    fairness audit is on the same task, else the label only)."""

    @field_validator("methods")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        for m in value:
            if value.count(m) > 1:
                raise ValueError(DUPLICATE_METHOD.format(method=m))
        return value

    @field_validator("sensitive_terms")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        for term in value:
            if not term.strip() or any(c.isspace() for c in term.strip()):
                raise ValueError(NOT_ONE_WORD.format(term=term))
        return value

    @field_validator("group", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


# --- checks ------------------------------------------------------------------------------


def _explained_field(cfg: ExplainConfig, prompt: str) -> tuple[str | None, str | None]:
    """(field, problem) for a task prompt."""
    fields = template_fields(prompt)
    if cfg.field is not None:
        if fields and cfg.field not in fields:
            shown = ", ".join(fields)
            return None, FIELD_NOT_IN_PROMPT.format(task=cfg.task, field=cfg.field, fields=shown)
        return cfg.field, None
    if len(fields) == 1:
        return fields[0], None
    msg = FIELD_AMBIGUOUS.format(task=cfg.task, n=len(fields), fields=", ".join(fields))
    return None, msg


def check(cfg: ExplainConfig, ctx: CheckContext) -> list[Problem]:
    facts = ctx.tasks.get(cfg.task)
    if facts is None:
        known = ", ".join(ctx.tasks) or "none"
        return [(("task",), NO_SUCH_TASK.format(task=cfg.task, tasks=known))]
    if facts.kind is not None and not get_kind(facts.kind).has_choices:
        return [(("task",), NOT_CLASSIFICATION.format(task=cfg.task, kind=facts.kind))]
    if facts.per_row_choices:
        return [(("task",), NOT_FIXED_CHOICES.format(task=cfg.task))]
    if facts.messages:
        return [(("task",), MESSAGES_TASK.format(task=cfg.task))]
    if facts.prompt is not None:
        _, problem = _explained_field(cfg, facts.prompt)
        if problem:
            return [(("field",), problem)]
    return []


def _strata_fields(cfg: ExplainConfig, suite: Any) -> list[str]:
    if cfg.group is not None:
        return list(cfg.group)
    fairness = getattr(getattr(suite, "audits", None), "fairness", None)
    if fairness is not None and fairness.task == cfg.task:
        return list(fairness.group)
    return []


def check_data(cfg: ExplainConfig, suite: Any, prepared: Mapping[str, Any]) -> list[str]:
    p = prepared.get(cfg.task)
    if p is None:
        return []
    field, _ = _explained_field(cfg, p.task.prompt)
    file = data_label(p)
    if cfg.group is not None:
        typos = field_typos(suite, ("audits", "explain", "group"), cfg.group, p.records, file)
        if typos:  # a name no example has: one error at the suite's line
            return typos
    errors = []
    for rec in p.records:
        if field is not None and not isinstance(rec["input"].get(field), str):
            errors.append(row_error(file, rec["line"], FIELD_MISSING.format(field=field)))
        if cfg.group is not None:
            errors += [
                row_error(file, rec["line"], GROUP_MISSING.format(field=f))
                for f in cfg.group
                if rec["input"].get(f) is None
            ]
    return errors


def gate_names(cfg: ExplainConfig, tasks: Mapping[str, TaskFacts]) -> list[str] | None:
    base = f"explain.{cfg.task}"
    return [f"{base}.sensitive_share", *(f"{base}.{m}.sensitive_share" for m in cfg.methods)]


# --- the probability function ------------------------------------------------------------


class ProbabilityFunction:
    """Texts -> class probabilities for one example's prompt, batched and counted.

    ``bind(fields)`` gives the function for one example (its other fields fixed); every
    bound function shares the counters, so the cost of each method is measured.
    """

    def __init__(self, lm: Any, task: Any, field: str, batch_size: int) -> None:
        self.lm, self.task, self.field, self.batch_size = lm, task, field, batch_size
        self.calls = 0
        self.texts = 0
        self.model_time = 0.0

    def bind(
        self, fields: Mapping[str, Any], line: int = 0
    ) -> Callable[[Sequence[str]], np.ndarray]:
        from harness.tasks import kind_of
        from harness.tasks.classification import scored_pairs
        from harness.tasks.records import ChoiceRequest

        choices = list(self.task.choices)
        kind = kind_of(self.task)

        def probabilities(texts: Sequence[str]) -> np.ndarray:
            texts = [str(t) for t in texts]
            pairs = []
            for t in texts:  # the example with the text replaced, prepared as the task does
                row = {**fields, self.field: t}
                variant = kind.prepare_fields(self.task, row, "explain", line)
                pairs += scored_pairs(cast(ChoiceRequest, variant))
            t0 = time.perf_counter()
            scored = self.lm.loglikelihood(pairs, batch_size=self.batch_size)
            self.model_time += time.perf_counter() - t0
            self.calls += 1
            self.texts += len(texts)
            ll = np.asarray([s[0] for s in scored], dtype=float).reshape(len(texts), len(choices))
            ll -= ll.max(axis=1, keepdims=True)
            p = np.exp(ll)
            return p / p.sum(axis=1, keepdims=True)

        return probabilities


@contextmanager
def forward_passes(lm: Any) -> Iterator[list[int] | None]:
    """Count forward passes of the torch model under ``lm`` (None: no torch model)."""
    model: Any = getattr(lm, "model", None)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if inner is None or not hasattr(inner, "register_forward_hook"):
        yield None
        return
    calls: list[int] = []
    handle = inner.register_forward_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


# --- words -------------------------------------------------------------------------------


def normalize(word: str) -> str:
    """A word as ranked and compared with the sensitive terms."""
    return word.strip().strip(string.punctuation).lower()


def words_from_tokens(tokens: Sequence[str], values: Sequence[float]) -> list[list[Any]]:
    """Sum token attributions into words: a word starts at a token beginning with
    whitespace or after one ending with it; a whitespace-only token goes to the next word."""
    words: list[list[Any]] = []
    text, value, pending = "", 0.0, 0.0
    boundary = True
    for tok, v in zip(tokens, values, strict=True):
        if not tok.strip():
            pending += float(v)
            boundary = True
            continue
        if (boundary or tok[0].isspace()) and text:
            words.append([text, value])
            text, value = "", 0.0
        text += tok.strip()
        value += float(v) + pending
        pending = 0.0
        boundary = tok[-1].isspace()
    if text:
        words.append([text, value + pending])
    return words


def stratified_sample(
    records: Sequence[dict[str, Any]], n: int, fields: Sequence[str], seed: int
) -> list[dict[str, Any]]:
    """``n`` records taken round-robin from the (group, label) strata, in data order."""
    rng = random.Random(seed)
    strata: dict[tuple[str, ...], list[int]] = {}
    for i, rec in enumerate(records):
        key = (*(str(rec["input"].get(f)) for f in fields), str(rec["gold"]))
        strata.setdefault(key, []).append(i)
    for members in strata.values():
        rng.shuffle(members)
    picked: list[int] = []
    while len(picked) < min(n, len(records)):
        for key in sorted(strata):
            if strata[key] and len(picked) < n:
                picked.append(strata[key].pop())
    return [records[i] for i in sorted(picked)]


# --- the explainers ----------------------------------------------------------------------


def _shap(fn: Any, tokenizer: Any, names: list[str], text: str, cls: int, budget: int) -> Any:
    import shap

    masker = shap.maskers.Text(tokenizer)
    explainer = shap.Explainer(fn, masker, algorithm="partition", output_names=names)
    sv = explainer([text], max_evals=budget, batch_size=budget, silent=True)
    tokens = [str(t) for t in sv.data[0]]
    values = [float(v) for v in np.asarray(sv.values[0])[:, cls]]
    pairs = [[t, v] for t, v in zip(tokens, values, strict=True)]
    return {"tokens": pairs, "words": words_from_tokens(tokens, values)}


def _lime(fn: Any, names: list[str], text: str, cls: int, budget: int, seed: int) -> Any:
    from lime.lime_text import LimeTextExplainer

    explainer = LimeTextExplainer(class_names=names, random_state=seed)
    n_words = max(1, len(set(text.split())))
    exp = explainer.explain_instance(
        text, fn, labels=(cls,), num_features=n_words * 2, num_samples=budget
    )
    return {"words": [[str(w), float(v)] for w, v in exp.as_list(label=cls)]}


def _warm_up_shap(tokenizer: Any, n_choices: int) -> None:
    """shap compiles its partition code on first use (numba); do it outside the timing."""
    import shap

    def constant(texts: Any) -> np.ndarray:
        return np.full((len(texts), n_choices), 1.0 / n_choices)

    explainer = shap.Explainer(constant, shap.maskers.Text(tokenizer), algorithm="partition")
    explainer(["warm up text"], max_evals=10, silent=True)


def _import(method: str) -> None:
    try:
        __import__("shap" if method == "shap" else "lime.lime_text")
    except ImportError:
        raise UserError(NOT_INSTALLED.format(method=method)) from None


def run(ctx: AuditContext) -> dict[str, Any]:
    cfg: ExplainConfig = ctx.config
    prepared = ctx.prepared[cfg.task]
    task = prepared.task
    field, problem = _explained_field(cfg, task.prompt)
    if field is None:
        raise UserError(f"audits.explain.field: {problem}")
    for method in cfg.methods:
        _import(method)
    names = choice_names(task.choices)
    strata = _strata_fields(cfg, ctx.suite)
    chosen = stratified_sample(prepared.records, cfg.samples, strata, ctx.seed)
    examples = [
        {
            "id": rec["id"],
            "line": rec["line"],
            "group": " & ".join(str(rec["input"].get(f)) for f in strata) if strata else None,
            "label": names[rec["gold"]],
            "pred": names[rec["pred"]],
            "prob": num(rec["probs"][rec["pred"]]),
        }
        for rec in chosen
    ]
    sensitive = {normalize(t) for t in cfg.sensitive_terms}
    methods: dict[str, Any] = {}
    for method in cfg.methods:
        setup = 0.0
        if method == "shap":
            t0 = time.perf_counter()
            _warm_up_shap(ctx.lm.tokenizer, len(names))
            setup = time.perf_counter() - t0
        prob = ProbabilityFunction(ctx.lm, task, field, ctx.batch_size)
        advance = ctx.progress(f"{task.id} ({method})", len(chosen))
        t0 = time.perf_counter()
        with forward_passes(ctx.lm) as passes:
            for i, (rec, out) in enumerate(zip(chosen, examples, strict=True)):
                fn = prob.bind(rec["input"], rec["line"])
                text = rec["input"][field]
                if method == "shap":
                    out["shap"] = _shap(
                        fn, ctx.lm.tokenizer, names, text, rec["pred"], cfg.max_evals
                    )
                else:
                    out["lime"] = _lime(fn, names, text, rec["pred"], cfg.max_evals, ctx.seed + i)
                advance(1)
        wall = time.perf_counter() - t0
        ranking, share = summarize([out[method]["words"] for out in examples], sensitive)
        methods[method] = {
            "ranking": ranking,
            "sensitive_share": share,
            "calls": prob.calls,
            "texts": prob.texts,
            "forward_passes": None if passes is None else len(passes),
            "model_time_s": round(prob.model_time, 3),
            "wall_time_s": round(wall, 3),
            "setup_s": round(setup, 3),
        }
    shares = [m["sensitive_share"] for m in methods.values() if m["sensitive_share"] is not None]
    return {
        "task": task.id,
        "field": field,
        "explained_class": "predicted",
        "samples": len(chosen),
        "max_evals": cfg.max_evals,
        "sensitive_terms": list(cfg.sensitive_terms),
        "sensitive_share": float(np.mean(shares)) if shares else None,
        "methods": methods,
        "examples": examples,
    }


def summarize(
    per_example: Sequence[Sequence[Sequence[Any]]], sensitive: set[str]
) -> tuple[list[dict[str, Any]], float | None]:
    """Global ranking (mean |attribution| per word over the examples) and the share of
    attribution mass on the sensitive words."""
    totals: dict[str, float] = {}
    seen: dict[str, int] = {}
    mass = on_sensitive = 0.0
    for words in per_example:
        in_example: set[str] = set()
        for word, value in words:
            key, weight = normalize(str(word)), abs(float(value))
            mass += weight
            if key in sensitive:
                on_sensitive += weight
            if not key:
                continue
            totals[key] = totals.get(key, 0.0) + weight
            in_example.add(key)
        for key in in_example:
            seen[key] = seen.get(key, 0) + 1
    n = max(1, len(per_example))
    ranking = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:RANKING_SIZE]
    share = on_sensitive / mass if sensitive and mass > 0 else None
    return [{"term": k, "mean_abs": v / n, "n_examples": seen[k]} for k, v in ranking], share


def gate_values(section: Mapping[str, Any]) -> dict[str, GateValue]:
    base = f"explain.{section['task']}"
    out: dict[str, GateValue] = {f"{base}.sensitive_share": {"value": section["sensitive_share"]}}
    for method, entry in section["methods"].items():
        out[f"{base}.{method}.sensitive_share"] = {"value": entry["sensitive_share"]}
    return out


register_module(
    globals(),
    name="explain",
    config=ExplainConfig,
    doc="SHAP and LIME word attributions, and the attribution share of sensitive terms.",
    title="Explanations",
    view="harness.report.audits_view:explain",
    macro="explain",
    summary="harness.report.markdown:explain_summary",
)
