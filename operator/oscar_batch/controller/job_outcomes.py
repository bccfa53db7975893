"""What the Jobs of one batch say, folded into its book: outcomes, why an attempt failed (the pods tell a
disruption from the service's own failure), which lines of a failed range have their outputs when the batch
declares them, the start-up and per-item times ranges are sized from, and the Events worth telling."""
from __future__ import annotations

import asyncio
import logging

from oscar_batch.clients import cluster, manifest
from oscar_batch.controller.batch_state import BatchState
from oscar_batch.controller.clock import Clock
from oscar_batch.controller.events import BatchEvents
from oscar_batch.controller.job_store import JobSeen
from oscar_batch.controller.metrics import BatchMetrics
from oscar_batch.controller.oscar_clusters import OscarCluster
from oscar_batch.core import invocation
from oscar_batch.core.items import Lines
from oscar_batch.core.ranges import Change, Observation, Outcome

log = logging.getLogger(__name__)


class JobOutcomes:
    def __init__(self, *, kube: cluster.Kube, ref: str, events: BatchEvents, clock: Clock,
                 metrics: BatchMetrics) -> None:
        self.kube = kube
        self.ref = ref
        self.events = events
        self.clock = clock
        self.metrics = metrics
        self._ready_at: dict[tuple[int, int], float] = {}   # range in flight -> when its pod was first seen ready
        self._line_offsets = manifest.LineOffsets()          # the manifest's, built at the first look-up

    async def fold(self, state: BatchState, cluster: OscarCluster, jobs: list[JobSeen], *,
                   replayed: bool = False) -> bool:
        """Fold Job changes on `cluster` into the book (`replayed`: every Job a restarted batch has, not changes as
        they come). Returns whether some range ended (capacity freed)."""
        book, ended = state.book, False
        for job in jobs:
            identity = job.identity
            key = (identity.start, identity.end)
            accepted = book.in_flight.accepted_at(key)   # read before the end is folded in: the range then stops
            if job.ready and accepted is not None:
                self._ready_at.setdefault(key, self.clock.monotonic())
            failure, outputs = invocation.Failure(False, ""), None
            if job.outcome == Outcome.FAILED:
                failure = job.failure or await self._why_failed(job)
                outputs = await self.outputs_of(state, key, identity.attempt)
            change = book.observe(Observation(start=identity.start, end=identity.end, attempt=identity.attempt,
                                              outcome=job.outcome, job=job.name, started=job.started,
                                              finished=job.finished, redrive_round=identity.redrive,
                                              failure_reason=failure.reason, disruption=failure.disruption,
                                              outputs=outputs, replayed=replayed, cluster=cluster.name))
            if job.outcome == Outcome.RUNNING:
                continue
            ended = True
            self.metrics.ended(change, job.seen_at, cluster.name)
            ready = self._ready_at.pop(key, None)
            if change == Change.SUCCEEDED:
                cluster.succeeded += identity.end - identity.start
                if accepted is not None:
                    state.timings.record(accepted=accepted, ready=ready, finished=self.clock.monotonic(),
                                         lines=identity.end - identity.start)
            if change is not None and change != Change.SUCCEEDED:
                self._tell(change, job, failure, cluster)
        return ended

    async def _why_failed(self, job: JobSeen) -> invocation.Failure:
        try:
            pods = await asyncio.to_thread(self.kube.job_pods, job.namespace, job.name)
        except cluster.KubeError as error:
            log.warning("batch %s: cannot read the pods of failed Job %s: %s", self.ref, job.name, error)
            pods = None
        return invocation.failure(job.failed_reason, pods)

    async def outputs_of(self, state: BatchState, key: tuple[int, int], attempt: int) -> Lines | None:
        """The lines of a failed (or reassigned) range that have their outputs; None when the batch declares none,
        the book has this end already or every line settled, or S3 cannot say (the range is then halved, or run
        again whole, as without outputs: nothing is lost)."""
        declared, book = state.spec.outputs, state.book
        record = book.records.get(key)
        if declared is None or declared.prefix is None or (record is not None and record.finished_attempt >= attempt) \
                or book.succeeded.first_missing(*key, book.failed) is None:
            return None
        try:
            return await state.peers.on_s3(manifest.lines_with_outputs, state.peers.s3, state.spec, declared,
                                           declared.prefix, self._line_offsets, *key)
        except manifest.StorageError as error:
            log.warning("batch %s: cannot look up the outputs of lines %d-%d: %s", self.ref, key[0], key[1] - 1,
                        error)
            return None

    def _tell(self, change: Change, job: JobSeen, failure: invocation.Failure, cluster: OscarCluster) -> None:
        start, end = job.identity.start, job.identity.end
        lines = f"line {start}" if end - start == 1 else f"lines {start}-{end - 1}"
        if change == Change.DUPLICATE:
            self.events.post_throttled("Normal", "DuplicateRun", f"{lines} succeeded again in Job {job.name} on "
                                                                 f"cluster {cluster.name}: another Job had run them "
                                                                 "already (a range reassigned while its cluster was "
                                                                 "cut off)")
            return
        what = {Change.SPLIT: ("RangeSplit", f"{lines} failed in Job {job.name} ({failure.reason}); its parts "
                                             "run instead"),
                Change.RETRIED: ("ItemRetried", f"{lines} failed in Job {job.name} ({failure.reason}); "
                                                "trying it again"),
                Change.DISRUPTED: ("RangeDisrupted", f"{lines} were disrupted in Job {job.name} "
                                                     f"({failure.reason}); running them again, no retry spent"),
                Change.ITEM_FAILED: ("ItemFailed", f"{lines} failed in Job {job.name} after "
                                                   f"{job.identity.attempt} attempt(s): {failure.reason}"),
                Change.RESUMED: ("RangeResumed", f"{lines} failed in Job {job.name} ({failure.reason}); the lines "
                                                 "with their outputs are done, the others run again")}
        reason, message = what[change]
        self.events.post_throttled("Warning", reason, message)
