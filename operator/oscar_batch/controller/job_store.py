"""The Jobs from the watch, routed to the batch each belongs to: the Job controller's informer cache plus its
per-object work queue. Written by the Jobs watch (its own thread), read by the batches (on the event loop)."""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

from oscar_batch.core import invocation, kueue
from oscar_batch.core.ranges import Outcome

SERVICE_LABEL = "oscar_service"   # OSCAR labels every Job it creates with its service's name

@dataclasses.dataclass(frozen=True)
class JobSeen:
    """What the operator keeps of one Job of a batch."""
    name: str
    namespace: str
    service: str            # OSCAR's label on it: the service it runs
    identity: invocation.Identity
    outcome: Outcome
    ready: bool             # its pod runs: start-up is over
    started: str | None
    finished: str | None
    failed_reason: str      # the Job's own word on a failure; its pods tell more
    queue: str = ""         # the Kueue LocalQueue it waits in, "" when Kueue does not manage it
    queued: bool = False    # suspended until Kueue admits it: in flight, but not running
    seen_at: float = 0.0    # the clock's monotonic seconds at the watch event, for the status latency metric
    failure: invocation.Failure | None = None   # why it failed, when its source says (OSCAR's listing); else its pods

    @property
    def key(self) -> BatchKey:
        return BatchKey(self.identity.batch_uid, self.namespace, self.service)


class BatchKey(NamedTuple):
    """Whose Jobs count for a batch: the batch's full UID in their EVENT, in the namespace its service's Jobs are
    created in, labelled with its service. A Job anywhere else that claims the batch is somebody else's (anyone
    who may create Jobs in some namespace can write any EVENT), and a Job of the same name in another namespace
    is another Job."""
    uid: str
    namespace: str
    service: str


def job_seen(name: str, body: Any, identity: invocation.Identity | None, seen_at: float = 0.0) -> JobSeen | None:
    """What the store keeps of a Job; `identity`: what its EVENT says (`invocation.identify`), None for a Job of
    no batch."""
    if identity is None:
        return None
    job_status = body.get("status") or {}
    outcome = invocation.outcome(body)
    metadata = body.get("metadata", {})
    return JobSeen(name=name, namespace=metadata.get("namespace") or "",
                   service=(metadata.get("labels") or {}).get(SERVICE_LABEL, ""), identity=identity,
                   outcome=outcome, ready=bool(job_status.get("ready")), started=job_status.get("startTime"),
                   finished=job_status.get("completionTime"),
                   failed_reason=invocation.failed_reason(body) if outcome == Outcome.FAILED else "",
                   queue=kueue.queue_name(body), queued=outcome == Outcome.RUNNING and kueue.queued(body),
                   seen_at=seen_at)


class JobStore:
    """Every Job of every batch, kept current by the Jobs watch (its own thread) and read by the batches (on the
    event loop). Each change is also queued for its batch, which folds only what changed since it last looked: a
    tick's work does not grow with the Jobs already done. Jobs are filed by `BatchKey`: a batch reads only
    those of its own key, so a Job that claims it from another namespace or service is never its."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[BatchKey, dict[str, JobSeen]] = {}
        self._changes: dict[BatchKey, dict[str, JobSeen]] = {}
        self._keys: dict[str, set[BatchKey]] = {}   # batch UID → the keys its Jobs claim (its own, and forgeries)
        self._read: dict[str, BatchKey] = {}        # batch UID → the key its controller read Jobs by
        self._own: set[tuple[str, str]] = set()     # (namespace, name) of the Jobs filed under a key being read
        # Kept as changes arrive, so that asking costs nothing however many Jobs a batch has:
        self._queues: dict[BatchKey, str] = {}      # LocalQueue of the batch's Kueue Jobs
        self._queued: dict[BatchKey, set[str]] = {}   # its Jobs Kueue has not admitted yet
        self._listed: set[str | None] = set()
        self._scopes: set[str | None] = {None}   # what the watch lists (None: every namespace)
        self.problem = ""   # why the watch cannot list Jobs now, for the batches waiting on it

    def watching(self, scopes: Iterable[str | None]) -> None:
        """The namespaces the watch lists (None: all of them; none at all without a watch): the store is synced
        once each was listed."""
        self._scopes = set(scopes)

    def watches(self, namespace: str) -> bool:
        return None in self._scopes or namespace in self._scopes

    @property
    def watching_any(self) -> bool:
        """False for an operator that reaches every cluster Remote (`--remote-only`)."""
        return bool(self._scopes)

    @property
    def synced(self) -> bool:
        """Every watched namespace was listed once: what the store lacks, the cluster lacks too."""
        return self._scopes <= self._listed

    def record(self, name: str, seen: JobSeen | None, deleted: bool = False) -> None:
        if seen is None:
            return
        with self._lock:
            if deleted:
                self._forget(name, seen)
            else:
                key = seen.key
                self._jobs.setdefault(key, {})[name] = seen
                self._changes.setdefault(key, {})[name] = seen
                self._keys.setdefault(key.uid, set()).add(key)
                if self._read.get(key.uid) == key:
                    self._own.add((key.namespace, name))
                if seen.queue:
                    self._queues[key] = seen.queue
                if seen.queued:
                    self._queued.setdefault(key, set()).add(name)
                else:
                    self._queued.get(key, set()).discard(name)

    def replace(self, namespace: str | None, listed: list[JobSeen]) -> None:
        """A fresh listing of one watched namespace (None: all): Jobs gone since are forgotten, like deletions
        the watch missed, and every listed Job counts as a change."""
        current = {(job.namespace, job.name) for job in listed}
        with self._lock:
            vanished = [job for jobs in self._jobs.values() for job in jobs.values()
                        if (job.namespace, job.name) not in current
                        and (namespace is None or job.namespace == namespace)]
            for job in vanished:
                self._forget(job.name, job)
        for job in listed:
            self.record(job.name, job)
        self._listed.add(namespace)
        self.problem = ""

    def _forget(self, name: str, seen: JobSeen) -> None:
        key = seen.key
        if self._jobs.get(key, {}).pop(name, None) is not None and self._read.get(key.uid) == key:
            self._own.discard((key.namespace, name))
        self._changes.get(key, {}).pop(name, None)
        self._queued.get(key, set()).discard(name)

    def _reading(self, uid: str, key: BatchKey | None) -> None:
        """The key a batch's Jobs are read by (None: none any more), and so whose Jobs are the batches' own."""
        previous = self._read.pop(uid, None)
        if previous is not None:
            self._own.difference_update((previous.namespace, name) for name in self._jobs.get(previous, {}))
        if key is not None:
            self._read[uid] = key
            self._own.update((key.namespace, name) for name in self._jobs.get(key, {}))

    def everything(self, key: BatchKey) -> list[JobSeen]:
        """All Jobs of a batch, for a batch (re)starting; its queued changes are part of it. From now on its
        controller reads Jobs by this key, and so does the clean-up when the batch is deleted."""
        with self._lock:
            self._reading(key.uid, key)
            self._changes.pop(key, None)
            return list(self._jobs.get(key, {}).values())

    def changes(self, key: BatchKey) -> list[JobSeen]:
        """The Jobs of a batch that changed since the last call."""
        with self._lock:
            return list(self._changes.pop(key, {}).values())

    def names(self, key: BatchKey) -> set[str]:
        with self._lock:
            return set(self._jobs.get(key, {}))

    def in_flight(self, key: BatchKey) -> list[str]:
        with self._lock:
            return [job.name for job in self._jobs.get(key, {}).values() if job.outcome == Outcome.RUNNING]

    def kueue(self, key: BatchKey) -> tuple[str, int] | None:
        """(LocalQueue, Jobs still queued) once Kueue managed a Job of this batch, else None."""
        with self._lock:
            queue = self._queues.get(key)
            return None if queue is None else (queue, len(self._queued.get(key, ())))

    def key_read(self, uid: str) -> BatchKey | None:
        """The key a batch's controller reads its Jobs by, once it has (None before, e.g. after a restart)."""
        with self._lock:
            return self._read.get(uid)

    def claimed(self, uid: str) -> bool:
        """Whether any Job claims this batch, its own or not."""
        with self._lock:
            return any(self._jobs.get(key) for key in self._keys.get(uid, ()))

    def forget_batch(self, uid: str) -> None:
        """A deleted batch: what the store kept of it goes, except its Jobs, which the watch still reports."""
        with self._lock:
            self._reading(uid, None)

    def all_names(self) -> set[tuple[str, str]]:
        """(namespace, name) of every Job of every batch being read: the pods of those are the batches' own
        capacity, not other tenants'. Jobs that claim a batch under another key are not among them."""
        with self._lock:
            return set(self._own)
