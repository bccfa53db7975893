"""One OscarBatchJob from start to finish: the imperative shell around the ranges, planner and status core.

`BatchController.run` is what the operator's per-batch daemon executes, in a thread of its own. It resolves
the spec and its Secrets, fetches the service, writes (or reuses) the manifest, then loops: fold in what
the Jobs say, re-plan parallelism, invoke pending ranges, re-check invocations whose Job never appeared,
patch status at a bounded rate; and at the end writes the results manifest and the verdict. Anything that
can be fixed from outside (a missing Secret, an unreachable OSCAR, a key held by somebody else) becomes a
condition and an Event, and is retried with exponential backoff.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from oscar_batch import cluster, invocation, manifest, planner, status
from oscar_batch.oscar import OscarClient, OscarError
from oscar_batch.pacing import Backoff, EventThrottle
from oscar_batch.ranges import Outcome, RangeBook, State, choose_items_per_invocation, decode_indexes
from oscar_batch.resolve import Resolver, Waiting, storage_waiting
from oscar_batch.sharing import Claim, fair_shares
from oscar_batch.spec import BatchSpec, SpecError, apply_pinned, parse_spec, pinned_fields

log = logging.getLogger(__name__)

# What OSCAR's job listing says of a Job the watch has not shown us.
LISTED_OUTCOMES = {"Succeeded": Outcome.SUCCEEDED, "Failed": Outcome.FAILED}


@dataclasses.dataclass(frozen=True)
class Timing:
    """How often the loop looks, plans and reports. Tests shorten these; production keeps the defaults."""
    tick: float = 1.0              # fold in Job changes and dispatch
    plan_interval: float = 15.0    # re-plan even when nothing ended
    min_replan: float = 2.0        # re-plan at most this often when ranges end
    status_interval: float = 3.0   # patch status at most this often while running
    retry_delay: float = 15.0      # first delay after a condition that may fix itself (Secret missing, OSCAR down)
    max_backoff: float = 300.0     # longest delay between two tries of something that needs a person
    unseen_job_timeout: float = 60.0  # an accepted invocation whose Job has not appeared is re-checked after this
    cancel_timeout: float = 60.0   # how long deleting a batch may spend cleaning up behind the finalizer


@dataclasses.dataclass(frozen=True)
class JobSeen:
    """What the Jobs index keeps of one Job of a batch."""
    name: str
    identity: invocation.Identity
    outcome: Outcome
    started: str | None
    finished: str | None


class Stopped(Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...
    def __bool__(self) -> bool: ...


class EventSink(Protocol):
    def __call__(self, kind: str, reason: str, message: str) -> None: ...


class ActiveBatches:
    """The batches this operator runs: which are dispatching (and so share the cluster's slots), and which
    controllers are alive (so that deletion waits for dispatch to stop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[str, Claim] = {}
        self._alive: dict[str, threading.Event] = {}
        self.membership = 0  # changes whenever a batch starts or stops dispatching: time to re-plan

    def started(self, uid: str) -> None:
        with self._lock:
            self._alive[uid] = threading.Event()

    def exited(self, uid: str) -> None:
        with self._lock:
            self.membership += self._claims.pop(uid, None) is not None
            done = self._alive.pop(uid, None)
        if done is not None:
            done.set()

    def wait_exited(self, uid: str, timeout: float) -> bool:
        with self._lock:
            done = self._alive.get(uid)
        return done is None or done.wait(timeout)

    def claim(self, claim: Claim) -> None:
        with self._lock:
            self.membership += claim.uid not in self._claims
            self._claims[claim.uid] = claim

    def withdraw(self, uid: str) -> None:
        with self._lock:
            self.membership += self._claims.pop(uid, None) is not None

    def share(self, uid: str, slots: int) -> tuple[int, int]:
        """(this batch's slots, number of batches dispatching) under max-min fairness, leftovers to the oldest."""
        with self._lock:
            claims = list(self._claims.values())
        return fair_shares(slots, claims).get(uid, 0), len(claims)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BatchController:
    def __init__(self, *, body: Any, jobs: Callable[[], Iterable[JobSeen]],
                 all_job_names: Callable[[], set[str]], stopped: Stopped, kube: cluster.Kube,
                 emit: EventSink, batches: ActiveBatches, timing: Timing,
                 clock: Callable[[], float] = time.monotonic, resolver: Resolver | None = None) -> None:
        self.body = body                    # kopf's live view: spec changes (suspend, retries) show up here
        self.jobs = jobs
        self.all_job_names = all_job_names
        self.stopped = stopped
        self.kube = kube
        self.emit = emit
        self.batches = batches
        self.timing = timing
        self.clock = clock
        meta = body["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.ref = f"{self.namespace}/{self.name}"
        self.resolver = resolver or Resolver(kube, self.namespace)
        self._conditions: list[dict[str, Any]] = list(self._status().get("conditions") or [])
        self._waiting_reason: str | None = None
        self._spec_problem: str | None = None
        self._throttle = EventThrottle()
        self._settled_at: tuple[int, int] | None = None  # (generation, redrive) this run brought to an end

    # ---- lifecycle --------------------------------------------------------------------------------

    def run(self) -> None:
        """Until kopf stops the daemon: bring the batch to its end, then idle (kopf stops a finished batch's
        daemon through its filter, and starts it again on a redrive or a spec change)."""
        self.batches.started(self.uid)
        backoff = Backoff(self.timing.retry_delay, self.timing.max_backoff)
        try:
            while not self.stopped and not self._deleting():
                if not self._has_work():
                    self.stopped.wait(self.timing.retry_delay)
                    continue
                try:
                    self._run()
                    backoff.succeeded()
                except Waiting as waiting:
                    self._report_waiting(waiting)
                    cap = None if waiting.needs_a_person else 4 * self.timing.retry_delay
                    self._pause(backoff.failed(self.clock(), cap=cap))
        finally:
            self.batches.exited(self.uid)

    def _has_work(self) -> bool:
        generation = self._generation()
        redrive = _redrive_requested(self.body)
        if self._settled_at == (generation, redrive):
            return False
        return status.needs_controller(self.body.get("spec") or {}, self._status(), generation)

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the user edits the batch: the edit may be the fix."""
        generation, deadline = self._generation(), self.clock() + seconds
        while not self.stopped and self._generation() == generation and not self._deleting():
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            self.stopped.wait(min(remaining, self.timing.tick))

    def _deleting(self) -> bool:
        return bool(self.body["metadata"].get("deletionTimestamp"))

    def _run(self) -> None:
        spec = self._spec()
        oscar = self.resolver.oscar_client(spec)
        service = self.resolver.service(oscar, spec)
        needs = self.resolver.needs(service)
        s3 = self.resolver.s3_client(spec)
        items = self._manifest(s3, spec)
        book = self._book(items, spec, needs, oscar)
        if self._drive(book, spec, needs, oscar, service["token"], s3):
            self._settled_at = (self._generation(), spec.redrive)

    def _spec(self) -> BatchSpec:
        """The live spec with the fields pinned at start put back; a change to those is reported, not obeyed."""
        try:
            spec = parse_spec(self.body.get("spec") or {})
        except SpecError as error:
            raise Waiting("InvalidSpec", f"{error}; fix the spec and apply it again") from None
        spec, changed = apply_pinned(spec, self._status().get("pinned"))
        problem = None
        if changed:
            problem = (f"{', '.join(changed)} cannot change once the batch has started; the change is ignored "
                       "(create a new OscarBatchJob instead)")
        self._report_spec_problem("ImmutableFieldChanged", problem)
        return spec

    # ---- the manifest -------------------------------------------------------------------------------

    def _manifest(self, s3, spec: BatchSpec) -> int:
        """The number of inputs: from status once this batch wrote its manifest, else by listing the bucket."""
        current = self._status()
        if current.get("items") is not None and current.get("manifest") == manifest.uri(spec, spec.manifest_key):
            return int(current["items"])  # S3 may be down: the Jobs still tell how the batch goes
        try:
            if not manifest.bucket_exists(s3, spec):
                raise Waiting("BucketNotFound", f"bucket {spec.bucket!r} does not exist at {spec.s3_endpoint}")
            owner = manifest.owner(s3, spec, spec.manifest_key)
            if owner is not None and owner.uid == self.uid:
                return owner.items
            self._refuse_foreign(owner, spec, spec.manifest_key)
            self._refuse_foreign(manifest.owner(s3, spec, spec.results_key), spec, spec.results_key)
        except Waiting:
            raise
        except Exception as error:  # noqa: BLE001 - any S3 failure is something to report and retry
            raise storage_waiting(error, spec) from None
        self._patch({"phase": status.LISTING, "startTime": self._start_time(), "pinned": pinned_fields(spec),
                     "conditions": [status.condition("Progressing", True, "Listing",
                                                     f"listing s3://{spec.bucket}/{spec.prefix}", now_iso(),
                                                     self._generation())]})
        try:
            items = manifest.write(s3, spec, self.uid, self.ref)
        except Exception as error:  # noqa: BLE001
            raise storage_waiting(error, spec) from None
        self.emit("Normal", "Listed", f"listed {items} input(s) into {manifest.uri(spec, spec.manifest_key)}")
        return items

    def _refuse_foreign(self, owner: manifest.ObjectOwner | None, spec: BatchSpec, key: str) -> None:
        """An object at a key this batch writes: fine when absent, ours, or left by a batch that is done."""
        if owner is None or owner.uid == self.uid:
            return
        if owner.uid is None:
            field = "manifestKey" if key == spec.manifest_key else "resultsKey"
            raise Waiting("KeyConflict", f"{manifest.uri(spec, key)} already exists and no OscarBatchJob wrote "
                                         f"it; set spec.{field} to a free key, or delete the object if it is "
                                         "not needed")
        if key != spec.manifest_key:
            return
        namespace, _, name = owner.batch.partition("/")
        other = self.kube.batch(namespace, name) if name else None
        if other is not None and other["metadata"].get("uid") == owner.uid and \
                (other.get("status") or {}).get("phase") not in status.FINISHED_PHASES:
            raise Waiting("ManifestKeyInUse", f"manifest key {manifest.uri(spec, key)} is in use "
                                              f"by batch {owner.batch}; set spec.manifestKey or wait for it")

    # ---- ranges -------------------------------------------------------------------------------------

    def _book(self, items: int, spec: BatchSpec, needs: planner.Needs, oscar: OscarClient) -> RangeBook:
        current = self._status()
        per_range = current.get("itemsPerInvocation") or spec.items_per_invocation
        if not per_range:
            slots, _ = self._plan(spec, needs, oscar, book=None)
            per_range = choose_items_per_invocation(items, slots)
        book = RangeBook(items, per_range, spec.retries, redrive_round=int(current.get("redrive") or 0))
        try:
            book.restore(decode_indexes(current.get("completedRanges")), decode_indexes(current.get("failedRanges")))
        except ValueError:
            log.warning("batch %s: unreadable range lists in status; rebuilding them from the Jobs", self.ref)
        self._observe(book)
        # Retries of ranges that settled before a restart left no trace but this count.
        book.retried = max(book.retried, int((current.get("ranges") or {}).get("retried") or 0))
        patch: dict[str, Any] = {"items": items, "itemsPerInvocation": per_range,
                                 "manifest": manifest.uri(spec, spec.manifest_key), "startTime": self._start_time(),
                                 "pinned": current.get("pinned") or pinned_fields(spec),
                                 **status.progress(book, current.get("parallelism") or 0)}
        if not book.done():
            patch["phase"] = status.RUNNING
        self._patch(patch)
        return book

    def _observe(self, book: RangeBook) -> bool:
        """Fold the Jobs into the book. Returns whether some range ended (capacity freed)."""
        ended = False
        for job in self.jobs():
            if not job.identity.belongs_to(self.uid):
                continue
            changed = book.observe(job.identity.range, job.identity.attempt, job.outcome, job.name,
                                   job.started, job.finished, redrive_round=job.identity.redrive)
            if changed is None or changed == State.RUNNING:
                continue
            ended = True
            if changed == State.PENDING:
                self._event("Warning", "RangeRetried", f"range {job.identity.range} failed in Job {job.name} "
                                                       f"(attempt {job.identity.attempt})")
            elif changed == State.FAILED:
                self._event("Warning", "RangeFailed", f"range {job.identity.range} failed in Job {job.name} "
                                                      f"after {job.identity.attempt} attempt(s)")
        return ended

    def _redrive(self, book: RangeBook, spec: BatchSpec) -> None:
        again = book.redrive(spec.redrive)
        message = (f"redrive {spec.redrive}: {len(again)} failed range(s) run again with {spec.retries} "
                   "retries each" if again else f"redrive {spec.redrive}: no failed range to run again")
        self.emit("Normal", "Redriven", message)
        patch: dict[str, Any] = {"redrive": spec.redrive, **status.progress(book, 0)}
        if again:
            patch.update({"phase": status.RUNNING, "completionTime": None, "conditions": [
                status.condition("Progressing", True, "Redriven", message, now_iso(), self._generation()),
                status.condition("Complete", False, "Redriven", message, now_iso(), self._generation()),
                status.condition("Failed", False, "Redriven", message, now_iso(), self._generation())]})
        self._patch(patch)

    # ---- the loop -----------------------------------------------------------------------------------

    def _drive(self, book: RangeBook, spec: BatchSpec, needs: planner.Needs, oscar: OscarClient,
               service_token: str, s3) -> bool:
        """Until the batch ends (True) or the daemon is stopped (False)."""
        parallelism, last_plan, last_status, planned_membership = 0, float("-inf"), float("-inf"), -1
        planned_message = ""
        dispatching = Backoff(self.timing.tick, self.timing.max_backoff)
        rechecking = Backoff(self.timing.unseen_job_timeout, self.timing.max_backoff)
        finishing = Backoff(self.timing.retry_delay, self.timing.max_backoff)
        try:
            while not self.stopped and not self._deleting():
                ended = self._observe(book)
                previous, spec = spec, self._current_spec(spec)
                book.retries = spec.retries
                if spec.redrive > book.redrive_round:
                    self._redrive(book, spec)
                now = self.clock()
                if book.done():
                    self.batches.withdraw(self.uid)
                    if finishing.ready(now) and self._finish(book, spec, s3, finishing, now):
                        return True
                    self._emit_due(now)
                    self.stopped.wait(self.timing.tick)
                    continue
                self._claim(book, spec)
                replan_due = (now - last_plan >= self.timing.plan_interval or spec != previous
                              or self.batches.membership != planned_membership
                              or (ended and now - last_plan >= self.timing.min_replan))
                if replan_due:
                    planned_membership = self.batches.membership
                    parallelism, planned_message = self._plan(spec, needs, oscar, book)
                    last_plan = now
                if not spec.suspend and dispatching.ready(now):
                    self._dispatch(book, spec, oscar, service_token, parallelism - book.counts().running,
                                   dispatching, now)
                if rechecking.ready(now):
                    self._recheck_unseen(book, spec, oscar, rechecking, now)
                if now - last_status >= self.timing.status_interval:
                    self._report_progress(book, spec, parallelism, planned_message)
                    last_status = now
                self._emit_due(now)
                self.stopped.wait(self.timing.tick)
            return False
        finally:
            self.batches.withdraw(self.uid)

    def _claim(self, book: RangeBook, spec: BatchSpec) -> None:
        """Only a batch that can dispatch takes part in sharing the cluster's slots."""
        counts = book.counts()
        demand = 0 if spec.suspend else counts.pending + counts.running
        if spec.max_parallelism:
            demand = min(demand, spec.max_parallelism)
        metadata = self.body["metadata"]
        self.batches.claim(Claim(self.uid, metadata.get("creationTimestamp") or "", self.ref, demand))

    def _current_spec(self, previous: BatchSpec) -> BatchSpec:
        """The live spec; a change that cannot be parsed keeps the last good one (and says so)."""
        try:
            return self._spec()
        except Waiting as waiting:
            self._report_spec_problem("InvalidSpec", f"{waiting.message}; keeping the previous spec")
            return previous

    def _plan(self, spec: BatchSpec, needs: planner.Needs, oscar: OscarClient, book: RangeBook | None) -> tuple[int, str]:
        """(parallelism for this batch, explanation). The batches' own pods count as theirs, not as used."""
        running = book.counts().running if book else 0
        policy = planner.Policy(headroom=spec.headroom)
        own_jobs = self.all_job_names()
        own_pending = 0
        try:
            pods = list(self.kube.pods())
            plan = planner.plan_capacity(self.kube.nodes(), pods, needs, policy,
                                         ignore_pod=lambda pod: _job_of(pod) in own_jobs)
            mine = {job.name for job in self.jobs() if job.identity.belongs_to(self.uid)}
            own_pending = sum(1 for pod in pods if _job_of(pod) in mine and _unschedulable(pod))
        except cluster.Forbidden:
            # Without permission to list Nodes, OSCAR's own view is the next best; it counts our running
            # pods as used, so they are added back.
            try:
                plan = planner.plan_from_oscar_status(oscar.cluster_status(), needs, policy)
            except (OscarError, ValueError) as error:
                log.warning("batch %s: cannot plan: %s", self.ref, error)
                return running, f"cannot plan: {error}"
            plan = dataclasses.replace(plan, total=plan.total + running)
        except (cluster.KubeError, ValueError) as error:
            log.warning("batch %s: cannot plan: %s", self.ref, error)
            return running, f"cannot plan: {error}"
        # Headroom must not starve a batch forever: when the cluster has a free slot but the share rounds to
        # none (one slot × 0.8), the batch still takes one.
        usable = plan.total or min(plan.cluster_slots, 1)
        if book is None:
            slots, sharing = usable, 1
        else:
            slots, sharing = self.batches.share(self.uid, usable)
        if spec.max_parallelism:
            slots = min(slots, spec.max_parallelism)
        if own_pending:
            # Pods of ours that the scheduler cannot place prove the plan optimistic: keep what runs.
            slots = min(slots, max(running - own_pending, 0))
        message = f"{slots} range(s) in flight allowed; the cluster fits {plan.cluster_slots} invocation(s)"
        if sharing > 1:
            message += f", shared by {sharing} dispatching batches"
        if own_pending:
            message += f"; {own_pending} pod(s) of this batch cannot be scheduled"
        if plan.explanation:
            message += f": {plan.explanation}"
        return slots, message

    def _dispatch(self, book: RangeBook, spec: BatchSpec, oscar: OscarClient, service_token: str, free: int,
                  backoff: Backoff, now: float) -> None:
        for index, attempt in book.next_to_dispatch(max(free, 0)):
            if self.stopped or self._deleting():
                return
            start, end = book.bounds(index)
            name = invocation.job_name(spec.service, self.uid, index, attempt, book.redrive_round)
            event = invocation.payload(start=start, end=end, bucket=spec.bucket, manifest_key=spec.manifest_key,
                                       batch_uid=self.uid, batch=self.ref, index=index, attempt=attempt,
                                       redrive=book.redrive_round)
            try:
                oscar.invoke(spec.service, service_token, event, job_name=name)
            except OscarError as error:
                if not (error.status == 500 and "exist" in str(error).lower()):
                    # Not invoked: this range and the rest stay pending with their attempts unspent.
                    permanent = error.status in (401, 403, 404)
                    delay = backoff.failed(now, cap=None if permanent else 4 * self.timing.retry_delay)
                    self._report_waiting(Waiting("InvocationFailed", f"{error}; trying again in {delay:g}s"))
                    return
                # A previous run of the operator invoked this very attempt: its Job exists.
            book.invoked(index, attempt, name, started=now_iso(), now=self.clock())
        backoff.succeeded()
        self._waiting_reason = None

    def _recheck_unseen(self, book: RangeBook, spec: BatchSpec, oscar: OscarClient, backoff: Backoff,
                        now: float) -> None:
        """Invocations OSCAR accepted whose Job never reached the watch: ask OSCAR what became of them."""
        overdue = book.unseen_since(now - self.timing.unseen_job_timeout)
        if not overdue:
            return
        try:
            listed = dict(oscar.jobs(spec.service))
        except OscarError as error:
            log.warning("batch %s: cannot list the jobs of %s: %s", self.ref, spec.service, error)
            backoff.failed(now)
            return
        backoff.succeeded()
        for index, attempt, name in overdue:
            info = listed.get(name)
            if info is None:
                book.lost_invocation(index, attempt)
                self._event("Warning", "InvocationLost", f"OSCAR accepted range {index} (attempt {attempt}) but "
                                                         f"has no Job {name}; invoking it again")
            elif info.get("status") in LISTED_OUTCOMES:
                book.observe(index, attempt, LISTED_OUTCOMES[info["status"]], name, info.get("start_time"),
                             info.get("finish_time"), redrive_round=book.redrive_round)
            else:
                book.still_unseen(index, now)

    # ---- status ------------------------------------------------------------------------------------

    def _event(self, kind: str, reason: str, message: str) -> None:
        for event in self._throttle.offer(kind, reason, message, self.clock()):
            self.emit(*event)

    def _emit_due(self, now: float) -> None:
        for event in self._throttle.due(now):
            self.emit(*event)

    def _report_progress(self, book: RangeBook, spec: BatchSpec, parallelism: int, planned: str) -> None:
        phase = status.SUSPENDED if spec.suspend else status.RUNNING
        reason = "Suspended" if spec.suspend else "RangesRunning"
        self._patch({"phase": phase, **status.progress(book, parallelism), "conditions": [
            status.condition("Progressing", not spec.suspend, reason, planned, now_iso(), self._generation())]})

    def _report_waiting(self, waiting: Waiting, progress: dict[str, Any] | None = None) -> None:
        log.warning("batch %s: %s", self.ref, waiting.message)
        if waiting.reason != self._waiting_reason:
            self.emit("Warning", waiting.reason, waiting.message)
            self._waiting_reason = waiting.reason
        phase = self._status().get("phase") or status.PENDING
        self._patch({"phase": phase, "message": waiting.message, **(progress or {}), "conditions": [
            status.condition("Progressing", False, waiting.reason, waiting.message, now_iso(), self._generation())]})

    def _report_spec_problem(self, reason: str, problem: str | None) -> None:
        """The `InvalidSpec` condition of a batch that goes on with the spec it had: True while the live spec
        cannot be obeyed, False once it can."""
        if problem == self._spec_problem:
            return
        if problem is not None:
            log.warning("batch %s: %s", self.ref, problem)
            self.emit("Warning", reason, problem)
        self._spec_problem = problem
        self._patch({"conditions": [status.condition(
            "InvalidSpec", problem is not None, reason if problem else "SpecAccepted",
            problem or "the live spec is in effect", now_iso(), self._generation())]})

    def _finish(self, book: RangeBook, spec: BatchSpec, s3, backoff: Backoff, now: float) -> bool:
        """Write the results and the verdict. False when S3 would not take the results: try again later."""
        phase, reason, message = status.verdict(book, spec.tolerated_failures)
        finished = now_iso()
        try:
            self._refuse_foreign(manifest.owner(s3, spec, spec.results_key), spec, spec.results_key)
            manifest.write_results(s3, spec, self.uid, self.ref, self._results(book, spec, phase))
        except Exception as error:  # noqa: BLE001 - any S3 failure is something to report and retry
            waiting = error if isinstance(error, Waiting) else storage_waiting(error, spec)
            delay = backoff.failed(now, cap=None if waiting.needs_a_person else 4 * self.timing.retry_delay)
            counts = book.counts()
            self._report_waiting(Waiting(waiting.reason, f"every range has ended ({counts.succeeded} succeeded, "
                                                         f"{counts.failed} failed); writing the results "
                                                         f"waits: {waiting.message}; next try in {delay:g}s"),
                                 progress=status.progress(book, 0))
            return False
        for event in self._throttle.flush(now):
            self.emit(*event)
        self._patch({"phase": phase, "message": message, **status.progress(book, 0),
                     "results": manifest.uri(spec, spec.results_key), "completionTime": finished,
                     "conditions": [
                         status.condition("Progressing", False, reason, message, finished, self._generation()),
                         status.condition("Complete", phase == status.SUCCEEDED, reason, message, finished,
                                          self._generation()),
                         status.condition("Failed", phase == status.FAILED, reason, message, finished,
                                          self._generation())]})
        self.emit("Normal" if phase == status.SUCCEEDED else "Warning",
                  "BatchSucceeded" if phase == status.SUCCEEDED else "BatchFailed", message)
        return True

    def _results(self, book: RangeBook, spec: BatchSpec, phase: str) -> dict[str, Any]:
        ranges = []
        for index in range(book.total):
            start, end = book.bounds(index)
            record = book.records.get(index)
            ranges.append({"range": index, "start": start, "end": end, "state": book.state(index).value,
                           "attempts": book.attempts(index), "jobs": record.jobs if record else [],
                           "started": record.started if record else None,
                           "finished": record.finished if record else None})
        return {"batch": self.ref, "uid": self.uid, "service": spec.service, "phase": phase,
                "manifest": manifest.uri(spec, spec.manifest_key), "items": book.items,
                "itemsPerInvocation": book.per_range, "redrive": book.redrive_round, "ranges": ranges}

    def _patch(self, patch: dict[str, Any]) -> None:
        if "conditions" in patch:
            self._conditions = status.merge_conditions(self._conditions, patch["conditions"])
            patch["conditions"] = self._conditions
        patch.setdefault("observedGeneration", self._generation())
        if "phase" in patch and patch["phase"] != status.PENDING and "message" not in patch:
            patch["message"] = None
        try:
            self.kube.patch_batch_status(self.namespace, self.name, patch)
        except cluster.KubeError as error:
            log.warning("batch %s: cannot patch status: %s", self.ref, error)

    def _status(self) -> dict[str, Any]:
        return self.body.get("status") or {}

    def _generation(self) -> int:
        return int(self.body["metadata"].get("generation") or 1)

    def _start_time(self) -> str:
        return self._status().get("startTime") or now_iso()


def _redrive_requested(body: Any) -> int:
    value = (body.get("spec") or {}).get("redrive") or 0
    return value if isinstance(value, int) else 0


def _job_of(pod: dict[str, Any]) -> str | None:
    labels = pod.get("metadata", {}).get("labels") or {}
    return labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")


def _unschedulable(pod: dict[str, Any]) -> bool:
    if pod.get("status", {}).get("phase") != "Pending":
        return False
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
               for c in pod.get("status", {}).get("conditions") or ())
