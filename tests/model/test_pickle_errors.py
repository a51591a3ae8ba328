"""Issue #24 defect 9 (pickle part): with --allow-pickle, weights that torch.load
(weights_only=True, as transformers and peft call it) refuses or cannot read are a
UserError naming the file (exit 2, one line), never a traceback, and never run code."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.errors import UserError
from harness.model.language_model import (
    OPT_IN_TRAINING,
    PICKLE_UNREADABLE,
    ModelSource,
    load_for_training,
    load_model,
)
from tests.cli.test_cli import write_suite
from tests.report.stored_run import build_adapter

pytestmark = pytest.mark.slow

GATES = "  - {metric: sentiment.accuracy, min: 0.0}\n"


class Payload:
    """A pickle that makes a folder when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.mkdir, (str(self.marker),))


def payloads(marker: Path) -> dict[str, bytes]:
    import io

    import torch

    zipped = io.BytesIO()
    torch.save({"transformer.wte.weight": Payload(marker)}, zipped)
    return {
        # torch.save's zip format holding a global that weights_only refuses
        "refused-global": zipped.getvalue(),
        # a bare pickle with the same payload (torch's legacy format)
        "bare-pickle": pickle.dumps(Payload(marker)),
        "garbage": bytes(range(256)) * 4,
        "empty": b"",
    }


# torch.load's own words for each file (the part after its generic preamble)
REASONS = {
    "refused-global": "Trying to load unsupported GLOBAL posix.mkdir whose module posix is blocked",
    "bare-pickle": "Unsupported operand 149",
    "garbage": "Unsupported operand 0",
    "empty": "the file is empty or ends early",
}


def pickle_folder(model: Path, folder: Path, name: str, data: bytes) -> Path:
    """A copy of ``model`` whose only weights are ``name`` holding ``data``."""
    shutil.copytree(model, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("kind", list(REASONS))
def test_unloadable_pickle_model_is_a_located_user_error(
    kind: str, tiny_gpt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "payload-ran"
    model = pickle_folder(
        tiny_gpt2, tmp_path / "model", "pytorch_model.bin", payloads(marker)[kind]
    )
    suite = write_suite(tmp_path, model, GATES)
    code = main(
        ["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress", "--allow-pickle"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    want = PICKLE_UNREADABLE.format(
        what="model", path=model, files="pytorch_model.bin", reason=REASONS[kind]
    )
    assert want in err.splitlines()[-1]
    assert not marker.exists()


def test_unloadable_pickle_adapter_names_its_file(tiny_gpt2: Path, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    built = build_adapter(tiny_gpt2, tmp_path / "built")
    adapter = pickle_folder(
        built, tmp_path / "adapter", "adapter_model.bin", payloads(marker)["refused-global"]
    )
    lm = load_model(
        ModelSource(path=str(tiny_gpt2), adapter=str(adapter), allow_pickle=True, device="cpu")
    )
    with pytest.raises(UserError) as caught:
        lm.loglikelihood([("a", " b")])
    want = PICKLE_UNREADABLE.format(
        what="adapter", path=adapter, files="adapter_model.bin", reason=REASONS["refused-global"]
    )
    assert caught.value.messages == [want]
    assert not marker.exists()


def test_unloadable_pickle_base_for_training(tiny_gpt2: Path, tmp_path: Path) -> None:
    model = pickle_folder(tiny_gpt2, tmp_path / "model", "pytorch_model.bin", b"")
    with pytest.raises(UserError) as caught:
        load_for_training(ModelSource(path=str(model), allow_pickle=True))
    want = PICKLE_UNREADABLE.format(
        what="base model", path=model, files="pytorch_model.bin", reason=REASONS["empty"]
    )
    assert caught.value.messages == [want]
    assert OPT_IN_TRAINING  # the opt-in itself is tested in test_unsafe_artifacts
