"""harness.model.language_model and harness.model.scoring on tiny real models built in fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from harness.errors import UserError
from harness.model.language_model import ModelSource, load_model
from harness.model.scoring import windows_for_rolling

TEXTS = [
    "the movie was good and the actor was great.",
    "news today: the market rose and the team won the game in the city. " * 6,
    "a",
]
PAIRS = [
    ("Review: the movie was good\nSentiment:", " positive"),
    ("Review: the movie was awful\nSentiment:", " negative"),
    ("the plot ", "was boring and not fun"),
    ("", "he loved it"),
]


@pytest.fixture(scope="module")
def lm(tiny_gpt2: Path):  # type: ignore[no-untyped-def]
    return load_model(ModelSource(path=str(tiny_gpt2)))


def direct_loglik(lm, tokens: list[int], n_targets: int) -> float:  # type: ignore[no-untyped-def]
    """Sum of log p of the last n_targets tokens, straight from the model's logits."""
    ids = torch.tensor([tokens])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(ids).logits[0].float(), dim=-1)
    start = len(tokens) - n_targets
    return sum(float(logp[start + j - 1, tokens[start + j]]) for j in range(n_targets))


def test_loglikelihood_matches_direct_transformers(lm) -> None:  # type: ignore[no-untyped-def]
    got = lm.loglikelihood(PAIRS, batch_size=3)
    for (ctx, cont), (logprob, _greedy, n) in zip(PAIRS, got, strict=True):
        c, t = lm.encode_pair(ctx, cont)
        assert n == len(t)
        assert logprob == pytest.approx(direct_loglik(lm, c + t, len(t)), abs=1e-5)


def test_rolling_matches_direct_transformers_within_one_window(lm) -> None:  # type: ignore[no-untyped-def]
    text = TEXTS[0]
    tokens = lm.encode(text)
    assert len(tokens) < lm.max_length
    expected = direct_loglik(lm, [lm.prefix_token, *tokens], len(tokens))
    ((logprob, n),) = lm.rolling_loglikelihood([text])
    assert n == len(tokens)
    assert logprob == pytest.approx(expected, abs=1e-5)


def test_rolling_windows_predict_every_token_once() -> None:
    tokens = list(range(1, 151))
    rows = windows_for_rolling(tokens, prefix_token=0, max_length=64)
    predicted = [t for r in rows for t in r.targets]
    assert predicted == tokens
    for r in rows:
        assert len(r.tokens) <= 64
        # the input ends just before the last target, so the last input position predicts it
        assert r.tokens[-1] == (0 if r.targets[-1] == 1 else r.targets[-1] - 1)
    assert rows[0].tokens[0] == 0


def test_long_text_is_scored_in_windows(lm) -> None:  # type: ignore[no-untyped-def]
    text = TEXTS[1]
    tokens = lm.encode(text)
    assert len(tokens) > lm.max_length
    ((logprob, n),) = lm.rolling_loglikelihood([text])
    assert n == len(tokens)
    # window by window, straight from the model
    expected = 0.0
    for r in windows_for_rolling(tokens, lm.prefix_token, lm.max_length):
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(torch.tensor([r.tokens])).logits[0].float(), -1)
        start = len(r.tokens) - len(r.targets)
        expected += sum(float(logp[start + j, t]) for j, t in enumerate(r.targets))
    assert logprob == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_scores_do_not_depend_on_batch_size(lm, batch_size: int) -> None:  # type: ignore[no-untyped-def]
    ref_ll = lm.loglikelihood(PAIRS, batch_size=2)
    ref_roll = lm.rolling_loglikelihood(TEXTS, batch_size=2)
    ref_gen = lm.generate([p for p, _ in PAIRS], max_new_tokens=6, stop=["\n"], batch_size=2)
    got_ll = lm.loglikelihood(PAIRS, batch_size=batch_size)
    got_roll = lm.rolling_loglikelihood(TEXTS, batch_size=batch_size)
    got_gen = lm.generate(
        [p for p, _ in PAIRS], max_new_tokens=6, stop=["\n"], batch_size=batch_size
    )
    for a, b in zip(ref_ll, got_ll, strict=True):
        assert a[0] == pytest.approx(b[0], abs=1e-5)
        assert a[2] == b[2]
    for a, b in zip(ref_roll, got_roll, strict=True):
        assert a[0] == pytest.approx(b[0], abs=1e-5)
    assert ref_gen == got_gen


def test_generation_cuts_at_stop_string(lm) -> None:  # type: ignore[no-untyped-def]
    (free,) = lm.generate(["the movie"], max_new_tokens=12)
    (cut,) = lm.generate(
        ["the movie"], max_new_tokens=12, stop=[free[3:5]] if len(free) > 5 else []
    )
    assert free.startswith(cut)
    if len(free) > 5:
        assert free[3:5] not in cut


def test_pickle_weights_refused_unless_allowed(tiny_gpt2: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "model.safetensors").unlink()
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(UserError) as err:
        load_model(ModelSource(path=str(folder)))
    assert err.value.messages == [
        f"model '{folder}' has only pickle weights (pytorch_model.bin); refusing to load them "
        "because unpickling can run arbitrary code. Convert them to safetensors, or pass "
        "--allow-pickle if you trust the file"
    ]
    lm = load_model(ModelSource(path=str(folder), allow_pickle=True))
    assert lm.base.files[-1].name == "pytorch_model.bin" or any(
        f.name == "pytorch_model.bin" for f in lm.base.files
    )


def test_missing_model_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        load_model(ModelSource(path=str(tmp_path / "nope")))
    assert err.value.messages == [f"model '{tmp_path / 'nope'}': folder not found"]


def test_fingerprint_changes_with_one_byte(tiny_gpt2: Path, tmp_path: Path) -> None:
    from harness.model.language_model import fingerprint_folder

    folder = tmp_path / "copy"
    shutil.copytree(tiny_gpt2, folder)
    before = fingerprint_folder(folder, allow_pickle=False).digest
    assert before == fingerprint_folder(tiny_gpt2, allow_pickle=False).digest
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    assert fingerprint_folder(folder, allow_pickle=False).digest != before


def test_adapter_disabled_gives_base_scores(tiny_gpt2: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False)
    )
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    plain = load_model(ModelSource(path=str(tiny_gpt2)))
    adapted = load_model(ModelSource(path=str(tiny_gpt2), adapter=str(adapter_dir)))
    base_ll = [x[0] for x in plain.loglikelihood(PAIRS)]
    tuned_ll = [x[0] for x in adapted.loglikelihood(PAIRS)]
    assert max(abs(a - b) for a, b in zip(base_ll, tuned_ll, strict=True)) > 1e-3
    assert adapted.fingerprint != plain.fingerprint
    with adapted.adapter_disabled():
        off_ll = [x[0] for x in adapted.loglikelihood(PAIRS)]
        assert adapted.fingerprint == plain.fingerprint
    assert off_ll == pytest.approx(base_ll, abs=1e-5)
    assert [x[0] for x in adapted.loglikelihood(PAIRS)] == pytest.approx(tuned_ll, abs=1e-6)
    # weights first loaded inside the switch: the adapter is off there and on after it
    fresh = load_model(ModelSource(path=str(tiny_gpt2), adapter=str(adapter_dir)))
    with fresh.adapter_disabled():
        assert [x[0] for x in fresh.loglikelihood(PAIRS)] == pytest.approx(base_ll, abs=1e-5)
    assert fresh.weights_loaded
    assert [x[0] for x in fresh.loglikelihood(PAIRS)] == pytest.approx(tuned_ll, abs=1e-6)


def test_weights_load_on_first_use(
    tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.model.language_model
    from harness.model.language_model import max_length_from_files, resolve_max_length

    lm = load_model(ModelSource(path=str(tiny_gpt2), device="cpu"))
    assert not lm.weights_loaded and lm.load_s == 0.0
    settings = lm.request_settings  # what cache keys need, known without the weights
    assert lm.loglikelihood(PAIRS[:1])
    assert lm.weights_loaded and lm.load_s > 0
    assert settings == {"max_length": lm.max_length, "dtype": str(lm.model.dtype)}
    assert lm.max_length == resolve_max_length(lm.model.config, lm.tokenizer, None)
    # config.json silent on the window: None, and the loaded config decides (same value)
    folder = tmp_path / "copy"
    folder.mkdir()
    config = json.loads((tiny_gpt2 / "config.json").read_text())
    config.pop("n_positions")
    (folder / "config.json").write_text(json.dumps(config))
    assert max_length_from_files(folder) is None
    monkeypatch.setattr(harness.model.language_model, "max_length_from_files", lambda folder: None)
    assert load_model(ModelSource(path=str(tiny_gpt2))).max_length == lm.max_length


def test_damaged_weights_are_a_user_error_at_first_use(tiny_gpt2: Path, tmp_path: Path) -> None:
    folder = tmp_path / "damaged"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    lm = load_model(ModelSource(path=str(folder)))
    with pytest.raises(UserError) as err:
        lm.loglikelihood(PAIRS[:1])
    assert err.value.messages[0].startswith(f"model '{folder}': cannot load: ")


def test_fused_activation_keeps_outputs(tiny_gpt2: Path) -> None:
    from transformers import AutoModelForCausalLM

    from harness.model.scoring import fuse_activations

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    ids = torch.tensor([[1, 5, 9, 30, 2, 7]])
    with torch.no_grad():
        before = model(ids).logits
        assert fuse_activations(model) == model.config.n_layer
        after = model(ids).logits
    assert torch.allclose(before, after, atol=1e-5)


def test_bert_run_as_causal_lm_scores_as_transformers(tmp_path: Path) -> None:
    """A BERT with ``is_decoder`` (BertLMHeadModel) and a WordPiece tokenizer that starts
    each text with [CLS]: the model class and tokenizer bench/active_learning.py uses.
    Scores equal a direct computation, and the fine-tuner splits prompt and target
    where the harness does (so what is trained is what is scored)."""
    from finetune.train.encode import split_tokens
    from tests.tiny_models import build_model

    bert = load_model(ModelSource(path=str(build_model(tmp_path / "bert", "bert"))))
    assert type(bert.model).__name__ == "BertLMHeadModel"
    ctx, cont = bert.encode_pair(*PAIRS[0])
    cls, sep = bert.tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    assert ctx[0] == bert.prefix_token == cls and cls not in ctx[1:]  # BOS first, once
    assert sep not in ctx + cont  # nothing added at the end
    got = bert.loglikelihood(PAIRS, batch_size=3)
    for (c_text, t_text), (logprob, _greedy, n) in zip(PAIRS, got, strict=True):
        c, t = bert.encode_pair(c_text, t_text)
        assert (c, t) == split_tokens(bert.tokenizer, c_text, t_text)
        assert n == len(t) > 0
        assert logprob == pytest.approx(direct_loglik(bert, c + t, len(t)), abs=1e-5)
    ((rolling, n),) = bert.rolling_loglikelihood([TEXTS[0]])
    tokens = bert.encode(TEXTS[0])
    assert n == len(tokens) - 1  # the leading [CLS] conditions, it is not predicted
    assert rolling == pytest.approx(direct_loglik(bert, tokens, n), abs=1e-5)


def test_surely_fits_counts_without_the_transformers_tokenizer(tiny_gpt2: Path) -> None:
    """Past the bytes bound, tokens are counted from tokenizer.json with the tokenizers
    library: the transformers tokenizer stays unloaded, and a text said to fit does."""
    fresh = load_model(ModelSource(path=str(tiny_gpt2)))
    text = "the the the the " * 8  # 128 bytes, about 48 tokens of the tiny BPE
    window = 100
    assert len(text.encode()) + 16 > window  # beyond the bytes bound
    assert fresh.surely_fits(window, text)
    assert "tokenizer" not in vars(fresh) and fresh._counter is not None
    assert len(fresh.encode(text)) + 16 <= window  # and it does fit
    assert not fresh.surely_fits(window, text * 3)
