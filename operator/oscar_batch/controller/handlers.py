"""kopf wiring: settings, the index of the Jobs OSCAR creates, one daemon per unfinished OscarBatchJob and the
cancellation on delete. Thin on purpose.

The operator writes nothing under `kopf.zalando.org`: its finalizer and any handler progress use the
project's own names, and progress lives in `status.kopf`.
"""
from __future__ import annotations

from typing import Any

import kopf

from oscar_batch.clients import cluster
from oscar_batch.controller import cancel
from oscar_batch.core import invocation
from oscar_batch.controller.reconciler import ActiveBatches, BatchController, JobSeen, Timing
from oscar_batch.core.ranges import Outcome
from oscar_batch.core.status import needs_controller

FINALIZER = f"{cluster.GROUP}/finalizer"
TIMING = Timing()
BATCHES = ActiveBatches()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.StatusProgressStorage()  # status.kopf, not annotations
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=cluster.GROUP, key="last-handled-configuration")
    # One thread per running batch plus a few for the framework.
    settings.execution.max_workers = 64
    # A deleted batch's daemon exits within a tick of being stopped: wait for that, or kopf re-checks only
    # after the daemon's cancellation_timeout (30 s) and holds the finalizer that long.
    settings.background.instant_exit_timeout = 5.0


@kopf.index("batch", "v1", "jobs")
def batch_jobs(name: str, body: kopf.Body, **_: Any) -> dict[str, JobSeen] | None:
    """Jobs of OscarBatchJobs, keyed by the batch UID's first characters; other Jobs are not kept."""
    identity = invocation.identify(body)
    if identity is None:
        return None
    job_status = body.get("status") or {}
    seen = JobSeen(name=name, identity=identity, outcome=invocation.outcome(body),
                   started=job_status.get("startTime"), finished=job_status.get("completionTime"))
    return {_index_key(identity.batch_uid): seen}


def _index_key(uid: str) -> str:
    return uid.replace("-", "")[:invocation.UID_CHARS]


def has_work(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
    return needs_controller(spec, status, int(meta.get("generation") or 1))


# A finished batch has no daemon (and holds no thread); kopf starts one again when it is redriven or edited.
# The daemon never returns by itself: kopf would then never start it again.
@kopf.daemon(cluster.GROUP, cluster.VERSION, cluster.PLURAL, when=has_work, cancellation_timeout=30)
def run_batch(body: kopf.Body, stopped: kopf.DaemonStopped, batch_jobs: kopf.Index, **_: Any) -> None:
    key = _index_key(body["metadata"]["uid"])

    def jobs() -> list[JobSeen]:
        return _snapshot(lambda: list(batch_jobs.get(key, [])))

    def all_job_names() -> set[str]:
        return _snapshot(lambda: {job.name for store in list(batch_jobs.values()) for job in store})

    BatchController(body=body, jobs=jobs, all_job_names=all_job_names, stopped=stopped,
                    kube=cluster.Kube.from_environment(), emit=_emitter(body), batches=BATCHES,
                    timing=TIMING).run()


@kopf.on.delete(cluster.GROUP, cluster.VERSION, cluster.PLURAL)
def cancel_batch(body: kopf.Body, batch_jobs: kopf.Index, **_: Any) -> None:
    uid = body["metadata"]["uid"]
    key = _index_key(uid)

    def in_flight() -> list[str]:
        return _snapshot(lambda: [job.name for job in batch_jobs.get(key, [])
                                  if job.identity.belongs_to(uid) and job.outcome == Outcome.RUNNING])

    cancel.cancel(body=body, in_flight=in_flight, kube=cluster.Kube.from_environment(), emit=_emitter(body),
                  batches=BATCHES, timing=TIMING)


def _emitter(body: kopf.Body):
    def emit(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)
    return emit


def _snapshot(read):
    """Copy the index from the daemon's thread while kopf's event loop may be changing it."""
    while True:
        try:
            return read()
        except RuntimeError:  # changed size during iteration: read again
            continue
