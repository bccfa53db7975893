"""What one batch asks of OSCAR: invoke ranges (carving new ones when needed), look up invocations whose Job
never appeared, and delete finished Jobs once their lines' outcomes are recorded: in status, or — line sets too
large for status — in the results object status points at."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from oscar_batch.clients.oscar import OscarError
from oscar_batch.controller import batch_storage
from oscar_batch.controller.metrics import BatchMetrics
from oscar_batch.controller.reporter import Reporter, now_iso
from oscar_batch.controller.resolver import Peers, Waiting
from oscar_batch.controller.timing import Timing
from oscar_batch.core import invocation, results, status
from oscar_batch.core.pacing import Backoff
from oscar_batch.core.ranges import Observation, Outcome, RangeBook, Work

log = logging.getLogger(__name__)

# What OSCAR's job listing says of a Job the watch has not shown us.
LISTED_OUTCOMES = {"Succeeded": Outcome.SUCCEEDED, "Failed": Outcome.FAILED}
# Calls to OSCAR one batch has in flight at once: one at a time, a round trip of a few milliseconds caps a
# batch at a few hundred invocations a second and keeps its loop from folding and reporting meanwhile.
CONCURRENT_CALLS = 8


class Invoker:
    def __init__(self, *, uid: str, report: Reporter, timing: Timing, clock: Callable[[], float],
                 may_dispatch: Callable[[], bool], metrics: BatchMetrics) -> None:
        self.uid = uid
        self.metrics = metrics
        self.report = report
        self.timing = timing
        self.clock = clock
        self.may_dispatch = may_dispatch
        self._unrecorded: list[str] = []  # Jobs of settled ranges, until status records the settling
        self._deletable: list[str] = []   # Jobs whose outcome status holds: deleted through OSCAR
        self._results_hold: tuple[str, str] | None = None   # line sets this run last wrote to the results object
        self._writing_sets = Backoff(timing.tick, timing.max_backoff)

    async def dispatch(self, book: RangeBook, peers: Peers, free: int, sizes: Callable[[int], list[int]],
                       backoff: Backoff, now: float, seconds: float) -> None:
        """Invoke up to `free` ranges, CONCURRENT_CALLS at a time and for about `seconds` at most: the loop must
        come back to fold Job changes and report them. Ranges carved for this (`sizes(count)`) are recorded
        in status first, so that a restart finds them. A range runs only once OSCAR accepted it."""
        spec = peers.spec
        deadline = self.clock() + seconds
        pending = book.next_to_dispatch(max(free, 0))
        if len(pending) < free and book.can_carve():
            book.carve(sizes(free - len(pending)))
            if not await self.report.patch({"rangePlan": book.carves.encode()}):
                return
            book.carving_recorded(book.carves.frontier)
            pending = book.next_to_dispatch(max(free, 0))

        async def invoke(work: Work) -> None:
            name = invocation.job_name(spec.service, self.uid, work.start, work.end, work.attempt,
                                       book.redrive_round)
            event = invocation.payload(start=work.start, end=work.end, bucket=spec.bucket,
                                       manifest_key=spec.manifest_key, batch_uid=self.uid, batch=self.report.ref,
                                       attempt=work.attempt, redrive=book.redrive_round)
            sent = time.monotonic()
            try:
                await peers.on_oscar(peers.oscar.invoke, spec.service, peers.service_token, event, name)
                self.metrics.invoked(time.monotonic() - sent)
            except OscarError as error:
                if not invocation.already_exists(error.status, error.body, name):
                    raise
                # A previous run of the operator invoked this very attempt: its Job exists.
            book.invoked(work, job=name, started=now_iso(), now=self.clock())

        # The first call goes alone: while OSCAR refuses, each try of the backoff costs one request, not a burst.
        chunks = [pending[:1]] + [pending[first:first + CONCURRENT_CALLS]
                                  for first in range(1, len(pending), CONCURRENT_CALLS)]
        for chunk in chunks:
            if not chunk:
                break
            if not self.may_dispatch() or self.clock() > deadline:
                return
            errors = _oscar_errors(await asyncio.gather(*(invoke(work) for work in chunk), return_exceptions=True))
            if errors:
                # Not invoked: these ranges and the rest stay pending with their attempts unspent.
                error = errors[0]
                permanent = error.status in (401, 403, 404)
                delay = backoff.failed(now, cap=None if permanent else 4 * self.timing.retry_delay)
                await self.report.waiting(Waiting("InvocationFailed", f"{error}; trying again in {delay:g}s"))
                return
        backoff.succeeded()
        self.report.resumed()

    async def recheck_unseen(self, book: RangeBook, peers: Peers, backoff: Backoff, now: float) -> None:
        """Invocations OSCAR accepted whose Job never reached the watch: ask OSCAR what became of them."""
        overdue = book.unseen_since(now - self.timing.unseen_job_timeout)
        if not overdue:
            return
        try:
            listed = dict(await peers.on_oscar(lambda: list(peers.oscar.jobs(peers.spec.service))))
        except OscarError as error:
            log.warning("batch %s: cannot list the jobs of %s: %s", self.report.ref, peers.spec.service, error)
            backoff.failed(now)
            return
        backoff.succeeded()
        for work, name in overdue:
            info = listed.get(name)
            if info is None:
                book.lost_invocation(work)
                self.report.event("Warning", "InvocationLost", f"OSCAR accepted lines {work.start}-{work.end - 1} "
                                                               f"(attempt {work.attempt}) but has no Job {name}; "
                                                               "invoking them again")
            elif info.get("status") in LISTED_OUTCOMES:
                book.observe(Observation(start=work.start, end=work.end, attempt=work.attempt,
                                         outcome=LISTED_OUTCOMES[info["status"]], job=name,
                                         started=info.get("start_time"), finished=info.get("finish_time"),
                                         redrive_round=book.redrive_round,
                                         failure_reason="Failed (from OSCAR's job listing)"))
            else:
                book.still_unseen(work, now)

    async def record(self, book: RangeBook, patch: dict[str, Any], peers: Peers) -> bool:
        """Patch status; the Jobs of the ranges it records as settled may then be deleted. Line sets too large for
        status are written to the results object first, and the patch says where instead. False when the
        patch or those line sets did not get through."""
        self._unrecorded.extend(book.take_cleanable())
        durable = await self._place_line_sets(book, patch, peers)
        recorded = await self.report.patch(patch) and durable
        if recorded:
            self._deletable.extend(self._unrecorded)
            self._unrecorded.clear()
        return recorded

    def results_written(self, document: dict[str, Any]) -> None:
        """The results object now holds these line sets (the final results): status may point at them."""
        self._results_hold = (document["succeededItems"], document["failedLines"])

    async def _place_line_sets(self, book: RangeBook, patch: dict[str, Any], peers: Peers) -> bool:
        if "completedItems" not in patch:
            return True
        if status.line_sets_fit(patch):
            status.line_sets_inline(patch)
            return True
        spec, line_sets = peers.spec, (patch["completedItems"], patch["failedItems"])
        if line_sets != self._results_hold:
            now = self.clock()
            if not self._writing_sets.ready(now):
                status.without_line_sets(patch)
                return False
            document = results.line_sets(book, batch=self.report.ref, uid=self.uid, service=spec.service,
                                         phase=patch.get("phase") or self.report.status().get("phase") or "",
                                         manifest=spec.uri(spec.manifest_key), succeeded=line_sets[0],
                                         failed=line_sets[1])
            try:
                await peers.on_s3(batch_storage.write_results, peers.s3, spec, self.uid, self.report.ref, document,
                                  self.report.kube)
            except Waiting as waiting:
                log.warning("batch %s: line sets too large for status, and the results object cannot take them "
                            "either: %s", self.report.ref, waiting.message)
                self._writing_sets.failed(now)
                status.without_line_sets(patch)
                return False
            self._writing_sets.succeeded()
            self._results_hold = line_sets
        status.line_sets_at(patch, spec.uri(spec.results_key))
        return True

    async def clean_up(self, peers: Peers, backoff: Backoff, now: float, seconds: float | None = None) -> int:
        """Delete finished Jobs through OSCAR (unless spec.keepJobs), CONCURRENT_CALLS at a time, for about
        `seconds` at most (None: all of them). Returns how many are left."""
        if peers.spec.keep_jobs:
            self._deletable.clear()
            return 0
        deadline = None if seconds is None else self.clock() + seconds
        while self._deletable and (deadline is None or self.clock() < deadline):
            chunk = self._deletable[-CONCURRENT_CALLS:]
            del self._deletable[-len(chunk):]
            try:
                outcomes = await asyncio.gather(*(peers.on_oscar(peers.oscar.delete_job, peers.spec.service, name)
                                                  for name in chunk), return_exceptions=True)
            except asyncio.CancelledError:
                self._deletable.extend(chunk)  # the daemon is stopping: what was not confirmed stays to delete
                raise
            self._deletable.extend(name for name, outcome in zip(chunk, outcomes, strict=True) if outcome is not None)
            errors = _oscar_errors(outcomes)
            if errors:
                log.warning("batch %s: cannot delete %d finished Job(s): %s", self.report.ref, len(errors), errors[0])
                backoff.failed(now)
                break
        else:
            backoff.succeeded()
        return len(self._deletable)


def _oscar_errors(outcomes: Sequence[object]) -> list[OscarError]:
    """What OSCAR refused among gathered calls; any other exception is a bug and propagates."""
    errors = []
    for outcome in outcomes:
        if isinstance(outcome, OscarError):
            errors.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
    return errors
