"""A fault-injecting HTTP proxy (stdlib, a thread, loopback) in front of a real server.

Every request is forwarded to ``upstream`` unchanged, except that the POSTs take the
faults queued in ``faults`` first, one per request, in order:

- ``429`` / ``500``: that status with a JSON error body (``Retry-After: 0`` on 429);
- ``"slow"``: the request is forwarded, and its answer sent ``delay`` seconds late;
- ``"malformed"``: status 200 with a body that is no JSON.

``after_forwarded(n)`` is called (in the proxy's thread) once the n-th POST answer has
been sent back: a test stops the real server there. ``posts`` counts the POSTs that
reached the proxy (attempts included), ``forwarded`` those the server answered."""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FaultProxy:
    def __init__(self, upstream: str, port: int = 0, delay: float = 0.0) -> None:
        """``upstream``: the server's base URL (``http://127.0.0.1:PORT/v1``); the
        proxy's own ``url`` has the same path on its port (0: a free one)."""
        self.upstream = upstream.rstrip("/")
        self.faults: list[Any] = []
        self.delay = delay
        self.posts = 0
        self.forwarded = 0
        self.after_forwarded: Callable[[int], None] | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        prefix = "/" + self.upstream.split("/", 3)[3] if self.upstream.count("/") > 2 else ""
        self.url = f"http://127.0.0.1:{self.port}{prefix}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening (a client then gets "connection refused", as from a stopped
        server); safe to call twice."""
        with contextlib.suppress(Exception):
            self._server.shutdown()
        self._server.server_close()

    def _next_fault(self) -> Any:
        with self._lock:
            self.posts += 1
            return self.faults.pop(0) if self.faults else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def _forward(self, method: str, data: bytes | None) -> tuple[int, bytes, str]:
                base = proxy.upstream.split("/", 3)
                target = f"{base[0]}//{base[2]}{self.path}"
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                request = urllib.request.Request(target, data=data, headers=headers, method=method)
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        kind = response.headers.get("Content-Type", "application/json")
                        return response.status, response.read(), kind
                except urllib.error.HTTPError as error:
                    kind = error.headers.get("Content-Type", "application/json")
                    return error.code, error.read(), kind

            def do_GET(self) -> None:
                status, body, kind = self._forward("GET", None)
                self._send(status, body, {"Content-Type": kind})

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy._next_fault()
                if fault in (429, 500):
                    headers = {"Content-Type": "application/json"}
                    if fault == 429:
                        headers["Retry-After"] = "0"
                    body = b'{"error": {"message": "injected by the test proxy"}}'
                    self._send(int(fault), body, headers)
                    return
                if fault == "malformed":
                    self._send(200, b'{"choices": [{"text": "unterminated', {})
                    return
                try:
                    status, body, kind = self._forward("POST", data)
                except OSError:  # the server is gone: drop the connection, as it would
                    self.close_connection = True
                    return
                if fault == "slow":
                    time.sleep(proxy.delay)
                with contextlib.suppress(OSError):  # the client may have given up
                    self._send(status, body, {"Content-Type": kind})
                with proxy._lock:
                    proxy.forwarded += 1
                    n = proxy.forwarded
                if proxy.after_forwarded is not None:
                    proxy.after_forwarded(n)

        return Handler
