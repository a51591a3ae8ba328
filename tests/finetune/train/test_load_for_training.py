"""harness.model.language_model.load_for_training: the training loader keeps the loading rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.model.language_model import (
    OPT_IN_TRAINING,
    PICKLE_REFUSED,
    ModelSource,
    fingerprint_folder,
    load_for_training,
)


def test_loads_in_train_mode_with_a_pad_token(tiny_gpt2: Path) -> None:
    model, tokenizer, fingerprint = load_for_training(ModelSource(path=str(tiny_gpt2)))
    assert model.training
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the tiny tokenizer has no pad
    assert fingerprint.digest == fingerprint_folder(tiny_gpt2, allow_pickle=False).digest


def test_pickle_weights_are_refused(tiny_gpt2: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(UserError) as exc:
        load_for_training(ModelSource(path=str(folder)))
    assert exc.value.messages == [
        PICKLE_REFUSED.format(
            what="base model", path=folder, files="pytorch_model.bin", opt_in=OPT_IN_TRAINING
        )
    ]


def test_a_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError) as exc:
        load_for_training(ModelSource(path=str(tmp_path / "nope")))
    assert exc.value.messages == [f"base model '{tmp_path / 'nope'}': folder not found"]
