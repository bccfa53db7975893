"""A real HTTP peer for tests of what the operator sends where: it records every request (method, path,
Authorization header) and answers from a table, or stalls, accepting connections and never answering, as an
overloaded or malicious endpoint does. Loopback only."""
from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from typing import Any


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    authorization: str


class StubPeer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]] | None = None, *, stall: bool = False) -> None:
        """`answers`: (method, path without query) → (status, body: text, or JSON for anything else); any other
        request gets 404. `stall`: hold every request without an answer until `close`."""
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers or {}
        self.stall = stall
        self.requests: list[Request] = []
        self.in_progress = 0           # requests being held now (stalling)
        self.most_in_progress = 0
        self._lock = threading.Lock()
        self._released = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> StubPeer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._released.set()
        self.shutdown()
        self.server_close()

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for request in self.requests if (request.method, request.path) == (method, path))


class _Handler(http.server.BaseHTTPRequestHandler):
    server: StubPeer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with self.server._lock:
            self.server.requests.append(Request(self.command, path, self.headers.get("Authorization", "")))
        if self.server.stall:
            with self.server._lock:
                self.server.in_progress += 1
                self.server.most_in_progress = max(self.server.most_in_progress, self.server.in_progress)
            self.server._released.wait()
            with self.server._lock:
                self.server.in_progress -= 1
            return
        status, body = self.server.answers.get((self.command, path), (404, ""))
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer
