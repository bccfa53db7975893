"""Deleting an OscarBatchJob cancels it, behind the operator's finalizer: dispatch stops, its Jobs are deleted
through OSCAR (only those still in flight with `spec.keepJobs`), and the manifest the batch wrote is removed
(unless `spec.keepManifest`).

Bounded: after `Timing.cancel_timeout` the finalizer is released whatever is left, and an Event names what was
left behind and why, so a dead OSCAR never keeps an object from being deleted.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from oscar_batch.clients import cluster, manifest
from oscar_batch.clients.oscar import DEFAULT_TIMEOUT, OscarError
from oscar_batch.controller.registry import ActiveBatches, Timing
from oscar_batch.controller.reporter import EventSink
from oscar_batch.controller.resolver import Resolver, Waiting, storage_waiting
from oscar_batch.core import status
from oscar_batch.core.spec import SpecError, apply_pinned, parse_spec

log = logging.getLogger(__name__)
SHOWN_JOBS = 5


async def cancel(*, body: Any, in_flight: Callable[[], Iterable[str]], every_job: Callable[[], Iterable[str]],
                 kube: cluster.Kube, emit: EventSink,
                 batches: ActiveBatches, timing: Timing, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, resolver: Resolver | None = None) -> None:
    metadata = body["metadata"]
    uid, namespace = metadata["uid"], metadata["namespace"]
    deadline = clock() + timing.cancel_timeout
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
    resolver = resolver or Resolver(kube, namespace)
    done: list[str] = []
    left: list[str] = []

    deleted, problem = await _delete_jobs(resolver, spec, in_flight if spec.keep_jobs else every_job,
                                          deadline, clock, sleep)
    if deleted:
        done.append(f"deleted {deleted} Job(s) in flight" if spec.keep_jobs else f"deleted {deleted} Job(s)")
    if problem:
        left.append(problem)

    if spec.keep_manifest:
        done.append(f"kept the manifest {spec.uri(spec.manifest_key)} (spec.keepManifest)")
    else:
        removed, problem = await asyncio.to_thread(_remove_manifest, resolver, spec, uid)
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


async def _delete_jobs(resolver: Resolver, spec, in_flight: Callable[[], Iterable[str]], deadline: float,
                       clock: Callable[[], float],
                       sleep: Callable[[float], Awaitable[None]]) -> tuple[int, str | None]:
    """(Jobs deleted, what was left and why). Each pass re-reads the Jobs index: an invocation accepted just
    before dispatch stopped shows up there a moment later."""
    remaining = set(in_flight())
    if not remaining:
        return 0, None
    try:
        oscar = await asyncio.to_thread(resolver.oscar_client, spec)
    except Waiting as waiting:
        return 0, _left_jobs(remaining, waiting.message)
    deleted: set[str] = set()
    error: OscarError | None = None
    delay = 0.5
    try:
        while True:
            for name in sorted(remaining - deleted):
                left = deadline - clock()
                if left <= 0:
                    break
                try:
                    # One request, retries included, must not outlast the deadline either.
                    await asyncio.to_thread(oscar.delete_job, spec.service, name,
                                            timeout=min(DEFAULT_TIMEOUT, max(left / 4, 0.5)))
                    deleted.add(name)
                except OscarError as failure:
                    error = failure
                    if failure.status is None:
                        break  # unreachable: the rest of this pass would only fail the same way
            remaining = (set(in_flight()) | remaining) - deleted
            if not remaining or clock() + delay > deadline:
                break
            await sleep(delay)
            delay = min(delay * 2, 5.0)
    finally:
        oscar.close()
    return len(deleted), (_left_jobs(remaining, str(error)) if remaining else None)


def _left_jobs(names: set[str], why: str | None) -> str:
    shown = ", ".join(sorted(names)[:SHOWN_JOBS]) + (f" and {len(names) - SHOWN_JOBS} more"
                                                     if len(names) > SHOWN_JOBS else "")
    return f"{len(names)} Job(s) still in OSCAR ({shown}): {why or 'they did not go away in time'}"


def _remove_manifest(resolver: Resolver, spec, uid: str) -> tuple[bool, str | None]:
    """Only a manifest this very batch wrote is removed (with the object naming the inputs it left out);
    anybody else's object stays."""
    where = spec.uri(spec.manifest_key)
    try:
        s3 = resolver.s3_client(spec)
        owner = manifest.owner(s3, spec, spec.manifest_key)
        if owner is None or owner.uid != uid:
            return False, None
        if (beside := manifest.owner(s3, spec, spec.unlisted_key)) and beside.uid == uid:
            manifest.remove(s3, spec, spec.unlisted_key)
        manifest.remove(s3, spec, spec.manifest_key)
        return True, None
    except Waiting as waiting:
        return False, f"the manifest {where}: {waiting.message}"
    except Exception as error:  # noqa: BLE001 - S3 down or refusing: say so and let the deletion go on
        return False, f"the manifest {where}: {storage_waiting(error, spec).message}"
