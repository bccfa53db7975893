"""kopf wiring: settings, the start and stop of the Jobs watch, one async daemon per unfinished OscarBatchJob and
the cancellation on delete. Thin on purpose; what they share is in an `OperatorMemo` (see `cli.run`), not in
globals.

The operator writes nothing under `kopf.zalando.org`: its finalizer and any handler progress use the
project's own names, and progress lives in `status.kopf`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import pathlib
import socket
from typing import Any

import kopf

from oscar_batch.clients import cluster
from oscar_batch.controller import cancel
from oscar_batch.controller.active_batches import ActiveBatches
from oscar_batch.controller.batch_controller import BatchController
from oscar_batch.controller.cluster_view import ClusterView
from oscar_batch.controller.events import EVENT_NAME_PREFIX, EventPoster
from oscar_batch.controller.job_store import JobStore
from oscar_batch.controller.job_watch import JobWatch
from oscar_batch.controller.metrics import Metrics
from oscar_batch.controller.oscar_clusters import SharedListings
from oscar_batch.controller.peer_calls import PeerCalls
from oscar_batch.controller.resolver import IO_THREADS, PEER_SHARE, PEER_THREADS, KnownSecrets, Resolver
from oscar_batch.core.cadence import Timing
from oscar_batch.core.endpoints import EndpointPolicy

FINALIZER = f"{cluster.GROUP}/finalizer"
# Who Events say they come from (`kubectl describe`'s "From", an Event's reportingComponent), not "kopf".
REPORTING_COMPONENT = "oscar-batch-operator"
EVENTS_DRAIN_SECONDS = 5.0   # at exit, for the Events still queued (a cancellation's last word, say)
PEERING_API = "kopf.dev/v1"   # the group and version of crds/peering.yaml (kopf also knows zalando.org/v1)


@dataclasses.dataclass(kw_only=True)
class OperatorMemo:
    """Everything the handlers share, given to `kopf.run(memo=…)`. kopf hands each object's handlers a shallow
    copy of it (`copy.copy`, made when the object is first seen): the objects below stay shared by all, while a
    field assigned in a handler (`cancelled`) belongs to that one object."""
    timing: Timing
    namespaces: list[str]             # those watched, none for all
    kubeconfig: pathlib.Path | None   # the file given, None to find credentials as `cluster.kube_config` does
    peering: str | None               # the kopf peering object when replicas share the work, None standalone
    peering_lifetime: int
    endpoints: EndpointPolicy         # what batches may name
    metrics: Metrics
    kube: cluster.Kube
    jobs: JobStore
    batches: ActiveBatches
    secrets: KnownSecrets
    events: EventPoster
    peer_calls: PeerCalls
    cluster_view: ClusterView
    listings: SharedListings          # Remote clusters' job listings, read once for the batches of a service
    job_watches: list[JobWatch]
    event_posting: asyncio.Task[None] | None = None   # the EventPoster's task, from start-up to clean-up
    cancelled: bool = False   # this object's copy only: its cancellation ran


def memo(timing: Timing, namespaces: list[str], metrics: Metrics, endpoints: EndpointPolicy, *,
         kubeconfig: pathlib.Path | None = None, peering: str | None = None, peering_lifetime: int = 60,
         remote_only: bool = False) -> OperatorMemo:
    """What the handlers share. `remote_only`: no Jobs watch (every batch's clusters are Remote)."""
    kube = cluster.Kube.from_environment(pool_size=IO_THREADS, kubeconfig=kubeconfig)
    jobs = JobStore()
    scopes = [] if remote_only else _scopes(namespaces)
    jobs.watching(scopes)
    return OperatorMemo(timing=timing, namespaces=list(namespaces), kubeconfig=kubeconfig, peering=peering,
                        peering_lifetime=peering_lifetime, endpoints=endpoints, metrics=metrics, kube=kube,
                        jobs=jobs, batches=ActiveBatches(), secrets=KnownSecrets(),
                        events=EventPoster(kube, REPORTING_COMPONENT, socket.gethostname()),
                        peer_calls=PeerCalls(PEER_THREADS, PEER_SHARE),
                        cluster_view=ClusterView(kube, max_age=timing.min_replan), listings=SharedListings(),
                        job_watches=[JobWatch(kube, jobs, namespace) for namespace in scopes])


def _scopes(namespaces: list[str]) -> list[str | None]:
    return list(namespaces) or [None]


@kopf.on.login()
async def login(memo: OperatorMemo, **_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from the same source as the operator's own client (`cluster.kube_config`): kopf's
    default login tries the in-cluster ServiceAccount first and would ignore the kubeconfig given. Read again at
    each login, so that kopf's re-login after a 401 picks up a rotated token; the files are read off the loop."""
    return await asyncio.to_thread(_connection_info, memo.kubeconfig)


def _connection_info(kubeconfig: pathlib.Path | None) -> kopf.ConnectionInfo:
    config = cluster.kube_config(kubeconfig)
    ca, cert, key = (config.cluster.get("certificate-authority"), config.user.get("client-certificate"),
                     config.user.get("client-key"))
    return kopf.ConnectionInfo(
        server=config.cluster["server"], ca_path=ca.filename() if ca else None,
        insecure=config.cluster.get("insecure-skip-tls-verify"), username=config.user.get("username"),
        password=config.user.get("password"), token=config.user.get("token"),
        certificate_path=cert.filename() if cert else None, private_key_path=key.filename() if key else None,
        default_namespace=config.namespace, proxy_url=config.cluster.get("proxy-url"))


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: OperatorMemo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.StatusProgressStorage()  # status.kopf, not annotations
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=cluster.GROUP, key="last-handled-configuration")
    # The batches' Events are the operator's own (`EventPoster`: names that cannot collide); kopf posts only its
    # warnings and errors (a handler that raised), not a "Handler succeeded" per batch.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = REPORTING_COMPONENT
    settings.posting.reporting_instance = socket.gethostname()   # in a cluster, the operator's pod
    settings.posting.event_name_prefix = EVENT_NAME_PREFIX
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
    memo.event_posting = asyncio.create_task(memo.events.run(), name="oscar-batch events")


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
async def stop_watching(memo: OperatorMemo, **_: Any) -> None:
    for watch in memo.job_watches:
        watch.stop()
    await memo.events.drain(timeout=EVENTS_DRAIN_SECONDS)
    if memo.event_posting is not None:
        memo.event_posting.cancel()
    memo.peer_calls.shutdown()


# One daemon per batch for the batch's whole life; a finished batch's daemon idles (a coroutine, no thread)
# until a redrive or an edit. Not a `when=` filter: kopf does not start a daemon again while the one its
# filter stopped is still exiting, and a batch edited at that moment would then never be picked up. The
# daemon never returns by itself either: kopf would never start it again.
@kopf.daemon(cluster.GROUP, cluster.VERSION, cluster.PLURAL, cancellation_timeout=30)
async def run_batch(body: kopf.Body, stopped: kopf.DaemonStopped, memo: OperatorMemo, **_: Any) -> None:
    meta = body["metadata"]
    # Secrets are read in the batch's own namespace only.
    resolver = Resolver(memo.kube, meta["namespace"], memo.endpoints, known=memo.secrets, uid=meta["uid"])
    await BatchController(body=body, jobs=memo.jobs, batches=memo.batches, cluster_view=memo.cluster_view,
                          stopped=stopped, kube=memo.kube, emit=memo.events.emitter(body), timing=memo.timing,
                          resolver=resolver, peer_calls=memo.peer_calls, metrics=memo.metrics,
                          listings=memo.listings).run()


@kopf.on.delete(cluster.GROUP, cluster.VERSION, cluster.PLURAL)
async def cancel_batch(body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
    uid = body["metadata"]["uid"]
    if memo.cancelled:
        # kopf calls a deletion handler again when the daemon took longer to exit than it waited; once is enough.
        return
    # Its Secrets may be gone already (its namespace is being deleted): what the batch last read from them will do.
    resolver = Resolver(memo.kube, body["metadata"]["namespace"], memo.endpoints, known=memo.secrets, uid=uid,
                        recall_missing=True)
    await cancel.cancel(body=body, jobs=memo.jobs, emit=memo.events.emitter(body), batches=memo.batches,
                        timing=memo.timing, resolver=resolver, peer_calls=memo.peer_calls)
    memo.jobs.forget_batch(uid)
    memo.cancelled = True
    memo.secrets.forget(uid)
