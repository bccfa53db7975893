"""What one batch asks of OSCAR: invoke ranges, look up invocations whose Job never appeared, and delete the Jobs
whose lines' outcome status records (`StatusWriter.deletable`)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from oscar_batch.clients.oscar import OscarError
from oscar_batch.controller.batch_state import BatchState
from oscar_batch.controller.clock import Clock
from oscar_batch.controller.events import BatchEvents
from oscar_batch.controller.metrics import BatchMetrics
from oscar_batch.controller.resolver import Waiting
from oscar_batch.controller.status_writer import StatusWriter
from oscar_batch.core import invocation
from oscar_batch.core.cadence import Timing
from oscar_batch.core.pacing import Backoff, Retry
from oscar_batch.core.ranges import Observation, Outcome, Work

log = logging.getLogger(__name__)

# What OSCAR's job listing says of a Job the watch has not shown us.
LISTED_OUTCOMES = {"Succeeded": Outcome.SUCCEEDED, "Failed": Outcome.FAILED}
# Calls to OSCAR one batch has in flight at once: one at a time, a round trip of a few milliseconds caps a
# batch at a few hundred invocations a second and keeps its loop from folding and reporting meanwhile.
CONCURRENT_CALLS = 8
# OSCAR's answers that a person must act on (credentials, the service gone); the others clear by themselves.
REFUSALS_NEEDING_A_PERSON = (401, 403, 404)


class Invoker:
    def __init__(self, *, events: BatchEvents, writer: StatusWriter, timing: Timing, clock: Clock,
                 may_dispatch: Callable[[], bool], metrics: BatchMetrics) -> None:
        self.events = events
        self.writer = writer
        self.timing = timing
        self.clock = clock
        self.may_dispatch = may_dispatch
        self.metrics = metrics

    async def invoke(self, state: BatchState, pending: list[Work], *, seconds: float) -> None:
        """Invoke these ranges, CONCURRENT_CALLS at a time and for about `seconds` at most: the loop must come
        back to fold Job changes and report them. A range runs only once OSCAR accepted it."""
        spec, book, peers, backoff = state.spec, state.book, state.peers, state.cadence.dispatching
        uid, deadline = self.writer.uid, self.clock.monotonic() + seconds

        async def invoke(work: Work) -> None:
            name = invocation.job_name(spec.service, uid, work.start, work.end, work.attempt, book.redrive_round)
            event = invocation.payload(start=work.start, end=work.end, bucket=spec.bucket,
                                       manifest_key=spec.manifest_key, batch_uid=uid, batch=self.writer.ref,
                                       attempt=work.attempt, redrive=book.redrive_round)
            sent = self.clock.monotonic()
            try:
                await peers.on_oscar(peers.oscar.invoke, spec.service, peers.service_token, event, name)
                self.metrics.invoked(self.clock.monotonic() - sent)
            except OscarError as error:
                if not invocation.already_exists(error.status, error.body, name):
                    raise
                # A previous run of the operator invoked this very attempt: its Job exists.
            book.invoked(work, job=name, started=self.writer.timestamp(), now=self.clock.monotonic())

        # The first call goes alone: while OSCAR refuses, each try of the backoff costs one request, not a burst.
        chunks = [pending[:1]] + [pending[first:first + CONCURRENT_CALLS]
                                  for first in range(1, len(pending), CONCURRENT_CALLS)]
        for chunk in chunks:
            if not chunk:
                break
            if not self.may_dispatch() or self.clock.monotonic() > deadline:
                return
            errors = _oscar_errors(await asyncio.gather(*(invoke(work) for work in chunk), return_exceptions=True))
            if errors:
                # Not invoked: these ranges and the rest stay pending with their attempts unspent.
                error = errors[0]
                retry = (Retry.NEEDS_A_PERSON if error.status in REFUSALS_NEEDING_A_PERSON
                         else Retry.CLEARS_BY_ITSELF)
                delay = backoff.failed(self.clock.monotonic(), retry)
                await self.writer.waiting(Waiting("InvocationFailed", f"{error}; trying again in {delay:g}s"))
                return
        backoff.succeeded()
        self.writer.resumed()

    async def recheck_unseen(self, state: BatchState) -> None:
        """Invocations OSCAR accepted whose Job never reached the watch: ask OSCAR what became of them."""
        book, peers, backoff, now = state.book, state.peers, state.cadence.rechecking, self.clock.monotonic()
        overdue = book.unseen_since(now - self.timing.unseen_job_timeout)
        if not overdue:
            return
        try:
            listed = dict(await peers.on_oscar(lambda: list(peers.oscar.jobs(state.spec.service))))
        except OscarError as error:
            log.warning("batch %s: cannot list the jobs of %s: %s", self.writer.ref, state.spec.service, error)
            backoff.failed(now)
            return
        backoff.succeeded()
        for work, name in overdue:
            info = listed.get(name)
            if info is None:
                book.lost_invocation(work)
                self.events.post_throttled(
                    "Warning", "InvocationLost", f"OSCAR accepted lines {work.start}-{work.end - 1} (attempt "
                                                 f"{work.attempt}) but has no Job {name}; invoking them again")
            elif info.get("status") in LISTED_OUTCOMES:
                book.observe(Observation(start=work.start, end=work.end, attempt=work.attempt,
                                         outcome=LISTED_OUTCOMES[info["status"]], job=name,
                                         started=info.get("start_time"), finished=info.get("finish_time"),
                                         redrive_round=book.redrive_round,
                                         failure_reason="Failed (from OSCAR's job listing)"))
            else:
                book.in_flight.still_unseen(work.key, now)

    async def clean_up(self, state: BatchState, backoff: Backoff, seconds: float | None = None) -> int:
        """Delete through OSCAR the Jobs status records (unless spec.keepJobs), CONCURRENT_CALLS at a time, for
        about `seconds` at most (None: all of them). Returns how many are left."""
        deletable, peers, service = self.writer.deletable, state.peers, state.spec.service
        if state.spec.keep_jobs:
            deletable.clear()
            return 0
        now = self.clock.monotonic()
        deadline = None if seconds is None else now + seconds
        while deletable and (deadline is None or self.clock.monotonic() < deadline):
            chunk = deletable[-CONCURRENT_CALLS:]
            del deletable[-len(chunk):]
            try:
                outcomes = await asyncio.gather(*(peers.on_oscar(peers.oscar.delete_job, service, name)
                                                  for name in chunk), return_exceptions=True)
            except asyncio.CancelledError:
                deletable.extend(chunk)  # the daemon is stopping: what was not confirmed stays to delete
                raise
            deletable.extend(name for name, outcome in zip(chunk, outcomes, strict=True) if outcome is not None)
            errors = _oscar_errors(outcomes)
            if errors:
                log.warning("batch %s: cannot delete %d finished Job(s): %s", self.writer.ref, len(errors),
                            errors[0])
                backoff.failed(now)
                break
        else:
            backoff.succeeded()
        return len(deletable)


def _oscar_errors(outcomes: Sequence[object]) -> list[OscarError]:
    """What OSCAR refused among gathered calls; any other exception is a bug and propagates."""
    errors = []
    for outcome in outcomes:
        if isinstance(outcome, OscarError):
            errors.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
    return errors
