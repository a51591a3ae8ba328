"""The chat fine-tune config template (suites/templates/finetune/chat.yaml) validates as
shipped, its example data are chat rows, and it trains on a tiny chat model."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from finetune.config.schema import load_config
from finetune.data.examples import load_examples
from finetune.train.run import train

TEMPLATE = Path(__file__).resolve().parents[3] / "suites" / "templates" / "finetune" / "chat.yaml"


def test_chat_template_validates_and_its_data_are_chat_rows() -> None:
    config = load_config(TEMPLATE)
    assert config.chat.template == "tokenizer" and config.chat.train_on == "all"
    names = (config.data.prompt_field, config.data.completion_field, config.data.text_field)
    examples = load_examples(config.data.train, names, config.data.messages_field)
    assert len(examples) == 8 and all(ex.is_chat for ex in examples)
    assert all(any(r == "assistant" for r, _ in ex.messages) for ex in examples)


def test_chat_template_trains_on_a_tiny_chat_model(chatml_gpt2: Path, tmp_path: Path) -> None:
    shutil.copy(TEMPLATE.parent / "chat_train.jsonl", tmp_path)
    raw = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    raw["base_model"]["path"] = str(chatml_gpt2)
    raw["training"].update({"max_steps": 2, "batch_size": 2, "max_length": 128})
    raw["output"] = str(tmp_path / "out")
    (tmp_path / "chat.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = train(load_config(tmp_path / "chat.yaml"))
    assert result.manifest["curation"]["chat"]["train_on"] == "all"
    assert result.manifest["curation"]["encoding"]["train"]["dropped"] == 0
