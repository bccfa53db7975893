"""What one batch asks of its OSCAR clusters: invoke ranges (each on the cluster given), look up invocations whose
Job never appeared, and delete the Jobs whose lines' outcome status records (`StatusWriter.deletable`)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from oscar_batch.clients.oscar import OscarError
from oscar_batch.controller.batch_state import BatchState
from oscar_batch.controller.clock import Clock
from oscar_batch.controller.events import BatchEvents
from oscar_batch.controller.metrics import BatchMetrics
from oscar_batch.controller.oscar_clusters import ListedJobs, OscarCluster
from oscar_batch.controller.resolver import Waiting
from oscar_batch.controller.status_writer import StatusWriter
from oscar_batch.core import invocation
from oscar_batch.core.cadence import Timing
from oscar_batch.core.pacing import Backoff, Retry
from oscar_batch.core.ranges import Change, Observation, Outcome, Work

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

    async def invoke(self, state: BatchState, assigned: list[tuple[Work, OscarCluster]], *, seconds: float) -> None:
        """Invoke these ranges, each on its cluster, CONCURRENT_CALLS at a time and for about `seconds` at most: the
        loop must come back to fold Job changes and report them. A range runs only once OSCAR accepted it. A
        cluster that refuses gets no more this pass (its backoff says when again); the others go on."""
        spec, book = state.spec, state.book
        uid, deadline = self.writer.uid, self.clock.monotonic() + seconds

        async def invoke(work: Work, cluster: OscarCluster) -> None:
            name = invocation.job_name(spec.service, uid, work.start, work.end, work.attempt, book.redrive_round)
            event = invocation.payload(start=work.start, end=work.end, bucket=spec.bucket,
                                       manifest_key=spec.manifest_key, batch_uid=uid, batch=self.writer.ref,
                                       attempt=work.attempt, redrive=book.redrive_round)
            sent = self.clock.monotonic()
            try:
                await cluster.on_oscar(cluster.oscar.invoke, spec.service, cluster.service_token, event, name)
                self.metrics.invoked(self.clock.monotonic() - sent, cluster.name)
            except OscarError as error:
                if not invocation.already_exists(error.status, error.body, name):
                    raise RefusedOn(cluster, error) from None
                # A previous run of the operator invoked this very attempt: its Job exists.
            book.invoked(work, job=name, started=self.writer.timestamp(), now=self.clock.monotonic(),
                         cluster=cluster.name)
            accepted.add(cluster.name)

        # The first call to each cluster goes alone: while it refuses, each try of its backoff costs one request,
        # not a burst.
        firsts = {pair[1].name: pair for pair in reversed(assigned)}
        rest = [pair for pair in assigned if firsts.get(pair[1].name) is not pair]
        chunks = [list(firsts.values())] + [rest[at:at + CONCURRENT_CALLS]
                                            for at in range(0, len(rest), CONCURRENT_CALLS)]
        refused: dict[str, RefusedOn] = {}
        accepted: set[str] = set()
        for chunk in chunks:
            chunk = [(work, cluster) for work, cluster in chunk if cluster.name not in refused]
            if not chunk:
                continue
            if not self.may_dispatch() or self.clock.monotonic() > deadline:
                break
            outcomes = await asyncio.gather(*(invoke(work, cluster) for work, cluster in chunk), return_exceptions=True)
            for problem in _refusals(outcomes):
                # Not invoked: these ranges and the rest stay pending with their attempts unspent.
                refused.setdefault(problem.cluster.name, problem)
        now = self.clock.monotonic()
        for cluster in {cluster.name: cluster for _, cluster in assigned}.values():
            if (refusal := refused.get(cluster.name)) is None:
                if cluster.name in accepted:   # not when the pass ran out of time before its first call
                    cluster.dispatching.succeeded()
                    cluster.answered()
                continue
            error = refusal.error
            retry = Retry.NEEDS_A_PERSON if error.status in REFUSALS_NEEDING_A_PERSON else Retry.CLEARS_BY_ITSELF
            refusal.delay = cluster.dispatching.failed(now, retry)
            if error.status is None:
                cluster.cut_off(error, now)
        if refused and len(refused) == len(state.clusters):
            first = next(iter(refused.values()))
            where = f" (cluster {first.cluster.name})" if len(state.clusters) > 1 else ""
            await self.writer.waiting(Waiting("InvocationFailed", f"{first.error}{where}; trying again in "
                                                                  f"{first.delay:g}s"))
        elif accepted:
            self.writer.resumed()

    async def recheck_unseen(self, state: BatchState) -> None:
        """Invocations OSCAR accepted whose Job never showed (to the watch, or in OSCAR's listing): ask the OSCAR
        that accepted each what became of it."""
        book, backoff, now = state.book, state.cadence.rechecking, self.clock.monotonic()
        overdue = book.unseen_since(now - self.timing.unseen_job_timeout)
        if not overdue:
            return
        unanswered = False
        for cluster in state.clusters:
            mine = [(work, name) for work, name, on in overdue if on == cluster.name]
            if not mine:
                continue
            listed = await self._listed(state, cluster, now)
            if listed is None:
                unanswered = True    # its invocations wait for its next answer; the other clusters' are looked up
                continue
            self._unseen(state, cluster, mine, listed, now)
        if unanswered:
            backoff.failed(now)
        else:
            backoff.succeeded()

    async def _listed(self, state: BatchState, cluster: OscarCluster, now: float) -> dict[str, dict[str, str]] | None:
        """The Jobs a cluster's OSCAR lists for the batch's service now; None when it does not answer."""
        if isinstance(cluster.jobs, ListedJobs):
            # Its listing is how its Jobs are seen: read it now, and what it has is folded as any change.
            recent = now - self.timing.unseen_job_timeout / 2
            if cluster.jobs.read_at < recent:
                await cluster.read_listing(now, self.timing.list_interval, now_or_never=True)
            return {name: {} for name in cluster.jobs.names()} if cluster.jobs.read_at >= recent else None
        try:
            return dict(await cluster.on_oscar(lambda: list(cluster.oscar.jobs(state.spec.service))))
        except OscarError as error:
            log.warning("batch %s: cannot list the jobs of %s on %s: %s", self.writer.ref, state.spec.service,
                        cluster.name, error)
            return None

    def _unseen(self, state: BatchState, cluster: OscarCluster, overdue: list[tuple[Work, str]],
                listed: dict[str, dict[str, str]], now: float) -> None:
        book = state.book
        for work, name in overdue:
            info = listed.get(name)
            if info is None:
                book.lost_invocation(work)
                self.events.post_throttled(
                    "Warning", "InvocationLost", f"OSCAR accepted lines {work.start}-{work.end - 1} (attempt "
                                                 f"{work.attempt}) but has no Job {name}; invoking them again")
            elif info.get("status") in LISTED_OUTCOMES:
                change = book.observe(Observation(start=work.start, end=work.end, attempt=work.attempt,
                                                  outcome=LISTED_OUTCOMES[info["status"]], job=name,
                                                  started=info.get("start_time"), finished=info.get("finish_time"),
                                                  redrive_round=book.redrive_round, cluster=cluster.name,
                                                  failure_reason="Failed (from OSCAR's job listing)"))
                if change == Change.SUCCEEDED:
                    cluster.succeeded += work.end - work.start
            else:
                book.in_flight.still_unseen(work.key, now)

    async def clean_up(self, state: BatchState, backoff: Backoff, seconds: float | None = None) -> int:
        """Delete through OSCAR, on the clusters that hold them, the Jobs status records (unless spec.keepJobs),
        CONCURRENT_CALLS at a time, for about `seconds` at most (None: all of them). Returns how many are left."""
        deletable, service = self.writer.deletable, state.spec.service
        if state.spec.keep_jobs:
            deletable.clear()
            return 0
        now = self.clock.monotonic()
        deadline = None if seconds is None else now + seconds
        held = {cluster.name: cluster.jobs.names() for cluster in state.clusters} if deletable else {}
        while deletable and (deadline is None or self.clock.monotonic() < deadline):
            chunk = deletable[-CONCURRENT_CALLS:]
            del deletable[-len(chunk):]
            calls = [(name, cluster) for name in chunk for cluster in state.clusters
                     if name in held[cluster.name] or len(state.clusters) == 1]
            try:
                outcomes = await asyncio.gather(*(cluster.on_oscar(cluster.oscar.delete_job, service, name)
                                                  for name, cluster in calls), return_exceptions=True)
            except asyncio.CancelledError:
                deletable.extend(chunk)  # the daemon is stopping: what was not confirmed stays to delete
                raise
            deletable.extend(sorted({name for (name, _), outcome in zip(calls, outcomes, strict=True)
                                     if outcome is not None}))
            errors = _oscar_errors(outcomes)
            if errors:
                log.warning("batch %s: cannot delete %d finished Job(s): %s", self.writer.ref, len(errors),
                            errors[0])
                backoff.failed(now)
                break
        else:
            backoff.succeeded()
        return len(deletable)


class RefusedOn(Exception):
    """An invocation a cluster refused (or did not answer)."""

    def __init__(self, cluster: OscarCluster, error: OscarError) -> None:
        super().__init__(str(error))
        self.cluster = cluster
        self.error = error
        self.delay = 0.0


def _refusals(outcomes: Sequence[object]) -> list[RefusedOn]:
    """What the clusters refused among gathered invocations; any other exception is a bug and propagates."""
    refused = []
    for outcome in outcomes:
        if isinstance(outcome, RefusedOn):
            refused.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
    return refused


def _oscar_errors(outcomes: Sequence[object]) -> list[OscarError]:
    """What OSCAR refused among gathered calls; any other exception is a bug and propagates."""
    errors = []
    for outcome in outcomes:
        if isinstance(outcome, OscarError):
            errors.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
    return errors
