"""The served backends against a fake OpenAI-compatible server computing with the same
weights as the transformers backend: the numbers agree, the requests are what the
servers expect, identity and provenance name the server and never the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.errors import UserError
from harness.model.files import ModelSource
from harness.model.http_client import MISSING_KEY
from harness.model.served import NEEDS_TOKENIZER, NO_CAPABILITY, NO_GROUP, NOT_SERVED, load_served
from tests.model.served.fake_server import FakeServer

PAIRS = [
    ("Review: the movie was great\nSentiment:", " positive"),
    ("Review: the movie was great\nSentiment:", " negative"),
    ("the film", " was very boring and bad."),
    ("", "the story"),
    ("a plot with it ", "and the actor"),
]
TEXTS = ["the movie was great and the actor was fun.", "news today: the market fell.", "a"]
PROMPTS = ["the movie was", "news today:", "Review: it was bad\nSentiment:"]


def source(server: FakeServer, tok: Path, **kw: Any) -> ModelSource:
    endpoint = {"base_url": server.url, "max_retries": 2, "timeout_s": 10, **kw.pop("endpoint", {})}
    return ModelSource(
        path="tiny", backend="openai-completions", endpoint=endpoint, tokenizer=str(tok), **kw
    )


def no_sleep(_: float) -> None:
    pass


@pytest.mark.slow
@pytest.mark.parametrize("adapter", [False, True])
def test_scores_agree_with_the_hf_backend(
    server: FakeServer, tiny_gpt2: Path, tiny_adapter: Path, adapter: bool
) -> None:
    from harness.model.language_model import load_model

    hf = load_model(
        ModelSource(path=str(tiny_gpt2), adapter=str(tiny_adapter) if adapter else None)
    )
    served = load_served(source(server, tiny_gpt2, adapter="tiny-lora" if adapter else None))
    for ours, theirs in zip(served.loglikelihood(PAIRS), hf.loglikelihood(PAIRS), strict=True):
        assert ours[0] == pytest.approx(theirs[0], abs=1e-4)
        assert ours[1:] == theirs[1:]
    for ours, theirs in zip(
        served.rolling_loglikelihood(TEXTS), hf.rolling_loglikelihood(TEXTS), strict=True
    ):
        assert ours[0] == pytest.approx(theirs[0], abs=1e-4)
        assert ours[1] == theirs[1]
    kwargs = {"max_new_tokens": 6, "stop": ["."]}
    assert served.generate(PROMPTS, **kwargs) == hf.generate(PROMPTS, **kwargs)
    if adapter:  # the base through the same server: the LoRA's name switched to the base's
        with served.adapter_disabled(), hf.adapter_disabled():
            assert served.fingerprint == served.base.digest
            ours, theirs = served.loglikelihood(PAIRS), hf.loglikelihood(PAIRS)
            assert [o[0] for o in ours] == pytest.approx([t[0] for t in theirs], abs=1e-4)
        assert {b["model"] for _, b in server.posts} == {"tiny", "tiny-lora"}


def test_echo_requests_carry_token_ids_and_the_settings(
    server: FakeServer, tiny_gpt2: Path
) -> None:
    served = load_served(source(server, tiny_gpt2))
    served.loglikelihood(PAIRS[:1])
    ((path, body),) = server.posts
    ctx, cont = served.encode_pair(*PAIRS[0])
    assert path == "/v1/completions"
    assert body == {
        "model": "tiny",
        "prompt": ctx + cont,
        "echo": True,
        "max_tokens": 1,
        "logprobs": 1,
        "temperature": 0,
    }


def test_identity_and_provenance(server: FakeServer, tiny_gpt2: Path) -> None:
    a = load_served(source(server, tiny_gpt2))
    b = load_served(source(server, tiny_gpt2))  # /models reports a new `created` each time
    from harness.model.api import ScoringModel

    assert isinstance(a, ScoringModel)
    assert a.base.path == f"{server.url}#tiny"
    assert a.fingerprint == b.fingerprint
    assert a.max_length == 64  # the max_model_len the server reports
    assert a.device == server.url
    assert a.request_settings == {"max_length": 64, "backend": "openai-completions"}
    assert a.loading["endpoint"] == server.url
    assert a.loading["served"]["id"] == "tiny" and "created" not in a.loading["served"]
    lora = load_served(source(server, tiny_gpt2, adapter="tiny-lora"))
    assert lora.fingerprint != a.fingerprint
    with lora.adapter_disabled():
        assert lora.fingerprint == a.fingerprint


def test_refusals(server: FakeServer, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError) as err:
        load_served(source(server, tiny_gpt2, adapter="nope"))
    assert str(err.value) == NOT_SERVED.format(url=server.url, name="nope", names="tiny, tiny-lora")
    with pytest.raises(UserError) as err:
        load_served(source(server, tiny_gpt2), group=object())  # type: ignore[arg-type]
    assert str(err.value) == NO_GROUP.format(backend="openai-completions")
    with pytest.raises(UserError) as err:
        load_served(
            ModelSource(
                path="tiny", backend="openai-completions", endpoint={"base_url": server.url}
            )
        )
    assert str(err.value) == NEEDS_TOKENIZER.format(backend="openai-completions")
    monkeypatch.delenv("SERVED_TEST_KEY", raising=False)
    with pytest.raises(UserError) as err:
        load_served(source(server, tiny_gpt2, endpoint={"api_key_env": "SERVED_TEST_KEY"}))
    assert str(err.value) == MISSING_KEY.format(var="SERVED_TEST_KEY")


@pytest.mark.slow
def test_chat_generates_and_refuses_loglikelihoods(server: FakeServer, tiny_gpt2: Path) -> None:
    from harness.model.language_model import load_model

    chat = load_served(
        ModelSource(path="tiny", backend="openai-chat", endpoint={"base_url": server.url})
    )
    hf = load_model(ModelSource(path=str(tiny_gpt2)))
    kwargs = {"max_new_tokens": 6, "stop": ["."]}
    # the fake server's "chat template" is the bare text: the same continuation as hf
    assert chat.generate(PROMPTS, **kwargs) == hf.generate(PROMPTS, **kwargs)
    assert server.posts[0][0] == "/v1/chat/completions"
    sent = [b["messages"] for _, b in server.posts]
    assert [{"role": "user", "content": PROMPTS[0]}] in sent
    with pytest.raises(UserError) as err:
        chat.loglikelihood(PAIRS)
    assert str(err.value) == NO_CAPABILITY.format(backend="openai-chat", what="log-likelihoods")


@pytest.mark.slow
def test_text_prompts_split_by_offsets(server: FakeServer, tiny_gpt2: Path) -> None:
    """``prompt_format: text`` (a server that takes no token ids): the same scores
    where the server's tokens split where ours do (a context that is not empty)."""
    from harness.model.served import ROLLING_NEEDS_TOKENS

    tokens = load_served(source(server, tiny_gpt2))
    text = load_served(source(server, tiny_gpt2, endpoint={"prompt_format": "text"}))
    pairs = [p for p in PAIRS if p[0]]
    for ours, theirs in zip(text.loglikelihood(pairs), tokens.loglikelihood(pairs), strict=True):
        assert ours[0] == pytest.approx(theirs[0], abs=1e-5)
        assert ours[1:] == theirs[1:]
    assert all(isinstance(b["prompt"], str) for _, b in server.posts[: len(pairs)])
    kwargs = {"max_new_tokens": 6, "stop": ["."]}
    assert text.generate(PROMPTS, **kwargs) == tokens.generate(PROMPTS, **kwargs)
    with pytest.raises(UserError) as err:
        text.rolling_loglikelihood(TEXTS)
    assert str(err.value) == ROLLING_NEEDS_TOKENS.format(backend="openai-completions")


def test_long_texts_and_rows_fit_the_servers_window(server: FakeServer, tiny_gpt2: Path) -> None:
    """Every prompt fits the window less the echoed token; a long text is scored in
    windows, each token once (the same count as the hf backend)."""
    served = load_served(source(server, tiny_gpt2))
    long_text = " ".join(["the movie was great and the actor was fun."] * 20)
    n_tokens = len(served.text_tokens(long_text))
    assert n_tokens > 3 * served.max_length
    ((_, n),) = served.rolling_loglikelihood([long_text])
    assert n == n_tokens
    assert all(len(b["prompt"]) <= served.max_length - 1 for _, b in server.posts)
    server.posts.clear()
    ((_, _, n_cont),) = served.loglikelihood([(long_text, " the end")])
    ((_, body),) = server.posts
    assert len(body["prompt"]) == served.max_length - 1
    assert n_cont == len(served.encode_pair(long_text, " the end")[1])
