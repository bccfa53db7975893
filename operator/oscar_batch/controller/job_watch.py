"""The watch of the Jobs OSCAR creates (label `oscar_service`), feeding the JobStore: the Job controller's
reflector. List, then watch from the list's resourceVersion; list again when the API server no longer has it
(410) and after a dropped connection, backing off while the API server cannot be reached. A fresh list also
forgets the Jobs deleted while nobody watched.

One thread per watched namespace, not kopf's per-object machinery: at a hundred thousand Jobs, kopf's work per
event was what the operator spent its CPU on. The thread only parses and files; batches read the store.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from oscar_batch.clients import cluster
from oscar_batch.controller.clock import SYSTEM_CLOCK, Clock
from oscar_batch.controller.job_store import SERVICE_LABEL, JobStore, job_seen
from oscar_batch.core import invocation

log = logging.getLogger(__name__)

WATCH_SECONDS = 300            # the API server ends a watch after this; the next one resumes where it stopped


class JobWatch:
    def __init__(self, kube: cluster.Kube, store: JobStore, namespace: str | None, *,
                 first_delay: float = 1.0, max_delay: float = 30.0, watch_seconds: int = WATCH_SECONDS,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._kube = kube
        self._store = store
        self._namespace = namespace
        self._first_delay, self._max_delay = first_delay, max_delay
        self._watch_seconds = watch_seconds
        self._clock = clock
        self._stopping = threading.Event()
        # What each Job's EVENT says, by the Job's UID: a Job's pod template cannot change, so its EVENT is parsed
        # once, not at each of its status changes.
        self._identities: dict[str, invocation.Identity | None] = {}
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"oscar-batch-jobs-{namespace or 'all'}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """The thread ends at the next event or watch timeout; being a daemon thread, it never holds up an exit."""
        self._stopping.set()

    def _run(self) -> None:
        delay = self._first_delay
        while not self._stopping.is_set():
            try:
                version = self._list()
                delay = self._first_delay
                while not self._stopping.is_set():
                    version = self._watch(version)
            except cluster.Expired:
                log.info("Jobs watch: resourceVersion expired; listing again")
            except cluster.KubeError as error:
                log.warning("Jobs watch: %s; listing again in %.0f s", error, delay)
                self._store.problem = str(error)
                self._stopping.wait(delay)
                delay = min(2 * delay, self._max_delay)

    def _list(self) -> str:
        jobs, version = self._kube.jobs(self._namespace, SERVICE_LABEL)
        known, self._identities = self._identities, {}
        listed = [seen for seen in (job_seen(job["metadata"]["name"], job, self._identity(job, known))
                                    for job in jobs) if seen is not None]
        self._store.replace(self._namespace, listed)
        return version

    def _identity(self, job: dict[str, Any],
                  known: dict[str, invocation.Identity | None]) -> invocation.Identity | None:
        uid = (job.get("metadata") or {}).get("uid") or ""
        identity = known[uid] if uid in known else invocation.identify(job)
        if uid:
            self._identities[uid] = identity
        return identity

    def _watch(self, version: str) -> str:
        for kind, job in self._kube.watch_jobs(self._namespace, SERVICE_LABEL, version, self._watch_seconds):
            metadata = job.get("metadata") or {}
            version = metadata.get("resourceVersion") or version
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                identity = self._identity(job, self._identities)
                seen = job_seen(metadata["name"], job, identity, seen_at=self._clock.monotonic())
                self._store.record(metadata["name"], seen, deleted=kind == "DELETED")
                if kind == "DELETED":
                    self._identities.pop(metadata.get("uid") or "", None)
            if self._stopping.is_set():
                break
        return version
