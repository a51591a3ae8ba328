"""The loading options of a suite's `model` (harness.config.loading): read, resolved and
refused with located messages, and passed on to the model source as given."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import loading
from harness.config.suite import load_suite
from harness.model.factory import source_of
from tests.config.suite_files import SENTIMENT, errors, write


def suite_with(model: str) -> str:
    return "schema_version: 1\nname: gate\nmodel:\n  path: gpt2\n" + model + "tasks:\n" + SENTIMENT


def test_the_options_reach_the_model_source(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        suite_with(
            "  dtype: auto\n"
            "  device_map: {model.embed_tokens: 0, model.layers.0: cpu, model.layers.1: disk}\n"
            "  max_memory: {0: 20GiB, cpu: 64GiB}\n"
            "  offload_folder: offload\n"
            "  attn_implementation: sdpa\n"
            "  quantization: {bits: 4, double_quant: true}\n"
        ),
    )
    source = source_of(load_suite(path).model)
    assert source.dtype == "auto"
    assert source.device_map == {
        "model.embed_tokens": 0,
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
    }
    assert source.max_memory == {"0": "20GiB", "cpu": "64GiB"}
    assert source.offload_folder == str(suite_dir / "offload")  # relative to the suite
    assert source.attn_implementation == "sdpa"
    assert source.quantization == {
        "bits": 4,
        "quant_type": "nf4",
        "double_quant": True,
        "compute_dtype": "bfloat16",
    }


def test_defaults_load_plainly(suite_dir: Path) -> None:
    source = source_of(load_suite(write(suite_dir, suite_with(""))).model)
    assert (source.dtype, source.device_map, source.quantization) == ("float32", None, None)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "  max_memory: {0: 20GiB}\n",
            "suite.yaml:4:3: model: max_memory: " + loading.NEEDS_DEVICE_MAP,
        ),
        (
            "  device_map: auto\n  max_memory: {0: lots}\n",
            "suite.yaml:6:15: model.max_memory: " + loading.BAD_MEMORY.format(value="lots"),
        ),
        (
            "  device_map: everywhere\n",
            "suite.yaml:5:15: model.device_map: "
            + loading.BAD_DEVICE_MAP.format(names=", ".join(loading.DEVICE_MAPS)),
        ),
        (
            "  device: cuda:1\n  device_map: auto\n",
            "suite.yaml:4:3: model: " + loading.DEVICE_AND_MAP,
        ),
        (
            "  quantization: {bits: 8, quant_type: fp4}\n",
            "suite.yaml:5:17: model.quantization: "
            + loading.FOUR_BIT_ONLY.format(name="quant_type"),
        ),
        (
            "  quantization: {bits: 3}\n",
            "suite.yaml:5:24: model.quantization.bits: must be one of 4 or 8, got 3",
        ),
    ],
)
def test_bad_options_are_located(suite_dir: Path, model: str, expected: str) -> None:
    assert errors(write(suite_dir, suite_with(model))) == [expected]


def test_a_hub_attention_kernel_is_not_offered(suite_dir: Path) -> None:
    """A kernel from the hub is remote code: not a value the suite can name."""
    (message,) = errors(
        write(suite_dir, suite_with("  attn_implementation: kernels-community/flash-attn\n"))
    )
    assert message.startswith("suite.yaml:5:24: model.attn_implementation:")
    assert "'flash_attention_2'" in message
