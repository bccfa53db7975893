"""One snapshot of Nodes and Pods for every batch's plan."""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from oscar_batch.clients import cluster
from oscar_batch.controller.clock import SYSTEM_CLOCK, Clock


@dataclasses.dataclass(frozen=True)
class Snapshot:
    nodes: list[dict[str, Any]] | None      # None: the operator may not list Nodes
    pods: list[dict[str, Any]]
    taken: float


class ClusterView:
    """One listing of Nodes and Pods at a time for the whole operator, reused while younger than `max_age`:
    a hundred batches re-planning cost one listing, not a hundred."""

    def __init__(self, kube: cluster.Kube, max_age: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self._kube = kube
        self._max_age = max_age
        self._clock = clock
        self._lock = asyncio.Lock()
        self._snapshot: Snapshot | None = None

    async def snapshot(self) -> Snapshot:
        async with self._lock:
            now = self._clock.monotonic()
            if self._snapshot is None or now - self._snapshot.taken >= self._max_age:
                self._snapshot = await asyncio.to_thread(self._list, now)
            return self._snapshot

    def _list(self, now: float) -> Snapshot:
        try:
            return Snapshot(nodes=self._kube.nodes(), pods=list(self._kube.pods()), taken=now)
        except cluster.Forbidden:
            return Snapshot(nodes=None, pods=[], taken=now)  # plan from OSCAR's /system/status instead
