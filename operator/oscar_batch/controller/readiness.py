"""The readiness probe (`oscar-batch run --readiness HOST:PORT`): GET /readyz answers 200 once every watched
namespace's Jobs were listed (`JobStore.synced`), 503 before. A stdlib server on a thread of its own: the
product does not import aiohttp (kopf's liveness endpoint does, inside kopf), and prometheus-client's server
answers every path with the metrics.

Ready means "knows every Job it will need", not "is the peer that acts": a standby is ready too, so that a
rolling update replaces a pod only once its successor could take over without waiting for a listing.
"""
from __future__ import annotations

import http.server
import threading
from collections.abc import Callable

PATH = "/readyz"


def serve(host: str, port: int, ready: Callable[[], bool]) -> http.server.ThreadingHTTPServer:
    class Probe(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            if self.path.split("?", 1)[0] != PATH:
                self._answer(404, b"not found\n")
            elif ready():
                self._answer(200, b"ready\n")
            else:
                self._answer(503, b"the Jobs are not listed yet\n")

        def _answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            """Probes every few seconds are not worth a log line."""

    server = http.server.ThreadingHTTPServer((host, port), Probe)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="oscar-batch-readiness").start()
    return server
