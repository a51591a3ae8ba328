"""A chat LoRA: trained on a few conversations, it lowers the assistant-token loss, and
no system or user token is ever a target."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from finetune.cli import main
from finetune.config.schema import load_config
from finetune.train import encode
from finetune.train.encode import IGNORE, ChatEncoding, chat_tokens
from finetune.train.run import train
from harness.tasks.chat import NO_TEMPLATE, load_template
from tests.finetune.conftest import write_config, write_jsonl

COLOURS = ["red", "green", "blue", "black", "white", "pink", "grey", "gold"]


def conversations() -> list[dict[str, Any]]:
    """Two assistant turns per row, the same answers after different questions (a tiny
    model cannot learn to copy a word, but it learns a reply)."""
    return [
        {
            "messages": [
                {"role": "system", "content": "reply with the colour"},
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "ready"},
                {"role": "user", "content": f"colour {c}"},
                {"role": "assistant", "content": "noted"},
            ]
        }
        for c in COLOURS
    ]


@pytest.fixture(scope="module")
def chat_base(chatml_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chatml_gpt2 pretrained (all weights) on plain sentences for 150 steps. A randomly
    initialized tiny model's output head gives near-uniform distributions that a LoRA
    (which never touches the embeddings or the final norm) cannot sharpen: its
    assistant-token loss stays near ln(302); a pretrained one can be steered, as real
    bases are."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.finetune.conftest import one_thread
    from tests.tiny_models import corpus

    folder = tmp_path_factory.mktemp("chat-base")
    for f in chatml_gpt2.iterdir():
        shutil.copy(f, folder / f.name)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    end = tok.eos_token_id
    encoded = [[*tok.encode(t), end] for t in corpus(300, seed=3)]
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with one_thread():
        for step in range(150):
            batch = random.Random(step).sample(encoded, 16)
            width = max(map(len, batch))
            ids = torch.tensor([b + [end] * (width - len(b)) for b in batch])
            labels = torch.tensor([b + [-100] * (width - len(b)) for b in batch])
            model(input_ids=ids, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def assistant_loss(model: Any, tokenizer: Any, chat: ChatEncoding, rows: list[dict]) -> float:
    """Mean cross-entropy of the assistant tokens (the labels) over ``rows``."""
    import torch

    total, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for row in rows:
            ids, labels = chat_tokens(row["messages"], chat, tokenizer)
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
            target = torch.tensor(labels[1:])
            ce = torch.nn.functional.cross_entropy(
                logits, target, ignore_index=IGNORE, reduction="sum"
            )
            total += float(ce)
            n += int((target != IGNORE).sum())
    return total / n


def test_chat_lora_lowers_the_assistant_loss_and_scores_only_assistant_tokens(
    chat_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = conversations()
    write_jsonl(tmp_path / "train.jsonl", rows)
    config = load_config(
        write_config(
            tmp_path,
            chat_base,
            lora={"r": 16, "alpha": 32},
            training={
                "max_steps": 48,
                "lr": 0.01,
                "batch_size": 4,
                "max_length": 128,
                "eval_steps": 12,
            },
        )
    )
    seen: list[dict[str, Any]] = []
    real = encode.encode_examples

    def spy(examples: Any, *args: Any) -> Any:
        out = real(examples, *args)
        seen.extend({"example": ex, **f} for ex, f in zip(examples, out.features, strict=True))
        return out

    monkeypatch.setattr(encode, "encode_examples", spy)
    result = train(config)

    # every target token is an assistant turn's (content + <|im_end|>), none other
    assert len(seen) == len(rows)  # train and validation sets, nothing dropped
    tok = AutoTokenizer.from_pretrained(chat_base)
    for f in seen:
        targets = [t for t in f["labels"] if t != IGNORE]
        answers = [c for r, c in f["example"].messages if r == "assistant"]
        # each turn: the generation prompt's line break, the answer, the end of turn
        assert tok.decode(targets) == "".join("\n" + a + "<|im_end|>" for a in answers)
        for label, token in zip(f["labels"], f["input_ids"], strict=True):
            assert label in (IGNORE, token)
    record = result.manifest["curation"]["chat"]
    assert record["template"] == "tokenizer" and record["train_on"] == "all"
    assert len(record["template_sha256"]) == 64

    chat = ChatEncoding(load_template(tok, "tokenizer", chat_base, "base"))
    base = AutoModelForCausalLM.from_pretrained(chat_base)
    before = assistant_loss(base, tok, chat, rows)
    tuned = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(chat_base), result.output_dir
    )
    after = assistant_loss(tuned, tok, chat, rows)
    # measured: 7.47 before, 1.12 after 48 steps (lr 0.01, r 16)
    assert after < 0.6 * before, (before, after)


def test_malformed_chat_rows_are_exit_2(
    chatml_gpt2: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [
        conversations()[0],
        {"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]},
        {"messages": [{"role": "user", "content": "x"}]},
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    assert main(["train", str(write_config(tmp_path, chatml_gpt2))]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: train.jsonl line 2: messages[0]: unknown role 'bot' (roles: system, user, assistant)",
        "error: train.jsonl line 3: messages[1]: missing content",
        "error: train.jsonl line 4: messages: the conversation has no assistant turn",
    ]


def test_tokenizer_without_a_template_is_exit_2(
    tiny_gpt2: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", conversations())
    assert main(["train", str(write_config(tmp_path, tiny_gpt2))]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1:] == ["error: " + NO_TEMPLATE.format(model=str(tiny_gpt2))]


def test_a_missing_template_file_is_a_located_config_error(
    chatml_gpt2: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", conversations())
    path = write_config(tmp_path, chatml_gpt2, chat={"template": "nope.jinja"})
    assert main(["train", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: config.yaml:")
    assert line.endswith(f"chat.template: file not found: {tmp_path}/nope.jinja")


@pytest.mark.slow
def test_harness_audits_the_chat_adapter_with_chat_enabled(chat_base: Path, tmp_path: Path) -> None:
    """The trained chat adapter through `harness run` with `chat: {enabled: true}` and the
    forgetting audit (base = the adapter disabled, same chat rendering)."""
    from harness.cli.main import main as harness_main

    rows = conversations()
    write_jsonl(tmp_path / "train.jsonl", rows)
    config = load_config(
        write_config(
            tmp_path,
            chat_base,
            lora={"r": 16, "alpha": 32},
            training={"max_steps": 48, "batch_size": 4, "max_length": 128, "eval_steps": 12},
        )
    )
    adapter = train(config).output_dir
    write_jsonl(tmp_path / "eval_conv.jsonl", [{"id": i, **r} for i, r in enumerate(rows)])
    write_jsonl(
        tmp_path / "eval_cls.jsonl",
        [{"id": i, "q": f"colour {c}", "label": "noted"} for i, c in enumerate(COLOURS)],
    )
    suite = {
        "schema_version": 1,
        "name": "chat-audit",
        "model": {"path": str(chat_base), "adapter": str(adapter)},
        "chat": {"enabled": True, "system": "reply with the colour"},
        "tasks": [
            {
                "id": "replies",
                "kind": "perplexity",
                "data": "eval_conv.jsonl",
                "id_field": "id",
                "messages": "messages",
                "score": "assistant",
            },
            {
                "id": "answer",
                "kind": "classification",
                "data": "eval_cls.jsonl",
                "id_field": "id",
                "prompt": "{{ q }}",
                "choices": ["ready", "noted"],
                "label": "label",
                "metrics": ["accuracy"],
            },
        ],
        "audits": {"forgetting": {"tasks": ["replies", "answer"]}},
        "gates": [{"metric": "answer.accuracy", "min": 0.9}],
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    out = tmp_path / "report"
    assert harness_main(["run", str(path), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    forgetting = results["audits"]["forgetting"]["tasks"]
    accuracy = forgetting["answer"]["metrics"]["accuracy"]
    assert (accuracy["base"]["value"], accuracy["checkpoint"]["value"]) == (0.0, 1.0)
    perplexity = forgetting["replies"]["metrics"]["perplexity"]
    assert perplexity["checkpoint"]["value"] < 0.01 * perplexity["base"]["value"]
    assert results["tasks"]["replies"]["chat"]["end_of_turn"] == "<|im_end|>"

    # the harness scored exactly the tokens the fine-tuner trained on
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(chat_base)
    chat = ChatEncoding(load_template(tok, "tokenizer", chat_base, "base"))
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(chat_base), adapter)
    for rec in results["tasks"]["replies"]["records"]:
        messages = rec["input"]["messages"]
        assert rec["text"] == chat.template.render(messages, add_generation_prompt=False)
        ids, labels = chat_tokens(messages, chat, tok)
        with torch.no_grad():
            logp = torch.log_softmax(tuned(input_ids=torch.tensor([ids])).logits[0, :-1], -1)
        target = torch.tensor(labels[1:])
        mask = target != IGNORE
        assert int(mask.sum()) == rec["n_tokens"]
        trained = float(logp[mask].gather(1, target[mask][:, None]).sum())
        assert trained == pytest.approx(rec["loglik"], abs=1e-4)
