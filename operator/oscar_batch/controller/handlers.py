"""kopf wiring: settings, the start and stop of the Jobs watch, one async daemon per unfinished OscarBatchJob and
the cancellation on delete. Thin on purpose; what they share is in `memo` (see `cli.run`), not in globals.

The operator writes nothing under `kopf.zalando.org`: its finalizer and any handler progress use the
project's own names, and progress lives in `status.kopf`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import socket
from typing import Any

import kopf

from oscar_batch.clients import cluster
from oscar_batch.controller import cancel
from oscar_batch.controller.job_watch import JobWatch
from oscar_batch.controller.metrics import Metrics
from oscar_batch.controller.peer_calls import PeerCalls
from oscar_batch.controller.reconciler import BatchController
from oscar_batch.controller.registry import ActiveBatches, ClusterView, JobStore, Timing
from oscar_batch.controller.resolver import Resolver
from oscar_batch.core.endpoints import EndpointPolicy

FINALIZER = f"{cluster.GROUP}/finalizer"
# Who Events say they come from (`kubectl describe`'s "From", an Event's reportingComponent), not "kopf".
REPORTING_COMPONENT = "oscar-batch-operator"
# Blocking calls (pykube-ng, minio, requests) run off the event loop; a slow call holds a thread only for one
# call, never for a batch's life. The Kubernetes API's in the loop's default pool, the batches' peers' (OSCAR,
# S3) in a pool of their own, of which one endpoint may hold half: a stalled peer leaves the others, and every
# batch's status, their threads.
IO_THREADS = 32
PEER_THREADS, PEER_SHARE = 32, 16
PEERING_API = "kopf.dev/v1"   # the group and version of crds/peering.yaml (kopf also knows zalando.org/v1)


def memo(timing: Timing, namespaces: list[str], metrics: Metrics, endpoints: EndpointPolicy, *,
         peering: str | None = None, peering_lifetime: int = 60) -> kopf.Memo:
    """Everything the handlers share, for `kopf.run(memo=…)`; `namespaces`: those watched, none for all;
    `endpoints`: what batches may name; `peering`: the name of the kopf peering object when replicas share the
    work, None when standalone."""
    kube = cluster.Kube.from_environment(pool_size=IO_THREADS)
    jobs = JobStore()
    jobs.watching(namespaces)
    return kopf.Memo(timing=timing, kube=kube, jobs=jobs, batches=ActiveBatches(), metrics=metrics,
                     endpoints=endpoints, peer_calls=PeerCalls(PEER_THREADS, PEER_SHARE),
                     namespaces=list(namespaces), peering=peering, peering_lifetime=peering_lifetime,
                     cluster_view=ClusterView(kube, max_age=timing.min_replan),
                     job_watches=[JobWatch(kube, jobs, namespace) for namespace in _scopes(namespaces)])


def _scopes(namespaces: list[str]) -> list[str | None]:
    return list(namespaces) or [None]


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.StatusProgressStorage()  # status.kopf, not annotations
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=cluster.GROUP, key="last-handled-configuration")
    settings.posting.reporting_component = REPORTING_COMPONENT
    settings.posting.reporting_instance = socket.gethostname()   # in a cluster, the operator's pod
    settings.posting.event_name_prefix = "oscar-batch-"
    # A deleted batch's daemon exits within a tick of being stopped: wait for that, or kopf re-checks only
    # after the daemon's cancellation_timeout (30 s) and holds the finalizer that long.
    settings.background.instant_exit_timeout = 5.0
    if memo.namespaces:
        # Named namespaces are watched as named: kopf then lists neither Namespaces nor CRDs, so that a
        # namespaced install needs no ClusterRole (a CRD installed later is noticed at the next start).
        settings.scanning.disabled = True
    settings.peering.lifetime = memo.peering_lifetime
    if memo.peering:
        # Before kopf's first keep-alive (its watchers start after the start-up handlers): a peering object
        # that appeared only later would let every replica act until they saw each other.
        await asyncio.to_thread(_ensure_peerings, memo.kube, memo.peering, memo.namespaces)
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="oscar-batch-io"))
    for watch in memo.job_watches:
        watch.start()


def _ensure_peerings(kube: cluster.Kube, name: str, namespaces: list[str]) -> None:
    """kopf's peering object: a ClusterKopfPeering for a cluster-wide operator, a KopfPeering in each watched
    namespace for a namespaced one (kopf keeps the peers of each apart). Created unless it exists."""
    for namespace in _scopes(namespaces):
        kind = "KopfPeering" if namespace else "ClusterKopfPeering"
        metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
        try:
            kube.create(f"{kind.lower()}s", {"apiVersion": PEERING_API, "kind": kind, "metadata": metadata})
        except cluster.KubeError as error:
            if error.code != 409:   # AlreadyExists: another replica, or an earlier start, made it
                raise


@kopf.on.cleanup()
async def stop_watching(memo: kopf.Memo, **_: Any) -> None:
    for watch in memo.job_watches:
        watch.stop()
    memo.peer_calls.shutdown()


# One daemon per batch for the batch's whole life; a finished batch's daemon idles (a coroutine, no thread)
# until a redrive or an edit. Not a `when=` filter: kopf does not start a daemon again while the one its
# filter stopped is still exiting, and a batch edited at that moment would then never be picked up. The
# daemon never returns by itself either: kopf would never start it again.
@kopf.daemon(cluster.GROUP, cluster.VERSION, cluster.PLURAL, cancellation_timeout=30)
async def run_batch(body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any) -> None:
    await BatchController(body=body, jobs=memo.jobs, batches=memo.batches, cluster_view=memo.cluster_view,
                          stopped=stopped, kube=memo.kube, emit=_emitter(body), timing=memo.timing,
                          resolver=_resolver(body, memo), peer_calls=memo.peer_calls, metrics=memo.metrics).run()


@kopf.on.delete(cluster.GROUP, cluster.VERSION, cluster.PLURAL)
async def cancel_batch(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    uid = body["metadata"]["uid"]
    if memo.get("cancelled"):
        # kopf calls a deletion handler again when the daemon took longer to exit than it waited; once is enough.
        return
    await cancel.cancel(body=body, jobs=memo.jobs, emit=_emitter(body), batches=memo.batches, timing=memo.timing,
                        resolver=_resolver(body, memo), peer_calls=memo.peer_calls)
    memo.jobs.forget_batch(uid)
    memo["cancelled"] = True
    memo.metrics.batch(body["metadata"]["namespace"], body["metadata"]["name"]).forget()


def _resolver(body: kopf.Body, memo: kopf.Memo) -> Resolver:
    """Secrets are read in the batch's own namespace only."""
    return Resolver(memo.kube, body["metadata"]["namespace"], memo.endpoints)


def _emitter(body: kopf.Body):
    def emit(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)
    return emit
