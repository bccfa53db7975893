"""Prometheus metrics (`prometheus-client`), served by `oscar-batch run --metrics HOST:PORT` at /metrics.

Per batch (labels `namespace`, `batch`), while the batch runs in this replica: items and invocations by state and
planned slots, set from every status patch the API server took, so they say what status says; per OSCAR cluster of
the batch (label `cluster`), its planned and used slots, items done there and whether it is reachable, from the
status's `clusters`; invocations accepted, by outcome and retries, per cluster, counted as Jobs end; the time from
the Job watch seeing a Job end to a status patch recording it. For the operator: OSCAR round trips of `POST /job`,
and problems with OSCAR (by cluster), S3 and the Kubernetes API by kind.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from oscar_batch.controller.clock import SYSTEM_CLOCK, Clock
from oscar_batch.core.ranges import Change

BATCH = ("namespace", "batch")
PER_CLUSTER = (*BATCH, "cluster")
# Which peer a problem the batch reports comes from, by the reason it reports (the rest is the user's spec).
PEER_OF_REASON = {
    "OscarUnavailable": "oscar", "OscarUnauthorized": "oscar", "TokenRefreshFailed": "oscar",
    "ServiceNotFound": "oscar",
    "ServiceTokenMissing": "oscar", "InvocationFailed": "oscar",
    "StorageUnavailable": "s3", "BucketNotFound": "s3",
    "SecretNotFound": "kubernetes", "SecretUnreadable": "kubernetes", "JobsNotListed": "kubernetes",
}
OUTCOME_OF_CHANGE = {Change.SUCCEEDED: "succeeded", Change.SPLIT: "failed", Change.RETRIED: "failed",
                     Change.ITEM_FAILED: "failed", Change.DISRUPTED: "disrupted", Change.RESUMED: "failed",
                     Change.DUPLICATE: "succeeded"}
OUTCOMES = ("succeeded", "failed", "disrupted")
SLOT_KINDS = ("planned", "used")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        r = self.registry
        self.items = Gauge("oscar_batch_items", "Items (manifest lines) of a batch by state: pending, running, "
                           "succeeded, failed", [*BATCH, "state"], registry=r)
        self.in_flight = Gauge("oscar_batch_invocations_in_flight", "Invocations in flight by state: running "
                               "(all of them), queued (held back by Kueue)", [*BATCH, "state"], registry=r)
        self.slots = Gauge("oscar_batch_slots", "Slots of a batch: planned (parallelism allowed), used (invocations "
                           "in flight)", [*BATCH, "kind"], registry=r)
        self.last_progress = Gauge("oscar_batch_last_progress_timestamp_seconds", "When the batch last had more items "
                                   "succeeded or failed (Unix time)", BATCH, registry=r)
        self.cluster_slots = Gauge("oscar_batch_cluster_slots", "Slots of a batch on one OSCAR cluster: planned (its "
                                   "parallelism there), used (invocations running there)", [*PER_CLUSTER, "kind"],
                                   registry=r)
        self.cluster_items_succeeded = Gauge("oscar_batch_cluster_items_succeeded", "Items of a batch that "
                                             "succeeded on one OSCAR cluster", PER_CLUSTER, registry=r)
        self.cluster_reachable = Gauge("oscar_batch_cluster_reachable", "Whether one OSCAR cluster of a batch is "
                                       "reachable (1) or not (0), as the batch's status says", PER_CLUSTER, registry=r)
        self.outcomes = Counter("oscar_batch_invocation_outcomes", "Invocations ended, by OSCAR cluster and outcome: "
                                "succeeded, failed (the service's failure), disrupted (evicted, node lost)",
                                [*PER_CLUSTER, "outcome"], registry=r)
        self.invocations = Counter("oscar_batch_invocations", "Invocations an OSCAR cluster accepted", PER_CLUSTER,
                                   registry=r)
        self.retries = Counter("oscar_batch_retries", "Invocations made again after the service failed them, by the "
                               "OSCAR cluster that failed them", PER_CLUSTER, registry=r)
        self.dispatch_seconds = Histogram("oscar_batch_dispatch_seconds", "Round trip of one POST /job to OSCAR",
                                          registry=r, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.status_seconds = Histogram("oscar_batch_status_latency_seconds", "From the Job watch seeing a Job end "
                                        "to a status patch recording it", registry=r,
                                        buckets=(.25, .5, 1, 2, 3, 4, 5, 7.5, 10, 20, 60))
        self.peer_errors = Counter("oscar_batch_peer_errors", "Problems with OSCAR, S3 or the Kubernetes API, by "
                                   "peer, kind (the reason the batch reports, or the failed call) and OSCAR cluster "
                                   "(empty for S3, Kubernetes, or when not known)", ["peer", "kind", "cluster"],
                                   registry=r)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def batch(self, namespace: str, name: str) -> BatchMetrics:
        return BatchMetrics(self, namespace, name)

    def peer_error(self, peer: str, kind: str, cluster: str = "") -> None:
        self.peer_errors.labels(peer, kind, cluster).inc()


class BatchMetrics:
    """One batch's share of the metrics, and the Jobs that ended but no accepted status patch records yet."""

    def __init__(self, metrics: Metrics, namespace: str, name: str) -> None:
        self.metrics = metrics
        self.labels = (namespace, name)
        self._ended_at: list[float] = []    # when the watch saw each (the clock's monotonic seconds)
        self._settled = -1
        self._clusters: set[str] = set()            # every cluster name this batch has a series for, for forget()
        self._status_clusters: set[str] = set()     # those in the last status's `clusters`, with gauges

    def status_taken(self, patch: Mapping[str, Any]) -> None:
        m, labels = self.metrics, self.labels
        if "items" in patch:
            for state in ("pending", "running", "succeeded", "failed"):
                m.items.labels(*labels, state).set(patch["items"].get(state, 0))
            settled = patch["items"].get("succeeded", 0) + patch["items"].get("failed", 0)
            if settled != self._settled:
                self._settled = settled
                m.last_progress.labels(*labels).set(m.clock.wall().timestamp())
        if "invocations" in patch:
            for state in ("running", "queued"):
                m.in_flight.labels(*labels, state).set(patch["invocations"].get(state, 0))
            m.slots.labels(*labels, "used").set(patch["invocations"].get("running", 0))
        if "parallelism" in patch:
            m.slots.labels(*labels, "planned").set(patch["parallelism"])
        if "clusters" in patch:
            self._clusters_taken(patch["clusters"])
        if "completedItems" in patch:
            now = m.clock.monotonic()
            for seen in self._ended_at:
                m.status_seconds.observe(max(now - seen, 0.0))
            self._ended_at.clear()

    def _clusters_taken(self, clusters: list[Mapping[str, Any]]) -> None:
        # A merge patch replaces a list whole: the clusters listed are all the status has, and a cluster no longer
        # listed (the spec dropped it) loses its gauges. Its counters stay: what it did was done.
        m, labels = self.metrics, self.labels
        listed = {cluster["name"] for cluster in clusters}
        for gone in self._status_clusters - listed:
            self._remove_gauges(gone)
        self._status_clusters = listed
        self._clusters |= listed
        for cluster in clusters:
            series = (*labels, cluster["name"])
            m.cluster_slots.labels(*series, "planned").set(cluster.get("parallelism", 0))
            m.cluster_slots.labels(*series, "used").set(cluster.get("running", 0))
            m.cluster_items_succeeded.labels(*series).set(cluster.get("succeeded", 0))
            # a cluster the status does not say is unreachable is not alerted on
            m.cluster_reachable.labels(*series).set(1 if cluster.get("reachable", True) else 0)

    def ended(self, change: Change | None, seen_at: float, cluster: str) -> None:
        if change is not None:
            self._clusters.add(cluster)
            self.metrics.outcomes.labels(*self.labels, cluster, OUTCOME_OF_CHANGE[change]).inc()
            if change in (Change.SPLIT, Change.RETRIED, Change.RESUMED):
                self.metrics.retries.labels(*self.labels, cluster).inc()
        if seen_at:
            self._ended_at.append(seen_at)

    def invoked(self, seconds: float, cluster: str) -> None:
        self._clusters.add(cluster)
        self.metrics.invocations.labels(*self.labels, cluster).inc()
        self.metrics.dispatch_seconds.observe(seconds)

    def problem(self, reason: str, cluster: str = "") -> None:
        peer = PEER_OF_REASON.get(reason)
        if peer is not None:
            self.metrics.peer_error(peer, reason, cluster)

    def forget(self) -> None:
        """The batch's series go away when it has its verdict, is deleted, or this replica stops serving it (kopf
        peering paused it, or it exits): only unfinished batches have series, and each in one replica at most, so
        a join on (namespace, batch) never meets a finished batch's or another replica's leftovers."""
        m = self.metrics
        for metric, values in ((m.items, ("pending", "running", "succeeded", "failed")),
                               (m.in_flight, ("running", "queued")), (m.slots, SLOT_KINDS)):
            for value in values:
                with contextlib.suppress(KeyError):
                    metric.remove(*self.labels, value)
        with contextlib.suppress(KeyError):
            m.last_progress.remove(*self.labels)
        for cluster in self._clusters:
            self._remove_gauges(cluster)
            for outcome in OUTCOMES:
                with contextlib.suppress(KeyError):
                    m.outcomes.remove(*self.labels, cluster, outcome)
            for counter in (m.invocations, m.retries):
                with contextlib.suppress(KeyError):
                    counter.remove(*self.labels, cluster)
        self._clusters.clear()
        self._status_clusters.clear()

    def _remove_gauges(self, cluster: str) -> None:
        m, series = self.metrics, (*self.labels, cluster)
        for kind in SLOT_KINDS:
            with contextlib.suppress(KeyError):
                m.cluster_slots.remove(*series, kind)
        for gauge in (m.cluster_items_succeeded, m.cluster_reachable):
            with contextlib.suppress(KeyError):
                gauge.remove(*series)
