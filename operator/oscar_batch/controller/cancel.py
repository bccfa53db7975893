"""Deleting an OscarBatchJob cancels it, behind the operator's finalizer: dispatch stops, its Jobs are deleted
through OSCAR (only those still in flight with `spec.keepJobs`), and the manifest the batch wrote is removed
(unless `spec.keepManifest`).

Bounded: after `Timing.cancel_timeout` the finalizer is released whatever is left, and an Event names what was
left behind and why, so a dead OSCAR never keeps an object from being deleted.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from oscar_batch.clients import manifest
from oscar_batch.clients.oscar import DEFAULT_TIMEOUT, OscarClient, OscarError
from oscar_batch.controller.active_batches import ActiveBatches
from oscar_batch.controller.batch_storage import s3_errors
from oscar_batch.controller.clock import SYSTEM_CLOCK, Clock
from oscar_batch.controller.events import EventSink
from oscar_batch.controller.job_store import BatchKey, JobStore
from oscar_batch.controller.peer_calls import PeerCalls
from oscar_batch.controller.resolver import Resolver, Waiting
from oscar_batch.core import status
from oscar_batch.core.cadence import Timing
from oscar_batch.core.remote_jobs import ListingTracker
from oscar_batch.core.spec import BatchSpec, ClusterSpec, SpecError, apply_pinned, parse_spec

log = logging.getLogger(__name__)
SHOWN_JOBS = 5


async def cancel(*, body: Any, jobs: JobStore, emit: EventSink, batches: ActiveBatches,
                 timing: Timing, resolver: Resolver, peer_calls: PeerCalls, clock: Clock = SYSTEM_CLOCK,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    uid = body["metadata"]["uid"]
    deadline = clock.monotonic() + timing.cancel_timeout
    # The controller checks the deletion mark before each invocation; once it has exited nothing new starts.
    await batches.wait_exited(uid, timeout=timing.cancel_timeout / 2)
    current = body.get("status") or {}
    finished = current.get("phase") in status.FINISHED_PHASES
    try:
        spec, _ = apply_pinned(parse_spec(body.get("spec") or {}), current.get("pinned"))
    except SpecError as error:
        if current.get("startTime"):
            emit("Warning", "CancelIncomplete", f"cannot clean up: {error}")
        else:
            emit("Normal", "Cancelled", "nothing had started: nothing to clean up")
        return
    done: list[str] = []
    left: list[str] = []

    deleted, problem = await _delete_jobs(resolver, peer_calls, spec, jobs, uid, deadline, clock, sleep)
    if deleted:
        done.append(f"deleted {deleted} Job(s) in flight" if spec.keep_jobs else f"deleted {deleted} Job(s)")
    if problem:
        left.append(problem)

    if spec.keep_manifest:
        done.append(f"kept the manifest {spec.uri(spec.manifest_key)} (spec.keepManifest)")
    else:
        removed, problem = await peer_calls.run(spec.s3_endpoint, _remove_manifest, resolver, spec, uid)
        if removed:
            done.append(f"removed the manifest {spec.uri(spec.manifest_key)}")
        if problem:
            left.append(problem)

    summary = "; ".join(done) or "nothing was left to clean up"
    stopped = "" if finished else "stopped dispatching; "
    if left:
        emit("Warning", "CancelIncomplete", f"{stopped}{summary}; left behind: {'; '.join(left)}")
    else:
        # A finished batch had nothing to cancel, only its manifest to remove.
        emit("Normal", "CleanedUp" if finished else "Cancelled", f"{stopped}{summary}")


async def _delete_jobs(resolver: Resolver, peer_calls: PeerCalls, spec: BatchSpec, jobs: JobStore, uid: str,
                       deadline: float, clock: Clock,
                       sleep: Callable[[float], Awaitable[None]]) -> tuple[int, str | None]:
    """(Jobs deleted, what was left and why) on every cluster of the batch: every Job of the batch, or those in
    flight with keepJobs."""
    deleted, left = 0, []
    for each in spec.clusters:
        count, problem = await _delete_jobs_on(each, resolver, peer_calls, spec, jobs, uid, deadline, clock, sleep)
        deleted += count
        if problem:
            left.append(problem if len(spec.clusters) == 1 else f"on cluster {each.name}, {problem}")
    return deleted, "; ".join(left) or None


async def _delete_jobs_on(each: ClusterSpec, resolver: Resolver, peer_calls: PeerCalls, spec: BatchSpec,
                          jobs: JobStore, uid: str, deadline: float, clock: Clock,
                          sleep: Callable[[float], Awaitable[None]]) -> tuple[int, str | None]:
    """The Jobs of one cluster. InCluster, each pass re-reads the Jobs index: an invocation accepted just before
    dispatch stopped shows up there a moment later. Remote, each pass reads OSCAR's job listing."""
    key = None if each.remote else jobs.key_read(uid)
    if not each.remote and not (jobs.claimed(uid) if key is None else set(_jobs_to_delete(jobs, key, spec))):
        return 0, None
    try:
        oscar = await asyncio.to_thread(resolver.oscar_client, each)
    except Waiting as waiting:
        return 0, _left_jobs(set(_jobs_to_delete(jobs, key, spec)), waiting.message) if key else \
            f"its Jobs in OSCAR: {waiting.message}"
    try:
        if each.remote:
            async def listed() -> set[str]:
                return set(await peer_calls.run(each.endpoint, _listed_jobs, oscar, spec, uid))
            return await _delete_each(oscar, peer_calls, spec, each, listed, deadline, clock, sleep)
        if key is None:
            # This process never ran the batch (it finished before a restart): which Jobs are its own follows
            # from its service, as when the batch ran.
            try:
                service = await peer_calls.run(each.endpoint, resolver.service, oscar, spec)
            except Waiting as waiting:
                return 0, f"its Jobs in OSCAR: {waiting.message}"
            key = BatchKey(uid, resolver.jobs_namespace(each, service), spec.service)
        watched = key

        async def indexed() -> set[str]:
            return set(_jobs_to_delete(jobs, watched, spec))
        return await _delete_each(oscar, peer_calls, spec, each, indexed, deadline, clock, sleep)
    finally:
        oscar.close()


def _listed_jobs(oscar: OscarClient, spec: BatchSpec, uid: str) -> list[str]:
    """The batch's Jobs in OSCAR's job listing (those in flight with keepJobs), by the names the operator gave
    them. Raises OscarError."""
    tracker = ListingTracker(uid)
    tracker.update(oscar.jobs(spec.service), now=0.0)
    return tracker.in_flight() if spec.keep_jobs else sorted(tracker.names())


async def _delete_each(oscar: OscarClient, peer_calls: PeerCalls, spec: BatchSpec, each: ClusterSpec,
                       in_flight: Callable[[], Awaitable[set[str]]], deadline: float, clock: Clock,
                       sleep: Callable[[float], Awaitable[None]]) -> tuple[int, str | None]:
    deleted: set[str] = set()
    error: OscarError | None = None
    try:
        remaining = await in_flight()
    except OscarError as failure:
        return 0, f"its Jobs in OSCAR: {failure}"
    if not remaining:
        return 0, None
    delay = 0.5
    while True:
        for name in sorted(remaining - deleted):
            left = deadline - clock.monotonic()
            if left <= 0:
                break
            try:
                # One request, retries included, must not outlast the deadline either.
                await peer_calls.run(each.endpoint, oscar.delete_job, spec.service, name,
                                     timeout=min(DEFAULT_TIMEOUT, max(left / 4, 0.5)))
                deleted.add(name)
            except OscarError as failure:
                error = failure
                if failure.status is None:
                    break  # unreachable: the rest of this pass would only fail the same way
        try:
            remaining = (await in_flight() | remaining) - deleted
        except OscarError as failure:
            error, remaining = failure, remaining - deleted
        if not remaining or clock.monotonic() + delay > deadline:
            break
        await sleep(delay)
        delay = min(delay * 2, 5.0)
    return len(deleted), (_left_jobs(remaining, str(error)) if remaining else None)


def _jobs_to_delete(jobs: JobStore, key: BatchKey, spec: BatchSpec) -> Iterable[str]:
    return jobs.in_flight(key) if spec.keep_jobs else jobs.names(key)


def _left_jobs(names: set[str], why: str | None) -> str:
    shown = ", ".join(sorted(names)[:SHOWN_JOBS]) + (f" and {len(names) - SHOWN_JOBS} more"
                                                     if len(names) > SHOWN_JOBS else "")
    return f"{len(names)} Job(s) still in OSCAR ({shown}): {why or 'they did not go away in time'}"


def _remove_manifest(resolver: Resolver, spec: BatchSpec, uid: str) -> tuple[bool, str | None]:
    """Only a manifest this very batch wrote is removed (with the objects naming the inputs it left out and those
    it skipped); anybody else's object stays."""
    where = spec.uri(spec.manifest_key)
    try:
        with s3_errors(spec):
            s3 = resolver.s3_client(spec)
            owner = manifest.owner(s3, spec, spec.manifest_key)
            if owner is None or owner.uid != uid:
                return False, None
            for key in (spec.unlisted_key, spec.skipped_key):
                if (beside := manifest.owner(s3, spec, key)) and beside.uid == uid:
                    manifest.remove(s3, spec, key)
            manifest.remove(s3, spec, spec.manifest_key)
            return True, None
    except Waiting as waiting:   # S3 down or refusing: say so and let the deletion go on
        return False, f"the manifest {where}: {waiting.message}"
