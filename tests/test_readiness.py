"""The readiness probe: 503 until the Jobs are listed, 200 after; only its own path."""
from __future__ import annotations

import urllib.error
import urllib.request

from oscar_batch.controller import readiness
from oscar_batch.controller.job_store import JobStore


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_ready_once_every_watched_namespace_was_listed():
    jobs = JobStore()
    jobs.watching(["batches", "oscar-svc"])
    server = readiness.serve("127.0.0.1", 0, ready=lambda: jobs.synced)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert _status(url + readiness.PATH) == 503
        jobs.replace("batches", [])
        assert _status(url + readiness.PATH) == 503
        jobs.replace("oscar-svc", [])
        assert _status(url + readiness.PATH) == 200
        assert _status(url + "/metrics") == 404
    finally:
        server.shutdown()
        server.server_close()


def test_an_operator_without_a_jobs_watch_is_ready_at_once():
    jobs = JobStore()
    jobs.watching([])                      # --remote-only: every batch's clusters are Remote
    assert jobs.synced and not jobs.watching_any and not jobs.watches("oscar-svc")
