"""A real OpenAI-compatible server for tests: llama-cpp-python's, on loopback.

The server is the one ``pip install 'llama-cpp-python[server]'`` builds from its sdist
(no prebuilt wheel is on the registry). The model it serves is a GGUF conversion of a
tiny test model (``tests.tiny_models``) made by llama.cpp's own converter, which the
sdist vendors (``vendor/llama.cpp/convert_hf_to_gguf.py``, its ``conversion`` package
and the ``gguf-py`` it writes with: the ``gguf`` 0.19.0 on the registry is older than
the converter of llama-cpp-python 0.3.36 and fails on it). Nothing here downloads.

Where the converter is: ``$HARNESS_LLAMACPP_SRC`` names the sdist tarball, the unpacked
sdist, or its ``vendor/llama.cpp`` folder. Tests call ``unavailable`` and skip with its
reason when the package, its server extra or the converter is missing.

What the server does that a client must know (llama-cpp-python 0.3.36):

- echoed prompt log-probs are aligned only when the prompt starts with a BOS (the GGUF
  adds one when the HF tokenizer does): without one, each token gets the log-prob of
  itself as the *next* token. The first token after the BOS never has a log-prob.
- the context is rounded up to a multiple of 256 by llama.cpp, while the Python side
  sizes its logits array by the number asked for: ask for a multiple of 256.
- a prompt longer than a GPT-2's learned positions aborts the whole server.
- ``max_tokens: 0`` means "until the context is full", not "none": score with 1.
- ``repeat_penalty`` defaults to 1.1 even at temperature 0: greedy needs 1.0.
- a generated token that ends inside a UTF-8 character is not counted against
  ``max_tokens`` (its bytes are held back): a random model that emits such bytes runs
  on to the end of the context and the request fails (500, "llama_decode returned 1").
- an unknown ``model`` name is answered by the default model, silently.

Typical use::

    reason = unavailable()
    if reason: pytest.skip(reason)
    gguf_file = convert_to_gguf(tiny_llama, tmp / "tiny.gguf")
    with LlamaServer(gguf_file) as server:
        post_json(server.url + "/completions", {"prompt": "the movie", "max_tokens": 4})

Conversion of our tiny tokenizers: they are byte-level BPE with GPT-2's pre-tokenizer
regex, trained offline, so the converter does not know the hash of their pre-tokenizer
and refuses them. ``convert_to_gguf`` answers ``gpt-2`` (llama.cpp's implementation of
that regex) for an unknown hash once it has checked that the tokenizer's pre-tokenizer
is exactly that byte-level one (else it refuses), and lets a Llama whose folder has no
``tokenizer.model`` skip the SentencePiece path (the converter imports ``sentencepiece``
before it looks for the file). Weights are written as float32, so numbers can match.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

LLAMA_CPP_PYTHON = "0.3.36"
"""The llama-cpp-python release these helpers were written against (its sdist)."""
SOURCE_ENV = "HARNESS_LLAMACPP_SRC"
CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/")
VENDOR = "vendor/llama.cpp"

# Run in a child process: the converter's package goes on that process's path only,
# and its module-level state (registries, logging) stays out of the test process.
_CONVERT = r"""
import json, sys
from pathlib import Path

src, folder, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
sys.path[:0] = [str(src), str(src / "gguf-py")]
import torch, gguf
from conversion import ModelBase, ModelType, get_model_architecture, get_model_class

tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
pre = tok.get("pre_tokenizer") or {}
gpt2_pre = (
    pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
    and not pre.get("add_prefix_space", False) and tok.get("normalizer") is None
)
hparams = ModelBase.load_hparams(folder, False)
cls = get_model_class(get_model_architecture(hparams, ModelType.TEXT))
with torch.inference_mode():
    model = cls(folder, gguf.LlamaFileType.ALL_F32, out)
    known = model.get_vocab_base_pre

    def vocab_pre(tokenizer):
        try:
            return known(tokenizer)
        except NotImplementedError:
            if not gpt2_pre:
                raise
            return "gpt-2"

    model.get_vocab_base_pre = vocab_pre
    if not (folder / "tokenizer.model").exists():
        def no_sentencepiece(*args, **kwargs):
            raise FileNotFoundError(folder / "tokenizer.model")
        model._set_vocab_sentencepiece = no_sentencepiece
    if "n_ctx" not in model.hparams and "n_positions" in model.hparams:
        model.hparams["n_ctx"] = model.hparams["n_positions"]  # GPT-2 configs of transformers 5
    model.write()
"""


def unavailable() -> str | None:
    """Why the server cannot run here, or None when it can."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (make test installs it)"
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("fastapi") is None:
        return "llama-cpp-python's [server] extra is not installed"
    if llama_cpp_source() is None:
        return f"${SOURCE_ENV} names no llama-cpp-python {LLAMA_CPP_PYTHON} sdist or source"
    return None


def llama_cpp_source() -> Path | None:
    """The ``vendor/llama.cpp`` folder that holds the converter, unpacking the sdist
    tarball ``$HARNESS_LLAMACPP_SRC`` names (only the converter's files) beside it."""
    named = os.environ.get(SOURCE_ENV)
    if not named:
        return None
    path = Path(named)
    if path.is_file() and path.name.endswith(".tar.gz"):
        path = _unpack_converter(path)
    for folder in (path, path / VENDOR):
        if (folder / CONVERTER_FILES[0]).is_file() and (folder / "conversion").is_dir():
            return folder
    return None


def _unpack_converter(tarball: Path) -> Path:
    """Unpack the converter's files of an sdist once, into a folder beside it."""
    dest = tarball.with_name(tarball.name.removesuffix(".tar.gz") + "-converter")
    done = dest / ".complete"
    if not done.exists():
        with tarfile.open(tarball) as archive:
            members = []
            for member in archive.getmembers():
                _, _, inner = member.name.partition("/")
                rel = inner.removeprefix(VENDOR + "/")
                if inner.startswith(VENDOR + "/") and rel.startswith(CONVERTER_FILES):
                    member.name = rel
                    members.append(member)
            archive.extractall(dest, members=members, filter="data")
        done.touch()
    return dest


def convert_to_gguf(folder: Path, out: Path, source: Path | None = None) -> Path:
    """Convert the HF model in ``folder`` to a float32 GGUF file ``out``."""
    source = source or llama_cpp_source()
    if source is None:
        raise RuntimeError(f"${SOURCE_ENV} is not set")
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(
        [sys.executable, "-c", _CONVERT, str(source), str(folder), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"GGUF conversion of {folder} failed:\n{done.stderr[-3000:]}")
    return out


def llama_tokens(gguf_file: Path, text: str, *, add_bos: bool = False) -> list[int]:
    """How llama.cpp tokenizes ``text`` with this GGUF's vocabulary (special tokens
    parsed, as the server's completion endpoint does)."""
    from llama_cpp import Llama

    vocab = Llama(model_path=str(gguf_file), vocab_only=True, verbose=False)
    try:
        return list(vocab.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))
    finally:
        vocab.close()  # not left to __del__, which fails at interpreter exit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post_json(
    url: str, body: dict[str, Any], timeout: float = 60.0, api_key: str | None = None
) -> tuple[int, Any]:
    """(status, decoded JSON) of a POST; an HTTP error's body is decoded too."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def get_json(url: str, timeout: float = 10.0, api_key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with urllib.request.urlopen(
        urllib.request.Request(url, headers=headers), timeout=timeout
    ) as response:
        return json.loads(response.read())


class LlamaServer:
    """``python -m llama_cpp.server`` on a free loopback port, as a context manager.

    ``url`` is the OpenAI base URL (``http://127.0.0.1:PORT/v1``). ``logits_all`` is
    on (the server needs it for prompt log-probs), one thread, a fixed seed. The
    server's output goes to ``log`` (a temporary file by default), whose end is in the
    error when it fails to start."""

    def __init__(
        self,
        gguf_file: Path,
        *,
        n_ctx: int = 256,
        f32_cache: bool = True,
        model_alias: str | None = None,
        api_key: str | None = None,
        log: Path | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        self.gguf_file = gguf_file
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log or gguf_file.with_suffix(f".server-{self.port}.log")
        args = ["--model", str(gguf_file), "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--n_ctx", str(n_ctx), "--n_threads", "1", "--n_threads_batch", "1"]
        args += ["--logits_all", "true", "--seed", "0", "--verbose", "false"]
        if f32_cache:  # the KV cache is float16 unless told (GGML_TYPE_F32 is 0)
            args += ["--type_k", "0", "--type_v", "0"]
        if model_alias:
            args += ["--model_alias", model_alias]
        if api_key:
            args += ["--api_key", api_key]
        self.args = args
        self.api_key = api_key
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LlamaServer:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError, ValueError):
                get_json(self.url + "/models", timeout=2.0, api_key=self.api_key)
                return self
            time.sleep(0.2)
        self.stop()
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"llama_cpp.server did not start ({self.args}):\n{tail}")

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers); safe to call twice."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def train_briefly(folder: Path, steps: int = 80) -> Path:
    """Train the tiny model in ``folder`` a little on its own corpus (seeded) and save it
    there, so that its greedy text is words: a random model emits bytes that are no
    UTF-8, which the server and transformers decode differently and which defeat the
    server's ``max_tokens`` (see the module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.tiny_models import corpus

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
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder, safe_serialization=True)
    return folder
