"""`harness run SUITE --adapter A --adapter B`: one run per adapter, the base model's answers
computed once for all of them (counted by what the response cache stores: only computed
answers are stored), each adapter's results equal to a run of that adapter alone, and a
trend page over the runs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from tests.audits.conftest import make_adapter, write_jsonl, write_suite
from tests.tiny_models import corpus

pytestmark = pytest.mark.slow

LM_TASK = """  - id: lm
    kind: perplexity
    data: data/wiki.jsonl
    text: text
    metrics: [perplexity]
"""
AUDITS = "  forgetting:\n    tasks: [lm, sentiment]\n"
GATES = """  - {metric: sentiment.accuracy, min: 0.0}
  - {metric: forgetting.lm.perplexity, max_increase: 0.0005, relative: true}
"""
SAME = ("tasks", "gates", "verdict")


@pytest.fixture(scope="module")
def adapters(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("adapters")
    return [
        make_adapter(tiny_gpt2, root / "harmless", scale=1e-4, seed=1),
        make_adapter(tiny_gpt2, root / "damaging", scale=1.0, seed=2),
    ]


def suite_in(folder: Path, model: Path) -> Path:
    write_jsonl(folder / "data" / "wiki.jsonl", [{"text": t} for t in corpus(20, seed=5)])
    return write_suite(
        folder, model=model, extra_tasks=LM_TASK, audits=AUDITS, gates=GATES, rows=None
    )


def count_computed(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Answers computed per model fingerprint (the cache stores exactly those)."""
    from harness.model.cache import ResponseCache

    computed: Counter[str] = Counter()
    real = ResponseCache.put_many

    def put_many(self: ResponseCache, fingerprint: str, kind: str, items: Any) -> None:
        items = list(items)
        computed[fingerprint] += len(items)
        real(self, fingerprint, kind, items)

    monkeypatch.setattr(ResponseCache, "put_many", put_many)
    return computed


def comparable(results: dict[str, Any]) -> dict[str, Any]:
    out = {k: results[k] for k in SAME}
    section = results["audits"]["forgetting"]
    out["forgetting"] = {"tasks": section["tasks"], "base": section["baseline"]["fingerprint"]}
    return out


@pytest.mark.parametrize("no_cache", [False, True], ids=["cache", "no-cache"])
def test_two_adapters_compute_the_base_once_and_equal_separate_runs(
    tmp_path: Path,
    tiny_gpt2: Path,
    adapters: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    no_cache: bool,
) -> None:
    suite = suite_in(tmp_path / "suite", tiny_gpt2)
    computed = count_computed(monkeypatch)
    flags = ["--no-progress", *(["--no-cache"] if no_cache else [])]
    out = tmp_path / "out"
    argv = ["run", str(suite), "--out", str(out), *flags]
    code = main([*argv, "--adapter", str(adapters[0]), "--adapter", str(adapters[1])])
    together = {a.name: json.loads((out / a.name / "results.json").read_text()) for a in adapters}
    assert code == 1  # the damaging adapter fails the forgetting gate: the worst exit
    assert [together[a.name]["verdict"] for a in adapters] == ["pass", "fail"]
    assert (out / "trend.html").is_file()
    for a in adapters:
        assert {"results.json", "report.html", "junit.xml", "summary.md"} <= {
            p.name for p in (out / a.name).iterdir()
        }
    base = together["harmless"]["audits"]["forgetting"]["baseline"]["fingerprint"]
    assert together["damaging"]["audits"]["forgetting"]["baseline"]["fingerprint"] == base
    base_computed_together = computed[base]
    n_base_requests = 2 * 80 + 20  # two choices per review, one text per wiki row
    assert base_computed_together == n_base_requests  # once, not once per adapter

    separate = {}
    for a in adapters:  # each alone, each with its own empty cache
        computed.clear()
        monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / f"cache-{a.name}"))
        one = tmp_path / f"alone-{a.name}"
        main(["run", str(suite), "--out", str(one), "--adapter", str(a), *flags])
        separate[a.name] = json.loads((one / "results.json").read_text())
        assert computed[base] == (0 if no_cache else n_base_requests)
    for a in adapters:
        assert comparable(together[a.name]) == comparable(separate[a.name])


def test_one_adapter_writes_into_out_itself(
    tmp_path: Path, tiny_gpt2: Path, adapters: list[Path]
) -> None:
    """One --adapter is today's run: OUT/results.json, no subfolder, no trend."""
    suite = suite_in(tmp_path / "suite", tiny_gpt2)
    out = tmp_path / "out"
    code = main(
        ["run", str(suite), "--out", str(out), "--no-progress", "--adapter", str(adapters[0])]
    )
    assert code == 0
    assert (out / "results.json").is_file() and not (out / "trend.html").exists()
    assert not (out / adapters[0].name).exists()
