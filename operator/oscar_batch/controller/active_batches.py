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
        # batch UID → the clusters (pools of slots) it claims on → its invocations running there
        self._pools: dict[str, dict[str, int]] = {}
        self._alive: dict[str, asyncio.Event] = {}
        self.membership = 0  # changes whenever a batch starts or stops dispatching: time to re-plan

    def started(self, uid: str) -> None:
        self._alive[uid] = asyncio.Event()

    def exited(self, uid: str) -> None:
        with self._lock:
            self.membership += self._claims.pop(uid, None) is not None
            self._pools.pop(uid, None)
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

    def claim(self, claim: Claim, running_on: dict[str, int]) -> None:
        """The batch dispatches on these clusters (by their OSCAR endpoint; "" for the operator's own), with this
        many invocations running on each."""
        with self._lock:
            joined = claim.uid not in self._claims or self._pools.get(claim.uid, {}).keys() != running_on.keys()
            self.membership += joined
            self._claims[claim.uid] = claim
            self._pools[claim.uid] = dict(running_on)

    def withdraw(self, uid: str) -> None:
        with self._lock:
            self.membership += self._claims.pop(uid, None) is not None
            self._pools.pop(uid, None)

    def share(self, uid: str, slots: int, pool: str) -> tuple[int, int]:
        """(this batch's slots of one cluster's, number of batches dispatching there) under max-min fairness,
        leftovers to the oldest."""
        with self._lock:
            claims = [claim for other, claim in self._claims.items() if pool in self._pools.get(other, ())]
        return fair_shares(slots, claims).get(uid, 0), len(claims)

    def running(self, pool: str) -> int:
        """Invocations the dispatching batches have running on one cluster: OSCAR's own view of its capacity counts
        them as used, and they are the batches' to share."""
        with self._lock:
            return sum(running_on.get(pool, 0) for running_on in self._pools.values())
