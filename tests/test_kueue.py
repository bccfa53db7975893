"""What an owner's Kueue quota admits: table-driven, over ClusterQueues shaped as Kueue v1beta2 serves them."""
from __future__ import annotations

from typing import Any

import pytest

from oscar_batch.core.kueue import GPU, QueueRoom, queue_name, queued, room
from oscar_batch.core.planner import Needs


def cluster_queue(quota: dict[str, Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": "oscar-cq-alice"},
            "spec": {"resourceGroups": [{"coveredResources": list(quota), "flavors": [
                {"name": "default-flavor", "resources": [{"name": n, "nominalQuota": q} for n, q in quota.items()]}]}]},
            "status": {"flavorsUsage": [{"name": "default-flavor", "resources": [
                {"name": n, "total": t} for n, t in (usage or {}).items()]}]} if usage is not None else {}}


ONE_CPU = Needs.parse("1", "1Gi")


@pytest.mark.parametrize(("quota", "usage", "needs", "admitted", "slots", "short_of"), [
    ({"cpu": "8", "memory": "16Gi"}, None, ONE_CPU, 0, 8, "cpu"),                       # empty queue
    ({"cpu": "8", "memory": "16Gi"}, {"cpu": "8", "memory": "8Gi"}, ONE_CPU, 8, 8, "cpu"),   # all ours, full
    ({"cpu": "8", "memory": "16Gi"}, {"cpu": "6", "memory": "6Gi"}, ONE_CPU, 2, 4, "cpu"),   # others hold 4
    ({"cpu": "8", "memory": "4Gi"}, {"cpu": "0", "memory": "0"}, ONE_CPU, 0, 4, "memory"),
    ({"cpu": "8", "memory": "16Gi"}, {"cpu": "9", "memory": "0"}, ONE_CPU, 1, 1, "cpu"),     # borrowed past nominal
    ({"cpu": "8", "memory": "16Gi"}, None, Needs.parse("500m", "1Gi"), 0, 16, "cpu"),       # a tie names the first
    ({"cpu": "8", "memory": "16Gi"}, None, Needs.parse("1", "1Gi", gpus=1), 0, 0, GPU),   # GPUs not covered
    ({"cpu": "8", "memory": "16Gi", GPU: "2"}, {GPU: "1"}, Needs.parse("1", "1Gi", gpus=1), 1, 2, GPU),
])
def test_the_quota_left_bounds_the_batch(quota, usage, needs, admitted, slots, short_of):
    found = room(cluster_queue(quota, usage), needs, admitted)
    assert (found.slots, found.short_of) == (slots, short_of)


def test_the_description_names_quota_and_usage_in_the_users_units():
    assert room(cluster_queue({"cpu": "8", "memory": "16Gi"}, {"cpu": "8", "memory": "8Gi"}), ONE_CPU, 8).describe() \
        == "quota cpu 8, memory 16Gi, in use cpu 8, memory 8Gi"
    assert QueueRoom(0, {"cpu": 1500}, {}).describe() == "quota cpu 1500m, in use cpu 0"


def test_a_suspended_job_in_a_local_queue_is_queued():
    job = {"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "oscar-lq-fish"}}, "spec": {"suspend": True}}
    assert queue_name(job) == "oscar-lq-fish" and queued(job)
    assert queue_name({"metadata": {}}) == "" and not queued({"spec": {"suspend": False}})
