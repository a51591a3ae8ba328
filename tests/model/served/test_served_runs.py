"""`harness run` on a served model through the CLI: the key stays out of every file, a
server that stops mid-run ends the run with one clear line and a re-run resumes from
the response cache, and the forgetting audit of a LoRA served beside its base agrees
with the transformers backend's."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import write_suite
from tests.model.served.fake_server import FakeServer, serving
from tests.model.test_cache import comparable

GATES = "  - {metric: sentiment.accuracy, min: 0.0}\n  - {metric: lm.perplexity, max: 1e9}"
KEY = "sk-test-7f3a9c1e5b-never-written"


def served_suite(
    tmp_path: Path, server: FakeServer, tok: Path, extra: str = "", **endpoint: Any
) -> Path:
    suite = write_suite(tmp_path, tok, GATES, extra)
    settings = ", ".join(f"{k}: {v}" for k, v in {"base_url": server.url, **endpoint}.items())
    model = (
        "model:\n  backend: openai-completions\n  path: tiny\n"
        f"  tokenizer: {tok}\n  endpoint: {{{settings}}}\n"
    )
    text = re.sub(r"model:\n  path: [^\n]*\n", model, suite.read_text())
    suite.write_text(text)
    return suite


def run(suite: Path, out: Path, *args: str) -> int:
    from harness.cli.main import main

    return main(["run", str(suite), "--out", str(out), "--no-progress", *args])


@pytest.mark.slow
def test_the_key_is_sent_and_never_written(
    tmp_path: Path, server: FakeServer, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVED_KEY", KEY)
    suite = served_suite(tmp_path, server, tiny_gpt2, api_key_env="SERVED_KEY")
    out = tmp_path / "out"
    assert run(suite, out, "--limit", "3") == 0
    assert set(server.auth) == {f"Bearer {KEY}"}
    written = [p for p in out.rglob("*") if p.is_file()]
    written += [p for p in Path(os.environ["HARNESS_CACHE_DIR"]).rglob("*") if p.is_file()]
    # harness.log (written at the first library warning) is among them when it exists
    assert any(p.name.startswith("responses.sqlite") for p in written)
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path
    prov = json.loads((out / "results.json").read_text())["provenance"]
    assert prov["device"] == server.url
    assert "SERVED_KEY" in (out / "results.json").read_text()  # the variable's name only


@pytest.mark.slow
def test_a_stopped_server_ends_the_run_and_a_rerun_resumes(
    tmp_path: Path,
    tiny_gpt2: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    with serving(tiny_gpt2) as server:
        stopped_and_resumed(tmp_path, server, capsys, monkeypatch)


def stopped_and_resumed(
    tmp_path: Path,
    server: FakeServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.model.cache import FILE_NAME, ResponseCache

    tiny_gpt2 = Path(server.tokenizer.name_or_path)
    suite = served_suite(tmp_path, server, tiny_gpt2, max_retries=1, concurrency=1)
    args = ("--batch-size", "1", "--limit", "6")
    # the whole run once, on its own cache: how many requests it takes, what it gives
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "reference-cache"))
    assert run(suite, tmp_path / "reference", *args) == 0
    total = server.completions_posts()
    reference = json.loads((tmp_path / "reference" / "results.json").read_text())
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    capsys.readouterr()
    server.posts.clear()
    server.budget = total // 2  # then every connection drops: a stopped server
    assert run(suite, tmp_path / "out", *args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith(f"error: server {server.url}: completions request failed after 2")
    assert "connection failed" in err[0]
    cache = ResponseCache(tmp_path / "cache" / FILE_NAME)
    kept = cache.count()
    assert kept > 0  # the chunks answered before the stop
    # restarted on the same port: only what the cache lacks reaches the server
    again = server.restarted()
    try:
        assert run(suite, tmp_path / "out", *args) == 0
    finally:
        again.stop()
    second = again.completions_posts()
    resumed = json.loads((tmp_path / "out" / "results.json").read_text())
    assert resumed["provenance"]["cache"]["hits"] == kept
    assert second == total - kept  # one request per answer here (texts fit one window)
    assert comparable(resumed) == comparable(reference)


FORGETTING = """audits:
  forgetting:
    tasks: [sentiment, lm, summarize]
"""


def deltas(results: dict[str, Any]) -> dict[str, float]:
    tasks = results["audits"]["forgetting"]["tasks"]
    return {
        f"{t}.{m}.{k}": v[k]
        for t, section in tasks.items()
        for m, v in section["metrics"].items()
        for k in ("delta",)
        if isinstance(v.get(k), float | int)
    } | {
        f"{t}.{m}.{side}": v[side]["value"]
        for t, section in tasks.items()
        for m, v in section["metrics"].items()
        for side in ("base", "checkpoint")
        if isinstance(v[side].get("value"), float | int)
    }


@pytest.mark.slow
def test_forgetting_of_a_served_lora_agrees_with_the_hf_backend(
    tmp_path: Path, server: FakeServer, tiny_gpt2: Path, tiny_adapter: Path
) -> None:
    hf_suite = write_suite(tmp_path / "hf", tiny_gpt2, GATES, FORGETTING)
    assert run(hf_suite, tmp_path / "hf-out", "--adapter", str(tiny_adapter), "--limit", "6") == 0
    suite = served_suite(tmp_path / "served", server, tiny_gpt2, FORGETTING)
    suite.write_text(
        suite.read_text().replace("  path: tiny\n", "  path: tiny\n  adapter: tiny-lora\n")
    )
    assert run(suite, tmp_path / "served-out", "--limit", "6") == 0
    hf = json.loads((tmp_path / "hf-out" / "results.json").read_text())
    served = json.loads((tmp_path / "served-out" / "results.json").read_text())
    ours, theirs = deltas(served), deltas(hf)
    assert ours.keys() == theirs.keys() and len(ours) > 6
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-4), name
    assert {b["model"] for _, b in server.posts} == {"tiny", "tiny-lora"}
    baseline = served["audits"]["forgetting"]["baseline"]
    assert baseline["kind"] == "adapter_disabled" and baseline["path"] == f"{server.url}#tiny"
