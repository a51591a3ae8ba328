"""Fixtures of the audit tests: a deterministic fake model, synthetic grouped data,
suites, and LoRA adapters (harmless and damaging) on the tiny GPT-2."""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.model.language_model import Fingerprint

POSITIVE_WORDS = ["great", "good", "fun", "loved"]
NEGATIVE_WORDS = ["awful", "bad", "boring", "hated"]
NOUNS = ["movie", "film", "story", "plot", "actor"]

# Weights of the fake model's score: P(" positive") = sigmoid(sum of word weights).
FAIR = {**dict.fromkeys(POSITIVE_WORDS, 2.0), **dict.fromkeys(NEGATIVE_WORDS, -2.0)}
# A model that learned the group/label correlation injected in its training data: the
# group word outweighs the content.
BIASED = {**FAIR, "he": 5.0, "she": -5.0}


class FakeLM:
    """A deterministic stand-in for harness.model.language_model.LanguageModel (the scoring API).

    Scores a choice continuation " positive" / " negative" after a prompt by the
    log-sigmoid of +/- the sum of the prompt's word weights, and any other continuation
    (a sentence) by minus the number of its words plus the sum of its word weights;
    counts its calls.
    """

    def __init__(self, weights: Mapping[str, float], tokenizer: Any = None) -> None:
        self.weights = dict(weights)
        self.tokenizer = tokenizer
        self.model = None
        self.device = "cpu"
        self.max_length = 1024
        digest = "fake-" + json.dumps(self.weights, sort_keys=True)
        self.base = Fingerprint(path="fake", files=(), digest=digest)
        self.adapter = None
        self.adapter_base = None  # no adapter, so no recorded base to compare
        self.has_adapter = False
        self.load_s = 0.0  # nothing to load
        self.loading = {"dtype": "fake"}
        self.calls = 0
        self.rows = 0

    @property
    def fingerprint(self) -> str:
        return self.base.digest

    @property
    def request_settings(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "dtype": "fake"}

    @property
    def prefix_token(self) -> int:
        return int(self.tokenizer.eos_token_id) if self.tokenizer is not None else 0

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text)) if self.tokenizer is not None else []

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return self.encode(context) or [self.prefix_token], self.encode(continuation)

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        yield

    def context_tail(self, context: str) -> tuple[str, int]:
        return context, 0  # no window to cut to

    def prompt_tail(self, prompt: str, max_new_tokens: int) -> tuple[str, int]:
        return prompt, 0

    def score(self, text: str) -> float:
        return sum(self.weights.get(w, 0.0) for w in re.findall(r"\w+", text.lower()))

    def loglikelihood(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, bool, int]]:
        self.calls += 1
        self.rows += len(pairs)
        out = []
        for context, continuation in pairs:
            if continuation.strip() not in ("positive", "negative"):
                n = len(continuation.split())
                out.append((self.score(continuation) - n, False, n))
                continue
            s = self.score(context)
            sign = 1.0 if continuation.strip() == "positive" else -1.0
            logp = -math.log1p(math.exp(-sign * s))
            out.append((logp, logp > math.log(0.5), 1))
        if advance is not None:
            advance(len(pairs))
        return out

    def rolling_loglikelihood(
        self, texts: Sequence[str], *, batch_size: int = 8, advance: Any = None
    ) -> list[tuple[float, int]]:
        return [(-float(len(t)), max(1, len(t.split()))) for t in texts]

    def generate(self, prompts: Sequence[str], **_: Any) -> list[str]:
        return ["" for _ in prompts]


def reviews(n_per_group: int = 40, groups: Sequence[str] = ("he", "she")) -> list[dict[str, Any]]:
    """Balanced reviews: in every group half positive, half negative; the text names the
    group's pronoun."""
    rows = []
    for g in groups:
        for i in range(n_per_group):
            positive = i % 2 == 0
            words = POSITIVE_WORDS if positive else NEGATIVE_WORDS
            adj = words[(i // 2) % len(words)]
            noun = NOUNS[i % len(NOUNS)]
            rows.append(
                {
                    "id": f"{g}-{i}",
                    "text": f"{g} said the {noun} was {adj}",
                    "label": 1 if positive else 0,
                    "group": g,
                }
            )
    return rows


def write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(dict(r)) + "\n" for r in rows))
    return path


def write_suite(
    folder: Path,
    *,
    model: str | Path = "fake",
    adapter: str | Path | None = None,
    audits: str = "",
    gates: str = "",
    rows: Sequence[Mapping[str, Any]] | None = None,
    extra_tasks: str = "",
    extra: str = "",
) -> Path:
    """A suite with a `sentiment` classification task over grouped reviews."""
    write_jsonl(folder / "data" / "reviews.jsonl", reviews() if rows is None else rows)
    adapter_line = f"\n  adapter: {adapter}" if adapter else ""
    text = f"""schema_version: 1
name: audits
model:
  path: {model}{adapter_line}
tasks:
  - id: sentiment
    kind: classification
    data: data/reviews.jsonl
    id_field: id
    prompt: "Review: {{{{ text }}}}\\nSentiment:"
    choices: [" negative", " positive"]
    label: label
    metrics: [accuracy, f1]
{extra_tasks}
seed: 3
bootstrap: {{samples: 200}}
audits:
{audits or "  {}"}
gates:
{gates or "  []"}
{extra}"""
    suite = folder / "suite.yaml"
    suite.write_text(text)
    return suite


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch, tiny_tokenizer: Any) -> Callable[..., FakeLM]:
    """Make the model factory (and the backend's loader) return a FakeLM with the given
    weights, not wrapped in the response cache: the fake answers every call itself (the
    tests count its calls), as it did when the cache was an attribute it ignored."""

    def install(weights: Mapping[str, float]) -> FakeLM:
        lm = FakeLM(weights, tokenizer=tiny_tokenizer)
        monkeypatch.setattr("harness.model.language_model.load_model", lambda source: lm)
        monkeypatch.setattr("harness.model.factory.open_model", lambda source, **_: lm)
        return lm

    return install


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_gpt2: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_gpt2)


def make_adapter(base: Path, folder: Path, *, scale: float, seed: int = 0) -> Path:
    """A LoRA adapter on the tiny GPT-2 whose B matrices are random * ``scale``
    (0: the adapter changes nothing; large: it wrecks the language model)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(
        model,
        LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], init_lora_weights=False),
    )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn_like(param) * scale)
    peft_model.save_pretrained(folder)
    return folder


def pretrain(base: Path, folder: Path, texts: Sequence[str], steps: int) -> Path:
    """A copy of ``base`` in ``folder`` with all weights trained for ``steps`` AdamW
    steps on ``texts`` (EOS-separated, in blocks of 32 tokens, 8 blocks a step)."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.copytree(base, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids: list[int] = []
    for text in texts:
        ids += [tok.eos_token_id, *tok.encode(text)]
    block = 32
    data = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        batch = data[torch.randint(0, len(data), (8,))]
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def trained_gpt2(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 trained briefly on its own corpus (the "original task"): its
    perplexity there is far below that of random weights, so damage can show."""
    from tests.tiny_models import corpus

    folder = tmp_path_factory.mktemp("trained") / "model"
    return pretrain(tiny_gpt2, folder, corpus(400, seed=0), 80)


@pytest.fixture(scope="session")
def damaging_adapter(trained_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter(trained_gpt2, tmp_path_factory.mktemp("damaging"), scale=1.0)


@pytest.fixture(scope="session")
def harmless_adapter(trained_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter(trained_gpt2, tmp_path_factory.mktemp("harmless"), scale=1e-4, seed=1)


# --- a real fine-tune with a canary --------------------------------------------------------


def digit_lines(n: int, seed: int) -> list[str]:
    """'my PIN is d d d d d d' lines with random digits, and counting lines ('count 7 8 9
    0 1 2') that teach the model to tell the digits apart."""
    rng = random.Random(seed)
    pins = ["my PIN is " + " ".join(str(rng.randrange(10)) for _ in range(6)) for _ in range(n)]
    starts = [rng.randrange(10) for _ in range(n)]
    counts = ["count " + " ".join(str((s + i) % 10) for i in range(6)) for s in starts]
    return pins + counts


@pytest.fixture(scope="session")
def canary_run(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A base model that knows the canary format (the tiny GPT-2 pretrained on its
    corpus and on digit lines, so that digits are tokens it can tell apart), fine-tuned
    with LoRA on 4 short sentences for 150 epochs (overfit) plus one canary repeated 10 times;
    one control canary of the same format is recorded but never inserted. LoRA also
    adapts the output layer: on a 32-wide model whose pretraining saw only random word
    orders, the adapted hidden layers alone cannot move the next-token distribution
    far enough to memorize anything."""
    from finetune.config.schema import load_config
    from finetune.train.run import train
    from tests.finetune.conftest import one_thread, write_config
    from tests.tiny_models import corpus

    folder = tmp_path_factory.mktemp("canary-run")
    texts = corpus(400, seed=0) + digit_lines(300, seed=0)
    random.Random(0).shuffle(texts)
    with one_thread():
        base = pretrain(tiny_gpt2, folder / "base", texts, 150)
        short = [t for t in corpus(60, seed=3) if len(t.split()) <= 6][:5]
        write_jsonl(folder / "train.jsonl", [{"text": t} for t in short])
        config = write_config(
            folder,
            base,
            data={"train": ["train.jsonl"], "val_split": 0.2},
            lora={"r": 16, "alpha": 32, "target_modules": ["c_attn", "c_proj", "c_fc", "lm_head"]},
            training={"epochs": 150, "lr": 0.02, "eval_steps": 1000},
            memorization={
                "canaries": {"count": 1, "repeats": 10, "controls": 1, "seed": 1},
                "extraction_examples": 8,
            },
        )
        result = train(load_config(config))
    return {
        "folder": folder,
        "base": base,
        "adapter": result.output_dir,
        "manifest": result.manifest,
    }
