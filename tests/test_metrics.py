"""BatchMetrics against a real prometheus-client registry: the per-cluster series say what status and the Jobs
say, and a forgotten batch leaves no series behind, whichever clusters it used."""
from __future__ import annotations

import datetime

import pytest

from oscar_batch.controller.metrics import Metrics
from oscar_batch.core.ranges import Change

BATCH = {"namespace": "ns", "batch": "b"}


class Clock:
    def monotonic(self) -> float:
        return 100.0

    def wall(self) -> datetime.datetime:
        return datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


def series(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in metrics.registry.collect() for sample in family.samples
            if not sample.name.endswith("_created")}


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return series(metrics).get((name, tuple(sorted(labels.items()))))


def names_of_batch(metrics: Metrics, namespace: str = "ns", batch: str = "b") -> set[str]:
    return {name for name, labels in series(metrics) if ("namespace", namespace) in labels
            and ("batch", batch) in labels}


EVERY_BATCH_METRIC = {
    "oscar_batch_items", "oscar_batch_invocations_in_flight", "oscar_batch_slots",
    "oscar_batch_last_progress_timestamp_seconds", "oscar_batch_cluster_slots", "oscar_batch_cluster_items_succeeded",
    "oscar_batch_cluster_reachable", "oscar_batch_invocations_total", "oscar_batch_invocation_outcomes_total",
    "oscar_batch_retries_total"}
CLUSTERS = [
    {"name": "local", "access": "InCluster", "parallelism": 8, "running": 5, "succeeded": 120, "reachable": True,
     "message": ""},
    {"name": "remote", "access": "Remote", "parallelism": 4, "running": 0, "succeeded": 7, "reachable": False,
     "message": "connection refused"},
]


def test_the_status_clusters_set_planned_and_used_slots_items_done_and_reachability_per_cluster():
    metrics = Metrics(clock=Clock())
    metrics.batch("ns", "b").status_taken({"clusters": CLUSTERS, "parallelism": 12, "invocations": {"running": 5}})
    for cluster, planned, used, done, reachable in (("local", 8, 5, 120, 1), ("remote", 4, 0, 7, 0)):
        at = {**BATCH, "cluster": cluster}
        assert value(metrics, "oscar_batch_cluster_slots", **at, kind="planned") == planned
        assert value(metrics, "oscar_batch_cluster_slots", **at, kind="used") == used
        assert value(metrics, "oscar_batch_cluster_items_succeeded", **at) == done
        assert value(metrics, "oscar_batch_cluster_reachable", **at) == reachable
    # The batch's own gauges stay as they were, without a cluster label.
    assert value(metrics, "oscar_batch_slots", **BATCH, kind="planned") == 12
    assert value(metrics, "oscar_batch_slots", **BATCH, kind="used") == 5


def test_a_cluster_no_longer_in_status_loses_its_gauges_and_a_patch_without_clusters_keeps_them():
    metrics = Metrics(clock=Clock())
    batch = metrics.batch("ns", "b")
    batch.status_taken({"clusters": CLUSTERS})
    batch.status_taken({"items": {"succeeded": 127}})
    assert value(metrics, "oscar_batch_cluster_reachable", **BATCH, cluster="remote") == 0
    batch.invoked(0.1, cluster="remote")
    batch.status_taken({"clusters": CLUSTERS[:1]})
    assert {labels for name, labels in series(metrics) if name.startswith("oscar_batch_cluster_")
            and ("cluster", "remote") in labels} == set()
    assert value(metrics, "oscar_batch_cluster_reachable", **BATCH, cluster="local") == 1
    # What it did there was done: its counter stays until the batch is forgotten.
    assert value(metrics, "oscar_batch_invocations_total", **BATCH, cluster="remote") == 1


@pytest.mark.parametrize("change, outcome, retried", [
    (Change.SUCCEEDED, "succeeded", 0), (Change.SPLIT, "failed", 1), (Change.RETRIED, "failed", 1),
    (Change.RESUMED, "failed", 1), (Change.ITEM_FAILED, "failed", 0), (Change.DISRUPTED, "disrupted", 0),
])
def test_invocations_outcomes_and_retries_count_on_the_cluster_that_ran_them(change, outcome, retried):
    metrics = Metrics(clock=Clock())
    batch = metrics.batch("ns", "b")
    batch.invoked(0.02, cluster="remote")
    batch.ended(change, seen_at=99.0, cluster="remote")
    at = {**BATCH, "cluster": "remote"}
    assert value(metrics, "oscar_batch_invocations_total", **at) == 1
    assert value(metrics, "oscar_batch_invocation_outcomes_total", **at, outcome=outcome) == 1
    assert (value(metrics, "oscar_batch_retries_total", **at) or 0) == retried
    assert value(metrics, "oscar_batch_dispatch_seconds_count") == 1
    assert not [name for name, labels in series(metrics) if ("cluster", "local") in labels]


def test_a_problem_of_no_cluster_has_the_label_empty():
    metrics = Metrics(clock=Clock())
    metrics.batch("ns", "b").problem("StorageUnavailable")
    assert value(metrics, "oscar_batch_peer_errors_total", peer="s3", kind="StorageUnavailable", cluster="") == 1


@pytest.mark.parametrize("reason, peer", [("OscarUnavailable", "oscar"), ("InvocationFailed", "oscar"),
                                          ("BucketNotFound", "s3"), ("SecretNotFound", "kubernetes")])
def test_a_problem_counts_as_an_error_of_its_peer_on_its_cluster(reason, peer):
    metrics = Metrics(clock=Clock())
    metrics.batch("ns", "b").problem(reason, cluster="remote")
    assert value(metrics, "oscar_batch_peer_errors_total", peer=peer, kind=reason, cluster="remote") == 1


def test_a_problem_with_the_spec_is_no_peer_error():
    metrics = Metrics(clock=Clock())
    metrics.batch("ns", "b").problem("InvalidSpec", cluster="remote")
    assert not [name for name, _ in series(metrics) if name.startswith("oscar_batch_peer_errors")]


def test_forget_removes_every_series_of_the_batch_on_every_cluster_and_nothing_else():
    metrics = Metrics(clock=Clock())
    batch, other = metrics.batch("ns", "b"), metrics.batch("ns", "other")
    for each in (batch, other):
        each.status_taken({"items": {"pending": 3, "succeeded": 1}, "invocations": {"running": 2, "queued": 1},
                           "parallelism": 4, "clusters": CLUSTERS, "completedItems": "x"})
        for cluster in ("local", "remote", ""):
            each.invoked(0.01, cluster=cluster)
            for change in (Change.SUCCEEDED, Change.RETRIED, Change.DISRUPTED):
                each.ended(change, seen_at=99.0, cluster=cluster)
        each.problem("OscarUnavailable", cluster="remote")
    batch.status_taken({"clusters": CLUSTERS[:1]})     # remote's gauges gone already, its counters not
    assert "oscar_batch_retries_total" in names_of_batch(metrics)

    batch.forget()

    assert names_of_batch(metrics) == set()
    assert names_of_batch(metrics, batch="other") == EVERY_BATCH_METRIC
    assert value(metrics, "oscar_batch_dispatch_seconds_count") == 6      # the operator's own series stay
    assert value(metrics, "oscar_batch_peer_errors_total", peer="oscar", kind="OscarUnavailable", cluster="remote") \
        == 2
    # A batch forgotten and served again (a replica taking it back) starts over and can be forgotten again.
    batch.invoked(0.01, cluster="local")
    batch.forget()
    assert names_of_batch(metrics) == set()

