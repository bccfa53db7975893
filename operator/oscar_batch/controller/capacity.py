"""How many ranges one batch may have in flight now: the planner over the operator's shared cluster snapshot
(or OSCAR's own view when Nodes are forbidden), the batch's own pods counted as its own, split among the
dispatching batches, capped by maxParallelism, and lowered to what runs when the batch's pods cannot be placed."""
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
from oscar_batch.core import kueue, planner

log = logging.getLogger(__name__)
KUEUE_WAITING = "waiting for Kueue admission"


async def parallelism(*, state: BatchState, ref: str, jobs: JobStore, batches: ActiveBatches,
                      cluster_view: ClusterView, kube: cluster.Kube) -> tuple[int, str]:
    """(parallelism for this batch, explanation)."""
    spec, needs, peers, key = state.spec, state.service.needs, state.peers, state.key
    running = state.book.counts().in_flight
    policy = planner.Policy(headroom=spec.headroom)
    own_pending = 0
    try:
        snapshot = await cluster_view.snapshot()
        if snapshot.nodes is None:
            # Without permission to list Nodes, OSCAR's own view is the next best; it counts our running
            # pods as used, so they are added back.
            oscar_status = await peers.on_oscar(peers.oscar.cluster_status)
            plan = planner.plan_from_oscar_status(oscar_status, needs, policy)
            plan = dataclasses.replace(plan, total=plan.total + running)
        else:
            own_jobs, mine = jobs.all_names(), {(key.namespace, name) for name in jobs.names(key)}
            plan = planner.plan_capacity(snapshot.nodes, snapshot.pods, needs, policy,
                                         ignore_pod=lambda pod: _job_of(pod) in own_jobs)
            own_pending = sum(1 for pod in snapshot.pods if _job_of(pod) in mine and _unschedulable(pod))
    except (cluster.KubeError, OscarError, ValueError) as error:
        log.warning("batch %s: cannot plan: %s", ref, error)
        return running, f"cannot plan: {error}"
    # Headroom must not starve a batch forever: when the cluster has a free slot but the share rounds to
    # none (one slot × 0.8), the batch still takes one.
    usable = plan.total or min(plan.cluster_slots, 1)
    slots, sharing = batches.share(key.uid, usable)
    if spec.max_parallelism:
        slots = min(slots, spec.max_parallelism)
    if own_pending:
        # Pods of ours that the scheduler cannot place prove the plan optimistic: keep what runs.
        slots = min(slots, max(running - own_pending, 0))
    slots, waiting = await _kueue_bound(key, ref, needs, kube, jobs, running, slots)
    message = f"{slots} range(s) in flight allowed; the cluster fits {plan.cluster_slots} invocation(s)"
    if sharing > 1:
        message += f", shared by {sharing} dispatching batches"
    if own_pending:
        message += f"; {own_pending} pod(s) of this batch cannot be scheduled"
    if plan.explanation:
        message += f": {plan.explanation}"
    return slots, f"{waiting}; {message}" if waiting else message


async def _kueue_bound(key: BatchKey, ref: str, needs: planner.Needs, kube: cluster.Kube, jobs: JobStore, running: int,
                       slots: int) -> tuple[int, str]:
    """The owner's ClusterQueue quota bounds what may be in flight, whatever the nodes could take. Without
    Kueue's API to read, what Kueue admits is the bound, as for pods the scheduler cannot place."""
    managed = jobs.kueue(key)
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
