"""Issue 17 acceptance, the model side of chat formatting:

* ``end_tokens`` turns a stop string that is one special token (a template's
  end-of-turn marker) into a token a generation stops at;
* a chat-formatted generation task stops at the end-of-turn token even when it is not
  the tokenizer's EOS (a Llama made to write three tokens, then ``<|eot_id|>``, then
  more tokens), while the same model without chat writes past it;
* a perplexity task over conversations scores what a direct transformers computation
  gives: ``score: all`` the whole rendered text (one BOS), ``score: assistant`` the
  tokens of the assistant turns.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import lmeval_peer as peer

pytestmark = pytest.mark.slow

CONVERSATION = [
    {"role": "system", "content": "You review films."},
    {"role": "user", "content": "the movie was great"},
    {"role": "assistant", "content": "it is a good film"},
    {"role": "user", "content": "and the plot"},
    {"role": "assistant", "content": "the plot was boring"},
]
CHAIN = [" the", " a", "."]  # single tokens of the tiny BPE
"""What the rigged model writes after any prompt, before its end-of-turn token."""
AFTER = "x"
"""What it writes after the end-of-turn token, forever."""


def test_end_tokens_of_the_chat_models(chatml_gpt2: Path, llama3_chat: Path) -> None:
    from transformers import AutoTokenizer

    from harness.model.generation import end_tokens

    llama = AutoTokenizer.from_pretrained(llama3_chat)
    eot = llama.convert_tokens_to_ids("<|eot_id|>")
    header = llama.convert_tokens_to_ids("<|start_header_id|>")
    assert eot in end_tokens(llama, ["<|eot_id|>"])
    assert end_tokens(llama, ["<|start_header_id|>", "\n\n"]) == {llama.eos_token_id, header}
    chatml = AutoTokenizer.from_pretrained(chatml_gpt2)
    im_end = chatml.convert_tokens_to_ids("<|im_end|>")
    im_start = chatml.convert_tokens_to_ids("<|im_start|>")
    assert im_end in end_tokens(chatml, ["<|im_end|>"])
    assert end_tokens(chatml, ["<|im_start|>"]) == {chatml.eos_token_id, im_start}
    # text that is not one special token stays a text stop
    assert end_tokens(chatml, ["<|im_end", "im_end", "film"]) == {chatml.eos_token_id}


def test_end_of_turn_is_a_stop_token_even_when_not_the_eos(
    eot_not_eos: Path,
) -> None:
    from transformers import AutoTokenizer

    from harness.model.generation import end_tokens

    tok = AutoTokenizer.from_pretrained(eot_not_eos)
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert tok.eos_token == "<|endoftext|>"
    assert eot not in end_tokens(tok, [])
    assert end_tokens(tok, ["<|eot_id|>"]) == {tok.eos_token_id, eot}


def _rig(src: Path, dst: Path) -> Path:
    """A copy of the Llama-3-style model whose EOS is ``<|endoftext|>`` (so only the
    template's end-of-turn stops it) and which writes ``CHAIN``, ``<|eot_id|>``, then
    ``AFTER`` forever, whatever the prompt.

    Its layers write nothing (attention and MLP outputs zeroed), so each position's
    hidden state is the embedding of its token: a bigram model. Every embedding is
    zero but for one coordinate (a chain token its own, every other token a shared
    one), and each output row reads the coordinate of the token it follows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.copytree(src, dst)
    config = json.loads((dst / "tokenizer_config.json").read_text())
    config["eos_token"] = "<|endoftext|>"
    (dst / "tokenizer_config.json").write_text(json.dumps(config))
    tok = AutoTokenizer.from_pretrained(dst)
    chain = [_one_token(tok, t) for t in CHAIN]
    eot, after = tok.convert_tokens_to_ids("<|eot_id|>"), _one_token(tok, AFTER)
    model = AutoModelForCausalLM.from_pretrained(dst)
    assert not model.config.tie_word_embeddings
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed.zero_()
        head.zero_()
        other = 0  # the coordinate of every token outside the chain
        embed[:, other] = 1.0
        order = [*chain, eot, after]
        for k, token in enumerate(order, start=1):
            embed[token] = 0.0
            embed[token, k] = 1.0
        previous = [other, *range(1, len(order))]  # after `after` comes `after`
        for token, coordinate in zip(order, previous, strict=True):
            head[token, coordinate] = 1.0
        head[after, len(order)] = 1.0
    model.config.eos_token_id = tok.eos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(dst)
    return dst


def _one_token(tok: Any, text: str) -> int:
    (token,) = tok.encode(text, add_special_tokens=False)
    return int(token)


@pytest.fixture(scope="module")
def eot_not_eos(llama3_chat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _rig(llama3_chat, tmp_path_factory.mktemp("eot-not-eos") / "model")


def _generation_suite(folder: Path, model: Path, chat: bool) -> Path:
    rows = [{"question": "was the movie great", "answer": "great film."}]
    peer.write_jsonl(folder / "qa.jsonl", rows)
    task = {"id": "qa", "kind": "generation", "data": "qa.jsonl", "prompt": "{{ question }}",
            "reference": "answer", "max_new_tokens": 8, "metrics": ["exact_match"]}  # fmt: skip
    suite = {
        "schema_version": 1,
        "name": "chat-generation",
        "model": {"path": str(model), "device": "cpu", "dtype": "float32"},
        "chat": {"enabled": chat, "system": "Answer briefly."},
        "tasks": [task],
        "bootstrap": {"samples": 0},
        "cache": False,
    }
    path = folder / f"suite-{'chat' if chat else 'plain'}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), "utf-8")
    return path


def test_chat_generation_stops_at_the_end_of_turn(eot_not_eos: Path, tmp_path: Path) -> None:
    from harness.config.suite import load_suite
    from harness.run.runner import run_suite

    chain = "".join(CHAIN)
    chat = run_suite(
        load_suite(_generation_suite(tmp_path, eot_not_eos, True)), show_progress=False
    )
    task = chat.tasks["qa"]
    (record,) = task.records
    assert record["prompt"].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert record["prediction"] == chain
    assert task.model_dump()["chat"]["end_of_turn"] == "<|eot_id|>"
    # without chat nothing stops the model at <|eot_id|> (dropped when decoded)
    plain = run_suite(
        load_suite(_generation_suite(tmp_path, eot_not_eos, False)), show_progress=False
    )
    (record,) = plain.tasks["qa"].records
    assert record["prediction"] == chain + AFTER * 4  # 8 new tokens: 3, <|eot_id|>, 4


def test_generate_stops_at_a_special_token_stop_string(eot_not_eos: Path) -> None:
    from harness.model.language_model import ModelSource, load_model

    lm = load_model(ModelSource(path=str(eot_not_eos), device="cpu", dtype="float32"))
    chain = "".join(CHAIN)
    prompts = ["the film", "a report on the city team"]  # batched, left-padded
    assert lm.generate(prompts, max_new_tokens=6, stop=["<|eot_id|>"]) == [chain] * 2
    assert lm.generate(prompts, max_new_tokens=6) == [chain + AFTER * 2] * 2


# -- perplexity over conversations ---------------------------------------------------


def _token_logprobs(model_dir: Path, ids: list[int]) -> list[float]:
    """log p(ids[i] | ids[:i]) for i >= 1, one forward pass (transformers alone)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return [0.0] + [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]


def _perplexity_records(folder: Path, model: Path, score: str) -> list[dict[str, Any]]:
    from harness.config.suite import load_suite
    from harness.run.runner import run_suite

    peer.write_jsonl(folder / "talks.jsonl", [{"messages": CONVERSATION}])
    task = {"id": "talk", "kind": "perplexity", "data": "talks.jsonl", "messages": "messages",
            "score": score, "metrics": ["perplexity"]}  # fmt: skip
    suite = {
        "schema_version": 1,
        "name": "chat-perplexity",
        "model": {"path": str(model), "device": "cpu", "dtype": "float32"},
        "chat": {"enabled": True},
        "tasks": [task],
        "bootstrap": {"samples": 0},
        "cache": False,
    }
    path = folder / f"suite-{score}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), "utf-8")
    return [dict(r) for r in run_suite(load_suite(path), show_progress=False).tasks["talk"].records]


def _rendered(model: Path, *, prefix: bool = True) -> tuple[Any, str, list[int]]:
    """The tokenizer, the conversation as the template renders it, and its tokens with
    exactly one BOS: the template's own or, when the tokenizer has no BOS, the EOS put
    first as the prefix token that conditions a rolling log-likelihood's first token
    (``prefix``; the assistant turns are scored after the conversation as served)."""
    from transformers import AutoTokenizer

    tok: Any = AutoTokenizer.from_pretrained(model)
    text = str(tok.apply_chat_template(CONVERSATION, tokenize=False))
    ids = list(tok.encode(text, add_special_tokens=False))
    if tok.bos_token_id is None:
        ids = [tok.eos_token_id, *ids] if prefix else ids
    else:
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    return tok, text, ids


@pytest.mark.parametrize("name", ["chatml_gpt2", "llama3_chat"])
def test_perplexity_all_is_the_whole_rendered_conversation(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    model: Path = request.getfixturevalue(name)
    _, text, ids = _rendered(model)
    (record,) = _perplexity_records(tmp_path, model, "all")
    assert record["text"] == text
    assert record["n_tokens"] == len(ids) - 1
    assert record["loglik"] == pytest.approx(sum(_token_logprobs(model, ids)), abs=1e-4)


def _assistant_tokens(tok: Any, text: str, ids: list[int], *, lead: bool = False) -> list[int]:
    """Positions (in ``ids``) of the tokens of the assistant turns: each turn's content
    and the end-of-turn marker the template writes after it, found by hand in the
    rendered text (not with harness.tasks.chat). ``lead``: also the whitespace that
    ends the generation prompt before each turn (the header's newlines)."""
    eot = "<|eot_id|>" if "<|eot_id|>" in text else "<|im_end|>"
    spans = []
    for m in CONVERSATION:
        if m["role"] == "assistant":
            start = text.index(m["content"])
            end = text.index(eot, start) + len(eot)
            spans.append((len(text[:start].rstrip()) if lead else start, end))
    shift = len(ids) - len(tok.encode(text, add_special_tokens=False))  # a prefix token
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    inside = [k for k, (a, b) in enumerate(offsets) if any(s <= a and b <= e for s, e in spans)]
    covered = "".join(text[offsets[k][0] : offsets[k][1]] for k in inside)
    assert covered == "".join(text[s:e] for s, e in spans)  # the turns are whole tokens
    return [k + shift for k in inside]


@pytest.mark.parametrize("name", ["chatml_gpt2", "llama3_chat"])
def test_perplexity_assistant_scores_each_turn_with_the_whitespace_before_it(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """score: assistant, checked against transformers: each assistant turn's tokens,
    with the whitespace that ends the generation prompt before it (lm-eval's rule for a
    continuation, and what the fine-tuner trains on), and the record's spans are
    exactly the scored text."""
    model: Path = request.getfixturevalue(name)
    tok, text, ids = _rendered(model, prefix=False)
    positions = _assistant_tokens(tok, text, ids, lead=True)
    assert len(positions) > len(_assistant_tokens(tok, text, ids))
    logprobs = _token_logprobs(model, ids)
    (record,) = _perplexity_records(tmp_path, model, "assistant")
    assert record["text"] == text
    turns = [m["content"] + eot_of(text) for m in CONVERSATION if m["role"] == "assistant"]
    scored = [text[a:b] for a, b in record["spans"]]
    assert [t.lstrip() for t in scored] == turns
    assert all(t[0].isspace() for t in scored)  # the header's line break is scored
    assert record["n_tokens"] == len(positions)
    assert record["loglik"] == pytest.approx(sum(logprobs[k] for k in positions), abs=1e-4)
    assert math.isfinite(record["loglik"])


def eot_of(text: str) -> str:
    return "<|eot_id|>" if "<|eot_id|>" in text else "<|im_end|>"
