"""The OSCAR clusters of one batch, each behind one interface with two implementations: whose Jobs there are the
batch's, and how they change.

- InCluster (`WatchedJobs`): the operator runs in that OSCAR's Kubernetes cluster; its Jobs watch files every
  Job under its `BatchKey`, and the batch reads its own key (the Job controller's informer).
- Remote (`ListedJobs`): the operator reaches the cluster through OSCAR's API only; OSCAR's job listing of the
  service, read every `Timing.list_interval` (one reading shared by the batches of the service that use the same
  credentials: `SharedListings`), says what changed (`core.remote_jobs`).

Either way the batch folds `changes()`, a restart folds `everything()`, and clean-up and cancel ask `names()`
and `in_flight()`. How much of each cluster the batch may use is `capacity`'s.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from oscar_batch.clients.oscar import OscarClient, OscarError
from oscar_batch.controller.job_store import BatchKey, JobSeen, JobStore
from oscar_batch.controller.peer_calls import PeerCalls
from oscar_batch.controller.resolver import Service
from oscar_batch.core.pacing import Backoff, Retry
from oscar_batch.core.remote_jobs import ListedJob, ListingTracker
from oscar_batch.core.spec import ClusterSpec

log = logging.getLogger(__name__)
T = TypeVar("T")


class ClusterJobs(Protocol):
    """A batch's Jobs on one cluster."""
    key: BatchKey   # whose Jobs they are

    @property
    def listed(self) -> bool:
        """Every Job there was seen once: what this lacks, the cluster lacks too."""

    def everything(self) -> list[JobSeen]: ...
    def changes(self) -> list[JobSeen]: ...
    def names(self) -> set[str]: ...
    def in_flight(self) -> list[str]: ...
    def kueue(self) -> tuple[str, int] | None: ...
    def unplaced(self, now: float) -> int | None:
        """Jobs in flight whose pods the cluster cannot place, where the listing tells (None: capacity knows)."""


class WatchedJobs:
    """InCluster: the Jobs the operator's watch filed under the batch's key."""

    def __init__(self, store: JobStore, key: BatchKey) -> None:
        self.store = store
        self.key = key

    @property
    def listed(self) -> bool:
        return self.store.synced

    def everything(self) -> list[JobSeen]:
        return self.store.everything(self.key)

    def changes(self) -> list[JobSeen]:
        return self.store.changes(self.key)

    def names(self) -> set[str]:
        return self.store.names(self.key)

    def in_flight(self) -> list[str]:
        return self.store.in_flight(self.key)

    def kueue(self) -> tuple[str, int] | None:
        return self.store.kueue(self.key)

    def unplaced(self, now: float) -> int | None:
        return None


class ListedJobs:
    """Remote: the batch's Jobs as OSCAR's job listing shows them, read by `read`."""

    def __init__(self, key: BatchKey) -> None:
        self.key = key
        self._tracker = ListingTracker(key.uid)
        self._changes: dict[str, JobSeen] = {}
        self.read_at = float("-inf")     # when the last listing was read

    @property
    def listed(self) -> bool:
        return self._tracker.listed

    def read(self, listing: list[tuple[str, dict[str, Any]]], now: float) -> None:
        """One whole listing of the service's Jobs (every page), read at `now`."""
        self.read_at = now
        for job in self._tracker.update(listing, now):
            self._changes[job.name] = self._seen(job, now)

    def everything(self) -> list[JobSeen]:
        self._changes.clear()
        return [self._seen(job, 0.0) for job in self._tracker.jobs()]

    def changes(self) -> list[JobSeen]:
        changed, self._changes = list(self._changes.values()), {}
        return changed

    def names(self) -> set[str]:
        return self._tracker.names()

    def in_flight(self) -> list[str]:
        return self._tracker.in_flight()

    def kueue(self) -> tuple[str, int] | None:
        return None   # Kueue's queues are not visible through OSCAR: Jobs it holds back count as unplaced

    def unplaced(self, now: float) -> int | None:
        return self._tracker.unplaced(now)

    def _seen(self, job: ListedJob, now: float) -> JobSeen:
        return JobSeen(name=job.name, namespace=self.key.namespace, service=self.key.service, identity=job.identity,
                       outcome=job.outcome, ready=job.ready, started=job.started, finished=job.finished,
                       failed_reason=job.failure.reason if job.failure else "", seen_at=now, failure=job.failure)


Listing = list[tuple[str, dict[str, Any]]]


class SharedListings:
    """OSCAR's job listing of a service, read at most once an interval for every batch that reads it with the same
    credentials, by (endpoint, service, credentials Secret): N batches of one service on a shared OSCAR cost one
    listing an interval, not N, each batch taking its own Jobs from it. A refusal is shared the same way."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str, str], tuple[float, Listing | OscarError]] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    async def read(self, key: tuple[str, str, str], fetch: Callable[[], Awaitable[Listing]], now: float,
                   max_age: float) -> Listing:
        """The listing read less than `max_age` ago (for any batch), else a new reading. Raises OscarError."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            latest = self._latest.get(key)
            if latest is None or now - latest[0] >= max_age:
                try:
                    latest = (now, await fetch())
                except OscarError as error:
                    latest = (now, error)
                self._latest[key] = latest
        if isinstance(latest[1], OscarError):
            raise latest[1]
        return latest[1]


@dataclasses.dataclass(kw_only=True)
class OscarCluster:
    """One OSCAR cluster of a batch, as its run resolved it, and what the batch last learnt of it."""
    spec: ClusterSpec
    oscar: OscarClient
    service_token: str          # the OSCAR service's own there, for invoking it
    service: Service
    jobs: ClusterJobs
    calls: PeerCalls
    listings: SharedListings    # its job listing, shared with the other batches of the service there
    credentials: str            # whose credentials read it: the Secret, as namespace/name
    dispatching: Backoff        # invocations refused there
    listing: Backoff            # its job listing unreadable (Remote)
    parallelism: int = 0        # invocations it may have in flight, as last planned
    planned: str = ""           # why
    succeeded: int = 0          # items its Jobs succeeded with
    problem: str = ""           # why it is not reachable; "" while it is
    unreachable_since: float | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> BatchKey:
        return self.jobs.key

    @property
    def reachable(self) -> bool:
        return self.unreachable_since is None

    async def on_oscar(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking call to this cluster's OSCAR, within its endpoint's share of the peers' threads."""
        return await self.calls.run(self.spec.endpoint, call, *args, **kwargs)

    def answered(self) -> bool:
        """It answered; whether it had been cut off (its capacity is then worth planning again)."""
        back = self.unreachable_since is not None
        self.problem, self.unreachable_since = "", None
        return back

    def cut_off(self, error: OscarError, now: float) -> None:
        """It did not answer (or refused): new ranges go elsewhere until it does (a Remote cluster gets no slot
        until its listing answers again; the operator's own, when its dispatch backoff says)."""
        self.problem = str(error)
        if self.spec.remote:
            self.parallelism = 0
        if self.unreachable_since is None:
            self.unreachable_since = now
            log.warning("OSCAR cluster %s: %s", self.name, error)

    async def read_listing(self, now: float, interval: float, *, now_or_never: bool = False) -> bool:
        """Remote: read OSCAR's job listing when `interval` has passed since the last reading (every page, by
        `next_page`), or at once with `now_or_never`. Whether the cluster answered after being cut off."""
        jobs = self.jobs
        if not isinstance(jobs, ListedJobs) or not (now_or_never or now - jobs.read_at >= interval
                                                    and self.listing.ready(now)):
            return False

        async def fetch() -> Listing:
            return await self.on_oscar(lambda: list(self.oscar.jobs(self.key.service)))

        try:
            listing = await self.listings.read((self.spec.endpoint, self.key.service, self.credentials), fetch, now,
                                               max_age=0.0 if now_or_never else interval)
        except OscarError as error:
            self.cut_off(error, now)
            self.listing.failed(now, Retry.NEEDS_A_PERSON if error.status in (401, 403, 404) else
                                Retry.CLEARS_BY_ITSELF)
            return False
        self.listing.succeeded()
        jobs.read(listing, now)
        return self.answered()
