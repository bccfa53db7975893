"""The sandbox's scheduler and the operator's planner are two implementations of one rule set: on any cluster,
the number of service pods the sandbox binds one after another is the number of slots the planner counts."""
from __future__ import annotations

import random

import pytest

from oscar_batch.core.planner import Needs, Policy, plan_capacity
from oscar_batch_sandbox.config import NodeSpec, TenantPod, control_plane
from oscar_batch_sandbox.oscar import invocation_job
from oscar_batch_sandbox.runner import free_by_node, job_pod, place, pod_requests


def random_cluster(rng: random.Random) -> tuple[list[dict], list[dict]]:
    nodes = [control_plane()]
    for index in range(rng.randint(1, 6)):
        nodes.append(NodeSpec(
            name=f"worker-{index}", cpu=rng.choice(["1", "2", "3500m", "4", "8"]),
            memory=rng.choice(["2Gi", "4Gi", "8Gi", "3G"]), pods=rng.choice([3, 10, 110]),
            ready=rng.random() > 0.15, unschedulable=rng.random() < 0.15,
            taints=({"key": "dedicated", "value": "gpu", "effect": rng.choice(["NoSchedule", "PreferNoSchedule"])},)
            if rng.random() < 0.2 else ()))
    tenants = [TenantPod(f"tenant-{index}", rng.choice(nodes[1:]).name, cpu=rng.choice(["100m", "500m", "1", "1500m"]),
                         memory=rng.choice(["128Mi", "1Gi", "2Gi"])) for index in range(rng.randint(0, 8))]
    return [node.to_object() for node in nodes], [pod.to_object() for pod in tenants]


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize(("cpu", "memory"), [("1", "1Gi"), ("500m", "2Gi"), ("2", "512Mi")])
def test_the_sandbox_binds_exactly_as_many_service_pods_as_the_planner_counts_slots(seed, cpu, memory):
    rng = random.Random(seed)
    nodes, pods = random_cluster(rng)
    service = {"name": "svc", "image": "img", "cpu": cpu, "memory": memory}
    planned = plan_capacity(nodes, pods, Needs.parse(cpu, memory), Policy(headroom=1.0)).total

    free = free_by_node(nodes, pods)
    bound = 0
    while bound <= planned + 1:
        job = invocation_job(service, f"job-{bound}", "oscar-svc", "{}")
        job["metadata"]["uid"] = f"uid-{bound}"
        pod = job_pod(job, f"p{bound}")
        placement = place(pod, nodes, free)
        if placement.node is None:
            break
        free[placement.node] -= pod_requests(pod)
        bound += 1
    assert bound == planned, (nodes, pods)
