"""The batches this operator runs: which are dispatching (and so share the cluster's slots), and which
controllers are alive."""
from __future__ import annotations

import asyncio
import threading

from oscar_batch.core.sharing import Claim, fair_shares


class ActiveBatches:
    """The batches this operator runs: which are dispatching (and so share the cluster's slots), and which
    controllers are alive (so that deletion waits for dispatch to stop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[str, Claim] = {}
        self._alive: dict[str, asyncio.Event] = {}
        self.membership = 0  # changes whenever a batch starts or stops dispatching: time to re-plan

    def started(self, uid: str) -> None:
        self._alive[uid] = asyncio.Event()

    def exited(self, uid: str) -> None:
        with self._lock:
            self.membership += self._claims.pop(uid, None) is not None
        done = self._alive.pop(uid, None)
        if done is not None:
            done.set()

    async def wait_exited(self, uid: str, timeout: float) -> bool:
        done = self._alive.get(uid)
        if done is None:
            return True
        try:
            await asyncio.wait_for(done.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def claim(self, claim: Claim) -> None:
        with self._lock:
            self.membership += claim.uid not in self._claims
            self._claims[claim.uid] = claim

    def withdraw(self, uid: str) -> None:
        with self._lock:
            self.membership += self._claims.pop(uid, None) is not None

    def share(self, uid: str, slots: int) -> tuple[int, int]:
        """(this batch's slots, number of batches dispatching) under max-min fairness, leftovers to the oldest."""
        with self._lock:
            claims = list(self._claims.values())
        return fair_shares(slots, claims).get(uid, 0), len(claims)
