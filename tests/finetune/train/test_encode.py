"""finetune.train.encode: the loss covers completion tokens only, split as the harness scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from finetune.data.examples import Example
from finetune.train.encode import IGNORE, Collator, ReplayMix, encode_examples, replay_count
from finetune.train.trainer import token_losses, weighted_ce
from harness.model.language_model import ModelSource, load_model

PAIRS = [
    ("Review: the movie was good\nSentiment:", " positive"),
    ("the plot ", "was boring and not fun"),  # trailing space moves to the target
    ("headline: market rose\nsummary:", " market rose"),
]


@pytest.fixture(scope="module")
def lm(tiny_gpt2: Path):  # type: ignore[no-untyped-def]
    return load_model(ModelSource(path=str(tiny_gpt2), device="cpu"))


def test_labels_mask_the_prompt_and_padding(lm) -> None:  # type: ignore[no-untyped-def]
    examples = [Example(p, c, "t", i) for i, (p, c) in enumerate(PAIRS, start=1)]
    encoded = encode_examples(examples, lm.tokenizer, 64, add_eos=True)
    eos = lm.tokenizer.eos_token_id
    for (prompt, completion), feature in zip(PAIRS, encoded.features, strict=True):
        context, target = lm.encode_pair(prompt, completion)  # the harness's split
        assert feature["input_ids"] == context + target + [eos]
        assert feature["labels"] == [IGNORE] * len(context) + target + [eos]
    batch = Collator(pad_id=eos)(encoded.features)
    width = batch["input_ids"].shape[1]
    for row, feature in enumerate(encoded.features):
        n = len(feature["input_ids"])
        assert batch["labels"][row, n:].tolist() == [IGNORE] * (width - n)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)


def test_text_rows_are_conditioned_on_bos(lm) -> None:  # type: ignore[no-untyped-def]
    feature = encode_examples([Example("", "the movie", "t", 1)], lm.tokenizer, 64, False).features[
        0
    ]
    tokens = lm.encode("the movie")
    assert feature["input_ids"] == [lm.prefix_token, *tokens]
    assert feature["labels"] == [IGNORE, *tokens]


def test_training_loss_is_the_harness_completion_loglikelihood(lm) -> None:  # type: ignore[no-untyped-def]
    """What is trained is what is scored: the masked loss times the number of target
    tokens equals minus the log-likelihood the harness gives the completion."""
    examples = [Example(p, c, "t", i) for i, (p, c) in enumerate(PAIRS, start=1)]
    batch = Collator(pad_id=0)(encode_examples(examples, lm.tokenizer, 64, add_eos=False).features)
    with torch.no_grad():
        logits = lm.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    ce, mask = token_losses(logits, batch["labels"])
    scored = lm.loglikelihood(PAIRS, batch_size=3)
    for row, (logprob, _greedy, n) in enumerate(scored):
        assert int(mask[row].sum()) == n
        assert float(ce[row].sum()) == pytest.approx(-logprob, abs=1e-4)
    # changing only prompt tokens' labels would not change the loss: they carry none
    assert weighted_ce(ce, mask, None).item() == pytest.approx(
        float(ce.sum() / mask.sum()), abs=1e-6
    )


def test_long_examples_are_cut_and_prompt_only_ones_dropped(lm) -> None:  # type: ignore[no-untyped-def]
    long_target = Example("short prompt", " the movie" * 40, "t", 1)
    long_prompt = Example("the movie " * 40, " good", "t", 2)
    encoded = encode_examples([long_target, long_prompt], lm.tokenizer, 16, add_eos=True)
    assert [len(f["input_ids"]) for f in encoded.features] == [16]
    assert (encoded.truncated, encoded.dropped) == (1, ["t line 2"])


def test_replay_mix_draws_a_fresh_seeded_sample_each_epoch() -> None:
    main = [{"id": i} for i in range(6)]
    pool = [{"id": 100 + i} for i in range(10)]
    n = replay_count(len(main), 0.25)  # 2 of every 8 examples are replayed
    assert n == 2
    mix = ReplayMix(main, pool, n, seed=1)
    assert len(mix) == 8 and [mix[i] for i in range(6)] == main
    epoch0 = mix.replay_indices()
    mix.set_epoch(1)
    epoch1 = mix.replay_indices()
    assert epoch0 != epoch1
    mix.set_epoch(0)
    assert mix.replay_indices() == epoch0  # depends on (seed, epoch) only: resumable
    small = ReplayMix(main, pool[:1], 3, seed=1)  # a pool too small repeats examples
    assert small.replay_indices() == [0, 0, 0]
