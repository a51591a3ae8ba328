"""finetune.train.encode on chat rows: the label mask is the assistant turns, one BOS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from finetune.data.examples import Example
from finetune.train.encode import IGNORE, ChatEncoding, chat_tokens, encode_examples, span_labels
from harness.errors import UserError
from harness.tasks.chat import NO_TEMPLATE, load_template

# two assistant turns, a system prompt and two user turns
CONVERSATION = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "sum"},
    {"role": "assistant", "content": "two"},
]

# Expected target tokens, worked out by hand from the fixtures' templates
# (tests/tiny_models.py) and their tokenizers' pieces (byte-level BPE; these words split
# as he|l|lo and t|w|o). A turn's target is the whitespace ending the generation prompt
# (lm-eval's split, as the harness scores it), the content and the end-of-turn marker.
# ChatML renders "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
#   (0-15: im_start, s y s t e m, \n, b e Ġb r ie f, im_end, \n = 16 tokens; user turn
#   16-25 = 10 tokens) then "<|im_start|>assistant" (26-34: im_start, a s s is t a n t),
#   the "\n" ending the generation prompt (35) and "hello<|im_end|>" = he l lo im_end
#   (36-39); "\n" (40), the user turn "sum" (41-51), "<|im_start|>assistant" (52-60),
#   "\n" (61), "two<|im_end|>" at 62-65, a final "\n" (66, outside: the span ends at
#   the end-of-turn marker).
# Llama-3 renders "<|begin_of_text|>" (0, the one BOS), then per turn
#   "<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>": system 1-17, user
#   18-28, the assistant header 29-38, its "\n\n" (39-40) and "hello<|eot_id|>" (41-44);
#   user 45-56, the header 57-66, "\n\n" (67-68) and "two<|eot_id|>" (69-72).
EXPECTED = {
    ("chatml_gpt2", "all"): [(35, 40, "Ċ he l lo <|im_end|>"), (61, 66, "Ċ t w o <|im_end|>")],
    ("chatml_gpt2", "last"): [(61, 66, "Ċ t w o <|im_end|>")],
    ("llama3_chat", "all"): [
        (39, 45, "Ċ Ċ he l lo <|eot_id|>"),
        (67, 73, "Ċ Ċ t w o <|eot_id|>"),
    ],
    ("llama3_chat", "last"): [(67, 73, "Ċ Ċ t w o <|eot_id|>")],
}
LENGTHS = {"chatml_gpt2": 67, "llama3_chat": 73}


def _chat(model: Path, train_on: str = "all") -> tuple[Any, ChatEncoding]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return tok, ChatEncoding(load_template(tok, "tokenizer", model, str(model)), train_on)


@pytest.mark.parametrize("train_on", ["all", "last"])
@pytest.mark.parametrize("fixture", ["chatml_gpt2", "llama3_chat"])
def test_label_mask_is_the_hand_computed_assistant_tokens(
    fixture: str, train_on: str, request: pytest.FixtureRequest
) -> None:
    tok, chat = _chat(request.getfixturevalue(fixture), train_on)
    ids, labels = chat_tokens(CONVERSATION, chat, tok)
    assert len(ids) == LENGTHS[fixture]
    expected = [IGNORE] * len(ids)
    for start, end, pieces in EXPECTED[(fixture, train_on)]:
        assert " ".join(tok.convert_ids_to_tokens(ids[start:end])) == pieces
        expected[start:end] = ids[start:end]
    assert labels == expected
    # the system and user contents are never targets
    target_text = tok.decode([t for t in labels if t != IGNORE])
    assert "be brief" not in target_text and "hi" not in target_text and "sum" not in target_text
    assert "user" not in target_text and "system" not in target_text


def test_llama3_sequence_has_exactly_one_bos(llama3_chat: Path) -> None:
    tok, chat = _chat(llama3_chat)
    assert tok("x")["input_ids"][0] == tok.bos_token_id  # the tokenizer adds one...
    assert chat.template.render(CONVERSATION, add_generation_prompt=False).startswith(
        tok.bos_token
    )  # ...and the template writes one
    ids, _ = chat_tokens(CONVERSATION, chat, tok)
    assert ids[0] == tok.bos_token_id
    assert ids.count(tok.bos_token_id) == 1


def test_chatml_sequence_has_no_bos(chatml_gpt2: Path) -> None:
    tok, chat = _chat(chatml_gpt2)
    ids, _ = chat_tokens(CONVERSATION, chat, tok)
    assert tok.convert_ids_to_tokens(ids[:1]) == ["<|im_start|>"]


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [
        # span [5, 10): a token ending exactly at its start is context; one straddling
        # its start or its end is a target (every character of the answer is covered);
        # a token starting at its end is context; an added BOS (0, 0) never counts
        ([(0, 0), (0, 5), (4, 6), (6, 9), (9, 11), (10, 12)], [-100, -100, 2, 3, 4, -100]),
        ([(0, 5), (5, 10), (10, 11)], [-100, 1, -100]),
    ],
)
def test_straddling_tokens_are_targets(offsets: list[tuple[int, int]], expected: list[int]) -> None:
    ids = list(range(len(offsets)))
    assert span_labels(ids, offsets, [(5, 10)]) == expected


def test_encode_examples_mixes_chat_and_prompt_rows(chatml_gpt2: Path) -> None:
    tok, chat = _chat(chatml_gpt2, "last")
    pairs = tuple((m["role"], m["content"]) for m in CONVERSATION)
    examples = [
        Example("", "", "c.jsonl", 1, messages=pairs, weight=2.0),
        Example("my PIN is", " 1 2 3", "canaries", 1),
    ]
    enc = encode_examples(examples, tok, 128, True, chat)
    chat_row, plain = enc.features
    assert chat_row["labels"] == chat_tokens(CONVERSATION, chat, tok)[1]
    assert chat_row["weight"] == 2.0
    assert plain["labels"][-1] == tok.eos_token_id  # add_eos still applies to plain rows
    with pytest.raises(ValueError):
        encode_examples(examples, tok, 64, True, None)


def test_cut_and_dropped_chat_rows(chatml_gpt2: Path) -> None:
    tok, chat = _chat(chatml_gpt2)
    pairs = tuple((m["role"], m["content"]) for m in CONVERSATION)
    ex = Example("", "", "c.jsonl", 3, messages=pairs)
    cut = encode_examples([ex], tok, 40, True, chat)  # the first answer fits, the second not
    assert cut.truncated == 1 and len(cut.features[0]["input_ids"]) == 40
    dropped = encode_examples([ex], tok, 35, True, chat)  # no target token fits
    assert dropped.features == [] and dropped.dropped == ["c.jsonl line 3"]


def test_tokenizer_without_template_names_the_setting(tiny_gpt2: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    with pytest.raises(UserError) as err:
        load_template(tok, "tokenizer", tiny_gpt2, "base")
    assert err.value.messages == [NO_TEMPLATE.format(model="base")]
    assert "`chat.template`" in err.value.messages[0]
