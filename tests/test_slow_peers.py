"""A slow peer costs its own batches time, not everybody's threads: S3 calls give up in bounded time, and the
peers' thread pool gives one endpoint at most its share. Against real HTTP peers that stall (tests/stub_peer.py)."""
from __future__ import annotations

import asyncio

import pytest
import requests

from oscar_batch.clients import manifest
from oscar_batch.controller.batch_storage import storage_waiting
from oscar_batch.controller.peer_calls import PeerCalls
from oscar_batch.core.spec import parse_spec
from stub_peer import StubPeer
from support import wait_until_async


def spec_at(s3_endpoint: str):
    return parse_spec({"service": "fish", "oscar": {"endpoint": "https://oscar.example.org", "credentialsSecret": "o"},
                       "storage": {"endpoint": s3_endpoint, "credentialsSecret": "s", "bucket": "fish"}})


def test_a_stalled_s3_endpoint_is_given_up_after_a_few_tries():
    with StubPeer(stall=True) as stalled:
        spec = spec_at(stalled.url)
        s3 = manifest.client(spec, "AKEXAMPLE", "secret-key", read_timeout=0.2)
        with pytest.raises(Exception) as raised:     # noqa: PT011 - which one is the client's business
            manifest.bucket_exists(s3, spec)
        waiting = storage_waiting(raised.value, spec)
        assert waiting.reason == "StorageUnavailable" and "timed out" in waiting.message, waiting.message
        assert len(stalled.requests) == 1 + manifest.RETRIES     # minio's default: 6 tries of 5 minutes each


async def test_a_stalled_peer_holds_only_its_share_of_the_threads_and_the_others_are_served():
    calls = PeerCalls(threads=4, per_peer=2)
    with StubPeer(stall=True) as stalled, StubPeer({("GET", "/system/status"): (200, "fine")}) as healthy:
        hanging = [asyncio.ensure_future(calls.run(stalled.url, requests.get, f"{stalled.url}/x", timeout=60))
                   for _ in range(6)]
        await wait_until_async(lambda: stalled.in_progress == 2, message="the stalled peer's share in use")
        # Had the six calls shared the four threads, this one would wait for a stalled call's timeout.
        answer = await asyncio.wait_for(calls.run(healthy.url, requests.get, f"{healthy.url}/system/status",
                                                  timeout=10), timeout=20)
        assert answer.text == "fine"
        assert stalled.most_in_progress == 2 and len(stalled.requests) == 2   # the other four wait, threadless
        # A caller that stops waiting does not give its thread back before the call returns.
        for call in hanging[:2]:
            call.cancel()
        await asyncio.gather(*hanging[:2], return_exceptions=True)
        assert await asyncio.wait_for(calls.run(healthy.url, requests.get, f"{healthy.url}/system/status",
                                                timeout=10), timeout=20)
        assert stalled.most_in_progress == 2
        for call in hanging[2:]:
            call.cancel()
    await asyncio.gather(*hanging, return_exceptions=True)
    calls.shutdown()


async def test_an_endpoint_is_one_peer_however_it_is_written():
    calls = PeerCalls(threads=4, per_peer=1)
    with StubPeer(stall=True) as stalled:
        port = stalled.server_address[1]
        spellings = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/", f"HTTP://127.0.0.1:{port}/api"]
        hanging = [asyncio.ensure_future(calls.run(url, requests.get, f"{stalled.url}/x", timeout=60))
                   for url in spellings]
        await wait_until_async(lambda: stalled.in_progress == 1, message="one call in progress")
        assert len(stalled.requests) == 1
        for call in hanging:
            call.cancel()
    await asyncio.gather(*hanging, return_exceptions=True)
    calls.shutdown()
