"""A suite's `model.backend` and its settings (harness.config.backends): read, checked
against the backend they belong to, located when wrong, passed on to the model source;
a served model's `path` and `adapter` are names on the server, not folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import backends
from harness.config.suite import load_suite
from harness.model.factory import source_of
from tests.config.suite_files import SENTIMENT, errors, write


def suite_with(model: str) -> str:
    return "schema_version: 1\nname: gate\nmodel:\n" + model + "tasks:\n" + SENTIMENT


SERVED = (
    "  backend: openai-completions\n"
    "  path: meta-llama/Llama-3.1-8B-Instruct\n"
    "  adapter: support-lora\n"
    "  endpoint: {base_url: 'http://127.0.0.1:8000/v1/', api_key_env: SERVER_KEY}\n"
)


def test_a_served_model_reaches_the_source_without_file_checks(suite_dir: Path) -> None:
    (suite_dir / "tok").mkdir()
    suite = load_suite(
        write(suite_dir, suite_with(SERVED + "  tokenizer: tok\n")), check_files=False
    )
    source = source_of(suite.model)
    assert source.backend == "openai-completions"
    assert source.path == "meta-llama/Llama-3.1-8B-Instruct"  # a name, not made a path
    assert source.adapter == "support-lora"
    assert source.endpoint == {
        "base_url": "http://127.0.0.1:8000/v1",  # the trailing slash dropped
        "api_key_env": "SERVER_KEY",
        "concurrency": 4,
        "timeout_s": 120.0,
        "max_retries": 5,
        "prompt_format": "tokens",
        "echo_max_tokens": 1,
        "extra_body": {},
    }
    assert source.tokenizer == str(suite_dir / "tok")  # a local tokenizer: relative to the suite


def test_served_names_are_not_checked_as_folders_but_the_tokenizer_is(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        suite_with(SERVED.replace("path: meta-llama/", "path: ./") + "  tokenizer: ./missing\n"),
    )
    assert errors(path) == [
        f"suite.yaml:8:14: model.tokenizer: folder not found: {suite_dir / 'missing'}"
    ]


def test_the_default_backend_is_hf(suite_dir: Path) -> None:
    source = source_of(load_suite(write(suite_dir, suite_with("  path: gpt2\n"))).model)
    assert (source.backend, source.endpoint, source.tokenizer, source.vllm) == (
        "hf",
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "  path: x\n  backend: openai-chat\n",
            "suite.yaml:4:3: model: " + backends.NEEDS_ENDPOINT.format(backend="openai-chat"),
        ),
        (
            "  path: x\n  endpoint: {base_url: 'http://h:1/v1'}\n",
            "suite.yaml:4:3: model: endpoint: "
            + backends.ONLY_FOR.format(backends="openai-completions or openai-chat", backend="hf"),
        ),
        (
            SERVED + "  quantization: {bits: 4}\n",
            "suite.yaml:4:3: model: quantization: "
            + backends.ONLY_FOR.format(backends="hf or vllm", backend="openai-completions"),
        ),
        (
            SERVED + "  device: cuda\n",
            "suite.yaml:4:3: model: device: "
            + backends.ONLY_FOR.format(backends="hf", backend="openai-completions"),
        ),
        (
            "  path: x\n  backend: vllm\n  device_map: auto\n",
            "suite.yaml:4:3: model: device_map: "
            + backends.ONLY_FOR.format(backends="hf", backend="vllm"),
        ),
        (
            "  path: x\n  backend: openai-completions\n  endpoint: {base_url: 'ftp://h/v1'}\n",
            "suite.yaml:6:24: model.endpoint.base_url: "
            + backends.BAD_URL.format(value="ftp://h/v1"),
        ),
        (
            "  path: x\n  backend: openai-completions\n"
            "  endpoint: {base_url: 'http://h/v1', api_key_env: sk-abc123}\n",
            "suite.yaml:6:52: model.endpoint.api_key_env: " + backends.BAD_ENV,
        ),
        (
            "  path: x\n  backend: tgi\n",
            "suite.yaml:5:12: model.backend: must be one of 'hf', 'openai-completions', "
            "'openai-chat' or 'vllm', got 'tgi'",
        ),
    ],
)
def test_bad_backend_settings_are_located(suite_dir: Path, model: str, expected: str) -> None:
    assert errors(write(suite_dir, suite_with(model)), check_files=False) == [expected]


def test_a_suite_cannot_hold_an_api_key(suite_dir: Path) -> None:
    """Only the name of the variable holding it: a key in the suite is an unknown field."""
    path = write(
        suite_dir,
        suite_with(
            "  path: x\n  backend: openai-completions\n"
            "  endpoint: {base_url: 'http://h/v1', api_key: sk-secret}\n"
        ),
    )
    (message,) = errors(path, check_files=False)
    assert message.startswith("suite.yaml:6:39: model.endpoint.api_key: unknown field")
