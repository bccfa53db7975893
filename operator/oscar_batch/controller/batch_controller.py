"""One OscarBatchJob from start to finish: the imperative shell around the ranges, planner and status core.

`BatchController.run` is the body of the batch's async kopf daemon; every blocking call (pykube-ng, minio,
requests) runs off the event loop. It resolves the spec and its Secrets, fetches the service, writes (or
reuses) the manifest, then loops: fold in the Job changes routed to this batch, re-plan parallelism from the
operator's shared snapshot of the cluster, invoke pending ranges, re-check invocations whose Job never
appeared, patch status at a bounded rate; at the end it writes the results manifest and the verdict. What
can be fixed from outside becomes a condition and an Event and is retried with exponential backoff.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from oscar_batch.clients import cluster, manifest
from oscar_batch.controller import batch_storage, capacity
from oscar_batch.controller.active_batches import ActiveBatches
from oscar_batch.controller.cluster_view import ClusterView
from oscar_batch.controller.invoker import Invoker
from oscar_batch.controller.job_outcomes import JobOutcomes
from oscar_batch.controller.job_store import BatchKey, JobStore
from oscar_batch.controller.metrics import Metrics
from oscar_batch.controller.peer_calls import PeerCalls
from oscar_batch.controller.reporter import EventSink, Reporter, now_iso
from oscar_batch.controller.resolver import Peers, Resolver, Waiting
from oscar_batch.controller.timing import Timing
from oscar_batch.core import chunking, items, status
from oscar_batch.core.keys import UNLISTED_SAMPLE, Listing
from oscar_batch.core.pacing import Backoff
from oscar_batch.core.ranges import RangeBook
from oscar_batch.core.results import results
from oscar_batch.core.sharing import Claim
from oscar_batch.core.spec import BatchSpec, SpecError, apply_pinned, parse_spec, pinned_fields

log = logging.getLogger(__name__)

# Shares of a tick the loop may spend invoking and deleting finished Jobs: it folds and reports about every tick,
# and clean-up keeps pace with the Jobs that finish without crowding out dispatch.
DISPATCH_SHARE, CLEAN_UP_SHARE = 0.5, 0.25


class Stopped(Protocol):
    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...
    def __bool__(self) -> bool: ...


class BatchController:
    def __init__(self, *, body: Any, jobs: JobStore, batches: ActiveBatches, cluster_view: ClusterView,
                 stopped: Stopped, kube: cluster.Kube, emit: EventSink, timing: Timing, resolver: Resolver,
                 peer_calls: PeerCalls, clock: Callable[[], float] = time.monotonic,
                 metrics: Metrics | None = None) -> None:
        self.body = body                    # kopf's live view: spec changes (suspend, retries) show up here
        self.jobs = jobs
        self.batches = batches
        self.cluster_view = cluster_view
        self.stopped = stopped
        self.kube = kube
        self.timing = timing
        self.clock = clock
        meta = body["metadata"]
        self.uid: str = meta["uid"]
        self.ref = f"{meta['namespace']}/{meta['name']}"
        self.resolver = resolver
        self.peer_calls = peer_calls
        self.key = BatchKey(self.uid, "", "")   # whose Jobs count: known once the service is
        self.metrics = (metrics or Metrics()).batch(meta["namespace"], meta["name"])
        self.report = Reporter(body=body, kube=kube, emit=emit, clock=clock, metrics=self.metrics)
        self._settled_at: tuple[int, int] | None = None  # (generation, redrive) this run brought to an end
        self.invoker = Invoker(uid=self.uid, report=self.report, timing=timing, clock=clock, metrics=self.metrics,
                               may_dispatch=lambda: not self.stopped and not self._deleting())
        self.job_outcomes = JobOutcomes(kube=kube, report=self.report, clock=clock, metrics=self.metrics)

    # ---- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until kopf stops the daemon: bring the batch to its end, then idle until it is redriven or edited."""
        self.batches.started(self.uid)
        backoff = Backoff(self.timing.retry_delay, self.timing.max_backoff)
        try:
            while not self.stopped and not self._deleting():
                if not self._has_work():
                    await self.stopped.wait(self.timing.retry_delay)
                    continue
                try:
                    if await self._run():
                        self.metrics.forget()   # a finished batch has no series (BatchMetrics.forget)
                    backoff.succeeded()
                except manifest.ListingStopped:
                    continue   # stopped or deleted: the loop ends
                except Waiting as waiting:
                    await self.report.waiting(waiting)
                    cap = None if waiting.needs_a_person else 4 * self.timing.retry_delay
                    await self._pause(backoff.failed(self.clock(), cap=cap))
        finally:
            self.batches.exited(self.uid)
            self.metrics.forget()   # deleted, or no longer served here: kopf paused this replica, or it exits

    def _has_work(self) -> bool:
        generation = self.report.generation()
        if self._settled_at == (generation, _redrive_requested(self.body)):
            return False
        return status.needs_controller(self.body.get("spec") or {}, self.report.status(), generation)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the user edits the batch: the edit may be the fix."""
        generation, deadline = self.report.generation(), self.clock() + seconds
        while not self.stopped and self.report.generation() == generation and not self._deleting():
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            await self.stopped.wait(min(remaining, self.timing.tick))

    def _deleting(self) -> bool:
        return bool(self.body["metadata"].get("deletionTimestamp"))

    async def _run(self) -> bool:
        """Whether the batch reached its verdict (else the daemon is stopping)."""
        if (problem := status.previous_release(self.report.status())) is not None:
            raise Waiting(status.PREVIOUS_RELEASE, problem)
        peers = await self._resolve()
        listing = await self._manifest(peers)
        await self._jobs_listed()
        book = await self._book(listing, peers)
        if not await self._drive(book, peers, listing):
            return False
        self._settled_at = (self.report.generation(), peers.spec.redrive)
        return True

    async def _resolve(self) -> Peers:
        """Both endpoints allowed and both Secrets usable before anything is sent to either peer."""
        spec = await self._spec()
        oscar = await asyncio.to_thread(self.resolver.oscar_client, spec)
        s3 = await asyncio.to_thread(self.resolver.s3_client, spec)
        service = await self.peer_calls.run(spec.oscar_endpoint, self.resolver.service, oscar, spec)
        namespace = self.resolver.jobs_namespace(spec, service)
        if not self.jobs.watches(namespace):
            raise Waiting("NamespaceNotWatched", f"OSCAR service {spec.service!r} creates its Jobs in namespace "
                                                 f"{namespace!r}, which this operator does not watch: add "
                                                 f"`--namespace {namespace}` to the operator, or run it cluster-wide")
        self.key = BatchKey(self.uid, namespace, spec.service)
        return Peers(spec, oscar, service["token"], self.resolver.needs(service), s3, namespace, self.peer_calls)

    async def _spec(self) -> BatchSpec:
        """The live spec with the fields pinned at start put back; a change to those is reported, not obeyed."""
        try:
            spec = parse_spec(self.body.get("spec") or {})
        except SpecError as error:
            raise Waiting("InvalidSpec", f"{error}; fix the spec and apply it again") from None
        spec, changed = apply_pinned(spec, self.report.status().get("pinned"))
        problem = (f"{', '.join(changed)} cannot change once the batch has started; the change is ignored "
                   "(create a new OscarBatchJob instead)") if changed else None
        await self.report.spec_problem("ImmutableFieldChanged", problem)
        return spec

    async def _current_spec(self, previous: BatchSpec) -> BatchSpec:
        """The live spec; a change that cannot be parsed keeps the last good one (and says so)."""
        try:
            return await self._spec()
        except Waiting as waiting:
            await self.report.spec_problem("InvalidSpec", f"{waiting.message}; keeping the previous spec")
            return previous

    # ---- the manifest and the range table ---------------------------------------------------------

    async def _manifest(self, peers: Peers) -> Listing:
        """The inputs listed and left out: from status once this batch wrote its manifest, else from S3."""
        spec, current = peers.spec, self.report.status()
        total = (current.get("items") or {}).get("total")
        if total is not None and current.get("manifest") == spec.uri(spec.manifest_key):
            return Listing.from_status(current)  # S3 may be down: the Jobs still tell how the batch goes
        listing = await peers.on_s3(batch_storage.existing_manifest, peers.s3, spec, self.uid, self.kube)
        if listing is not None:
            return listing
        progress = manifest.ListingProgress()
        await self.report.patch({"phase": status.LISTING, "startTime": self._start_time(),
                                 "pinned": pinned_fields(spec), **self._listing_progress(spec, progress)})
        listing = await self._listed(progress, asyncio.ensure_future(
            peers.on_s3(batch_storage.list_inputs, peers.s3, spec, self.uid, self.ref, progress)), spec)
        await self.report.patch({"listed": progress.listed})
        self.report.emit("Normal", "Listed", f"listed {listing.items} input(s) of {progress.listed} key(s) into "
                                             f"{spec.uri(spec.manifest_key)}")
        if listing.unlisted:
            self.report.emit("Warning", "InputsUnlisted", f"{listing.message()}; status.unlistedItems names the "
                                                          f"first {UNLISTED_SAMPLE}, the results all of them")
        return listing

    async def _listed(self, progress: manifest.ListingProgress, listed: asyncio.Future[Listing],
                      spec: BatchSpec) -> Listing:
        """Await the listing, showing in status every status interval how far it got: a bucket of millions of
        keys takes minutes. A daemon stopping meanwhile stops the listing too (ListingStopped)."""
        try:
            while not listed.done():
                # The listing's own time, not a tick of the loop: nothing else of the batch moves meanwhile.
                await asyncio.wait((listed,), timeout=self.timing.status_interval)
                if self.stopped or self._deleting():
                    progress.stop()
                elif not listed.done():
                    await self.report.patch(self._listing_progress(spec, progress))
            return listed.result()
        finally:
            progress.stop()   # cancelled while listing: the thread must not list on for nobody

    def _listing_progress(self, spec: BatchSpec, progress: manifest.ListingProgress) -> dict[str, Any]:
        return {"progress": f"listed {progress.listed}", "listed": progress.listed,
                "conditions": [self.report.condition(
                    "Progressing", True, "Listing", f"listing s3://{spec.bucket}/{spec.prefix}: {progress.listed} "
                                                    f"key(s) listed, {progress.inputs} input(s) so far")]}

    async def _jobs_listed(self) -> None:
        """A (re)started batch must know every Job it already has before it carves or invokes anything."""
        deadline = self.clock() + self.timing.retry_delay
        while not self.jobs.synced and not self.stopped and self.clock() < deadline:
            await self.stopped.wait(self.timing.tick)
        if not self.jobs.synced:
            raise Waiting("JobsNotListed", "waiting for the first listing of OSCAR's Jobs"
                          + (f": {self.jobs.problem}" if self.jobs.problem else ""))

    async def _book(self, listing: Listing, peers: Peers) -> RangeBook:
        spec, current, total = peers.spec, self.report.status(), listing.items
        try:
            carves = chunking.CarveLog.decode(total, current.get("rangePlan"))
        except ValueError:
            log.warning("batch %s: unreadable rangePlan in status; carving again after the lines it records",
                        self.ref)
            carves = None
        book = RangeBook(total, spec.retries, carves=carves, redrive_round=int(current.get("redrive") or 0))
        try:
            if current.get("itemsAt"):
                succeeded, failed = await peers.on_s3(batch_storage.recorded_line_sets, peers.s3, spec, self.uid,
                                                      current["itemsAt"])
            else:
                succeeded = items.decode(current.get("completedItems"))
                failed = items.decode(current.get("failedItems"))
            book.restore(succeeded, failed, status.failed_items_from(current))
        except ValueError as error:
            log.warning("batch %s: unreadable line lists (%s); rebuilding them from the Jobs", self.ref, error)
        await self.job_outcomes.fold(book, self.jobs.everything(self.key))
        # What settled before a restart left no trace but these counts.
        counted = current.get("invocations") or {}
        book.restore_counts(invocations=int(counted.get("total") or 0), retried=int(counted.get("retried") or 0),
                            disrupted=int(counted.get("disrupted") or 0))
        patch: dict[str, Any] = {"manifest": spec.uri(spec.manifest_key), "startTime": self._start_time(),
                                 "pinned": current.get("pinned") or pinned_fields(spec),
                                 **status.progress(book, current.get("parallelism") or 0,
                                                   self.job_outcomes.sizing(spec))}
        if not book.done():
            patch["phase"] = status.RUNNING
        patch["items"]["unlisted"] = listing.unlisted
        patch["unlistedItems"] = [entry.json() for entry in listing.sample]
        await self.invoker.record(book, patch, peers)
        return book

    async def _name_failed_items(self, book: RangeBook, peers: Peers) -> None:
        """Failed items get their input's key from the manifest, for status and the results."""
        unnamed = {item.line for item in book.failed_items.values() if item.key is None}
        if not unnamed:
            return
        try:
            keys = await peers.on_s3(batch_storage.input_keys, peers.s3, peers.spec, unnamed)
        except Waiting as waiting:
            log.warning("batch %s: cannot name the failed items yet: %s", self.ref, waiting.message)
            return
        for line, key in keys.items():
            book.failed_items[line].key = key

    async def _redrive(self, book: RangeBook, peers: Peers) -> None:
        spec = peers.spec
        again = book.redrive(spec.redrive)
        message = (f"redrive {spec.redrive}: {again} failed item(s) run again with {spec.retries} "
                   "retries each" if again else f"redrive {spec.redrive}: no failed item to run again")
        self.report.emit("Normal", "Redriven", message)
        patch: dict[str, Any] = {"redrive": spec.redrive, **status.progress(book, 0, self.job_outcomes.sizing(spec))}
        if again:
            patch.update({"phase": status.RUNNING, "completionTime": None, "conditions": [
                self.report.condition(kind, kind == "Progressing", "Redriven", message)
                for kind in ("Progressing", "Complete", "Failed")]})
        await self.invoker.record(book, patch, peers)

    # ---- the loop -----------------------------------------------------------------------------------

    async def _drive(self, book: RangeBook, peers: Peers, listing: Listing) -> bool:
        """Until the batch ends (True) or the daemon is stopped (False)."""
        parallelism, last_plan, last_status, planned_membership = 0, float("-inf"), float("-inf"), -1
        planned_message, settled_shown, planned_queueing = "", False, False
        dispatching = Backoff(self.timing.tick, self.timing.max_backoff)
        cleaning = Backoff(self.timing.tick, self.timing.max_backoff)
        rechecking = Backoff(self.timing.unseen_job_timeout, self.timing.max_backoff)
        finishing = Backoff(self.timing.retry_delay, self.timing.max_backoff)
        try:
            while not self.stopped and not self._deleting():
                ended = await self.job_outcomes.fold(book, self.jobs.changes(self.key))
                previous, peers.spec = peers.spec, await self._current_spec(peers.spec)
                book.retries = peers.spec.retries
                if peers.spec.redrive > book.redrive_round:
                    await self._redrive(book, peers)
                now = self.clock()
                if book.done():
                    self.batches.withdraw(self.uid)
                    if not settled_shown:
                        # The last lines show at once; the results (S3) and the verdict may take longer.
                        settled_shown = await self.invoker.record(
                            book, status.progress(book, 0, self.job_outcomes.sizing(peers.spec)), peers)
                    if finishing.ready(now) and await self._finish(book, peers, listing, finishing, now):
                        return True
                else:
                    settled_shown = False
                    self._claim(book, peers.spec)
                    queueing = self._queued() > 0   # Kueue began or stopped holding Jobs back: its quota bounds
                    if (now - last_plan >= self.timing.plan_interval or peers.spec != previous
                            or self.batches.membership != planned_membership
                            or ((ended or queueing != planned_queueing) and now - last_plan >= self.timing.min_replan)):
                        planned_membership, planned_queueing = self.batches.membership, queueing
                        parallelism, planned_message = await self._plan(peers, book)
                        last_plan = now
                    # Right after the fold, before dispatch takes its share of the pass: what just ended is
                    # visible one patch round trip after the pass began.
                    if now - last_status >= self.timing.status_interval:
                        await self._report_progress(book, peers, parallelism, planned_message)
                        last_status = now
                    if not peers.spec.suspend and dispatching.ready(now):
                        await self.invoker.dispatch(book, peers, parallelism - book.counts().in_flight,
                                                    self.job_outcomes.sizes(book, peers.spec, parallelism),
                                                    dispatching, now, seconds=DISPATCH_SHARE * self.timing.tick)
                    if rechecking.ready(now):
                        await self.invoker.recheck_unseen(book, peers, rechecking, now)
                    if cleaning.ready(now):
                        await self.invoker.clean_up(peers, cleaning, now, seconds=CLEAN_UP_SHARE * self.timing.tick)
                self.report.events_due()
                await self._next_pass(now, last_status)
            return False
        finally:
            self.batches.withdraw(self.uid)

    async def _next_pass(self, began: float, last_status: float) -> None:
        """A tick after this pass began (work does not stretch the tick), or sooner when status falls due: a
        pass that ran long would otherwise push the patch to the tick after, and status would come every
        interval plus up to a tick."""
        wake = min(began + self.timing.tick, last_status + self.timing.status_interval)
        await self.stopped.wait(max(wake - self.clock(), 0.05 * self.timing.tick))

    def _claim(self, book: RangeBook, spec: BatchSpec) -> None:
        """Only a batch that can dispatch takes part in sharing the cluster's slots."""
        counts = book.counts()
        # A slot per line at most: more slots make smaller ranges, not more work.
        demand = 0 if spec.suspend or book.broken else counts.in_flight + counts.pending
        if spec.max_parallelism:
            demand = min(demand, spec.max_parallelism)
        created = self.body["metadata"].get("creationTimestamp") or ""
        self.batches.claim(Claim(self.uid, created, self.ref, demand))

    def _queued(self) -> int:
        managed = self.jobs.kueue(self.key)
        return managed[1] if managed else 0

    async def _plan(self, peers: Peers, book: RangeBook) -> tuple[int, str]:
        return await capacity.parallelism(key=self.key, ref=self.ref, peers=peers, book=book, jobs=self.jobs,
                                          batches=self.batches, cluster_view=self.cluster_view, kube=self.kube)

    # ---- status ------------------------------------------------------------------------------------

    async def _report_progress(self, book: RangeBook, peers: Peers, parallelism: int, planned: str) -> None:
        spec = peers.spec
        phase = status.SUSPENDED if spec.suspend else status.RUNNING
        queued = self._queued()
        reason = ("Suspended" if spec.suspend else "WaitingForKueue" if planned.startswith(capacity.KUEUE_WAITING)
                  else "RangesRunning")
        await self._name_failed_items(book, peers)
        progress = status.progress(book, parallelism, self.job_outcomes.sizing(spec))
        progress["invocations"]["queued"] = queued
        await self.invoker.record(book, {"phase": phase, **progress, "conditions": [
            self.report.condition("Progressing", not spec.suspend, reason, planned)]}, peers)

    async def _finish(self, book: RangeBook, peers: Peers, listing: Listing, backoff: Backoff, now: float) -> bool:
        """Write the results and the verdict. False when S3 would not take the results: try again later."""
        spec = peers.spec
        await self._name_failed_items(book, peers)
        phase, reason, message = status.verdict(book, spec.tolerated_failures, listing.unlisted)
        try:
            unlisted = (await peers.on_s3(batch_storage.unlisted_inputs, peers.s3, spec)
                        if listing.unlisted else [])
            document = results(book, batch=self.ref, uid=self.uid, service=spec.service, phase=phase,
                               manifest=spec.uri(spec.manifest_key), unlisted=listing.unlisted,
                               unlisted_items=unlisted or listing.sample)
            await peers.on_s3(batch_storage.write_results, peers.s3, spec, self.uid, self.ref, document, self.kube)
        except Waiting as waiting:
            delay = backoff.failed(now, cap=None if waiting.needs_a_person else 4 * self.timing.retry_delay)
            counts = book.counts()
            await self.report.waiting(Waiting(waiting.reason, f"the batch has ended ({counts.succeeded} items "
                                                              f"succeeded, {counts.failed} failed); writing the "
                                                              f"results waits: {waiting.message}; next try in "
                                                              f"{delay:g}s"),
                                      progress=status.without_line_sets(
                                          status.progress(book, 0, self.job_outcomes.sizing(spec))))
            return False
        self.invoker.results_written(document)
        self.report.events_due(flush=True)
        recorded = await self.invoker.record(book, {
            "phase": phase, "message": message, **status.progress(book, 0, self.job_outcomes.sizing(spec)),
            "results": spec.uri(spec.results_key),
            "completionTime": now_iso(), "conditions": [
                self.report.condition("Progressing", False, reason, message),
                self.report.condition("Complete", phase == status.SUCCEEDED, reason, message),
                self.report.condition("Failed", phase == status.FAILED, reason, message)]}, peers)
        succeeded = phase == status.SUCCEEDED
        self.report.emit("Normal" if succeeded else "Warning", "BatchSucceeded" if succeeded else "BatchFailed",
                         message)
        if recorded and (left := await self.invoker.clean_up(peers, backoff, now)):
            self.report.emit("Warning", "JobsLeft", f"{left} finished Job(s) could not be deleted through OSCAR; "
                                                    "OSCAR removes them after its TTL")
        return True

    def _start_time(self) -> str:
        return self.report.status().get("startTime") or now_iso()


def _redrive_requested(body: Any) -> int:
    value = (body.get("spec") or {}).get("redrive") or 0
    return value if isinstance(value, int) else 0
