"""A fake OpenAI-compatible server on loopback that computes real answers.

It serves tiny transformers models under names (a base and a PEFT adapter of it, as
vLLM serves LoRAs beside their base) and answers ``GET /v1/models``, ``POST
/v1/completions`` (echo + logprobs as vLLM reports them: the prompt's per-token
log-probabilities, the first None, ``top_logprobs`` keyed by token text; greedy
generation with stops) and ``POST /v1/chat/completions``. Its numbers come from the
same weights the transformers backend loads, so the served backend's answers can be
compared with the hf backend's. Tests script faults: a queue of statuses, delays and
malformed bodies for the next requests, and a ``down`` switch that drops every
connection (a stopped server, from the client's side).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FakeServer:
    def __init__(
        self, models: dict[str, Any], tokenizer: Any, *, max_model_len: int = 64, port: int = 0
    ) -> None:
        self.models = models
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.faults: list[tuple[Any, ...]] = []
        """Scripted answers of the next POSTs: ("status", code[, retry_after]),
        ("slow", seconds), ("malformed", body), ("body", status, body)."""
        self.down = False
        self.budget: int | None = None
        """POSTs answered before the server stops: it closes its socket, and the
        connections still open drop every request (None: no limit)."""
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.auth: list[str | None] = []
        self.bodies_seen: list[bytes] = []
        self._stopped = False
        self._lock = threading.Lock()
        self._compute = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.httpd.shutdown()
            self.httpd.server_close()

    def restarted(self) -> FakeServer:
        """A new server on the same port with the same models (started)."""
        self.stop()
        return FakeServer(
            self.models, self.tokenizer, max_model_len=self.max_model_len, port=self.port
        ).start()

    def completions_posts(self) -> int:
        return sum(1 for path, _ in self.posts if path.endswith("/completions"))

    # -- answers -----------------------------------------------------------------------

    def _tokens(self, prompt: Any) -> list[int]:
        if isinstance(prompt, list):
            return [int(t) for t in prompt]
        return list(self.tokenizer.encode(prompt))

    def echo(self, model: Any, ids: list[int], top_n: int) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        decode = self.tokenizer.decode
        token_logprobs: list[float | None] = [None]
        top: list[dict[str, float] | None] = [None]
        for i in range(1, len(ids)):
            row = logp[i - 1]
            token_logprobs.append(float(row[ids[i]]))
            values, idx = row.topk(top_n)
            top.append({decode([int(j)]): float(v) for v, j in zip(values, idx, strict=True)})
        return {
            "tokens": [decode([t]) for t in ids],
            "token_logprobs": token_logprobs,
            "top_logprobs": top,
            "text_offset": [sum(len(decode([t])) for t in ids[:k]) for k in range(len(ids))],
        }

    def generate(self, model: Any, ids: list[int], max_tokens: int, stop: list[str]) -> str:
        from harness.model.generation import greedy_generate

        pad = self.tokenizer.eos_token_id or 0
        return greedy_generate(
            model,
            self.tokenizer,
            [ids],
            max_new_tokens=max_tokens,
            pad_token=pad,
            device="cpu",
            stop=stop,
        )[0]

    def answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        model = self.models[body["model"]]
        with self._compute:
            if path.endswith("/chat/completions"):
                content = body["messages"][-1]["content"]
                text = self.generate(
                    model, self._tokens(content), body["max_tokens"], body.get("stop") or []
                )
                return {
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                }
            ids = self._tokens(body["prompt"])
            if body.get("echo"):
                logprobs = self.echo(model, ids, int(body.get("logprobs") or 1))
                return {
                    "object": "text_completion",
                    "choices": [
                        {"index": 0, "text": self.tokenizer.decode(ids), "logprobs": logprobs}
                    ],
                }
            text = self.generate(model, ids, body["max_tokens"], body.get("stop") or [])
            return {"object": "text_completion", "choices": [{"index": 0, "text": text}]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(
                self, status: int, payload: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def _drop(self) -> None:
                self.close_connection = True
                with suppress(OSError):
                    self.connection.shutdown(2)

            def do_GET(self) -> None:
                if server.down:
                    return self._drop()
                server.auth.append(self.headers.get("Authorization"))
                if self.path.rstrip("/") != "/v1/models":
                    return self._send(404, b'{"error": "not found"}')
                data = [
                    {
                        "id": name,
                        "object": "model",
                        "created": int(time.time()),
                        "owned_by": "fake",
                        "max_model_len": server.max_model_len,
                        "permission": [{"id": f"modelperm-{time.time_ns()}"}],
                    }
                    for name in server.models
                ]
                self._send(200, json.dumps({"object": "list", "data": data}).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if server.down:
                    return self._drop()
                body = json.loads(raw)
                with server._lock:
                    if server.budget is not None:
                        if server.budget <= 0:
                            if not server.down:
                                server.down = True
                                threading.Thread(target=server.stop, daemon=True).start()
                            return self._drop()
                        server.budget -= 1
                    server.posts.append((self.path, body))
                    server.auth.append(self.headers.get("Authorization"))
                    fault = server.faults.pop(0) if server.faults else None
                if fault is not None:
                    if fault[0] == "status":
                        headers = {"Retry-After": str(fault[2])} if len(fault) > 2 else {}
                        return self._send(fault[1], b'{"error": "scripted"}', headers)
                    if fault[0] == "slow":
                        time.sleep(fault[1])
                    if fault[0] == "malformed":
                        return self._send(200, fault[1])
                    if fault[0] == "body":  # a status with this body
                        return self._send(fault[1], fault[2])
                try:
                    answer = server.answer(self.path, body)
                except KeyError as exc:
                    return self._send(404, json.dumps({"error": f"unknown {exc}"}).encode())
                self._send(200, json.dumps(answer).encode())

        return Handler


def load_models(base: Path, adapter: Path | None = None) -> tuple[dict[str, Any], Any]:
    """{"tiny": base[, "tiny-lora": base + adapter]} and the tokenizer, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    models: dict[str, Any] = {"tiny": AutoModelForCausalLM.from_pretrained(base).eval()}
    if adapter is not None:
        from peft import PeftModel

        other = AutoModelForCausalLM.from_pretrained(base)
        models["tiny-lora"] = PeftModel.from_pretrained(other, adapter).eval()
    return models, AutoTokenizer.from_pretrained(base)


@contextmanager
def serving(base: Path, adapter: Path | None = None, **kwargs: Any) -> Iterator[FakeServer]:
    models, tok = load_models(base, adapter)
    server = FakeServer(models, tok, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()
