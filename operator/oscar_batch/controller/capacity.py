"""How many ranges one batch may have in flight now, on each of its OSCAR clusters and in all: InCluster, the
planner over the operator's shared cluster snapshot (or OSCAR's own view when Nodes are forbidden), the batch's own
pods counted as its own; Remote, the planner over OSCAR's /system/status. Each cluster's slots are split among the
batches dispatching there and capped by its maxParallelism, and lowered to what runs when the batch's pods cannot be
placed; the batch's sum is capped by spec.maxParallelism."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from oscar_batch.clients import cluster
from oscar_batch.clients.oscar import OscarError
from oscar_batch.controller.active_batches import ActiveBatches
from oscar_batch.controller.batch_state import BatchState
from oscar_batch.controller.cluster_view import ClusterView
from oscar_batch.controller.job_store import BatchKey, JobStore
from oscar_batch.controller.oscar_clusters import OscarCluster
from oscar_batch.core import kueue, planner, sharing

log = logging.getLogger(__name__)
KUEUE_WAITING = "waiting for Kueue admission"


OWN_CLUSTER = ""   # the pool of slots of the cluster the operator runs in (Remote clusters: their endpoint)
# OSCAR answers these when its /system/status cannot be had (forbidden, absent, or no metrics API behind it).
STATUS_UNAVAILABLE = (403, 404, 500, 501)


def pool(cluster: OscarCluster) -> str:
    """Whose slots a cluster's batches share: the operator's own cluster's, or a Remote OSCAR's."""
    return cluster.spec.endpoint if cluster.spec.remote else OWN_CLUSTER


async def plan(*, state: BatchState, ref: str, jobs: JobStore, batches: ActiveBatches, cluster_view: ClusterView,
               kube: cluster.Kube, now: float) -> None:
    """Each cluster's parallelism for this batch (`OscarCluster.parallelism`, `.planned`), then the batch's:
    their sum within spec.maxParallelism (`state.parallelism`, `state.planned`)."""
    running_on = state.book.counts().in_flight_on
    for each in state.clusters:
        running = running_on.get(each.name, 0)
        if each.spec.remote:
            each.parallelism, each.planned = await _remote(state, each, ref, batches, running, now)
        else:
            each.parallelism, each.planned = await _in_cluster(state, each, ref, jobs, batches, cluster_view, kube,
                                                               running)
    kept = sharing.capped([each.parallelism for each in state.clusters], state.spec.max_parallelism)
    for each, slots in zip(state.clusters, kept, strict=True):
        each.parallelism = slots
    if len(state.clusters) == 1:
        state.planned = state.clusters[0].planned
    else:
        state.planned = f"{state.parallelism} range(s) in flight allowed on {len(state.clusters)} clusters: " + \
            "; ".join(f"{each.name}: {each.planned}" for each in state.clusters)


async def _in_cluster(state: BatchState, each: OscarCluster, ref: str, jobs: JobStore, batches: ActiveBatches,
                      cluster_view: ClusterView, kube: cluster.Kube, running: int) -> tuple[int, str]:
    """(parallelism on the cluster the operator runs in, explanation)."""
    spec, needs, key = state.spec, each.service.needs, each.key
    policy = planner.Policy(headroom=spec.headroom)
    own_pending = 0
    try:
        snapshot = await cluster_view.snapshot()
        if snapshot.nodes is None:
            # Without permission to list Nodes, OSCAR's own view is the next best; it counts the batches' running
            # pods as used, so they are added back.
            oscar_status = await each.on_oscar(each.oscar.cluster_status)
            plan = planner.plan_from_oscar_status(oscar_status, needs, policy)
            plan = dataclasses.replace(plan, total=plan.total + batches.running(pool(each)))
        else:
            own_jobs, mine = jobs.all_names(), {(key.namespace, name) for name in each.jobs.names()}
            plan = planner.plan_capacity(snapshot.nodes, snapshot.pods, needs, policy,
                                         ignore_pod=lambda pod: _job_of(pod) in own_jobs)
            own_pending = sum(1 for pod in snapshot.pods if _job_of(pod) in mine and _unschedulable(pod))
    except (cluster.KubeError, OscarError, ValueError) as error:
        log.warning("batch %s: cannot plan: %s", ref, error)
        return running, f"cannot plan: {error}"
    slots, message = _shared(state, each, batches, plan, running, own_pending)
    slots, waiting = await _kueue_bound(key, ref, needs, kube, each, running, slots)
    return slots, f"{waiting}; {message}" if waiting else message


async def _remote(state: BatchState, each: OscarCluster, ref: str, batches: ActiveBatches, running: int,
                  now: float) -> tuple[int, str]:
    """(parallelism on a cluster reached through OSCAR's API only, explanation): its /system/status, which counts
    the batches' running pods as used (they are added back), Jobs it cannot place lowering it to what runs."""
    if not each.reachable:
        return 0, f"not reachable: {each.problem}"
    policy = planner.Policy(headroom=state.spec.headroom)
    try:
        oscar_status = await each.on_oscar(each.oscar.cluster_status)
        plan = planner.plan_from_oscar_status(oscar_status, each.service.needs, policy)
    except OscarError as error:
        if error.status is None:
            each.cut_off(error, now)
            return 0, f"not reachable: {error}"
        if error.status not in STATUS_UNAVAILABLE:
            log.warning("batch %s: cannot plan on %s: %s", ref, each.name, error)
            return running, f"cannot plan: {error}"
        fallback = each.spec.max_parallelism or state.spec.max_parallelism or 1
        return fallback, (f"{fallback} range(s) in flight allowed (maxParallelism"
                          f"{'' if each.spec.max_parallelism or state.spec.max_parallelism else ' unset: 1'}): "
                          f"OSCAR's capacity is not readable ({error}); set maxParallelism to what the cluster fits")
    except ValueError as error:
        log.warning("batch %s: cannot plan on %s: %s", ref, each.name, error)
        return running, f"cannot plan: {error}"
    # OSCAR counts the running pods of every batch here as used: theirs to share, so added back.
    plan = dataclasses.replace(plan, total=plan.total + batches.running(pool(each)))
    slots, message = _shared(state, each, batches, plan, running, each.jobs.unplaced(now) or 0)
    return slots, message


def _shared(state: BatchState, each: OscarCluster, batches: ActiveBatches, plan: planner.Plan, running: int,
            own_pending: int) -> tuple[int, str]:
    """The batch's share of what a cluster fits, within its maxParallelism, lowered to what runs when the batch's
    pods cannot be placed there."""
    # Headroom must not starve a batch forever: when the cluster has a free slot but the share rounds to
    # none (one slot × 0.8), the batch still takes one.
    usable = plan.total or min(plan.cluster_slots, 1)
    slots, sharing_batches = batches.share(each.key.uid, usable, pool(each))
    if each.spec.max_parallelism:
        slots = min(slots, each.spec.max_parallelism)
    if own_pending:
        # Pods of ours that the cluster cannot place prove the plan optimistic: keep what runs.
        slots = min(slots, max(running - own_pending, 0))
    message = f"{slots} range(s) in flight allowed; the cluster fits {plan.cluster_slots} invocation(s)"
    if sharing_batches > 1:
        message += f", shared by {sharing_batches} dispatching batches"
    if own_pending:
        message += f"; {own_pending} pod(s) of this batch cannot be scheduled"
    if plan.explanation:
        message += f": {plan.explanation}"
    return slots, message


async def _kueue_bound(key: BatchKey, ref: str, needs: planner.Needs, kube: cluster.Kube, each: OscarCluster,
                       running: int, slots: int) -> tuple[int, str]:
    """The owner's ClusterQueue quota bounds what may be in flight, whatever the nodes could take. Without
    Kueue's API to read, what Kueue admits is the bound, as for pods the scheduler cannot place."""
    managed = each.jobs.kueue()
    if managed is None:
        return slots, ""
    local_queue, queued = managed
    namespace = key.namespace
    try:
        cluster_queue = await asyncio.to_thread(kube.cluster_queue_of, namespace, local_queue)
    except cluster.KubeError as error:
        log.warning("batch %s: cannot read Kueue's quota: %s", ref, error)
        cluster_queue = None
    if cluster_queue is None:
        if not queued:
            return slots, ""
        return (min(slots, max(running - queued, 0)),
                f"{KUEUE_WAITING}: {queued} Job(s) queued in {namespace}/{local_queue} "
                "(its ClusterQueue is not readable)")
    room = kueue.room(cluster_queue, needs, admitted=running - queued)
    waiting = f"{KUEUE_WAITING}: {room.describe()}" if queued else ""
    return min(slots, room.slots), waiting


def _job_of(pod: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of the Job that made the pod."""
    metadata = pod.get("metadata", {})
    labels = metadata.get("labels") or {}
    return metadata.get("namespace") or "", labels.get("batch.kubernetes.io/job-name") or labels.get("job-name") or ""


def _unschedulable(pod: Mapping[str, Any]) -> bool:
    if pod.get("status", {}).get("phase") != "Pending":
        return False
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
               for c in pod.get("status", {}).get("conditions") or ())
