"""A small suite run through ``harness run`` against the real llama.cpp server.

``write_suite`` writes 12 classification rows and 6 generation rows (tests.tiny_models'
corpus, seeded) and a suite whose model section is either the transformers folder
(backend hf) or the served name on a server (backend openai-completions, prompts as
text: llama-cpp-python's server takes no token-id prompts). ``records`` reads the
per-example records of a run's results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.tiny_models import corpus

SERVED_NAME = "tiny"
"""The alias the server serves the GGUF under (``--model_alias``): ``model.path``."""
WINDOW = 256
"""The server's n_ctx (a multiple of 256, see llamacpp_server) and model.max_length."""
GREEDY = "{repeat_penalty: 1.0}"
"""llama.cpp's server penalizes repeats (1.1) even at temperature 0 unless told."""


def write_data(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = corpus(18, seed=11)
    classify = [{"text": t, "label": i % 2} for i, t in enumerate(rows[:12])]
    generate = [{"document": " ".join(t.split()[:5]), "summary": t} for t in rows[12:]]
    for name, items in (("classify.jsonl", classify), ("generate.jsonl", generate)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in items))


def model_section(hf_folder: Path, url: str | None, **endpoint: Any) -> str:
    """The suite's model section: backend hf when ``url`` is None, else the server."""
    if url is None:
        return f"model:\n  path: {hf_folder}\n  max_length: {WINDOW}\n"
    settings = {"base_url": f"'{url}'", "prompt_format": "text", "extra_body": GREEDY}
    settings |= {k: str(v) for k, v in endpoint.items()}
    inner = ", ".join(f"{k}: {v}" for k, v in settings.items())
    return (
        f"model:\n  backend: openai-completions\n  path: {SERVED_NAME}\n"
        f"  tokenizer: {hf_folder}\n  max_length: {WINDOW}\n  endpoint: {{{inner}}}\n"
    )


def write_suite(folder: Path, model: str, name: str = "suite.yaml") -> Path:
    """A suite in ``folder`` (its data written beside it) with the ``model`` section."""
    write_data(folder / "data")
    suite = folder / name
    suite.write_text(
        f"""schema_version: 1
name: real-server
{model}tasks:
  - id: sentiment
    kind: classification
    data: data/classify.jsonl
    prompt: "Review: {{{{ text }}}}\\nSentiment:"
    choices: [" negative", " positive"]
    label: label
    metrics: [accuracy]
  - id: continue
    kind: generation
    data: data/generate.jsonl
    prompt: "{{{{ document }}}}"
    reference: summary
    max_new_tokens: 8
    stop: ["."]
    metrics: [exact_match]
seed: 7
bootstrap: {{samples: 100, confidence: 0.95}}
gates:
  - {{metric: sentiment.accuracy, min: 0.0}}
"""
    )
    return suite


def run(suite: Path, out: Path, *args: str) -> int:
    from harness.cli.main import main

    return main(["run", str(suite), "--out", str(out), "--no-progress", *args])


def results(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "results.json").read_text()))


def records(out: Path, task: str) -> list[dict[str, Any]]:
    return list(results(out)["tasks"][task]["records"])
