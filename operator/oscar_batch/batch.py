"""One OscarBatchJob from start to finish: the imperative shell around the ranges, planner and status core.

`BatchController.run` is what the operator's per-batch daemon executes, in a thread of its own. It resolves
the spec and its Secrets, fetches the service, writes (or reuses) the manifest, then loops: fold in what
the Jobs say, re-plan parallelism, invoke pending ranges, patch status at a bounded rate; and at the end
writes the results manifest and the verdict. Anything that can be fixed from outside (a missing Secret, an
unreachable OSCAR, a manifest key held by another batch) becomes a condition and an Event, and is retried.
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
from oscar_batch.ranges import Outcome, RangeBook, State, choose_items_per_invocation, decode_indexes
from oscar_batch.spec import BatchSpec, SpecError, parse_spec

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Timing:
    """How often the loop looks, plans and reports. Tests shorten these; production keeps the defaults."""
    tick: float = 1.0              # fold in Job changes and dispatch
    plan_interval: float = 15.0    # re-plan even when nothing ended
    min_replan: float = 2.0        # re-plan at most this often when ranges end
    status_interval: float = 3.0   # patch status at most this often while running
    retry_delay: float = 15.0      # after a condition that may fix itself (Secret missing, OSCAR down)


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


class Waiting(Exception):
    """Something outside the operator must change; report it and try again later."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ActiveBatches:
    """The batches this operator is running, so that they split the cluster's slots instead of each taking all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uids: set[str] = set()

    def add(self, uid: str) -> None:
        with self._lock:
            self._uids.add(uid)

    def remove(self, uid: str) -> None:
        with self._lock:
            self._uids.discard(uid)

    def share(self, uid: str, slots: int) -> tuple[int, int]:
        """(this batch's slots, number of batches sharing): an even split, the remainder to the oldest UIDs."""
        with self._lock:
            ordered = sorted(self._uids | {uid})
        count = len(ordered)
        return slots // count + (1 if ordered.index(uid) < slots % count else 0), count


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BatchController:
    def __init__(self, *, body: Any, jobs: Callable[[], Iterable[JobSeen]],
                 all_job_names: Callable[[], set[str]], stopped: Stopped, kube: cluster.Kube,
                 emit: EventSink, batches: ActiveBatches, timing: Timing) -> None:
        self.body = body                    # kopf's live view: spec changes (suspend, retries) show up here
        self.jobs = jobs
        self.all_job_names = all_job_names
        self.stopped = stopped
        self.kube = kube
        self.emit = emit
        self.batches = batches
        self.timing = timing
        meta = body["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.ref = f"{self.namespace}/{self.name}"
        self._conditions: list[dict[str, Any]] = list((body.get("status") or {}).get("conditions") or [])
        self._waiting_reason: str | None = None

    # ---- lifecycle --------------------------------------------------------------------------------

    def run(self) -> None:
        if (self.body.get("status") or {}).get("phase") in status.FINISHED_PHASES:
            return
        self.batches.add(self.uid)
        try:
            while not self.stopped:
                try:
                    self._run()
                    return
                except Waiting as waiting:
                    self._report_waiting(waiting)
                    self.stopped.wait(self.timing.retry_delay)
        finally:
            self.batches.remove(self.uid)

    def _run(self) -> None:
        spec = self._spec()
        oscar = self._oscar_client(spec)
        service = self._service(oscar, spec)
        needs = self._needs(service)
        s3 = self._s3_client(spec)
        items = self._manifest(s3, spec)
        book = self._book(items, spec, needs, oscar)
        self._drive(book, spec, needs, oscar, service["token"], s3)

    def _spec(self) -> BatchSpec:
        try:
            return parse_spec(self.body.get("spec") or {})
        except SpecError as error:
            raise Waiting("InvalidSpec", f"{error}; fix the spec and apply it again") from None

    # ---- resolving what the spec names -----------------------------------------------------------

    def _secret(self, name: str, keys: tuple[str, ...]) -> dict[str, str]:
        try:
            return self.kube.secret(self.namespace, name, keys)
        except cluster.KubeError as error:
            if error.code == 404:
                raise Waiting("SecretNotFound", f"Secret {self.namespace}/{name} does not exist") from None
            raise Waiting("SecretUnreadable", str(error)) from None

    def _oscar_client(self, spec: BatchSpec) -> OscarClient:
        credentials = self._secret(spec.oscar_secret, ("username", "password", "token"))
        if not (credentials.get("token") or (credentials.get("username") and credentials.get("password"))):
            raise Waiting("SecretIncomplete", f"Secret {self.namespace}/{spec.oscar_secret} needs keys "
                                              "`username` and `password`, or `token`")
        return OscarClient(spec.oscar_endpoint, username=credentials.get("username"),
                           password=credentials.get("password"), token=credentials.get("token"))

    def _service(self, oscar: OscarClient, spec: BatchSpec) -> dict[str, Any]:
        try:
            service = oscar.service(spec.service)
        except OscarError as error:
            reason = {401: "OscarUnauthorized", 403: "OscarUnauthorized", 404: "ServiceNotFound"}.get(
                error.status or 0, "OscarUnavailable")
            raise Waiting(reason, str(error)) from None
        if not service.get("token"):
            raise Waiting("ServiceTokenMissing", f"OSCAR service {spec.service!r} has no invocation token; "
                                                 "the credentials may not own it")
        return service

    def _needs(self, service: dict[str, Any]) -> planner.Needs:
        try:
            return planner.Needs.parse(str(service.get("cpu") or "0"), str(service.get("memory") or "0"),
                                       gpus=1 if service.get("enable_gpu") else 0)
        except ValueError as error:
            raise Waiting("ServiceResourcesInvalid",
                          f"OSCAR service {service.get('name')!r} has unreadable resources: {error}") from None

    def _s3_client(self, spec: BatchSpec):
        keys = self._secret(spec.s3_secret, ("accessKey", "secretKey"))
        if not (keys.get("accessKey") and keys.get("secretKey")):
            raise Waiting("SecretIncomplete",
                          f"Secret {self.namespace}/{spec.s3_secret} needs keys `accessKey` and `secretKey`")
        return manifest.client(spec, keys["accessKey"], keys["secretKey"])

    # ---- the manifest -------------------------------------------------------------------------------

    def _manifest(self, s3, spec: BatchSpec) -> int:
        """The number of inputs: from the manifest this batch already wrote, else by listing the bucket."""
        try:
            owner = manifest.owner(s3, spec)
        except Exception as error:  # noqa: BLE001 - any S3 failure is something to report and retry
            raise Waiting("StorageUnavailable", _storage_message(error)) from None
        if owner is not None and owner.uid == self.uid:
            return owner.items
        if owner is not None:
            self._refuse_foreign_manifest(owner, spec)
        self._patch({"phase": status.LISTING, "startTime": self._start_time(), "conditions": [
            status.condition("Progressing", True, "Listing", f"listing s3://{spec.bucket}/{spec.prefix}",
                             now_iso(), self._generation())]})
        try:
            items = manifest.write(s3, spec, self.uid, self.ref)
        except Exception as error:  # noqa: BLE001
            raise Waiting("StorageUnavailable", _storage_message(error)) from None
        self.emit("Normal", "Listed", f"listed {items} input(s) into {manifest.uri(spec, spec.manifest_key)}")
        return items

    def _refuse_foreign_manifest(self, owner: manifest.ManifestOwner, spec: BatchSpec) -> None:
        namespace, _, name = owner.batch.partition("/")
        other = self.kube.batch(namespace, name) if name else None
        if other is not None and other["metadata"].get("uid") == owner.uid and \
                (other.get("status") or {}).get("phase") not in status.FINISHED_PHASES:
            raise Waiting("ManifestKeyInUse", f"manifest key {manifest.uri(spec, spec.manifest_key)} is in use "
                                              f"by batch {owner.batch}; set spec.manifestKey or wait for it")

    # ---- ranges -------------------------------------------------------------------------------------

    def _book(self, items: int, spec: BatchSpec, needs: planner.Needs, oscar: OscarClient) -> RangeBook:
        current = self.body.get("status") or {}
        per_range = current.get("itemsPerInvocation") or spec.items_per_invocation
        if not per_range:
            slots, _ = self._plan(spec, needs, oscar, book=None)
            per_range = choose_items_per_invocation(items, slots)
        book = RangeBook(items, per_range, spec.retries)
        try:
            book.restore(decode_indexes(current.get("completedRanges")), decode_indexes(current.get("failedRanges")))
        except ValueError:
            log.warning("batch %s: unreadable range lists in status; rebuilding them from the Jobs", self.ref)
        self._observe(book)
        self._patch({"phase": status.RUNNING, "items": items, "itemsPerInvocation": per_range,
                     "manifest": manifest.uri(spec, spec.manifest_key), "startTime": self._start_time(),
                     **status.progress(book, current.get("parallelism") or 0)})
        return book

    def _observe(self, book: RangeBook) -> bool:
        """Fold the Jobs into the book. Returns whether some range ended (capacity freed)."""
        ended = False
        for job in self.jobs():
            if not job.identity.belongs_to(self.uid):
                continue
            changed = book.observe(job.identity.range, job.identity.attempt, job.outcome, job.name,
                                   job.started, job.finished)
            if changed is None or changed == State.RUNNING:
                continue
            ended = True
            if changed == State.PENDING:
                self.emit("Warning", "RangeRetried", f"range {job.identity.range} failed in Job {job.name} "
                                                     f"(attempt {job.identity.attempt}); invoking it again")
            elif changed == State.FAILED:
                self.emit("Warning", "RangeFailed", f"range {job.identity.range} failed in Job {job.name} "
                                                    f"after {job.identity.attempt} attempt(s)")
        return ended

    # ---- the loop -----------------------------------------------------------------------------------

    def _drive(self, book: RangeBook, spec: BatchSpec, needs: planner.Needs, oscar: OscarClient,
               service_token: str, s3) -> None:
        parallelism, last_plan, last_status = 0, float("-inf"), float("-inf")
        planned_message = ""
        while not self.stopped:
            ended = self._observe(book)
            if book.done():
                self._finish(book, spec, s3, parallelism)
                return
            spec = self._current_spec(spec)
            book.retries = spec.retries
            now = time.monotonic()
            if now - last_plan >= self.timing.plan_interval or (ended and now - last_plan >= self.timing.min_replan):
                parallelism, planned_message = self._plan(spec, needs, oscar, book)
                last_plan = now
            if not spec.suspend:
                self._dispatch(book, spec, oscar, service_token, parallelism - book.counts().running)
            if now - last_status >= self.timing.status_interval:
                self._report_progress(book, spec, parallelism, planned_message)
                last_status = now
            self.stopped.wait(self.timing.tick)

    def _current_spec(self, previous: BatchSpec) -> BatchSpec:
        """The live spec; a change that cannot be parsed keeps the last good one (and says so)."""
        try:
            return parse_spec(self.body.get("spec") or {})
        except SpecError as error:
            self._report_waiting(Waiting("InvalidSpec", f"{error}; keeping the previous spec"))
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
        slots, sharing = self.batches.share(self.uid, usable)
        if spec.max_parallelism:
            slots = min(slots, spec.max_parallelism)
        if own_pending:
            # Pods of ours that the scheduler cannot place prove the plan optimistic: keep what runs.
            slots = min(slots, max(running - own_pending, 0))
        message = f"{slots} range(s) in flight allowed; the cluster fits {plan.cluster_slots} invocation(s)"
        if sharing > 1:
            message += f", shared by {sharing} batches"
        if own_pending:
            message += f"; {own_pending} pod(s) of this batch cannot be scheduled"
        if plan.explanation:
            message += f": {plan.explanation}"
        return slots, message

    def _dispatch(self, book: RangeBook, spec: BatchSpec, oscar: OscarClient, service_token: str, free: int) -> None:
        for index, attempt in book.next_to_dispatch(max(free, 0)):
            start, end = book.bounds(index)
            name = invocation.job_name(spec.service, self.uid, index, attempt)
            event = invocation.payload(start=start, end=end, bucket=spec.bucket, manifest_key=spec.manifest_key,
                                       batch_uid=self.uid, batch=self.ref, index=index, attempt=attempt)
            try:
                oscar.invoke(spec.service, service_token, event, job_name=name)
            except OscarError as error:
                if error.status == 500 and "exist" in str(error).lower():
                    continue  # a previous run of the operator invoked it already
                book.dispatch_failed(index)
                self._report_waiting(Waiting("InvocationFailed", str(error)))
                return
            book.observe(index, attempt, Outcome.RUNNING, name, started=now_iso())
        self._waiting_reason = None

    # ---- status ------------------------------------------------------------------------------------

    def _report_progress(self, book: RangeBook, spec: BatchSpec, parallelism: int, planned: str) -> None:
        phase = status.SUSPENDED if spec.suspend else status.RUNNING
        reason = "Suspended" if spec.suspend else "RangesRunning"
        self._patch({"phase": phase, **status.progress(book, parallelism), "conditions": [
            status.condition("Progressing", not spec.suspend, reason, planned, now_iso(), self._generation())]})

    def _report_waiting(self, waiting: Waiting) -> None:
        log.warning("batch %s: %s", self.ref, waiting.message)
        if waiting.reason != self._waiting_reason:
            self.emit("Warning", waiting.reason, waiting.message)
            self._waiting_reason = waiting.reason
        phase = (self.body.get("status") or {}).get("phase") or status.PENDING
        self._patch({"phase": phase, "message": waiting.message, "conditions": [
            status.condition("Progressing", False, waiting.reason, waiting.message, now_iso(), self._generation())]})

    def _finish(self, book: RangeBook, spec: BatchSpec, s3, parallelism: int) -> None:
        phase, reason, message = status.verdict(book, spec.tolerated_failures)
        finished = now_iso()
        try:
            manifest.write_results(s3, spec, self._results(book, spec, phase))
        except Exception as error:  # noqa: BLE001
            raise Waiting("StorageUnavailable", _storage_message(error)) from None
        self._patch({"phase": phase, "message": message, **status.progress(book, 0),
                     "results": manifest.uri(spec, spec.results_key), "completionTime": finished,
                     "conditions": [
                         status.condition("Progressing", False, reason, message, finished, self._generation()),
                         status.condition("Complete" if phase == status.SUCCEEDED else "Failed", True, reason,
                                          message, finished, self._generation())]})
        self.emit("Normal" if phase == status.SUCCEEDED else "Warning",
                  "BatchSucceeded" if phase == status.SUCCEEDED else "BatchFailed", message)

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
                "itemsPerInvocation": book.per_range, "ranges": ranges}

    def _patch(self, patch: dict[str, Any]) -> None:
        if "conditions" in patch:
            self._conditions = status.merge_conditions(self._conditions, patch["conditions"])
            patch["conditions"] = self._conditions
        patch.setdefault("observedGeneration", self._generation())
        if patch.get("phase") != status.PENDING and "message" not in patch:
            patch["message"] = None
        try:
            self.kube.patch_batch_status(self.namespace, self.name, patch)
        except cluster.KubeError as error:
            log.warning("batch %s: cannot patch status: %s", self.ref, error)

    def _generation(self) -> int:
        return int(self.body["metadata"].get("generation") or 1)

    def _start_time(self) -> str:
        return (self.body.get("status") or {}).get("startTime") or now_iso()


def _job_of(pod: dict[str, Any]) -> str | None:
    labels = pod.get("metadata", {}).get("labels") or {}
    return labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")


def _unschedulable(pod: dict[str, Any]) -> bool:
    if pod.get("status", {}).get("phase") != "Pending":
        return False
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
               for c in pod.get("status", {}).get("conditions") or ())


def _storage_message(error: Exception) -> str:
    if isinstance(error, manifest.StorageError):
        return str(error)
    return f"cannot reach S3 ({type(error).__name__})"
