"""A batch's Jobs on a cluster the operator reaches only through OSCAR's API: successive listings of the
service's jobs (`GET /system/logs/{service}`, every page) turned into the changes of the batch's Jobs. Pure.

OSCAR's listing gives, per Job, its name and its pod's phase and times, nothing else. The operator names every
Job it invokes (`X-Delegated-Job-ID`), so the name says the batch (the first 12 hex characters of its UID), the
lines and the attempt. The phase says the rest:

- `Succeeded` / `Failed`: the Job ended so. A failed pod cannot be told from an evicted one here (no pod
  conditions): it counts as the service's failure.
- `Running`; `Pending` (its pod exists; `creation_time`, the pod's start, is set once a kubelet took it);
  `Unknown`: in flight.
- `Suspended`: the Job has no pod. Before one was ever seen, it waits (Kueue, or the Job controller has not made
  the pod yet); after one was, its pod was deleted before it finished — a disruption, as in-cluster.
- A Job in flight that leaves the listing was deleted by someone else: a disruption too. A Job that ended and
  leaves it was deleted after status recorded it (by the operator, or OSCAR's TTL).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from oscar_batch.core import invocation
from oscar_batch.core.ranges import Outcome

POD_DELETED = "its pod was deleted before it finished (evicted, preempted or its node lost)"
JOB_DELETED = "its Job was deleted before it finished"
POD_FAILED = "its pod failed (OSCAR's job listing)"
# A Job whose pod has not started this long after it was first listed counts as not placed: as in-cluster, such
# pods lower the batch's parallelism on that cluster to what runs.
UNPLACED_AFTER = 30.0


@dataclasses.dataclass(frozen=True)
class ListedJob:
    """One Job of the batch as the listing shows it."""
    name: str
    identity: invocation.Identity
    outcome: Outcome
    ready: bool                     # its pod runs
    placed: bool                    # its pod was started by a kubelet
    started: str | None
    finished: str | None
    failure: invocation.Failure | None = None   # why it failed, when it did


def read_entry(name: str, info: Mapping[str, Any], identity: invocation.Identity, had_pod: bool) -> ListedJob:
    """One entry of the listing (`{status, creation_time, start_time, finish_time}`); `had_pod`: a pod of it was
    listed before."""
    phase = str(info.get("status") or "")
    started, finished = info.get("start_time") or info.get("creation_time"), info.get("finish_time")
    if phase == "Succeeded":
        return ListedJob(name, identity, Outcome.SUCCEEDED, False, True, started, finished)
    if phase == "Failed":
        return ListedJob(name, identity, Outcome.FAILED, False, True, started, finished,
                         invocation.Failure(False, POD_FAILED))
    if phase == "Suspended" and had_pod:
        return ListedJob(name, identity, Outcome.FAILED, False, True, started, finished,
                         invocation.Failure(True, POD_DELETED))
    placed = phase == "Running" or (phase != "Suspended" and bool(info.get("creation_time")))
    return ListedJob(name, identity, Outcome.RUNNING, phase == "Running", placed, started, None)


class ListingTracker:
    """What the previous listings said of one batch's Jobs on one cluster, to tell what changed."""

    def __init__(self, batch_uid: str) -> None:
        self._uid = batch_uid
        self._prefix = invocation.uid_prefix(batch_uid)
        self._jobs: dict[str, ListedJob] = {}
        self._had_pod: set[str] = set()
        self._first_listed: dict[str, float] = {}
        self.listed = False     # one whole listing was read

    def update(self, listing: Iterable[tuple[str, Mapping[str, Any]]], now: float) -> list[ListedJob]:
        """Fold a whole listing in; returns the batch's Jobs that are new or changed, and those in flight that
        left it (as disrupted)."""
        changed: list[ListedJob] = []
        current: dict[str, ListedJob] = {}
        for name, info in listing:
            named = invocation.name_identity(name)
            if named is None or named.batch_uid != self._prefix or not isinstance(info, Mapping):
                continue
            identity = dataclasses.replace(named, batch_uid=self._uid)
            job = read_entry(name, info, identity, name in self._had_pod)
            current[name] = job
            if info.get("status") not in (None, "Suspended"):
                self._had_pod.add(name)
            self._first_listed.setdefault(name, now)
            if self._jobs.get(name) != job:
                changed.append(job)
        for name, job in self._jobs.items():
            if name not in current and job.outcome == Outcome.RUNNING:
                changed.append(dataclasses.replace(job, outcome=Outcome.FAILED, ready=False,
                                                   failure=invocation.Failure(True, JOB_DELETED)))
        for name in set(self._jobs) - set(current):
            self._had_pod.discard(name)
            self._first_listed.pop(name, None)
        self._jobs = current
        self.listed = True
        return changed

    def jobs(self) -> list[ListedJob]:
        return list(self._jobs.values())

    def names(self) -> set[str]:
        return set(self._jobs)

    def in_flight(self) -> list[str]:
        return [name for name, job in self._jobs.items() if job.outcome == Outcome.RUNNING]

    def unplaced(self, now: float, after: float = UNPLACED_AFTER) -> int:
        """Jobs in flight whose pod no kubelet started within `after` seconds of their first listing: the cluster
        cannot place them (or Kueue holds them back)."""
        return sum(1 for name, job in self._jobs.items()
                   if job.outcome == Outcome.RUNNING and not job.placed
                   and now - self._first_listed.get(name, now) >= after)
