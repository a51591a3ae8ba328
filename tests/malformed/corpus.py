"""A corpus of malformed inputs, generated from the shipped demo by seeded mutations.

Every case starts from valid files (suites/demo.yaml, its data in suites/demo/, and the
fine-tune configs there) and breaks exactly one thing: a deleted key, a wrong type, bad
YAML, an unknown name, an out-of-range number, an empty file, non-UTF-8 bytes, a huge
line, a missing file, a duplicated id or a label outside the choices. What is broken is
declared in the tables below (so the corpus does not depend on the validator it tests);
the seed picks the rows, byte offsets and bad values. ``generate()`` is pure: the same
seed gives the same cases.

A case is a set of file replacements applied to a copy of the demo folder, plus the
command that must refuse it (``validate`` a suite, ``train`` a fine-tune config, ``run``
a suite on a model) and the name of the file its message must name.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.malformed.breakage import (
    EMPTY_DOCS,
    NOT_MAPPING_DOCS,
    YAML_BREAKERS,
    lines_of,
    non_utf8,
)

# libyaml when present: the corpus holds megabyte-long lines
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
ROOT = Path(__file__).resolve().parents[2]
SUITE = "demo.yaml"
FT_NAIVE, FT_MITIGATED = "demo/finetune-naive.yaml", "demo/finetune-mitigated.yaml"
RUN_SUITE = "run.yaml"  # demo.yaml without audits, small enough to run (see run_suite_text)
SEED = 20240611

Doc = dict[str, Any]
YPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Case:
    """One malformed input."""

    id: str
    command: str
    """validate (suite) | train (fine-tune config) | run (harness run on a model)."""
    entry: str
    """The suite or config the command is given (relative to the case folder)."""
    files: dict[str, bytes | None] = field(hash=False)
    """Replacements relative to the case folder; None deletes the file."""
    names: str
    """A file name the message must contain."""
    whole_file: bool = False
    """The problem concerns the whole file (empty, missing): no line to point at."""
    args: tuple[str, ...] = ()
    """Extra command-line arguments."""


def read(rel: str) -> bytes:
    """A shipped file, by its path below suites/ (RUN_SUITE is derived, not shipped)."""
    if rel == RUN_SUITE:
        return run_suite_text().encode()
    return (ROOT / "suites" / rel).read_bytes()


def run_suite_text() -> str:
    """demo.yaml without its audits and their gates, capped to 6 examples per task, so a
    tiny model runs it in seconds."""
    doc = load(read(SUITE))
    doc.pop("audits")
    doc["gates"] = [g for g in doc["gates"] if g["metric"].startswith("reviews.")]
    doc["limit"] = 6
    doc["bootstrap"] = {"samples": 50, "confidence": 0.95}
    return dump(doc).decode()


def dump(doc: Any) -> bytes:
    return yaml.dump(
        doc, Dumper=_DUMPER, sort_keys=False, allow_unicode=True, width=1 << 30
    ).encode()


def load(data: bytes) -> Doc:
    doc = yaml.load(data, Loader=_LOADER)
    assert isinstance(doc, dict)
    return doc


def get_at(doc: Any, path: YPath) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def set_at(doc: Any, path: YPath, value: Any) -> None:
    get_at(doc, path[:-1])[path[-1]] = value


def del_at(doc: Any, path: YPath) -> None:
    del get_at(doc, path[:-1])[path[-1]]


def show(path: YPath) -> str:
    return ".".join(str(p) for p in path)


# --- what may be broken in a suite (task 0 reviews, 1 original_qa: classification;
# 2 original_lm: perplexity; 3 restate: generation) ----------------------------------

SUITE_REQUIRED: list[YPath] = [
    ("schema_version",),
    ("name",),
    ("model",),
    ("model", "path"),
    ("tasks",),
    *[("tasks", i, "id") for i in range(4)],
    *[("tasks", i, "kind") for i in range(4)],
    *[("tasks", i, "data") for i in range(4)],
    ("tasks", 0, "prompt"),
    ("tasks", 1, "prompt"),
    ("tasks", 3, "prompt"),
    ("tasks", 0, "choices"),
    ("tasks", 1, "choices"),
    ("tasks", 0, "label"),
    ("tasks", 1, "label"),
    ("tasks", 2, "text"),
    ("tasks", 3, "reference"),
    *[("gates", j, "metric") for j in range(5)],
    ("audits", "forgetting", "tasks"),
    ("audits", "fairness", "task"),
    ("audits", "fairness", "group"),
    ("audits", "fairness", "counterfactual", "swaps"),
    ("audits", "explain", "task"),
]

# path -> expected type: int | float | str | bool | list | map
SUITE_TYPED: list[tuple[YPath, str]] = [
    (("name",), "str"),
    (("description",), "str"),
    (("model",), "map"),
    (("model", "path"), "str"),
    (("tasks",), "list"),
    (("tasks", 0), "map"),
    (("tasks", 0, "id"), "str"),
    (("tasks", 0, "prompt"), "str"),
    (("tasks", 0, "choices"), "list"),
    (("tasks", 0, "choices", 1), "str"),
    (("tasks", 0, "label"), "str"),
    (("tasks", 0, "metrics"), "list"),
    (("tasks", 1, "metrics", 0), "str"),
    (("tasks", 2, "text"), "str"),
    (("tasks", 3, "max_new_tokens"), "int"),
    (("tasks", 3, "stop"), "list"),
    (("seed",), "int"),
    (("batch_size",), "int"),
    (("bootstrap",), "map"),
    (("bootstrap", "samples"), "int"),
    (("bootstrap", "confidence"), "float"),
    (("gates",), "list"),
    (("gates", 0), "map"),
    (("gates", 0, "min"), "float"),
    (("gates", 2, "relative"), "bool"),
    (("audits",), "map"),
    (("audits", "forgetting", "tasks"), "list"),
    (("audits", "fairness", "min_group_size"), "int"),
    (("audits", "fairness", "group"), "list"),
    (("audits", "explain", "samples"), "int"),
    (("audits", "explain", "methods"), "list"),
]

BAD_VALUES: dict[str, list[Any]] = {
    "int": ["eight", [8], {"n": 8}, 2.5, None],
    "float": ["high", [0.5], {"v": 1}, None],
    "str": [5, ["a", "b"], {"a": 1}, True, None],
    "bool": ["maybe", [True], 7, None],
    "list": ["text", 5, {"a": 1}, None],
    "map": ["text", 5, ["a"], None],
}

SUITE_UNKNOWN: list[tuple[YPath, Any]] = [
    (("tasks", 0, "kind"), "regression"),
    (("tasks", 2, "kind"), "summarization"),
    (("tasks", 0, "metrics", 0), "acuracy"),
    (("tasks", 0, "metrics", 1), "bleu"),  # a generation metric on a classification task
    (("tasks", 2, "metrics", 0), "accuracy"),
    (("tasks", 3, "metrics", 0), {"name": "bleu", "smooth": "floor"}),  # unknown parameter
    (("gates", 0, "metric"), "reviews.precision_at_k"),
    (("gates", 0, "metric"), "nosuchtask.accuracy"),
    (("gates", 1, "metric"), "forgetting.nosuch.accuracy"),
    (("gates", 3, "metric"), "fairness.reviews.nonsense_gap"),
    (("gates", 0, "severity"), "error"),
    (("model", "dtype"), "float8"),
    (("model", "device"), "tpu"),
    (("audits", "forgetting", "tasks", 1), "original_ml"),
    (("audits", "fairness", "task"), "review"),
    (("audits", "fairness", "positive"), " great"),
    (("audits", "explain", "task"), "restate"),  # a generation task
    (("audits", "explain", "methods", 0), "gradcam"),
    (("schema_version",), 2),
]

SUITE_UNKNOWN_KEYS: list[tuple[YPath, str]] = [
    ((), "gate"),
    ((), "taks"),
    (("model",), "weights"),
    (("tasks", 0), "promt"),
    (("tasks", 2), "choices"),
    (("gates", 0), "minimum"),
    (("bootstrap",), "resamples"),
    (("audits",), "robustness"),
    (("audits", "fairness"), "groups"),
]

SUITE_RANGE: list[tuple[YPath, Any]] = [
    (("batch_size",), 0),
    (("batch_size",), -4),
    (("limit",), 0),
    (("bootstrap", "confidence"), 1.5),
    (("bootstrap", "confidence"), 0),
    (("bootstrap", "samples"), -1),
    (("tasks", 3, "max_new_tokens"), 0),
    (("tasks", 3, "max_new_tokens"), 100000),
    (("tasks", 0, "limit"), -3),
    (("model", "max_length"), 4),
    (("gates", 0, "alpha"), 2),
    (("gates", 0, "min"), float("nan")),
    (("gates", 0, "min"), float("inf")),
    (("audits", "fairness", "min_group_size"), 1),
    (("audits", "explain", "samples"), 0),
    (("audits", "explain", "max_evals"), 3),
]

# --- what may be broken in a fine-tune config (naive: data, lora, training;
# mitigated adds anti_forgetting.replay/kl_to_base and fairness.reweight) ---------------

FT_REQUIRED: list[tuple[str, YPath]] = [
    (FT_NAIVE, ("schema_version",)),
    (FT_NAIVE, ("name",)),
    (FT_NAIVE, ("base_model",)),
    (FT_NAIVE, ("base_model", "path")),
    (FT_NAIVE, ("data",)),
    (FT_NAIVE, ("data", "train")),
    (FT_MITIGATED, ("anti_forgetting", "replay", "data")),
    (FT_MITIGATED, ("anti_forgetting", "replay", "fraction")),
    (FT_MITIGATED, ("anti_forgetting", "kl_to_base", "weight")),
    (FT_MITIGATED, ("fairness", "reweight", "group")),
]

FT_TYPED: list[tuple[str, YPath, str]] = [
    (FT_NAIVE, ("name",), "str"),
    (FT_NAIVE, ("base_model",), "map"),
    (FT_NAIVE, ("data",), "map"),
    (FT_NAIVE, ("lora", "r"), "int"),
    (FT_NAIVE, ("lora", "dropout"), "float"),
    (FT_NAIVE, ("training", "lr"), "float"),
    (FT_NAIVE, ("training", "epochs"), "int"),
    (FT_NAIVE, ("training", "batch_size"), "int"),
    (FT_NAIVE, ("training",), "map"),
    (FT_MITIGATED, ("anti_forgetting", "replay"), "map"),
    (FT_MITIGATED, ("anti_forgetting", "kl_to_base", "weight"), "float"),
    (FT_MITIGATED, ("fairness", "reweight", "group"), "str"),
]

FT_UNKNOWN: list[tuple[str, YPath, Any]] = [
    (FT_NAIVE, ("training", "scheduler"), "exponential"),
    (FT_NAIVE, ("lora", "target_modules"), 5),
    (FT_NAIVE, ("lora", "rank"), 8),
    (FT_NAIVE, ("optimizer",), "adamw"),
    (FT_NAIVE, ("base_model", "dtype"), "float8"),
    (FT_NAIVE, ("name",), "demo naive!"),
    (FT_MITIGATED, ("anti_forgetting", "dropout"), {"p": 0.1}),
    (FT_MITIGATED, ("schema_version",), 3),
]

FT_RANGE: list[tuple[str, YPath, Any]] = [
    (FT_NAIVE, ("lora", "r"), 0),
    (FT_NAIVE, ("lora", "alpha"), -16),
    (FT_NAIVE, ("lora", "dropout"), 1.0),
    (FT_NAIVE, ("training", "lr"), 0),
    (FT_NAIVE, ("training", "lr"), -0.1),
    (FT_NAIVE, ("training", "epochs"), 0),
    (FT_NAIVE, ("training", "max_length"), 4),
    (FT_NAIVE, ("training", "warmup_ratio"), 1.0),
    (FT_NAIVE, ("data", "val_split"), 1.5),
    (FT_NAIVE, ("data", "val_split"), 0),
    (FT_MITIGATED, ("anti_forgetting", "replay", "fraction"), 1.2),
    (FT_MITIGATED, ("anti_forgetting", "kl_to_base", "weight"), 0),
]

# data files of the suite: (file, task, fields that must be there, label field, choices)
DATA_FILES: list[tuple[str, str, list[str], str | None]] = [
    ("demo/reviews_eval.jsonl", "reviews", ["text", "label"], "label"),
    ("demo/original_qa.jsonl", "original_qa", ["question", "answer"], "answer"),
    ("demo/original_lm.jsonl", "original_lm", ["text"], None),
    ("demo/restate.jsonl", "restate", ["fact", "sentence"], None),
]
OUT_OF_CHOICES: list[Any] = [9, -1, 42, "neutral", " purple", True, 1.5, [0], None]


# --- generation -----------------------------------------------------------------------


def _bad_value(kind: str, rng: random.Random) -> Any:
    return rng.choice(BAD_VALUES[kind])


def suite_cases(
    rng: random.Random, suite: str = SUITE, command: str = "validate"
) -> Iterator[Case]:
    """Cases breaking the suite file itself."""
    original = read(suite)
    base = load(original)
    tag = "run" if command == "run" else "suite"

    def case(kind: str, what: str, doc_or_bytes: Any, whole: bool = False) -> Case:
        data = doc_or_bytes if isinstance(doc_or_bytes, bytes) else dump(doc_or_bytes)
        return Case(
            id=f"{tag}-{kind}-{what}",
            command=command,
            entry=suite,
            files={suite: data},
            names=Path(suite).name,
            whole_file=whole,
        )

    def present(path: YPath) -> bool:
        try:
            get_at(base, path)
        except (KeyError, IndexError, TypeError):
            return False
        return True

    for path in SUITE_REQUIRED:
        if present(path):
            doc = load(original)
            del_at(doc, path)
            yield case("deleted", show(path), doc)
    for path, kind in SUITE_TYPED:
        if present(path):
            doc = load(original)
            value = _bad_value(kind, rng)
            set_at(doc, path, value)
            yield case("type", f"{show(path)}={json.dumps(value)}", doc)
    for path, value in SUITE_UNKNOWN:
        if present(path):
            doc = load(original)
            set_at(doc, path, value)
            yield case("unknown", f"{show(path)}={json.dumps(value)}", doc)
    for parent, key in SUITE_UNKNOWN_KEYS:
        if present(parent):
            doc = load(original)
            get_at(doc, parent)[key] = rng.choice([1, "x", [1], {"a": 1}])
            yield case("unknown-key", f"{show((*parent, key))}", doc)
    for path, value in SUITE_RANGE:
        if present(path[:-1]):
            doc = load(original)
            set_at(doc, path, value)
            yield case("range", f"{show(path)}={value}", doc)
    for name, breaker in YAML_BREAKERS:
        yield case("yaml", name, breaker(original, rng))
    for i, data in enumerate(EMPTY_DOCS):
        yield case("empty", str(i), data, whole=True)
    for i, data in enumerate(NOT_MAPPING_DOCS):
        yield case("not-mapping", str(i), data)
    for i in range(4):
        yield case("non-utf8", str(i), non_utf8(original, rng))
    # duplicated ids: a task id reused, a choice repeated
    doc = load(original)
    i, j = rng.sample(range(len(doc["tasks"])), 2)
    doc["tasks"][j]["id"] = doc["tasks"][i]["id"]
    yield case("duplicate", f"task-id-{i}-{j}", doc)
    doc = load(original)
    doc["tasks"][0]["choices"] = [doc["tasks"][0]["choices"][0]] * 2
    yield case("duplicate", "choice", doc)
    # missing files: a task's data, the model folder, an unsupported data file
    doc = load(original)
    t = rng.randrange(len(doc["tasks"]))
    doc["tasks"][t]["data"] = "demo/no_such_file.jsonl"
    yield case("missing", f"data-{t}", doc)
    doc = load(original)
    doc["model"]["path"] = "./no-such-model"
    yield case("missing", "model-folder", doc)
    doc = load(original)
    doc["tasks"][t]["data"] = "demo/examples.parquet"
    yield case("unknown", f"data-suffix-{t}", doc)
    # huge lines: a 1 MB unknown key, a 1 MB number, a 1 MB broken template
    huge = "k" * (1 << 20)
    doc = load(original)
    doc[huge] = 1
    yield case("huge", "key", doc)
    yield case("huge", "int", original.replace(b"seed: 0", b"seed: " + b"9" * (1 << 20)))
    doc = load(original)
    doc["tasks"][0]["prompt"] = "{{ " + "x" * (1 << 20)
    yield case("huge", "template", doc)


def data_cases(rng: random.Random, suite: str = SUITE, command: str = "validate") -> Iterator[Case]:
    """Cases breaking one data file of the suite (the suite itself stays valid)."""
    tag = "run-data" if command == "run" else "data"
    for rel, _task, fields, label in DATA_FILES:
        original = read(rel)
        rows = [json.loads(x) for x in original.splitlines()]
        name = Path(rel).name

        def case(
            kind: str, data: bytes | None, whole: bool = False, rel: str = rel, name: str = name
        ) -> Case:
            files: dict[str, bytes | None] = {rel: data}
            return Case(
                id=f"{tag}-{name}-{kind}",
                command=command,
                entry=suite,
                files=files,
                names=name,
                whole_file=whole,
            )

        def with_row(n: int, row: Any, rows: list[Any] = rows) -> bytes:
            out = list(rows)
            out[n] = row
            return b"".join(json.dumps(r).encode() + b"\n" for r in out)

        n = rng.randrange(len(rows))
        for f in fields:
            row = dict(rows[n])
            del row[f]
            yield case(f"deleted-{f}-row{n + 1}", with_row(n, row))
        for f in fields:
            if f == label:
                continue
            row = dict(rows[n])
            row[f] = rng.choice([None, ""]) if f == "text" else None
            yield case(f"null-{f}-row{n + 1}", with_row(n, row))
        if label is not None:
            for value in rng.sample(OUT_OF_CHOICES, 3):
                row = dict(rows[n])
                row[label] = value
                yield case(f"label-{json.dumps(value)}-row{n + 1}", with_row(n, row))
        lines = lines_of(original)
        line = lines[n]
        yield case(
            f"truncated-row{n + 1}",
            b"".join([*lines[:n], line[: len(line) // 2] + b"\n", *lines[n + 1 :]]),
        )
        not_object = rng.choice([b"[1, 2]\n", b'"text"\n', b"42\n", b"null\n"])
        yield case(f"not-object-row{n + 1}", b"".join([*lines[:n], not_object, *lines[n + 1 :]]))
        yield case("non-utf8", non_utf8(original, rng))
        yield case("empty", rng.choice([b"", b"\n\n"]), whole=True)
        yield case(
            "huge-line", b"".join([*lines[:n], b"{" + b"x" * (1 << 21) + b"\n", *lines[n + 1 :]])
        )
        yield case("deep", b"".join([*lines[:n], b"[" * 200_000 + b"\n", *lines[n + 1 :]]))
        yield case("missing", None, whole=False)
    # duplicated ids: original_qa keyed by its (unique) creature field, then one repeated
    rel = "demo/original_qa.jsonl"
    rows = [json.loads(x) for x in read(rel).splitlines()]
    a, b = rng.sample(range(len(rows)), 2)
    rows[b] = {**rows[b], "creature": rows[a]["creature"]}
    doc = load(read(suite))
    doc["tasks"][1]["id_field"] = "creature"
    yield Case(
        id=f"{tag}-original_qa.jsonl-duplicate-id-row{b + 1}",
        command=command,
        entry=suite,
        files={suite: dump(doc), rel: b"".join(json.dumps(r).encode() + b"\n" for r in rows)},
        names="original_qa.jsonl",
    )


def finetune_cases(rng: random.Random) -> Iterator[Case]:
    """Cases breaking a fine-tune config or its training data."""

    def case(rel: str, kind: str, what: str, data: bytes, whole: bool = False) -> Case:
        return Case(
            id=f"ft-{Path(rel).stem}-{kind}-{what}",
            command="train",
            entry=rel,
            files={rel: data},
            names=Path(rel).name,
            whole_file=whole,
        )

    for rel, path in FT_REQUIRED:
        doc = load(read(rel))
        del_at(doc, path)
        yield case(rel, "deleted", show(path), dump(doc))
    for rel, path, kind in FT_TYPED:
        doc = load(read(rel))
        value = _bad_value(kind, rng)
        set_at(doc, path, value)
        yield case(rel, "type", f"{show(path)}={json.dumps(value)}", dump(doc))
    for rel, path, value in FT_UNKNOWN:
        doc = load(read(rel))
        set_at(doc, path, value)
        yield case(rel, "unknown", f"{show(path)}={json.dumps(value)}", dump(doc))
    for rel, path, value in FT_RANGE:
        doc = load(read(rel))
        set_at(doc, path, value)
        yield case(rel, "range", f"{show(path)}={value}", dump(doc))
    for name, breaker in rng.sample(YAML_BREAKERS, 5):
        rel = rng.choice([FT_NAIVE, FT_MITIGATED])
        yield case(rel, "yaml", name, breaker(read(rel), rng))
    for rel in (FT_NAIVE, FT_MITIGATED):
        yield case(rel, "empty", "0", rng.choice(EMPTY_DOCS), whole=True)
        yield case(rel, "non-utf8", "0", non_utf8(read(rel), rng))
    for rel in (FT_NAIVE, FT_MITIGATED):
        doc = load(read(rel))
        doc["data"]["train"] = ["no_such_train.jsonl"]
        yield case(rel, "missing", "train", dump(doc))
    doc = load(read(FT_MITIGATED))
    doc["anti_forgetting"]["replay"]["data"] = ["no_such_replay.jsonl"]
    yield case(FT_MITIGATED, "missing", "replay", dump(doc))
    doc = load(read(FT_NAIVE))
    doc["eval_data"] = ["no_such_eval.jsonl"]
    yield case(FT_NAIVE, "missing", "eval_data", dump(doc))

    # the training data (reviews_train.jsonl) and the replay data (pretrain.jsonl)
    for rel, entry in (
        ("demo/reviews_train.jsonl", FT_NAIVE),
        ("demo/pretrain.jsonl", FT_MITIGATED),
    ):
        original = read(rel)
        rows = [json.loads(x) for x in original.splitlines()]
        lines = lines_of(original)
        name = Path(rel).name
        n = rng.randrange(len(rows))

        def data_case(
            kind: str,
            data: bytes | None,
            whole: bool = False,
            rel: str = rel,
            entry: str = entry,
            name: str = name,
        ) -> Case:
            return Case(
                id=f"ft-data-{name}-{kind}",
                command="train",
                entry=entry,
                files={rel: data},
                names=name,
                whole_file=whole,
            )

        def with_row(row: Any, n: int = n, rows: list[Any] = rows) -> bytes:
            return b"".join(
                json.dumps(row if i == n else r).encode() + b"\n" for i, r in enumerate(rows)
            )

        first = rows[n]
        if "completion" in first:
            yield data_case(f"no-fields-row{n + 1}", with_row({"group": "f", "label": 1}))
            yield data_case(f"completion-number-row{n + 1}", with_row({**first, "completion": 5}))
            yield data_case(f"prompt-empty-row{n + 1}", with_row({**first, "prompt": "  "}))
            yield data_case(f"prompt-list-row{n + 1}", with_row({**first, "prompt": ["a"]}))
        else:
            yield data_case(f"text-null-row{n + 1}", with_row({"text": None}))
            yield data_case(f"text-empty-row{n + 1}", with_row({"text": ""}))
            yield data_case(f"no-text-row{n + 1}", with_row({"body": first["text"]}))
        yield data_case(
            f"truncated-row{n + 1}",
            b"".join([*lines[:n], lines[n][: len(lines[n]) // 2] + b"\n", *lines[n + 1 :]]),
        )
        yield data_case("non-utf8", non_utf8(original, rng))
        yield data_case("empty", b"", whole=True)
        yield data_case(
            "huge-line", b"".join([*lines[:n], b"[" + b"1," * (1 << 20) + b"\n", *lines[n + 1 :]])
        )
        yield data_case("missing", None)
    # group reweighting needs the group field on every training row
    rel = "demo/reviews_train.jsonl"
    rows = [json.loads(x) for x in read(rel).splitlines()]
    n = rng.randrange(len(rows))
    rows[n] = {k: v for k, v in rows[n].items() if k != "group"}
    yield Case(
        id=f"ft-data-reviews_train.jsonl-no-group-row{n + 1}",
        command="train",
        entry=FT_MITIGATED,
        files={rel: b"".join(json.dumps(r).encode() + b"\n" for r in rows)},
        names="reviews_train.jsonl",
    )


def generate(seed: int = SEED) -> list[Case]:
    """Every generated case; ids are unique."""
    rng = random.Random(seed)
    cases = [*suite_cases(rng), *data_cases(rng), *finetune_cases(rng)]
    ids = [c.id for c in cases]
    dups = {i for i in ids if ids.count(i) > 1}
    assert not dups, dups
    return cases


def run_cases(seed: int = SEED, n: int = 12) -> list[Case]:
    """A seeded sample of suite and data breakage, given to ``harness run`` on the
    audit-free RUN_SUITE (every case must leave an earlier run's output untouched)."""
    rng = random.Random(seed + 1)
    # RUN_SUITE samples 6 rows per task: only breakage that every row is checked for
    # (the file's syntax, encoding, presence) is sure to be met in a run
    whole_file = ("truncated", "not-object", "non-utf8", "empty", "huge-line", "deep", "missing")
    data = [
        c
        for c in data_cases(rng, RUN_SUITE, "run")
        if c.id.endswith(whole_file) or any(f"-{k}-row" in c.id for k in whole_file)
    ]
    return rng.sample(list(suite_cases(rng, RUN_SUITE, "run")), n // 2) + rng.sample(
        data, n - n // 2
    )
