"""One OscarBatchJob from start to finish: the imperative shell around the ranges, planner and status core.

`BatchController.run` is the body of the batch's async kopf daemon; every blocking call (pykube-ng, minio,
requests) runs off the event loop. `start` resolves the spec and its Secrets, fetches the service, writes (or
reuses) the manifest and rebuilds the range book from status and the Jobs; then `sync` runs once a tick, the
way the Job controller's `syncJob` runs per change: fold in the Job changes routed to this batch, re-plan
parallelism from the operator's shared snapshot of the cluster, record progress, invoke pending ranges,
re-check invocations whose Job never appeared and delete the Jobs status records; at the end it writes the
results manifest and the verdict. What can be fixed from outside becomes a condition and an Event and is
retried with backoff.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from oscar_batch.clients import cluster, manifest
from oscar_batch.clients.oscar import OscarClient
from oscar_batch.controller import batch_storage, capacity
from oscar_batch.controller.active_batches import ActiveBatches
from oscar_batch.controller.batch_state import BatchState
from oscar_batch.controller.clock import SYSTEM_CLOCK, Clock
from oscar_batch.controller.cluster_view import ClusterView
from oscar_batch.controller.events import BatchEvents, EventSink
from oscar_batch.controller.invoker import Invoker
from oscar_batch.controller.job_outcomes import JobOutcomes
from oscar_batch.controller.job_store import BatchKey, JobStore
from oscar_batch.controller.metrics import Metrics
from oscar_batch.controller.oscar_clusters import ClusterJobs, ListedJobs, OscarCluster, SharedListings, WatchedJobs
from oscar_batch.controller.peer_calls import PeerCalls
from oscar_batch.controller.resolver import Peers, Resolver, Service, Waiting
from oscar_batch.controller.status_writer import StatusWriter
from oscar_batch.core import chunking, items, sharing, status
from oscar_batch.core.cadence import CLEAN_UP_SHARE, DISPATCH_SHARE, Cadence, Signals, Timing
from oscar_batch.core.keys import UNLISTED_SAMPLE, Listing
from oscar_batch.core.pacing import Retry
from oscar_batch.core.ranges import RangeBook, Work
from oscar_batch.core.results import results
from oscar_batch.core.sharing import Claim
from oscar_batch.core.spec import BatchSpec, ClusterSpec, SpecError, apply_pinned, parse_spec, pinned_fields

log = logging.getLogger(__name__)


class Stopped(Protocol):
    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...
    def __bool__(self) -> bool: ...


class BatchController:
    def __init__(self, *, body: Any, jobs: JobStore, batches: ActiveBatches, cluster_view: ClusterView,
                 stopped: Stopped, kube: cluster.Kube, emit: EventSink, timing: Timing, resolver: Resolver,
                 peer_calls: PeerCalls, clock: Clock = SYSTEM_CLOCK, metrics: Metrics | None = None,
                 listings: SharedListings | None = None) -> None:
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
        self.listings = listings or SharedListings()   # the operator's, shared by its batches
        self.metrics = (metrics or Metrics()).batch(meta["namespace"], meta["name"])
        self.events = BatchEvents(emit, clock)
        self.writer = StatusWriter(body=body, kube=kube, events=self.events, clock=clock, timing=timing,
                                   metrics=self.metrics)
        self.invoker = Invoker(events=self.events, writer=self.writer, timing=timing, clock=clock,
                               metrics=self.metrics, may_dispatch=lambda: not self.stopped and not self._deleting())
        self.job_outcomes = JobOutcomes(kube=kube, ref=self.ref, events=self.events, clock=clock,
                                        metrics=self.metrics)
        self._settled_at: tuple[int, int] | None = None  # (generation, redrive) this run brought to an end

    # ---- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until kopf stops the daemon: bring the batch to its end, then idle until it is redriven or edited."""
        self.batches.started(self.uid)
        backoff = self.timing.backoff(self.timing.retry_delay)
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
                    await self.writer.waiting(waiting)
                    await self._pause(backoff.failed(self.clock.monotonic(), waiting.retry))
        finally:
            self.batches.exited(self.uid)
            self.metrics.forget()   # deleted, or no longer served here: kopf paused this replica, or it exits

    def _has_work(self) -> bool:
        generation = self.writer.generation()
        if self._settled_at == (generation, _redrive_requested(self.body)):
            return False
        return status.needs_controller(self.body.get("spec") or {}, self.writer.status(), generation)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the user edits the batch: the edit may be the fix."""
        generation, deadline = self.writer.generation(), self.clock.monotonic() + seconds
        while not self.stopped and self.writer.generation() == generation and not self._deleting():
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                return
            await self.stopped.wait(min(remaining, self.timing.tick))

    def _deleting(self) -> bool:
        return bool(self.body["metadata"].get("deletionTimestamp"))

    async def _run(self) -> bool:
        """Whether the batch reached its verdict (else the daemon is stopping)."""
        state = await self.start()
        try:
            while not self.stopped and not self._deleting():
                if await self.sync(state):
                    self._settled_at = (self.writer.generation(), state.spec.redrive)
                    return True
                if self._clusters_edited(state):
                    return False   # start again: the clusters resolved anew, the Jobs on each listed
                self.events.post_due()
                await self.stopped.wait(state.cadence.next_pass(self.clock.monotonic()))
            return False
        finally:
            self.batches.withdraw(self.uid)

    def _clusters_edited(self, state: BatchState) -> bool:
        """spec.clusters (or spec.oscar) changed: a cluster added, removed or named otherwise. The run starts again
        from status and the Jobs, as after a restart; ranges in flight on a cluster removed are not seen any more
        and run again elsewhere."""
        resolved = tuple(each.spec for each in state.clusters)
        if resolved == state.spec.clusters:
            return False
        names = ", ".join(each.name for each in state.spec.clusters)
        self.events.post("Normal", "ClustersChanged", f"the OSCAR clusters changed: the batch goes on with {names}")
        return True

    # ---- start: from the spec to the range book --------------------------------------------------

    async def start(self) -> BatchState:
        """Everything a pass works on: the spec resolved, the manifest written or found, every Job the batch
        already has folded into a book rebuilt from status."""
        if (problem := status.previous_release(self.writer.status())) is not None:
            raise Waiting(status.PREVIOUS_RELEASE, problem)
        spec, peers, clusters = await self._resolve(await self._spec())
        listing = await self._manifest(spec, peers)
        await self._jobs_listed(clusters)
        state = BatchState(spec=spec, clusters=clusters, peers=peers, listing=listing,
                           book=await self._book(spec, peers, listing.items), cadence=Cadence(self.timing))
        await self._restarted(state)
        return state

    async def _resolve(self, spec: BatchSpec) -> tuple[BatchSpec, Peers, list[OscarCluster]]:
        """Every endpoint allowed and every Secret usable before anything is sent to any peer; the spec with its
        outputs' prefix resolved from the (first cluster's) service when it leaves it out."""
        clients = [await asyncio.to_thread(self.resolver.oscar_client, each) for each in spec.clusters]
        s3 = await asyncio.to_thread(self.resolver.s3_client, spec)
        clusters, services = [], []
        for each, oscar in zip(spec.clusters, clients, strict=True):
            try:
                service = await self.peer_calls.run(each.endpoint, self.resolver.service, oscar, spec)
            except Waiting as waiting:
                if len(spec.clusters) == 1:
                    raise
                raise Waiting(waiting.reason, f"cluster {each.name}: {waiting.message}") from None
            clusters.append(self._cluster(each, oscar, service, spec))
            services.append(service)
        spec = self.resolver.with_outputs_prefix(spec, services[0])
        return spec, Peers(s3=s3, s3_endpoint=spec.s3_endpoint, calls=self.peer_calls), clusters

    def _cluster(self, each: ClusterSpec, oscar: OscarClient, service: dict[str, Any], spec: BatchSpec) -> OscarCluster:
        namespace = self.resolver.jobs_namespace(each, service)
        key = BatchKey(self.uid, namespace, spec.service)
        if each.remote:
            jobs: ClusterJobs = ListedJobs(key)
        elif self.jobs.watches(namespace):
            jobs = WatchedJobs(self.jobs, key)
        elif not self.jobs.watching_any:
            raise Waiting("NamespaceNotWatched", f"cluster {each.name} is InCluster, and this operator watches no "
                                                 "Jobs (it runs with --remote-only): give the cluster "
                                                 "`access: Remote`")
        else:
            raise Waiting("NamespaceNotWatched", f"OSCAR service {spec.service!r} creates its Jobs in namespace "
                                                 f"{namespace!r}, which this operator does not watch: add "
                                                 f"`--namespace {namespace}` to the operator, run it cluster-wide, "
                                                 "or give the cluster `access: Remote`")
        return OscarCluster(spec=each, oscar=oscar, service_token=service["token"],
                            service=Service(self.resolver.needs(service), namespace), jobs=jobs, calls=self.peer_calls,
                            listings=self.listings, credentials=f"{self.resolver.namespace}/{each.secret}",
                            dispatching=self.timing.backoff(self.timing.tick),
                            listing=self.timing.backoff(self.timing.list_interval))

    async def _spec(self) -> BatchSpec:
        """The live spec with the fields pinned at start put back; a change to those is reported, not obeyed."""
        try:
            spec = parse_spec(self.body.get("spec") or {})
        except SpecError as error:
            raise Waiting("InvalidSpec", f"{error}; fix the spec and apply it again") from None
        spec, changed = apply_pinned(spec, self.writer.status().get("pinned"))
        problem = (f"{', '.join(changed)} cannot change once the batch has started; the change is ignored "
                   "(create a new OscarBatchJob instead)") if changed else None
        await self.writer.spec_problem("ImmutableFieldChanged", problem)
        return spec

    async def _current_spec(self, previous: BatchSpec) -> BatchSpec:
        """The live spec; a change that cannot be parsed keeps the last good one (and says so)."""
        try:
            return await self._spec()
        except Waiting as waiting:
            await self.writer.spec_problem("InvalidSpec", f"{waiting.message}; keeping the previous spec")
            return previous

    async def _manifest(self, spec: BatchSpec, peers: Peers) -> Listing:
        """The inputs listed and left out: from status once this batch wrote its manifest, else from S3."""
        current = self.writer.status()
        total = (current.get("items") or {}).get("total")
        if total is not None and current.get("manifest") == spec.uri(spec.manifest_key):
            return Listing.from_status(current)  # S3 may be down: the Jobs still tell how the batch goes
        listing = await peers.on_s3(batch_storage.existing_manifest, peers.s3, spec, self.uid, self.kube)
        if listing is not None:
            return listing
        progress = manifest.ListingProgress()
        await self.writer.write({"phase": status.LISTING, "startTime": self._start_time(),
                                 "pinned": pinned_fields(spec), **self._listing_progress(spec, progress)})
        listing = await self._listed(progress, asyncio.ensure_future(
            peers.on_s3(batch_storage.list_inputs, peers.s3, spec, self.uid, self.ref, progress)), spec)
        await self.writer.write({"listed": progress.listed})
        skipped = (f"; {listing.skipped} input(s) skipped, their outputs exist under "
                   f"s3://{spec.outputs.bucket}/{spec.outputs.prefix} (keys in {spec.uri(spec.skipped_key)})"
                   if spec.outputs is not None and listing.skipped else "")
        self.events.post("Normal", "Listed", f"listed {listing.items} input(s) of {progress.listed} key(s) into "
                                             f"{spec.uri(spec.manifest_key)}{skipped}")
        if listing.unlisted:
            self.events.post("Warning", "InputsUnlisted", f"{listing.message()}; status.unlistedItems names the "
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
                    await self.writer.write(self._listing_progress(spec, progress))
            return listed.result()
        finally:
            progress.stop()   # cancelled while listing: the thread must not list on for nobody

    def _listing_progress(self, spec: BatchSpec, progress: manifest.ListingProgress) -> dict[str, Any]:
        outputs = spec.outputs
        if outputs is not None and outputs.skip_existing and not progress.listed:
            # The outputs are listed first, once: the inputs that have theirs are skipped.
            return {"progress": f"listed {progress.outputs} outputs", "listed": 0, "conditions": [
                self.writer.condition("Progressing", True, "Listing",
                                      f"listing the outputs s3://{outputs.bucket}/{outputs.prefix}: "
                                      f"{progress.outputs} output(s) so far, then the inputs")]}
        found = (f", {progress.skipped} of them skipped (their outputs exist; {progress.outputs} output(s) listed)"
                 if outputs is not None and outputs.skip_existing else "")
        return {"progress": f"listed {progress.listed}", "listed": progress.listed,
                "conditions": [self.writer.condition(
                    "Progressing", True, "Listing", f"listing s3://{spec.bucket}/{spec.prefix}: {progress.listed} "
                                                    f"key(s) listed, {progress.inputs} input(s) so far{found}")]}

    async def _jobs_listed(self, clusters: list[OscarCluster]) -> None:
        """A (re)started batch must know every Job it already has, on every cluster, before it carves or invokes
        anything."""
        deadline = self.clock.monotonic() + self.timing.retry_delay
        while not self.stopped and self.clock.monotonic() < deadline:
            for each in clusters:
                # A reading of its own, never one another batch shared: it must show every Job invoked before.
                if not each.jobs.listed and each.listing.ready(self.clock.monotonic()):
                    await each.read_listing(self.clock.monotonic(), self.timing.list_interval, now_or_never=True)
            if all(each.jobs.listed for each in clusters):
                return
            await self.stopped.wait(self.timing.tick)
        unlisted = [each for each in clusters if not each.jobs.listed]
        if unlisted:
            problems = [f"cluster {each.name}: {each.problem}" if each.spec.remote else
                        f"the Jobs watch{': ' + self.jobs.problem if self.jobs.problem else ''}" for each in unlisted]
            raise Waiting("JobsNotListed", "waiting for the first listing of OSCAR's Jobs: " + "; ".join(problems))

    async def _book(self, spec: BatchSpec, peers: Peers, total: int) -> RangeBook:
        """The book as status left it: the carve log, the settled lines (or where they were written), the
        failed items and the counters."""
        current = self.writer.status()
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
        return book

    async def _restarted(self, state: BatchState) -> None:
        """Fold in every Job the batch has, then record what that makes of it."""
        book, current = state.book, self.writer.status()
        done_on = {entry.get("name"): entry.get("succeeded") for entry in current.get("clusters") or ()
                   if isinstance(entry, dict)}
        for each in state.clusters:
            each.succeeded = int(done_on.get(each.name) or 0)
            await self.job_outcomes.fold(state, each, each.jobs.everything(), replayed=True)
        # What settled before a restart left no trace but these counts.
        counted = current.get("invocations") or {}
        book.restore_counts(invocations=int(counted.get("total") or 0), retried=int(counted.get("retried") or 0),
                            disrupted=int(counted.get("disrupted") or 0),
                            recovered=int((current.get("items") or {}).get("recovered") or 0),
                            reassigned=int(counted.get("reassigned") or 0),
                            duplicates=int(counted.get("duplicates") or 0))
        spec = state.spec
        # A batch pinned by a release without spec.outputs gets them pinned as resolved now.
        patch: dict[str, Any] = {"manifest": spec.uri(spec.manifest_key), "startTime": self._start_time(),
                                 "pinned": {**pinned_fields(spec), **(current.get("pinned") or {})},
                                 **state.progress(current.get("parallelism") or 0)}
        if not book.done():
            patch["phase"] = status.RUNNING
        patch["items"]["unlisted"] = state.listing.unlisted
        patch["items"]["skipped"] = state.listing.skipped
        patch["unlistedItems"] = [entry.json() for entry in state.listing.sample]
        await self.writer.record(state, patch)

    # ---- one pass ----------------------------------------------------------------------------------

    async def sync(self, state: BatchState) -> bool:
        """One pass over the batch; whether it reached its verdict. Folds the Job changes since the last pass,
        takes up spec edits and redrives, then either finishes the batch or plans, reports, dispatches,
        re-checks and cleans up, each when `state.cadence` says it is due."""
        freed = await self._fold_changes(state)
        previous, state.spec = state.spec, await self._current_spec(state.spec)
        state.book.retries = state.spec.retries
        if state.spec.redrive > state.book.redrive_round:
            await self._redrive(state)
        now = state.cadence.pass_began = self.clock.monotonic()
        if state.book.done():
            return await self._settled(state, now)
        state.settled_shown = False
        self._claim(state)
        signals = Signals(now=now, spec_changed=state.spec != previous, membership=self.batches.membership,
                          queueing=self._queued(state) > 0, ended=freed)
        if state.cadence.replan_due(signals):
            state.cadence.planned(signals)
            await capacity.plan(state=state, ref=self.ref, jobs=self.jobs, batches=self.batches,
                                cluster_view=self.cluster_view, kube=self.kube, now=now)
        # Right after the fold, before dispatch takes its share of the pass: what just ended is visible one patch
        # round trip after the pass began.
        if state.cadence.status_due(now):
            await self._report_progress(state)
            state.cadence.reported(now)
        await self._reassign(state, now)
        if not state.spec.suspend:
            await self._dispatch(state, now)
        if state.cadence.rechecking.ready(now):
            await self.invoker.recheck_unseen(state)
        if state.cadence.cleaning.ready(now):
            await self.invoker.clean_up(state, state.cadence.cleaning, seconds=CLEAN_UP_SHARE * self.timing.tick)
        return False

    async def _settled(self, state: BatchState, now: float) -> bool:
        """Every line settled, or dispatch stopped: show it, then write the results and the verdict."""
        self.batches.withdraw(self.uid)
        if not state.settled_shown:
            # What the Remote clusters finished meanwhile counts too (a Job whose invocation's answer was lost ran
            # there all the same): one more look at their listings.
            for each in state.clusters:
                if each.reachable:
                    await each.read_listing(now, 0, now_or_never=True)
                    await self.job_outcomes.fold(state, each, each.jobs.changes())
            # The last lines show at once; the results (S3) and the verdict may take longer.
            state.settled_shown = await self.writer.record(state, state.progress(0))
        return state.cadence.finishing.ready(now) and await self._finish(state, now)

    async def _fold_changes(self, state: BatchState) -> bool:
        """Read the Remote clusters' listings that are due, then fold every cluster's Job changes; whether some
        range ended or a cluster came back (capacity to plan again)."""
        freed = False
        for each in state.clusters:
            freed |= await each.read_listing(self.clock.monotonic(), self.timing.list_interval)
            freed |= await self.job_outcomes.fold(state, each, each.jobs.changes())
        return freed

    async def _reassign(self, state: BatchState, now: float) -> None:
        """A Remote cluster cut off longer than `Timing.reassign_after`, while another answers: its ranges in flight
        run on the others (with declared outputs, only their lines without outputs). Its Jobs that finish later are
        folded in as they show."""
        if len(state.clusters) < 2 or not any(each.reachable for each in state.clusters):
            return
        for each in state.clusters:
            since = each.unreachable_since
            if not each.spec.remote or since is None or now - since < self.timing.reassign_after:
                continue
            ranges = state.book.in_flight.on(each.name)
            for key, attempt in ranges:
                outputs = await self.job_outcomes.outputs_of(state, key, attempt)
                state.book.reassign(Work(key[0], key[1], attempt), outputs)
            if ranges:
                self.events.post("Warning", "RangesReassigned",
                                 f"cluster {each.name} has been cut off for {now - since:.0f}s ({each.problem}): its "
                                 f"{len(ranges)} range(s) in flight run on the other clusters; Jobs it finishes later "
                                 "are folded in, lines run twice counted as duplicates")

    async def _dispatch(self, state: BatchState, now: float) -> None:
        """Invoke what is pending on the clusters with free slots, carving new ranges at the frontier when that is
        not enough. A carve is recorded in status before its ranges are invoked, so that a restart finds them."""
        book = state.book
        running_on = book.counts().in_flight_on
        # A Remote cluster cut off is tried again once its listing answers; the operator's own, when its backoff says.
        open_clusters = [each for each in state.clusters
                         if each.dispatching.ready(now) and (each.reachable or not each.spec.remote)]
        free_on = [max(each.parallelism - running_on.get(each.name, 0), 0) for each in open_clusters]
        free = sum(free_on)
        pending = book.next_to_dispatch(free)
        if len(pending) < free and book.can_carve():
            book.carve(chunking.next_carve(book.carves, free=free - len(pending), slots=state.parallelism,
                                           timings=state.timings, fixed=state.spec.items_per_invocation))
            if not await self.writer.write({"rangePlan": book.carves.encode()}):
                return
            book.carving_recorded(book.carves.frontier)
            pending = book.next_to_dispatch(free)
        where = sharing.spread(len(pending), free_on)
        assigned = [(work, open_clusters[index]) for work, index in zip(pending, where, strict=True)]
        await self.invoker.invoke(state, assigned, seconds=DISPATCH_SHARE * self.timing.tick)

    async def _redrive(self, state: BatchState) -> None:
        spec = state.spec
        again = state.book.redrive(spec.redrive)
        message = (f"redrive {spec.redrive}: {again} failed item(s) run again with {spec.retries} "
                   "retries each" if again else f"redrive {spec.redrive}: no failed item to run again")
        self.events.post("Normal", "Redriven", message)
        patch: dict[str, Any] = {"redrive": spec.redrive, **state.progress(0)}
        if again:
            patch.update({"phase": status.RUNNING, "completionTime": None, "conditions": [
                self.writer.condition(kind, kind == "Progressing", "Redriven", message)
                for kind in ("Progressing", "Complete", "Failed")]})
        await self.writer.record(state, patch)

    def _claim(self, state: BatchState) -> None:
        """Only a batch that can dispatch takes part in sharing the cluster's slots."""
        counts, spec = state.book.counts(), state.spec
        # A slot per line at most: more slots make smaller ranges, not more work.
        demand = 0 if spec.suspend or state.book.broken else counts.in_flight + counts.pending
        if spec.max_parallelism:
            demand = min(demand, spec.max_parallelism)
        created = self.body["metadata"].get("creationTimestamp") or ""
        running_on: dict[str, int] = {}
        for each in state.clusters:
            where = capacity.pool(each)
            running_on[where] = running_on.get(where, 0) + counts.in_flight_on.get(each.name, 0)
        self.batches.claim(Claim(self.uid, created, self.ref, demand), running_on)

    def _queued(self, state: BatchState) -> int:
        return sum(managed[1] for each in state.clusters if (managed := each.jobs.kueue()))

    # ---- status ------------------------------------------------------------------------------------

    async def _report_progress(self, state: BatchState) -> None:
        spec = state.spec
        phase = status.SUSPENDED if spec.suspend else status.RUNNING
        reason = ("Suspended" if spec.suspend else "WaitingForKueue"
                  if state.planned.startswith(capacity.KUEUE_WAITING) else "RangesRunning")
        await self._name_failed_items(state)
        progress = state.progress()
        progress["invocations"]["queued"] = self._queued(state)
        await self.writer.record(state, {"phase": phase, **progress, "conditions": [
            self.writer.condition("Progressing", not spec.suspend, reason, state.planned)]})

    async def _name_failed_items(self, state: BatchState) -> None:
        """Failed items get their input's key from the manifest, for status and the results."""
        book, peers = state.book, state.peers
        unnamed = {item.line for item in book.failed_items.values() if item.key is None}
        if not unnamed:
            return
        try:
            keys = await peers.on_s3(batch_storage.input_keys, peers.s3, state.spec, unnamed)
        except Waiting as waiting:
            log.warning("batch %s: cannot name the failed items yet: %s", self.ref, waiting.message)
            return
        for line, key in keys.items():
            book.failed_items[line].key = key

    async def _finish(self, state: BatchState, now: float) -> bool:
        """Write the results and the verdict. False when S3 would not take the results, or the API server the
        verdict: try again later."""
        spec, book, peers, listing, backoff = state.spec, state.book, state.peers, state.listing, \
            state.cadence.finishing
        await self._name_failed_items(state)
        phase, reason, message = status.verdict(book, spec.tolerated_failures, listing.unlisted, listing.skipped)
        try:
            unlisted = (await peers.on_s3(batch_storage.unlisted_inputs, peers.s3, spec)
                        if listing.unlisted else [])
            document = results(book, batch=self.ref, uid=self.uid, service=spec.service, phase=phase,
                               manifest=spec.uri(spec.manifest_key), unlisted=listing.unlisted,
                               unlisted_items=unlisted or listing.sample, skipped=listing.skipped,
                               skipped_at=spec.uri(spec.skipped_key) if listing.skipped else None)
            await peers.on_s3(batch_storage.write_results, peers.s3, spec, self.uid, self.ref, document, self.kube)
        except Waiting as waiting:
            delay = backoff.failed(now, waiting.retry)
            counts = book.counts()
            await self.writer.waiting(Waiting(waiting.reason, f"the batch has ended ({counts.succeeded} items "
                                                              f"succeeded, {counts.failed} failed); writing the "
                                                              f"results waits: {waiting.message}; next try in "
                                                              f"{delay:g}s"),
                                      progress=status.without_line_sets(state.progress(0)))
            return False
        self.writer.results_written(document)
        self.events.post_due(flush=True)
        recorded = await self.writer.record(state, {
            "phase": phase, "message": message, **state.progress(0), "results": spec.uri(spec.results_key),
            "completionTime": self.writer.timestamp(), "conditions": [
                self.writer.condition("Progressing", False, reason, message),
                self.writer.condition("Complete", phase == status.SUCCEEDED, reason, message),
                self.writer.condition("Failed", phase == status.FAILED, reason, message)]})
        if not recorded:
            # The API server is away: the run must not end with a verdict that status does not hold.
            backoff.failed(now, Retry.CLEARS_BY_ITSELF)
            return False
        succeeded = phase == status.SUCCEEDED
        self.events.post("Normal" if succeeded else "Warning", "BatchSucceeded" if succeeded else "BatchFailed",
                         message)
        if left := await self.invoker.clean_up(state, backoff):
            self.events.post("Warning", "JobsLeft", f"{left} finished Job(s) could not be deleted through OSCAR; "
                                                    "OSCAR removes them after its TTL")
        return True

    def _start_time(self) -> str:
        return self.writer.status().get("startTime") or self.writer.timestamp()


def _redrive_requested(body: Any) -> int:
    value = (body.get("spec") or {}).get("redrive") or 0
    return value if isinstance(value, int) else 0
