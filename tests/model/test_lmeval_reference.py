"""Agreement with lm-evaluation-harness, the reference implementation.

The harness claims lm-eval-compatible scoring; these tests hold it to that on real
text (SST-2 dev, XSum documents) with tiny random models whose 64-token window forces
left truncation and rolling windows:

* classification accuracy equals lm-eval's ``acc`` exactly, per-choice
  log-likelihoods agree within 1e-4 (GPT-2 and Llama);
* rolling (perplexity) log-likelihood of each document agrees with lm-eval's
  ``loglikelihood_rolling``, through a task run and through direct requests, and so do
  token/byte/word perplexities;
* for a text inside the window, the rolling log-likelihood equals the sum of
  log p(t_i | prefix, t_<i) computed straight from the model's logits.

Everything runs offline: importing ``tests.lmeval_peer`` sets HF_HUB_OFFLINE=1 and
HF_DATASETS_OFFLINE=1 in ``os.environ`` before lm-eval, datasets or huggingface_hub are
imported by these tests (and forces the flags of those modules if something else
imported them first).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tests import lmeval_peer as peer

pytestmark = pytest.mark.slow

N_SST2 = 120
TEMPLATE = "Review: {{sentence}}\nSentiment:"
# the continuations lm-eval and we score (target_delimiter ""): the task's wording,
# and single letters on which the tiny random models predict both classes
CHOICE_SETS = {
    "sst2_local": [" negative", " positive"],
    "sst2_local_np": [" N", " P"],
}
LOGLIK_TOL = 1e-4
DIRECT_TOL = 1e-5
ARCHS = ["tiny_gpt2", "tiny_llama"]


def load_ours(folder: Path):
    from harness.model.language_model import ModelSource, load_model

    return load_model(ModelSource(path=str(folder), device="cpu", dtype="float32"))


class _PerplexityTask:
    """The one attribute ``harness.tasks.run`` reads of a perplexity task."""

    kind = "perplexity"


@pytest.fixture(scope="module")
def sst2_rows(realdata: Path) -> list[dict]:
    rows = peer.read_tsv(realdata / "sst2" / "dev.tsv", limit=N_SST2)
    return [{"sentence": r["sentence"], "label": int(r["label"])} for r in rows]


@pytest.fixture(scope="module")
def xsum_docs(realdata: Path) -> list[str]:
    lines = (realdata / "xsum_sample" / "sample.json").read_text("utf-8").splitlines()
    return [json.loads(line)["document"] for line in lines if line.strip()]


@pytest.mark.parametrize("arch", ARCHS)
def test_classification_matches_lmeval_acc(
    arch: str, request: pytest.FixtureRequest, sst2_rows: list[dict], tmp_path: Path
) -> None:
    from harness.tasks import render, score_choices

    folder: Path = request.getfixturevalue(arch)
    task_dir = tmp_path / "tasks"
    data = peer.write_jsonl(tmp_path / "sst2_dev.jsonl", sst2_rows)
    for name, choices in CHOICE_SETS.items():
        peer.write_multiple_choice_task(
            task_dir, name, data, doc_to_text=TEMPLATE, choices=choices, target="label"
        )
    out = peer.simple_evaluate_local(folder, task_dir, list(CHOICE_SETS), batch_size=32)
    assert peer.is_offline()
    lm = load_ours(folder)
    prompts = [render(TEMPLATE, row) for row in sst2_rows]
    # the window (64) is exceeded by some prompts: left truncation is exercised
    assert max(len(lm.encode(p)) for p in prompts) > lm.max_length

    mixed = []
    for name, choices in CHOICE_SETS.items():
        ref_samples = peer.samples(out, name)
        # lm-eval scored exactly the (context, continuation) strings we score
        assert [[tuple(a) for a in s["arguments"]] for s in ref_samples] == [
            [(p, c) for c in choices] for p in prompts
        ]
        records = [
            {"prompt": p, "choices": list(choices), "gold": row["label"]}
            for p, row in zip(prompts, sst2_rows, strict=True)
        ]
        score_choices(records, lm, batch_size=16)

        ref_ll = peer.choice_logliks(out, name)
        diff = max(
            abs(a - b)
            for rec, ref in zip(records, ref_ll, strict=True)
            for a, b in zip(rec["loglik"], ref, strict=True)
        )
        assert diff < LOGLIK_TOL, f"{name}: max |loglik diff| {diff:.3g}"
        hits = [float(r["pred"] == r["gold"]) for r in records]
        assert hits == [s["acc"] for s in ref_samples], name
        assert sum(hits) / len(hits) == peer.metric(out, name, "acc"), name
        mixed.append(len({r["pred"] for r in records}) > 1)
    # a random model tends to prefer one choice everywhere; the accuracy comparison
    # means something only if some argmax goes either way
    assert any(mixed), "every prediction is the same class in every choice set"


@pytest.mark.parametrize("arch", ARCHS)
def test_rolling_loglikelihood_matches_lmeval(
    arch: str, request: pytest.FixtureRequest, xsum_docs: list[str], tmp_path: Path
) -> None:
    from harness.tasks import run

    folder: Path = request.getfixturevalue(arch)
    ref_lm = peer.hf_lm(folder, batch_size=16)
    task_dir = tmp_path / "tasks"
    data = peer.write_jsonl(tmp_path / "xsum.jsonl", [{"document": d} for d in xsum_docs])
    peer.write_rolling_task(task_dir, "xsum_ppl_local", data, text_field="document")
    out = peer.simple_evaluate_local(ref_lm, task_dir, ["xsum_ppl_local"], batch_size=16)
    ref_task = peer.doc_logliks(out, "xsum_ppl_local")
    ref_direct = peer.rolling_logliks(ref_lm, xsum_docs)
    assert max(abs(a - b) for a, b in zip(ref_task, ref_direct, strict=True)) < 1e-6

    lm = load_ours(folder)
    records = [{"text": d} for d in xsum_docs]
    run(_PerplexityTask(), records, lm, batch_size=16)
    n_ref_tokens = [len(ref_lm.tok_encode(d)) for d in xsum_docs]
    assert [r["n_tokens"] for r in records] == n_ref_tokens
    # documents span several 64-token windows
    assert max(n_ref_tokens) > 4 * lm.max_length

    ll_diff = max(abs(r["loglik"] - x) for r, x in zip(records, ref_task, strict=True))
    assert ll_diff < LOGLIK_TOL, f"max |doc loglik diff| {ll_diff:.3g}"
    for r, x, n in zip(records, ref_task, n_ref_tokens, strict=True):
        ours_ppl = math.exp(-r["loglik"] / r["n_tokens"])
        assert ours_ppl == pytest.approx(math.exp(-x / n), rel=1e-6)

    # corpus-level metrics as lm-eval aggregates them (weighted by words / bytes)
    total = sum(r["loglik"] for r in records)
    n_bytes = sum(r["n_bytes"] for r in records)
    n_words = sum(len(re.split(r"\s+", r["text"])) for r in records)  # lm-eval's count
    byte_ppl = math.exp(-total / n_bytes)
    assert byte_ppl == pytest.approx(
        peer.metric(out, "xsum_ppl_local", "byte_perplexity"), rel=1e-6
    )
    assert -total / n_bytes / math.log(2) == pytest.approx(
        peer.metric(out, "xsum_ppl_local", "bits_per_byte"), rel=1e-6
    )
    assert math.exp(-total / n_words) == pytest.approx(
        peer.metric(out, "xsum_ppl_local", "word_perplexity"), rel=1e-6
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_rolling_loglikelihood_equals_direct_logits(
    arch: str, request: pytest.FixtureRequest, sst2_rows: list[dict]
) -> None:
    import torch

    from harness.model.scoring import windows_for_rolling

    lm = load_ours(request.getfixturevalue(arch))
    text = sst2_rows[0]["sentence"].strip()
    tokens = lm.encode(text)
    assert 1 < len(tokens) < lm.max_length

    tok = lm.tokenizer  # lm-eval's prefix: BOS, else EOS
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ids = torch.tensor([[prefix, *tokens]], dtype=torch.long)
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    direct = float(logp.gather(-1, torch.tensor(tokens)[:, None]).sum())

    [(ours, n_tokens)] = lm.rolling_loglikelihood([text], batch_size=4)
    assert n_tokens == len(tokens)
    assert abs(ours - direct) < DIRECT_TOL, f"|diff| {abs(ours - direct):.3g}"

    # and for a long text every token is predicted exactly once, each from a window
    # of at most max_length inputs
    long_tokens = list(range(3 * lm.max_length + 5))
    rows = windows_for_rolling(long_tokens, -1, lm.max_length)
    assert [t for r in rows for t in r.targets] == long_tokens
    assert all(len(r.tokens) <= lm.max_length for r in rows)
