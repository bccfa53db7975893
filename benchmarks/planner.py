"""Planning time and peak memory on synthetic clusters of 500, 5,000 and 50,000 nodes with 30 pods each."""
from __future__ import annotations

import random
import time
import tracemalloc
from typing import Any

from oscar_batch.core.planner import Needs, Policy, plan_capacity

NODE_COUNTS = (500, 5_000, 50_000)
PODS_PER_NODE = 30
RUNS = 5
TARGET_NODES, TARGET_SECONDS = 5_000, 1.0


def synthetic_cluster(node_count: int, seed: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Mixed units, a few excluded nodes, init containers, terminated and unbound pods.

    Built the way a JSON decoder hands a List over: objects allocated in list order, every string a fresh
    object (so the planner pays for hashing each one), pods in name order rather than grouped by node.
    """
    rng = random.Random(seed)
    nodes = []
    for index in range(node_count):
        name = f"node-{index:06d}"
        cpu = rng.choice((f"{rng.choice((8, 16, 32))}", f"{rng.choice((7900, 15800))}m"))
        memory = rng.choice((f"{rng.choice((32, 64))}Gi", f"{rng.choice((65536, 131072))}Mi", f"{64}G"))
        allocatable = {"cpu": cpu, "memory": memory, "pods": f"{110}", "ephemeral-storage": f"{100}Gi"}
        if index % 10 == 0:
            allocatable["nvidia.com/gpu"] = f"{rng.choice((1, 2, 4))}"
        nodes.append({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"unschedulable": index % 97 == 0,
                     "taints": [{"key": "spot", "effect": "PreferNoSchedule"}] if index % 13 == 0 else []},
            "status": {"allocatable": allocatable,
                       "conditions": [{"type": "Ready", "status": "False" if index % 89 == 0 else "True"}]},
        })
    placements = [index for index in range(node_count) for _ in range(PODS_PER_NODE)]
    rng.shuffle(placements)
    pods = [_pod(rng, f"pod-{number:08d}", f"node-{index:06d}") for number, index in enumerate(placements)]
    return nodes, pods


def _pod(rng: random.Random, name: str, node_name: str) -> dict[str, Any]:
    def container() -> dict[str, Any]:
        requests = {
            "cpu": rng.choice((f"{rng.choice((50, 100, 250, 500))}m", f"{rng.choice((0.1, 0.25, 1))}")),
            "memory": rng.choice((f"{rng.choice((64, 128, 256))}Mi", f"{rng.choice((1, 2))}Gi", f"{500}M", "1e8")),
        }
        return {"name": "c", "image": "example/app:1", "resources": {"requests": requests, "limits": requests}}

    spec: dict[str, Any] = {"containers": [container() for _ in range(rng.choice((1, 1, 2)))]}
    if rng.random() < 0.2:
        spec["initContainers"] = [container()]
    if rng.random() > 0.02:
        spec["nodeName"] = node_name
    phase = rng.choices(("Running", "Pending", "Succeeded", "Failed"), (85, 3, 10, 2))[0]
    return {"metadata": {"name": name, "namespace": "tenant"}, "spec": spec, "status": {"phase": phase}}


def run() -> None:
    print(f"planner: plan_capacity on synthetic clusters, {PODS_PER_NODE} pods per node, best of {RUNS} runs")
    print(f"{'nodes':>8} {'pods':>10} {'seconds':>9} {'µs/node':>9} {'× 500':>6} {'peak MiB':>9} {'total':>7}")
    seconds_by_size = {}
    for node_count in NODE_COUNTS:
        pod_count, seconds, peak_bytes, total = _measure(node_count)
        seconds_by_size[node_count] = seconds
        per_node = seconds / node_count
        relative = per_node / (seconds_by_size[NODE_COUNTS[0]] / NODE_COUNTS[0])
        print(f"{node_count:>8,} {pod_count:>10,} {seconds:>9.3f} {per_node * 1e6:>9.1f} {relative:>6.2f} "
              f"{peak_bytes / 2**20:>9.1f} {total:>7,}")
    seconds = seconds_by_size[TARGET_NODES]
    verdict = "met" if seconds <= TARGET_SECONDS else "MISSED"
    print(f"target: {TARGET_NODES:,} nodes / {TARGET_NODES * PODS_PER_NODE:,} pods in ≤ {TARGET_SECONDS:g} s: "
          f"{verdict} ({seconds:.3f} s); '× 500' is time per node relative to 500 nodes (1 = linear)")


def _measure(node_count: int) -> tuple[int, float, int, int]:
    """(pods, best seconds, peak bytes the planner allocated, planned total) for one cluster size."""
    nodes, pods = synthetic_cluster(node_count)
    needs, policy = Needs.parse("1", "3Gi"), Policy()
    timings = []
    for _ in range(RUNS):
        start = time.perf_counter()
        plan_capacity(nodes, pods, needs, policy)
        timings.append(time.perf_counter() - start)
    # Traced apart from the timed runs: tracemalloc slows every allocation down.
    tracemalloc.start()
    plan = plan_capacity(nodes, pods, needs, policy)
    peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return len(pods), min(timings), peak_bytes, plan.total
