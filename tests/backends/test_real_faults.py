"""Acceptance of issue 19: faults of a real OpenAI-compatible server (llama-cpp-python's,
on loopback) during ``harness run``, injected by a proxy between the backend and the
server (tests/backends/fault_proxy.py): 429 and 500 answers are retried and the run
succeeds; a server slower than ``endpoint.timeout_s`` is retried, then the run stops
with one clear line; so does malformed JSON; a server stopped mid-run ends the run
(exit 2, one line), the response cache keeps the answered requests, and a re-run on
the restarted server sends only the missing ones and gives the uninterrupted results.

Skipped (with the reason) where llama-cpp-python, its server extra or the sdist's
converter is absent; ``make test`` provides them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends.fault_proxy import FaultProxy
from tests.backends.llamacpp_server import LlamaServer
from tests.backends.real_suite import (
    SERVED_NAME,
    WINDOW,
    model_section,
    results,
    run,
    write_suite,
)
from tests.model.test_cache import comparable

pytestmark = pytest.mark.slow

LIMIT = ("--limit", "2", "--batch-size", "1")
"""2 rows a task: 4 echo requests (2 choices each) and 2 generations, one per chunk."""
REQUESTS = 6


@pytest.fixture(scope="module")
def server(trained_llama: tuple[Path, Path]) -> Iterator[LlamaServer]:
    with LlamaServer(trained_llama[1], n_ctx=WINDOW, model_alias=SERVED_NAME) as running:
        yield running


def proxied_suite(tmp_path: Path, folder: Path, proxy: FaultProxy, **endpoint: object) -> Path:
    settings = {"concurrency": 1, **endpoint}
    return write_suite(tmp_path, model_section(folder, proxy.url, **settings))


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_429_and_500_are_retried_then_the_run_succeeds(
    server: LlamaServer, trained_llama: tuple[Path, Path], tmp_path: Path
) -> None:
    with FaultProxy(server.url) as proxy:
        proxy.faults = [429, 429, 500]
        suite = proxied_suite(tmp_path, trained_llama[0], proxy, max_retries=3)
        assert run(suite, tmp_path / "out", *LIMIT) == 0
    print(f"posts {proxy.posts}, answered {proxy.forwarded}")
    assert proxy.forwarded == REQUESTS
    assert proxy.posts == REQUESTS + 3  # the first request took 4 attempts
    assert results(tmp_path / "out")["verdict"] == "pass"


def test_a_slow_server_times_out_and_the_run_stops_with_one_line(
    server: LlamaServer,
    trained_llama: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FaultProxy(server.url, delay=2.0) as proxy:
        proxy.faults = ["slow", "slow"]
        suite = proxied_suite(tmp_path, trained_llama[0], proxy, timeout_s=0.5, max_retries=1)
        capsys.readouterr()
        assert run(suite, tmp_path / "out", *LIMIT) == 2
        line = one_error_line(capsys)
    assert proxy.posts == 2
    assert line == (
        f"error: server {proxy.url}: completions request failed after 2 attempt(s): "
        "no response within 0.5 s (timeout)"
    )


def test_one_slow_answer_is_retried_and_the_run_succeeds(
    server: LlamaServer, trained_llama: tuple[Path, Path], tmp_path: Path
) -> None:
    with FaultProxy(server.url, delay=2.0) as proxy:
        proxy.faults = ["slow"]
        suite = proxied_suite(tmp_path, trained_llama[0], proxy, timeout_s=1.0, max_retries=1)
        assert run(suite, tmp_path / "out", *LIMIT) == 0
    assert proxy.posts == REQUESTS + 1


def test_malformed_json_stops_the_run_with_one_line(
    server: LlamaServer,
    trained_llama: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FaultProxy(server.url) as proxy:
        proxy.faults = ["malformed", "malformed"]
        suite = proxied_suite(tmp_path, trained_llama[0], proxy, max_retries=3)
        capsys.readouterr()
        assert run(suite, tmp_path / "out", *LIMIT) == 2
        line = one_error_line(capsys)
    assert proxy.posts == 2  # a malformed answer is retried once, then it is an error
    assert line.startswith(
        f"error: server {proxy.url}: completions response is malformed (not JSON): HTTP 200"
    )


def test_a_stopped_server_ends_the_run_and_a_rerun_resumes(
    trained_llama: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.model.cache import FILE_NAME, ResponseCache

    folder, gguf_file = trained_llama
    stop_after = 10
    first = LlamaServer(gguf_file, n_ctx=WINDOW, model_alias=SERVED_NAME).start()
    try:
        # the whole run once, on its own cache: how many requests, what it gives
        monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "reference-cache"))
        with FaultProxy(first.url) as proxy:
            port = proxy.port
            suite = proxied_suite(tmp_path, folder, proxy, max_retries=1)
            assert run(suite, tmp_path / "reference", "--batch-size", "1") == 0
        total = proxy.forwarded
        assert total == 12 * 2 + 6
        reference = results(tmp_path / "reference")
        # the same run on an empty cache; the server stops after `stop_after` answers
        monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
        proxy = FaultProxy(first.url, port=port)

        def stop(answered: int) -> None:
            if answered == stop_after:
                first.stop()
                proxy.close()

        proxy.after_forwarded = stop
        capsys.readouterr()
        with proxy:
            assert run(suite, tmp_path / "out", "--batch-size", "1") == 2
        line = one_error_line(capsys)
    finally:
        first.stop()
    print(line)
    assert line.startswith(f"error: server {proxy.url}: completions request failed after 2")
    assert "connection failed" in line
    kept = ResponseCache(tmp_path / "cache" / FILE_NAME).count()
    # the cache stores whole chunks (8 log-likelihood requests at --batch-size 1): the
    # first chunk is kept, the 2 answers of the chunk the stop cut are not
    assert kept == 8
    # restarted (behind the same address): only what the cache lacks reaches it
    with (
        LlamaServer(gguf_file, n_ctx=WINDOW, model_alias=SERVED_NAME) as second,
        FaultProxy(second.url, port=port) as proxy,
    ):
        assert run(suite, tmp_path / "out", "--batch-size", "1") == 0
    resumed = results(tmp_path / "out")
    print(f"total {total}, kept {kept}, re-run posts {proxy.posts}")
    assert proxy.posts == total - kept
    assert resumed["provenance"]["cache"]["hits"] == kept
    assert comparable(resumed) == comparable(reference)
