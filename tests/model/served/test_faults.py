"""Faults of a served model's server: 429/5xx answers are retried with backoff (and
Retry-After honoured), a slow server times out and is retried until it gives up with an
error naming it, malformed answers are retried once, then reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UserError
from harness.model.http_client import GAVE_UP, MALFORMED, REFUSED, backoff
from harness.model.served import load_served
from tests.model.served.fake_server import FakeServer
from tests.model.served.test_served import PAIRS, source


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_backoff_doubles_to_thirty_seconds_with_jitter() -> None:
    for retry, base in [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (9, 30)]:
        wait = backoff(retry)
        assert base <= wait <= base * 1.25
    assert backoff(0, retry_after=7) == 7
    assert backoff(3, retry_after=1e9) == 300  # a server's wish, bounded


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retried_then_answered(server: FakeServer, tiny_gpt2: Path, status: int) -> None:
    sleeps = Sleeps()
    lm = load_served(source(server, tiny_gpt2), sleep=sleeps)
    expected = lm.loglikelihood(PAIRS[:1])
    server.posts.clear()
    server.faults += [("status", status), ("status", status, 3)]
    assert lm.loglikelihood(PAIRS[:1]) == expected
    assert len(server.posts) == 3  # two failures, then the answer
    assert len(sleeps) == 2 and 1 <= sleeps[0] <= 1.25 and sleeps[1] == 3  # Retry-After: 3


def test_gives_up_after_max_retries_naming_the_server(server: FakeServer, tiny_gpt2: Path) -> None:
    sleeps = Sleeps()
    lm = load_served(source(server, tiny_gpt2), sleep=sleeps)  # max_retries: 2
    server.faults += [("status", 500)] * 3
    with pytest.raises(UserError) as err:
        lm.loglikelihood(PAIRS[:1])
    reason = 'HTTP 500 Internal Server Error: "{\\"error\\": \\"scripted\\"}"'
    assert str(err.value) == GAVE_UP.format(
        url=server.url, kind="completions", attempts=3, reason=reason
    )
    assert len(sleeps) == 2 and len(server.posts) == 3


def test_a_client_error_is_not_retried(server: FakeServer, tiny_gpt2: Path) -> None:
    lm = load_served(source(server, tiny_gpt2), sleep=Sleeps())
    server.faults.append(("status", 400))
    with pytest.raises(UserError) as err:
        lm.loglikelihood(PAIRS[:1])
    reason = 'HTTP 400 Bad Request: "{\\"error\\": \\"scripted\\"}"'
    assert str(err.value) == REFUSED.format(url=server.url, kind="completions", reason=reason)
    assert len(server.posts) == 1


@pytest.mark.slow
def test_slow_server_times_out_and_is_retried(server: FakeServer, tiny_gpt2: Path) -> None:
    sleeps = Sleeps()
    lm = load_served(source(server, tiny_gpt2, endpoint={"timeout_s": 0.3}), sleep=sleeps)
    expected = lm.generate(["the movie"], max_new_tokens=3)
    server.posts.clear()
    server.faults.append(("slow", 1.0))  # one slow answer: retried, then answered
    assert lm.generate(["the film"], max_new_tokens=3) == lm.generate(
        ["the film"], max_new_tokens=3
    )
    assert len(sleeps) == 1
    server.faults += [("slow", 1.0)] * 3
    with pytest.raises(UserError) as err:
        lm.generate(["a story"], max_new_tokens=3)
    assert str(err.value) == GAVE_UP.format(
        url=server.url, kind="completions", attempts=3, reason="no response within 0.3 s (timeout)"
    )
    assert expected


@pytest.mark.parametrize(
    ("bodies", "problem"),
    [
        ([b"{not json", b"<html>busy</html>"], "not JSON"),
        (
            [b'{"choices": []}', b'{"choices": [{"text": "x"}]}'],
            "no choices[0].logprobs.token_logprobs and tokens",
        ),
    ],
)
def test_malformed_is_retried_once_then_reported(
    server: FakeServer, tiny_gpt2: Path, bodies: list[bytes], problem: str
) -> None:
    sleeps = Sleeps()
    lm = load_served(source(server, tiny_gpt2, endpoint={"max_retries": 5}), sleep=sleeps)
    server.faults += [("malformed", b) for b in bodies]
    with pytest.raises(UserError) as err:
        lm.loglikelihood(PAIRS[:1])
    shown = bodies[1].decode()
    import json

    assert str(err.value) == MALFORMED.format(
        url=server.url, kind="completions", problem=problem, status=200, body=json.dumps(shown)
    )
    assert len(server.posts) == 2 and len(sleeps) == 1


def test_malformed_once_then_answered(server: FakeServer, tiny_gpt2: Path) -> None:
    lm = load_served(source(server, tiny_gpt2), sleep=Sleeps())
    server.faults.append(("malformed", b"{truncated"))
    assert lm.loglikelihood(PAIRS[:1])[0][2] > 0


def test_concurrent_requests_and_a_failure_among_them(server: FakeServer, tiny_gpt2: Path) -> None:
    lm = load_served(source(server, tiny_gpt2, endpoint={"concurrency": 4}), sleep=Sleeps())
    pairs = [(f"the movie {i}", " was fun") for i in range(12)]
    first = lm.loglikelihood(pairs)
    assert len(server.posts) == 12
    lm2 = load_served(source(server, tiny_gpt2, endpoint={"concurrency": 1}), sleep=Sleeps())
    assert lm2.loglikelihood(pairs) == first  # same answers in the same order
    server.faults += [("status", 404)]
    with pytest.raises(UserError, match="refused"):
        lm.loglikelihood(pairs)


def test_a_key_the_server_echoes_is_scrubbed_from_errors(
    server: FakeServer, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-echoed-4d2c8b"
    monkeypatch.setenv("SERVED_TEST_KEY", key)
    lm = load_served(
        source(server, tiny_gpt2, endpoint={"api_key_env": "SERVED_TEST_KEY"}), sleep=Sleeps()
    )
    server.faults.append(("body", 401, f'{{"error": "bad key Bearer {key}"}}'.encode()))
    with pytest.raises(UserError) as err:
        lm.loglikelihood(PAIRS[:1])
    assert key not in str(err.value)
    assert "bad key Bearer ***" in str(err.value)
    assert server.auth[-1] == f"Bearer {key}"
