"""One run with every task kind, every audit and an adapter gives the results.json stored
in tests/golden/full_run.json, apart from what depends on the clock, the folder and the
version (timings, dates, temporary paths, the harness version).

The stored file is the output of the code before the architecture refactor (issue 15):
a restructuring that changes no behaviour leaves it as it is. Regenerate it only for a
change that means to alter results: ``GOLDEN_REGEN=1 pytest tests/audits/test_results_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from tests.audits.conftest import reviews, write_jsonl, write_suite
from tests.tiny_models import corpus

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parents[1] / "golden" / "full_run.json"

TASKS = """  - id: lm
    kind: perplexity
    data: data/wiki.jsonl
    text: text
    metrics: [perplexity, bits_per_byte]
  - id: news
    kind: generation
    data: data/news.jsonl
    prompt: "{{ text }}"
    reference: text
    max_new_tokens: 6
    metrics: [exact_match, bleu, chrf, rouge]
"""
AUDITS = """  forgetting:
    tasks: [lm, sentiment, news]
  fairness:
    task: sentiment
    group: group
    positive: " positive"
    min_group_size: 10
    counterfactual:
      swaps: {he: she}
    pairs: pairs.csv
  explain:
    task: sentiment
    methods: [shap, lime]
    samples: 3
    max_evals: 30
    sensitive_terms: [he, she]
  privacy:
    pii: true
    canaries: {candidates: 200}
    extraction: {min_suffix_tokens: 3}
"""
GATES = """  - {metric: sentiment.accuracy, min: 0.0}
  - {metric: lm.perplexity, max: 1000000}
  - {metric: news.exact_match, min: 0}
  - {metric: forgetting.lm.perplexity, max_increase: 0.5, relative: true}
  - {metric: forgetting.sentiment.accuracy.delta, min: -1}
  - {metric: fairness.sentiment.demographic_parity_ratio, min: 0}
  - {metric: fairness.sentiment.counterfactual.mean_abs_prob_change, max: 1}
  - {metric: 'fairness.sentiment.pairs.stereotype_score[gender]', max: 1}
  - {metric: explain.sentiment.sensitive_share, max: 1, severity: warn}
  - {metric: privacy.canary_exposure_max, max: 10}
  - {metric: privacy.extraction_rate, max_increase: 0.5, severity: warn}
  - {metric: privacy.pii_in_generations, max: 0}
"""
CLOCK_KEYS = {"started_at", "finished_at", "timings", "time_s", "model_time_s", "wall_time_s"}
CLOCK_KEYS |= {"setup_s", "harness_version", "created"}


def differences(got: Any, want: Any, at: str = "") -> list[str]:
    """Where ``got`` and ``want`` differ, as JSON paths (the first 20)."""
    if isinstance(got, dict) and isinstance(want, dict):
        out = [f"{at}.{k}: only in one" for k in sorted(set(got) ^ set(want), key=str)]
        for k in sorted(set(got) & set(want), key=str):
            out += differences(got[k], want[k], f"{at}.{k}")
        return out[:20]
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [
            d
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            for d in differences(g, w, f"{at}[{i}]")
        ][:20]
    return [] if got == want else [f"{at}: {got!r:.80} != {want!r:.80}"]


# files that name a temporary folder (the adapter's and tokenizer's base, the suite's
# model), and the
# fingerprints made from their digests
PATH_HOLDERS = ("adapter_config.json", "tokenizer_config.json", "manifest.json", "suite.yaml")


def named(entry: dict[str, Any]) -> str:
    return str(entry.get("path") or entry.get("name") or "")


def normalized(value: Any, folders: dict[str, str]) -> Any:
    """``value`` without the clock and version, with machine folders named."""
    if isinstance(value, dict):
        out = {
            k: normalized(v, folders)
            for k, v in value.items()
            if k not in CLOCK_KEYS and not (k == "harness" and isinstance(v, str))
        }
        if named(out).endswith(PATH_HOLDERS) and "sha256" in out:
            out["sha256"] = "<depends on the folder>"
            if "size" in out:
                out["size"] = "<depends on the folder>"
        if "fingerprint" in out and any(
            named(f).endswith(PATH_HOLDERS) for f in out.get("files", [])
        ):
            out["fingerprint"] = "<depends on the folder>"
        return out
    if isinstance(value, list):
        return [normalized(v, folders) for v in value]
    if isinstance(value, str):
        for folder, name in folders.items():
            value = value.replace(folder, name)
    return value


def test_a_full_run_gives_the_stored_results(
    canary_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.finetune.conftest import one_thread

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairs.csv").write_text(
        ",sent_more,sent_less,bias_type\n"
        "0,he was good at the game,she was good at the game,gender\n"
        "1,she loved the film,he loved the film,gender\n"
        '2,"the old actor was boring","the young actor was boring",age\n'
    )
    write_jsonl(tmp_path / "data" / "wiki.jsonl", [{"text": t} for t in corpus(12, seed=5)])
    write_jsonl(tmp_path / "data" / "news.jsonl", [{"text": t} for t in corpus(6, seed=9)])
    suite = write_suite(
        tmp_path,
        model=canary_run["base"],
        adapter=canary_run["adapter"],
        rows=reviews(n_per_group=12),
        extra_tasks=TASKS,
        audits=AUDITS,
        gates=GATES,
        extra="batch_size: 8\n",
    )
    with one_thread():
        code = main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress"])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    folders = {
        str(canary_run["folder"]): "<canary-run>",
        str(tmp_path): "<suite>",
        os.path.relpath(canary_run["folder"], tmp_path): "<canary-run>",
    }
    got = normalized(results, folders)
    got["provenance"]["fingerprint"] = "<the base's and the adapter's>"
    got["exit_code"] = code
    if os.environ.get("GOLDEN_REGEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert code == 1  # the inserted canary is exposed: privacy.canary_exposure_max fails
    diff = differences(got, want)
    assert not diff, "\n".join(diff)
