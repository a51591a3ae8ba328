"""The response cache: hits skip the model, misses are stored chunk by chunk, two
processes can share the file, a broken file is bypassed with a warning, and a run
killed with SIGKILL resumes to the same results."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.model.cache import (
    CACHE_BYPASSED,
    FILE_NAME,
    CacheWarning,
    ResponseCache,
    cached_map,
    request_key,
)
from tests.cli.test_cli import write_suite


def forward_counter(lm: Any) -> list[int]:
    """Count forward passes of the underlying transformers model (generation included)."""
    calls: list[int] = []
    inner = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model
    inner.register_forward_hook(lambda *_: calls.append(1))
    return calls


def comparable(results: dict[str, Any]) -> dict[str, Any]:
    """A results document without what legitimately differs between runs."""
    out = copy.deepcopy(results)
    out["suite"].pop("output", None)
    out["suite"].pop("cache", None)
    prov = out["provenance"]
    for key in ("started_at", "finished_at", "timings", "cache"):
        prov.pop(key, None)
    for section in out.get("audits", {}).values():
        section.pop("time_s", None)
        for method in section.get("methods", {}).values():
            for key in ("model_time_s", "wall_time_s", "setup_s", "forward_passes"):
                method.pop(key, None)
    return out


# --- the store ---------------------------------------------------------------------------


def test_key_depends_on_fingerprint_kind_and_request() -> None:
    k = request_key("fp", "loglikelihood", {"context": "a", "continuation": "b"})
    assert k == request_key("fp", "loglikelihood", {"continuation": "b", "context": "a"})
    assert len(k) == 64
    assert k != request_key("fp2", "loglikelihood", {"context": "a", "continuation": "b"})
    assert k != request_key("fp", "generate", {"context": "a", "continuation": "b"})
    assert k != request_key("fp", "loglikelihood", {"context": "a", "continuation": "c"})


def test_put_get_round_trip_and_insert_or_ignore(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / FILE_NAME)
    assert cache.enabled
    value = [-12.345678901234567, True, 3]
    cache.put_many("fp", "loglikelihood", [("k1", value), ("k2", [0.1, False, 1])])
    cache.put_many("fp", "loglikelihood", [("k1", [9.9, False, 9])])  # ignored
    assert cache.get_many(["k1", "k2", "k3"]) == {"k1": value, "k2": [0.1, False, 1]}
    assert cache.count() == 2
    assert (cache.hits, cache.misses, cache.writes) == (2, 1, 3)
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cached_map_computes_only_misses_in_chunks(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / FILE_NAME)
    computed: list[list[int]] = []

    def compute(indices: list[int]) -> list[Any]:
        computed.append(indices)
        return [requests[i] * 10 for i in indices]

    requests = [3, 1, 4, 1, 5, 9, 2, 6]
    progress: list[int] = []
    out = cached_map(
        cache, "fp", "k", requests, compute, chunk=3, order=lambda i: -requests[i],
        advance=progress.append,
    )  # fmt: skip
    assert out == [r * 10 for r in requests]
    # the repeated request (1) is computed once; largest first, 3 at a time
    assert computed == [[5, 7, 4], [2, 0, 6], [1]]
    assert sum(progress) == len(requests)
    computed.clear()
    requests.append(7)
    assert cached_map(cache, "fp", "k", requests, compute, chunk=3) == [r * 10 for r in requests]
    assert computed == [[8]]


# --- runs --------------------------------------------------------------------------------


@pytest.mark.slow
def test_second_run_calls_the_model_for_nothing(tmp_path: Path, tiny_gpt2: Path) -> None:
    from harness.config.suite import load_suite
    from harness.run.runner import run_suite

    suite = load_suite(write_suite(tmp_path, tiny_gpt2, "  - {metric: lm.perplexity, max: 1e9}"))
    calls: list[list[int]] = []
    runs = []
    for _ in range(2):
        runs.append(
            run_suite(
                suite,
                show_progress=False,
                on_model_loaded=lambda lm: calls.append(forward_counter(lm)),
            ).document()
        )
    assert len(calls[0]) > 0
    assert len(calls[1]) == 0  # classification, generation and perplexity all cached
    assert runs[1]["provenance"]["cache"]["misses"] == 0
    assert runs[1]["provenance"]["cache"]["hits"] == runs[0]["provenance"]["cache"]["misses"]
    assert comparable(runs[0]) == comparable(runs[1])


@pytest.mark.slow
def test_a_rerun_on_the_cache_never_loads_the_weights(tmp_path: Path, tiny_gpt2: Path) -> None:
    from harness.config.suite import load_suite
    from harness.run.runner import run_suite

    suite = load_suite(write_suite(tmp_path, tiny_gpt2, "  - {metric: lm.perplexity, max: 1e9}"))
    models: list[Any] = []
    runs = [
        run_suite(suite, show_progress=False, on_model_loaded=models.append).document()
        for _ in range(2)
    ]
    assert [lm.weights_loaded for lm in models] == [True, False]
    assert runs[1]["provenance"]["cache"]["misses"] == 0
    assert comparable(runs[0]) == comparable(runs[1])


@pytest.mark.slow
def test_no_cache_option_and_suite_setting(tmp_path: Path, tiny_gpt2: Path) -> None:
    from harness.cli.main import main

    suite = write_suite(
        tmp_path, tiny_gpt2, "  - {metric: lm.perplexity, max: 1e9}", "cache: false"
    )
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress", "--limit", "2"]) == 0
    assert json.loads((out / "results.json").read_text())["provenance"]["cache"] is None
    assert not (Path(os.environ["HARNESS_CACHE_DIR"]) / FILE_NAME).exists()
    suite.write_text(suite.read_text().replace("cache: false", ""))
    assert main(["run", str(suite), "--out", str(out), "--no-progress", "--limit", "2"]) == 0
    assert (Path(os.environ["HARNESS_CACHE_DIR"]) / FILE_NAME).exists()
    argv = ["run", str(suite), "--out", str(out), "--no-progress", "--limit", "2", "--no-cache"]
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text())["provenance"]["cache"] is None


# --- sharing and damage ------------------------------------------------------------------


def _writer(path: str, worker: int, n: int) -> None:
    cache = ResponseCache(path, timeout=60)
    for start in range(0, n, 25):
        # both workers write the same keys in opposite orders, with the same values
        keys = range(start, min(n, start + 25))
        if worker:
            keys = range(n - start - 1, max(-1, n - start - 26), -1)
        cache.put_many("fp", "k", [(f"key{k}", {"v": k, "text": "x" * (k % 97)}) for k in keys])
        cache.get_many([f"key{k}" for k in keys])
    cache.close()
    if cache.disabled_reason:
        raise SystemExit(f"worker {worker}: {cache.disabled_reason}")


@pytest.mark.slow
def test_two_processes_writing_at_once_do_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    n = 2000
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, n)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = dict(conn.execute("SELECT key, response FROM responses").fetchall())
    assert len(rows) == n
    assert all(json.loads(rows[f"key{k}"]) == {"v": k, "text": "x" * (k % 97)} for k in range(n))


def test_corrupt_file_is_bypassed_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.warns(CacheWarning) as caught:
        cache = ResponseCache(path)
    assert [str(w.message) for w in caught] == [
        CACHE_BYPASSED.format(path=path, reason="file is not a database")
    ]
    assert not cache.enabled
    computed = cached_map(cache, "fp", "k", [1, 2], lambda idx: [i * 2 for i in idx], chunk=1)
    assert computed == [0, 2]
    assert path.read_bytes() == b"this is not a sqlite database" * 100  # left as it was


@pytest.mark.slow
def test_corrupt_cache_does_not_stop_a_run(
    tmp_path: Path, tiny_gpt2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli.main import main

    (Path(os.environ["HARNESS_CACHE_DIR"])).mkdir(parents=True)
    (Path(os.environ["HARNESS_CACHE_DIR"]) / FILE_NAME).write_bytes(b"\x00garbage" * 500)
    suite = write_suite(tmp_path, tiny_gpt2, "  - {metric: lm.perplexity, max: 1e9}")
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress", "--limit", "2"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: response cache" in err and "bypassed: file is not a database" in err
    assert json.loads((out / "results.json").read_text())["provenance"]["cache"]["enabled"] is False


def test_locked_file_is_bypassed_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    ResponseCache(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing for a long time
    messages: list[str] = []
    cache = ResponseCache(path, timeout=0.2, warn=messages.append)
    assert cache.enabled  # reading still works in WAL mode
    assert cached_map(cache, "fp", "k", [1, 2], lambda idx: [i for i in idx], chunk=1) == [0, 1]
    assert messages == [CACHE_BYPASSED.format(path=path, reason="database is locked")]
    assert not cache.enabled
    holder.execute("ROLLBACK")


def test_schema_from_another_version_is_bypassed(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    messages: list[str] = []
    cache = ResponseCache(path, warn=messages.append)
    assert not cache.enabled
    assert messages == [
        CACHE_BYPASSED.format(
            path=path,
            reason="it was written by another version of the harness (schema 99, expected 1)",
        )
    ]


# --- resume after SIGKILL ----------------------------------------------------------------


def _rows_in(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_run_killed_with_sigkill_resumes_to_identical_results(
    tmp_path: Path, tiny_gpt2: Path
) -> None:
    suite = write_suite(tmp_path, tiny_gpt2, "  - {metric: lm.perplexity, max: 1e9}")
    # enough texts that the run is still scoring when it is killed
    texts = [f"the team won the game number {i} in the city today." for i in range(400)]
    (tmp_path / "data" / "wiki.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in texts)
    )
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "killed-cache")}
    db = tmp_path / "killed-cache" / FILE_NAME
    cmd = [sys.executable, "-m", "harness", "run", str(suite), "--no-progress"]
    cmd += ["--batch-size", "1"]
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "killed")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _rows_in(db) < 80 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = _rows_in(db)
    total = len(texts) + 2 * 10 + 3  # perplexity texts, 2 choices x 10 reviews, 3 prompts
    assert 80 <= stored < total
    assert not (tmp_path / "killed" / "results.json").exists()

    done = subprocess.run(
        [*cmd, "--out", str(tmp_path / "resumed")], env=env, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    resumed = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert resumed["provenance"]["cache"]["hits"] == stored
    assert resumed["provenance"]["cache"]["misses"] == total - stored

    clean = subprocess.run(
        [*cmd, "--out", str(tmp_path / "clean"), "--no-cache"], capture_output=True, check=False
    )
    assert clean.returncode == 0, clean.stderr.decode()
    reference = json.loads((tmp_path / "clean" / "results.json").read_text())
    assert comparable(resumed) == comparable(reference)
