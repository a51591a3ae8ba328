"""Tiny causal LMs built from a config for tests (never downloaded).

A byte-level BPE tokenizer is trained with `tokenizers` on a small generated corpus,
and a GPT-2 or Llama model with random (seeded) weights is saved as safetensors.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

WORDS = [
    "the",
    "a",
    "movie",
    "film",
    "story",
    "actor",
    "plot",
    "great",
    "good",
    "bad",
    "awful",
    "boring",
    "fun",
    "loved",
    "hated",
    "was",
    "is",
    "and",
    "but",
    "not",
    "very",
    "really",
    "quite",
    "it",
    "this",
    "that",
    "with",
    "of",
    "to",
    "in",
    "on",
    "he",
    "she",
    "they",
    "summary",
    "news",
    "today",
    "report",
    "city",
    "team",
    "won",
    "lost",
    "game",
    "market",
    "price",
    "rose",
    "fell",
]


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + "." for _ in range(n)]


def build_tokenizer(folder: Path, vocab_size: int = 300) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.save_pretrained(folder)
    return fast


# Chat templates of the two families a test needs (our own Jinja, written for the tiny
# models): ChatML, which writes no BOS, and a Llama-3-style one that writes the BOS
# itself while the tokenizer also adds one when encoding (the double-BOS trap).
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
    "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
    "{% endif %}"
)
CHAT_STYLES = ("chatml", "llama3")


def build_chat_tokenizer(folder: Path, style: str, vocab_size: int = 300) -> object:
    """The tiny BPE tokenizer with a chat template and its special tokens.

    ``chatml``: ``<|im_start|>``/``<|im_end|>``, EOS ``<|im_end|>``, no BOS added.
    ``llama3``: BOS ``<|begin_of_text|>`` added to every encoded text by the tokenizer
    (as Llama 3's does) and written by the template too; ``<|eot_id|>`` ends a turn."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    base: Any = build_tokenizer(folder, vocab_size)
    inner = base.backend_tokenizer
    if style == "chatml":
        inner.add_special_tokens(["<|im_start|>", "<|im_end|>"])
        fast = PreTrainedTokenizerFast(
            tokenizer_object=inner,
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            unk_token="<|endoftext|>",
        )
        fast.chat_template = CHATML_TEMPLATE
    elif style == "llama3":
        inner.add_special_tokens(
            ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        )
        bos = inner.token_to_id("<|begin_of_text|>")
        inner.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A",
            pair="<|begin_of_text|> $A $B",
            special_tokens=[("<|begin_of_text|>", bos)],
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=inner,
            bos_token="<|begin_of_text|>",
            eos_token="<|eot_id|>",
            pad_token="<|endoftext|>",
            unk_token="<|endoftext|>",
        )
        fast.chat_template = LLAMA3_TEMPLATE
    else:
        raise ValueError(style)
    fast.save_pretrained(folder)
    return fast


def build_wordpiece_tokenizer(folder: Path, vocab_size: int = 300) -> object:
    """A BERT-style tokenizer (lower-cased WordPiece) that starts every text with [CLS],
    the BOS, and adds nothing at the end: how a BERT runs as a causal LM."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        corpus(), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", pair="[CLS] $A $B", special_tokens=[("[CLS]", tok.token_to_id("[CLS]"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="[CLS]",
        eos_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
    )
    fast.save_pretrained(folder)
    return fast


def build_model(
    folder: Path,
    arch: str = "gpt2",
    *,
    n_positions: int = 64,
    seed: int = 0,
    chat: str | None = None,
    hidden: int = 32,
) -> Path:
    """Write a tiny random model + tokenizer to ``folder`` and return it; ``chat``: a
    tokenizer with that chat template (``CHAT_STYLES``); ``hidden``: the width of a
    gpt2 or llama model (bitsandbytes' 4-bit CPU kernels need 64 or more)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tok: Any
    if chat is not None:
        tok = build_chat_tokenizer(folder, chat)
    elif arch == "bert":
        tok = build_wordpiece_tokenizer(folder)
    else:
        tok = build_tokenizer(folder)
    vocab = len(tok)
    torch.manual_seed(seed)
    if arch == "bert":  # BertLMHeadModel with is_decoder: a BERT run as a causal LM
        from transformers import BertConfig, BertLMHeadModel

        bert = BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=n_positions,
            is_decoder=True,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        model: Any = BertLMHeadModel(bert)
    elif arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab,
            n_positions=n_positions,
            n_embd=hidden,
            n_layer=2,
            n_head=2,
            bos_token_id=tok.bos_token_id if chat else 0,
            eos_token_id=tok.eos_token_id if chat else 0,
        )
        model = GPT2LMHeadModel(config)
    elif arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=n_positions,
            bos_token_id=tok.bos_token_id if chat else 0,
            eos_token_id=tok.eos_token_id if chat else 0,
        )
        model = LlamaForCausalLM(config)
    else:
        raise ValueError(arch)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
