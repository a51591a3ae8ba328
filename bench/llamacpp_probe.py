"""What llama-cpp-python's OpenAI-compatible server answers, next to the transformers backend.

For a tiny Llama and a tiny GPT-2 (tests/tiny_models.py, random seeded weights) it
converts the model to a float32 GGUF with llama.cpp's converter
(tests/backends/llamacpp_server.py), checks that llama.cpp tokenizes test strings into
the ids the HF tokenizer gives, starts the server on loopback and prints:

- the shapes of /v1/models, of /v1/completions with ``echo`` + ``logprobs``, of its
  errors (context overflow, bad request) and of /v1/chat/completions;
- the agreement of continuation log-likelihoods computed from the echoed prompt
  log-probs with ``harness.model.language_model``'s ``loglikelihood`` on the same pairs:
  the max |difference| per token and per pair, and whether the greedy flags agree;
- whether greedy generations (temperature 0, stop strings) are identical.

    HARNESS_LLAMACPP_SRC=PATH/llama_cpp_python-0.3.36.tar.gz \
        .venv/bin/python bench/llamacpp_probe.py [--arch llama gpt2] [--show]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.backends.llamacpp_server import (  # noqa: E402
    LlamaServer,
    convert_to_gguf,
    get_json,
    llama_tokens,
    post_json,
    unavailable,
)
from tests.tiny_models import build_model, corpus  # noqa: E402

TOKENIZE_TEXTS = [
    "the movie was great.",
    " the movie was great.",
    "Review: the plot was awful\nSentiment: negative",
    "  two  spaces and\ttab\n\nnewlines",
    "numbers 3 33 333 3333 3.14 and 'quotes' it's they'll",
    "unicode: café naïve 東京 🦙 — done",
    "the film<|endoftext|>the story",
    "",
]


def pairs() -> list[tuple[str, str]]:
    """(context, continuation) pairs: classification-like, long and empty contexts."""
    rows = corpus(24, seed=3)
    out: list[tuple[str, str]] = []
    for i, text in enumerate(rows):
        words = text.split(" ")
        cut = max(1, len(words) // 2)
        out.append((" ".join(words[:cut]), " " + " ".join(words[cut:])))
        label = (" positive", " negative")[i % 2]
        out.append((f"Review: {text}\nSentiment:", label))
    out.append(("", "the movie was great."))
    out.append(("the plot ", "was boring"))  # trailing space moves to the continuation
    return out


def fit(folder: Path, steps: int = 80) -> None:
    """Train the tiny model briefly on its own corpus (seeded), so that its greedy text
    is words: a random model emits bytes that are no UTF-8, which the server and
    transformers decode differently and which defeat the server's max_tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    texts = corpus(256, seed=1)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        batch = tok(texts[(step * 16) % 256 :][:16], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder, safe_serialization=True)


def prompt_logprobs(url: str, prompt: str) -> dict[str, Any]:
    status, body = post_json(
        url + "/completions",
        {"prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0.0},
    )
    if status != 200:
        raise RuntimeError(f"{status}: {body}")
    return dict(body["choices"][0]["logprobs"])


def server_loglikelihood(
    url: str, context: str, continuation: str
) -> tuple[float, bool, int] | None:
    """(sum log-prob, greedy?, n tokens) of ``continuation`` from the echoed prompt, or
    None when the server gives no log-prob for one of its tokens (the first token it
    echoes never has one).

    The tokens of the continuation are those whose text offset lies in it: offsets
    count characters of the prompt after a BOS the server put first. The last entry
    can be the one generated token (offset = len(prompt)): not part of the prompt."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    prompt = context + continuation
    lp = prompt_logprobs(url, prompt)
    total, greedy, n = 0.0, True, 0
    for offset, token_lp, top in zip(
        lp["text_offset"], lp["token_logprobs"], lp["top_logprobs"], strict=True
    ):
        if offset < len(context) or offset >= len(prompt):
            continue
        if token_lp is None:
            return None
        total += token_lp
        greedy = greedy and token_lp >= max(top.values()) - 1e-6
        n += 1
    return total, greedy, n


def per_token_difference(lm: Any, url: str, texts: list[str]) -> tuple[float, int]:
    """(max |log-prob difference| over the tokens of ``texts``, tokens compared): the
    server's echoed prompt log-probs against a transformers forward pass on the same
    ids (the first token has no log-prob from the server; a text starts with the BOS
    when the tokenizer adds one, and the server then adds it too)."""
    import torch

    worst, count = 0.0, 0
    for text in texts:
        ids = list(lm.tokenizer.encode(text))
        with torch.no_grad():
            logits = lm.model(torch.tensor([ids])).logits[0].float()
        hf = torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), ids[1:]].tolist()
        served = [x for x in prompt_logprobs(url, text)["token_logprobs"] if x is not None]
        if ids[0] == lm.tokenizer.bos_token_id:
            hf = hf[1:]  # the first token after the BOS has no log-prob from the server
        served = served[: len(hf)]  # not the generated token
        for a, b in zip(hf, served, strict=True):
            worst = max(worst, abs(a - b))
            count += 1
    return worst, count


def server_generate(url: str, prompt: str, max_tokens: int, stop: list[str]) -> str:
    status, body = post_json(
        url + "/completions",
        # repeat_penalty: the server's default is 1.1, which changes greedy text
        {
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stop": stop,
            "repeat_penalty": 1.0,
        },
    )
    if status != 200:
        raise RuntimeError(f"{status}: {body}")
    return str(body["choices"][0]["text"])


def probe_shapes(url: str, window: int) -> None:
    print("GET /v1/models:", json.dumps(get_json(url + "/models"))[:400])
    status, body = post_json(
        url + "/completions",
        {"prompt": "the movie was", "echo": True, "logprobs": 2, "max_tokens": 1, "temperature": 0},
    )
    print(f"echo+logprobs ({status}):", json.dumps(body)[:1200])
    status, body = post_json(
        url + "/completions",
        {"prompt": "the movie was", "max_tokens": 6, "temperature": 0, "stop": ["."]},
    )
    print(f"greedy+stop ({status}):", json.dumps(body)[:800])
    long_prompt = " ".join(["the movie"] * window)
    status, body = post_json(url + "/completions", {"prompt": long_prompt, "max_tokens": 1})
    print(f"overflow ({status}):", json.dumps(body)[:600])
    status, body = post_json(url + "/completions", {"prompt": 3, "max_tokens": "x"})
    print(f"bad request ({status}):", json.dumps(body)[:600])
    status, body = post_json(url + "/completions", {"prompt": ["a", "b"], "max_tokens": 1})
    print(f"two prompts ({status}):", json.dumps(body)[:300])
    status, body = post_json(
        url + "/chat/completions",
        {
            "messages": [{"role": "user", "content": "the movie"}],
            "max_tokens": 4,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 2,
        },
    )
    print(f"chat ({status}):", json.dumps(body)[:1200])


def run(arch: str, bos: bool, work: Path, show: bool) -> None:
    """Probe one tiny model: ``bos``: its tokenizer adds a BOS (the ``llama3`` chat
    tokenizer of tests/tiny_models.py), else none (the plain tiny tokenizer)."""
    from harness.model.language_model import ModelSource, load_model

    name = f"{arch}-{'bos' if bos else 'nobos'}"
    # 256 positions: GPT-2's learned positions end at n_positions, and a longer prompt
    # aborts the whole server (GGML_ASSERT in get_rows), it is no 400
    folder = build_model(work / name, arch, chat="llama3" if bos else None, n_positions=256)
    fit(folder)
    gguf_file = convert_to_gguf(folder, work / f"{name}.gguf")
    lm = load_model(ModelSource(path=str(folder)))
    tok = lm.tokenizer
    texts = TOKENIZE_TEXTS + corpus(50, seed=5)
    bad = []
    for text in texts:
        hf = list(tok.encode(text))
        cpp = llama_tokens(gguf_file, text, add_bos=bos)
        if hf != cpp:
            bad.append((text, hf, cpp))
    print(f"[{name}] tokenization: {len(texts) - len(bad)}/{len(texts)} texts give identical ids")
    for text, hf, cpp in bad[:5]:
        print(f"  {text!r}\n    hf  {hf}\n    cpp {cpp}")
    # n_ctx a multiple of 256: llama.cpp rounds the context up to one, and
    # llama-cpp-python 0.3.36 sizes its logits array by the number asked for (a longer
    # prompt then fails with a 500 "could not broadcast")
    with LlamaServer(gguf_file, n_ctx=256) as server:
        if show:
            probe_shapes(server.url, 256)
        rows = pairs()
        ours = lm.loglikelihood(rows)
        theirs = [server_loglikelihood(server.url, c, x) for c, x in rows]
        both = [(a, b) for a, b in zip(ours, theirs, strict=True) if b is not None]
        per_pair = [abs(a[0] - b[0]) for a, b in both]
        per_token = [d / a[2] for d, (a, _) in zip(per_pair, both, strict=True)]
        same_n = sum(a[2] == b[2] for a, b in both)
        same_greedy = sum(a[1] == b[1] for a, b in both)
        print(
            f"[{name}] loglikelihood, {len(both)}/{len(rows)} pairs answered: token counts "
            f"equal {same_n}, greedy flags equal {same_greedy}, max |d sum| "
            f"{max(per_pair):.2e}, max |d| per token (mean over the pair) {max(per_token):.2e}"
        )
        worst, count = per_token_difference(lm, server.url, [c + x for c, x in rows])
        print(f"[{name}] per token: max |d log-prob| {worst:.2e} over {count} tokens")
        prompts = [c or "the" for c, _ in rows[:20]]
        hf_text = lm.generate(prompts, max_new_tokens=8, stop=["."])
        try:
            cpp_text = [server_generate(server.url, p, 8, ["."]) for p in prompts]
        except RuntimeError as error:  # GPT-2: "failed to find a memory slot" (KV cache)
            print(f"[{name}] greedy generation failed on the server: {error}")
            return
        same = sum(a == b for a, b in zip(hf_text, cpp_text, strict=True))
        # llama-cpp-python drops the bytes of an incomplete UTF-8 character
        # (errors="ignore"), transformers decodes them to U+FFFD
        same_valid = sum(
            a.replace("\ufffd", "") == b for a, b in zip(hf_text, cpp_text, strict=True)
        )
        print(
            f"[{name}] greedy generations identical: {same}/{len(prompts)}; "
            f"identical once U+FFFD is dropped from the HF text: {same_valid}/{len(prompts)}"
        )
        for a, b in zip(hf_text, cpp_text, strict=True):
            if a.replace("\ufffd", "") != b:
                print(f"  hf {a!r}  cpp {b!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["llama", "gpt2"])
    parser.add_argument("--show", action="store_true", help="print the response shapes")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(f"skipped: {reason}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            for bos in (True, False):
                run(arch, bos, Path(tmp), args.show and bos)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
