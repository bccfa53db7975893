"""Blocking calls to the batches' peers (OSCAR, S3): a thread pool of their own, and a share of it per endpoint.

Every batch names its own endpoints. Had their calls shared one pool with the Kubernetes API's, a stalled
endpoint named by enough batches would hold every thread until its timeouts ran out, and no batch — whatever
its peers — could patch its status or reach its own OSCAR meanwhile. Here a peer's calls wait (as coroutines,
holding no thread) once that peer has `per_peer` of the pool's threads busy, and a thread counts as busy until
its call really returns, even when the caller stopped waiting for it. The Kubernetes API's calls stay on the
event loop's default pool.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from oscar_batch.core.endpoints import origin

T = TypeVar("T")


class PeerCalls:
    def __init__(self, threads: int, per_peer: int) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="oscar-batch-peer")
        self._per_peer = per_peer
        self._shares: dict[str, asyncio.Semaphore] = {}

    async def run(self, endpoint: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`call(*args, **kwargs)` in the pool, once the endpoint has a thread of its share free."""
        share = self._shares.setdefault(origin(endpoint), asyncio.Semaphore(self._per_peer))
        await share.acquire()
        loop = asyncio.get_running_loop()
        try:
            future = self._pool.submit(functools.partial(call, *args, **kwargs))
        except BaseException:
            share.release()
            raise
        # Released when the thread is done (or the call was cancelled before it started), not when the caller
        # stops waiting: a caller's cancellation does not stop a call already running.
        def release(_: object) -> None:
            with contextlib.suppress(RuntimeError):   # the loop has ended: nobody waits for the share any more
                loop.call_soon_threadsafe(share.release)

        future.add_done_callback(release)
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
