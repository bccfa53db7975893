import math
from fractions import Fraction

import pytest

from oscar_batch.core.planner import Needs, Policy, plan_capacity, plan_from_oscar_status, pod_requests, tolerates

GPU = "nvidia.com/gpu"
GI = 2**30
MI = 2**20


def node(name="w1", cpu="4", memory="8Gi", pods="110", gpus=None, ready="True", unschedulable=False, taints=(),
         labels=None):
    allocatable = {"cpu": cpu, "memory": memory, "pods": pods}
    if gpus is not None:
        allocatable[GPU] = gpus
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return {
        "metadata": {"name": name, "labels": labels or {"kubernetes.io/hostname": name}},
        "spec": {"unschedulable": unschedulable, "taints": list(taints)},
        "status": {"allocatable": allocatable, "conditions": conditions},
    }


def container(cpu=None, memory=None, gpus=None, restart_policy=None):
    requests = {key: value for key, value in (("cpu", cpu), ("memory", memory), (GPU, gpus)) if value is not None}
    spec = {"name": "c", "resources": {"requests": requests} if requests else {}}
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    return spec


def pod(node_name="w1", *containers, phase="Running", init=(), overhead=None, name="p"):
    spec = {"containers": list(containers) or [container()], "initContainers": list(init)}
    if node_name:
        spec["nodeName"] = node_name
    if overhead:
        spec["overhead"] = overhead
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": {"phase": phase}}


def taint(key, effect, value=None):
    return {"key": key, "effect": effect, **({"value": value} if value else {})}


def needs(cpu="1", memory="1Gi", gpus=0, overhead_cpu="0", overhead_memory="0"):
    return Needs.parse(cpu, memory, gpus, overhead_cpu, overhead_memory)


def slots_by_node(plan):
    return {n.name: n.slots for n in plan.nodes}


# --- which nodes count -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("worker", "reason"),
    [
        (node(), None),
        (node(ready="False"), "NotReady"),
        (node(ready="Unknown"), "NotReady"),
        (node(ready=None), "NotReady"),
        (node(unschedulable=True), "cordoned"),
        (node(taints=[taint("dedicated", "NoSchedule", "gpu")]), "taint dedicated=gpu:NoSchedule not tolerated"),
        (node(taints=[taint("node.kubernetes.io/unreachable", "NoExecute")]), "NoExecute not tolerated"),
        (node(taints=[taint("spot", "PreferNoSchedule")]), None),
    ],
)
def test_node_counts_only_when_ready_schedulable_and_untainted(worker, reason):
    [result] = plan_capacity([worker], [], needs()).nodes
    if reason is None:
        assert (result.slots, result.limited_by) == (4, "cpu")
    else:
        assert (result.slots, result.limited_by) == (0, "excluded")
        assert reason in result.reason


@pytest.mark.parametrize(
    ("toleration", "node_taint", "tolerated"),
    [
        ({"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"},
         taint("dedicated", "NoSchedule", "batch"), True),
        ({"key": "dedicated", "value": "batch"}, taint("dedicated", "NoSchedule", "batch"), True),
        ({"key": "dedicated", "operator": "Equal", "value": "web"}, taint("dedicated", "NoSchedule", "batch"), False),
        ({"key": "dedicated", "operator": "Exists"}, taint("dedicated", "NoExecute", "anything"), True),
        ({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}, taint("dedicated", "NoExecute"), False),
        ({"key": "other", "operator": "Exists"}, taint("dedicated", "NoSchedule"), False),
        ({"operator": "Exists"}, taint("anything", "NoExecute", "x"), True),
        ({"operator": "Exists", "effect": "NoSchedule"}, taint("anything", "NoExecute"), False),
        ({"key": "gpu", "operator": "Equal"}, taint("gpu", "NoSchedule"), True),
        ({"key": "gpu", "operator": "Lt", "value": "1"}, taint("gpu", "NoSchedule", "1"), False),
    ],
)
def test_toleration_matching_follows_kubernetes(toleration, node_taint, tolerated):
    assert tolerates(toleration, node_taint) is tolerated


def test_tolerated_taint_does_not_exclude_the_node():
    tainted = node(taints=[taint("dedicated", "NoSchedule", "batch")])
    policy = Policy(tolerations=({"key": "dedicated", "operator": "Exists"},))
    assert plan_capacity([tainted], [], needs(), policy).nodes[0].slots == 4


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        # Only control-plane nodes: they are the cluster, so they count.
        ([node("cp", labels={"node-role.kubernetes.io/control-plane": ""})], {"cp": 4}),
        ([node("cp", labels={"node-role.kubernetes.io/control-plane": ""}), node("w1")], {"cp": 0, "w1": 4}),
        ([node("m", labels={"node-role.kubernetes.io/master": "true"}), node("w1")], {"m": 0, "w1": 4}),
        # A worker exists even while NotReady, so the control plane stays out (as OSCAR does).
        ([node("cp", labels={"node-role.kubernetes.io/control-plane": ""}), node("w1", ready="False")],
         {"cp": 0, "w1": 0}),
    ],
)
def test_control_plane_is_skipped_when_workers_exist(nodes, expected):
    plan = plan_capacity(nodes, [], needs())
    assert slots_by_node(plan) == expected


# --- what a pod holds ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (pod("w1", container("250m", "64Mi"), container("0.5", "1Gi")), (750, 64 * MI + GI, 0)),
        (pod("w1", container()), (0, 0, 0)),
        (pod("w1", container(memory="1Gi")), (0, GI, 0)),
        (pod("w1", container("1", "1Gi", gpus="1"), container(gpus="2")), (1000, GI, 3)),
        # The largest init container wins over the sum of the app containers, per resource.
        (pod("w1", container("1", "1Gi"), container("1", "1Gi"), init=[container("3", "512Mi"), container("1", "4Gi")]),
         (3000, 4 * GI, 0)),
        (pod("w1", container("2", "2Gi"), init=[container("1", "1Gi")]), (2000, 2 * GI, 0)),
        (pod("w1", container("1", "1Gi"), overhead={"cpu": "250m", "memory": "120Mi"}), (1250, GI + 120 * MI, 0)),
        (pod("w1", container("1", "1Gi"), init=[container("2", "3Gi")], overhead={"cpu": "100m"}),
         (2100, 3 * GI, 0)),
        # Native sidecars (restartPolicy Always) run alongside later init containers and the app containers.
        (pod("w1", container("1", "1Gi"),
             init=[container("500m", "256Mi", restart_policy="Always"), container("2", "1Gi")]),
         (2500, GI + 256 * MI, 0)),
    ],
)
def test_pod_request_is_max_of_containers_and_init_plus_overhead(subject, expected):
    assert pod_requests(subject) == expected


@pytest.mark.parametrize(
    ("pods", "expected_slots"),
    [
        ([], 4),
        ([pod("w1", container("1"))], 3),
        ([pod("w1", container("1"), phase="Pending")], 3),
        ([pod("w1", container("1"), phase="Unknown")], 3),
        ([pod("w1", container("1"), phase="Succeeded")], 4),
        ([pod("w1", container("1"), phase="Failed")], 4),
        ([pod(None, container("1"), phase="Pending")], 4),
        ([pod("elsewhere", container("1"))], 4),
        # Live usage does not matter, requests do: a pod without requests holds nothing but a pod slot.
        ([pod("w1", container())], 4),
    ],
)
def test_free_is_allocatable_minus_requests_of_pods_holding_the_node(pods, expected_slots):
    assert plan_capacity([node("w1", cpu="4", memory="64Gi")], pods, needs()).nodes[0].slots == expected_slots


def test_ignored_pods_count_as_free():
    ours = pod("w1", container("1"), name="batch-range-1")
    theirs = pod("w1", container("1"), name="other")
    plan = plan_capacity([node("w1")], [ours, theirs], needs(), ignore_pod=lambda p: p["metadata"]["name"] == ours[
        "metadata"]["name"])
    assert plan.nodes[0].slots == 3


# --- slots per node --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("worker", "pods", "service", "expected"),
    [
        (node(cpu="4", memory="8Gi"), [], needs("1", "3Gi"), (2, "memory")),
        (node(cpu="3500m", memory="64Gi"), [], needs("1", "3Gi"), (3, "cpu")),
        (node(cpu="4", memory="64Gi", pods="3"), [pod("w1")], needs("500m", "1Gi"), (2, "pods")),
        (node(cpu="64", memory="64Gi", gpus="4"), [pod("w1", container(gpus="1"))], needs(gpus=1), (3, "gpu")),
        (node(cpu="64", memory="64Gi"), [], needs(gpus=1), (0, "gpu")),
        (node(cpu="64", memory="64Gi", gpus="4"), [], needs(), (64, "cpu")),
        # A resource the service does not request never limits; requesting nothing leaves the pod count.
        (node(cpu="0", memory="8Gi"), [], needs("0", "1Gi"), (8, "memory")),
        (node(cpu="4", memory="0"), [], needs("1", "0"), (4, "cpu")),
        (node(cpu="4", memory="8Gi", pods="110"), [pod("w1")], needs("0", "0"), (109, "pods")),
        # Over-committed (allocatable shrank under running pods): no slots, never negative.
        (node(cpu="1", memory="8Gi"), [pod("w1", container("2"))], needs(), (0, "cpu")),
        (node(cpu="4", memory="8Gi"), [], needs("1", "1Gi", overhead_cpu="1"), (2, "cpu")),
        (node(cpu="4", memory="8Gi"), [], needs("500m", "1Gi", overhead_memory="1Gi"), (4, "memory")),
        (node(cpu="4", memory="8Gi", pods="0"), [], needs(), (0, "pods")),
    ],
)
def test_slots_per_node_and_the_binding_resource(worker, pods, service, expected):
    result = plan_capacity([worker], pods, service, Policy(headroom=1)).nodes[0]
    assert (result.slots, result.limited_by) == expected


# --- the total ----------------------------------------------------------------------------------------------------

def test_the_original_coordinators_over_subscription_example_fits_nothing():
    workers = [node(f"w{i}", cpu="4", memory="16Gi") for i in range(4)]
    busy = [pod(f"w{i}", container("3100m")) for i in range(4)]  # 900m free on each worker
    service = needs("1", "1Gi")
    summed = math.floor(4 * 900 * Fraction(4, 5) / 1000)  # what summing free CPU over nodes would promise
    plan = plan_capacity(workers, busy, service)
    assert summed == 2
    assert plan.total == 0
    assert plan.explanation == "largest free CPU on any eligible node is 900m; the service needs 1000m"


@pytest.mark.parametrize(
    ("free_cpus", "policy", "total"),
    [
        # A 4-CPU service on three nodes with 8 free CPUs: 6 slots, 80% → 4 (per node 80% would give 1 each: 3).
        (["8", "8", "8"], Policy(), 4),
        (["8", "8", "8"], Policy(headroom=1), 6),
        (["8", "8", "8"], Policy(headroom="0.5"), 3),
        (["8", "8", "8"], Policy(maximum=2), 2),
        (["8", "8", "8"], Policy(headroom=1, maximum=10), 6),
        # 0.29 × 100 is 28.999999999999996 in floats; the share is exact here.
        (["16"] * 25, Policy(headroom=0.29), 29),
    ],
)
def test_headroom_applies_to_the_cluster_total_then_the_maximum(free_cpus, policy, total):
    workers = [node(f"w{i}", cpu=cpu, memory="1Ti", pods="1000") for i, cpu in enumerate(free_cpus)]
    assert plan_capacity(workers, [], needs("4", "1Gi"), policy).total == total


@pytest.mark.parametrize(
    ("nodes", "pods", "service", "policy", "explanation"),
    [
        ([], [], needs(), Policy(), "no nodes to plan on"),
        ([node("w1", ready="False"), node("w2", unschedulable=True)], [], needs(), Policy(),
         "no eligible worker node: w1 NotReady, w2 cordoned (unschedulable)"),
        ([node(f"w{i}", ready="False") for i in range(7)], [], needs(), Policy(),
         "no eligible worker node: w0 NotReady, w1 NotReady, w2 NotReady, w3 NotReady, w4 NotReady and 2 more"),
        ([node("w1", cpu="4", memory="2Gi")], [], needs("1", "2Gi", overhead_memory="256Mi"), Policy(),
         "largest free memory on any eligible node is 2Gi; the service needs 2.25Gi including 256Mi per-pod overhead"),
        ([node("w1", cpu="1", memory="1Gi")], [], needs("2", "3Gi"), Policy(),
         "largest free CPU on any eligible node is 1000m; the service needs 2000m; "
         "largest free memory on any eligible node is 1Gi; the service needs 3Gi"),
        ([node("w1")], [], needs(gpus=1), Policy(), "largest free GPU on any eligible node is 0; the service needs 1"),
        ([node("w1", pods="1")], [pod("w1")], needs(), Policy(), "every eligible node is at its pod limit"),
        ([node("w1", cpu="4", memory="1Gi"), node("w2", cpu="500m", memory="8Gi")], [], needs("1", "2Gi"), Policy(),
         "free capacity is fragmented: no eligible node has enough of everything at once "
         "(w1 short of memory, w2 short of cpu)"),
        ([node("w1", cpu="1")], [], needs(), Policy(), "the cluster fits 1, and headroom 0.8 of that rounds down to 0"),
    ],
)
def test_nothing_fits_is_explained_not_raised(nodes, pods, service, policy, explanation):
    plan = plan_capacity(nodes, pods, service, policy)
    assert (plan.total, plan.explanation) == (0, explanation)


def test_explanation_is_empty_when_something_fits():
    assert plan_capacity([node()], [], needs()).explanation == ""


# --- bad input -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("nodes", "pods", "message"),
    [
        ([node("w1", cpu="four")], [], "node w1: not a quantity: 'four'"),
        ([node("w1")], [pod("w1", container(memory="1 Gi"), name="broken")], "pod default/broken: not a quantity"),
    ],
)
def test_bad_quantities_are_named(nodes, pods, message):
    with pytest.raises(ValueError, match=message):
        plan_capacity(nodes, pods, needs())


@pytest.mark.parametrize(
    "make",
    [
        lambda: Policy(headroom=0),
        lambda: Policy(headroom=1.5),
        lambda: Policy(headroom="most"),
        lambda: Policy(maximum=0),
        lambda: Needs(-1, 0),
        lambda: needs(cpu="lots"),
    ],
)
def test_invalid_needs_and_policies_are_refused(make):
    with pytest.raises(ValueError):
        make()


# --- OSCAR /system/status fallback ---------------------------------------------------------------------------------

def current_node(name, capacity_cores, request_cores, capacity_bytes, request_bytes, gpu=0, ready=True, **extra):
    return {
        "name": name,
        "cpu": {"capacity_cores": capacity_cores, "usage_cores": 1, "request_cores": request_cores},
        "memory": {"capacity_bytes": capacity_bytes, "usage_bytes": 1, "request_bytes": request_bytes},
        "gpu": gpu,
        "is_interlink": False,
        "status": "Ready" if ready else "NotReady",
        "conditions": [{"type": "Ready", "status": ready}],
        **extra,
    }


def test_current_status_plans_node_by_node_from_requests():
    status = {"cluster": {"nodes_count": 4, "nodes": [
        current_node("w1", 4000, 1200, 8 * GI, 2 * GI),  # 2800m → 2 by cpu; 6Gi → 3 by memory
        current_node("w2", 4000, 3100, 16 * GI, 0),  # 900m → 0
        current_node("w3", 8000, 0, 16 * GI, 0, ready=False),
        current_node("vk", 64000, 0, 256 * GI, 0, is_interlink=True),
    ]}, "oscar": {}, "minio": {}}
    plan = plan_from_oscar_status(status, needs("1", "2Gi"), Policy(headroom=1))
    assert [(n.name, n.slots, n.limited_by) for n in plan.nodes] == [
        ("w1", 2, "cpu"), ("w2", 0, "cpu"), ("w3", 0, "excluded"), ("vk", 0, "excluded")]
    assert plan.nodes[3].reason == "interLink virtual node"
    assert plan.nodes[0].free_pods is None
    assert plan.total == 2


def test_current_status_counts_gpus_as_a_hard_constraint():
    status = {"cluster": {"nodes": [current_node("g1", 16000, 0, 64 * GI, 0, gpu=2),
                                    current_node("c1", 16000, 0, 64 * GI, 0)]}}
    plan = plan_from_oscar_status(status, needs("1", "1Gi", gpus=1), Policy(headroom=1))
    assert [(n.slots, n.limited_by) for n in plan.nodes] == [(2, "gpu"), (0, "gpu")]


def test_legacy_status_plans_from_live_usage_and_says_so():
    status = {"numberNodes": 2, "cpuFreeTotal": 0, "hasGPU": False, "detail": [
        {"nodeName": "w1", "cpuCapacity": "4000", "cpuUsage": "900", "cpuPercentage": "22.50",
         "memoryCapacity": "8589934592", "memoryUsage": "2147483648", "memoryPercentage": "25.00"},
        {"nodeName": "w2", "cpuCapacity": "4000", "cpuUsage": "3500", "memoryCapacity": "8589934592",
         "memoryUsage": "0"},
    ]}
    plan = plan_from_oscar_status(status, needs("1", "3Gi"))
    # w1: 3100m → 3 by cpu, 6Gi → 2 by memory; w2: 500m → 0. Σ 2, 80% → 1.
    assert [(n.slots, n.limited_by) for n in plan.nodes] == [(2, "memory"), (0, "cpu")]
    assert plan.total == 1
    assert "live usage, not requests" in plan.nodes[0].reason


def test_legacy_status_has_no_gpus_per_node():
    status = {"detail": [{"nodeName": "w1", "cpuCapacity": "4000", "cpuUsage": "0", "memoryCapacity": "8589934592",
                          "memoryUsage": "0"}]}
    assert plan_from_oscar_status(status, needs(gpus=1)).nodes[0].limited_by == "gpu"


@pytest.mark.parametrize(
    ("status", "service", "message"),
    [
        ({"oscar": {}}, needs(), "not an OSCAR /system/status"),
        ({"detail": [{"nodeName": "w1", "cpuCapacity": "lots"}]}, needs(), "OSCAR status node w1: not a quantity"),
        ({"detail": []}, needs("0", "0"), "no pod limit"),
    ],
)
def test_unusable_status_is_refused(status, service, message):
    with pytest.raises(ValueError, match=message):
        plan_from_oscar_status(status, service)


# --- a realistic snapshot --------------------------------------------------------------------------------------------

def snapshot():
    control_plane = node("cp-1", cpu="4", memory="8Gi", labels={"node-role.kubernetes.io/control-plane": ""},
                         taints=[taint("node-role.kubernetes.io/control-plane", "NoSchedule")])
    nodes = [
        control_plane,
        node("frag-cpu", cpu="3900m", memory="15Gi"),
        node("frag-mem", cpu="4", memory="7680Mi"),
        node("big", cpu="16", memory="64Gi"),
        node("gpu", cpu="8", memory="32Gi", gpus="2"),
        node("few-pods", cpu="32", memory="128Gi", pods="4"),
        node("down", cpu="16", memory="64Gi", ready="False"),
        node("cordoned", cpu="16", memory="64Gi", unschedulable=True,
             taints=[taint("node.kubernetes.io/unschedulable", "NoSchedule")]),
        node("spot", cpu="2", memory="4Gi", taints=[taint("spot", "PreferNoSchedule", "true")]),
        node("dedicated", cpu="16", memory="64Gi", taints=[taint("dedicated", "NoExecute", "db")]),
    ]
    pods = [
        pod("cp-1", container("250m", "512Mi"), name="etcd"),
        pod("frag-cpu", container("2950m", "1Gi")),
        pod("frag-mem", container("500m", "5Gi")),
        # big: 4000m (init beats 1500m + 0.5), 3Gi; Pending but bound: 1.5, 4G; overhead pod 500m, 376Mi.
        pod("big", container("1500m", "2Gi"), container("0.5", "1024Mi"), init=[container("4", "1Gi")]),
        pod("big", container("1.5", "4G"), phase="Pending"),
        pod("big", container("250m", "256Mi"), overhead={"cpu": "250m", "memory": "120Mi"}),
        pod("big", container("8"), phase="Succeeded"),
        pod("big", container(memory="32Gi"), phase="Failed"),
        pod(None, container("10"), phase="Pending"),
        pod("gpu", container("2", "8Gi", gpus="1")),
        *[pod("few-pods", container("100m", "64Mi")) for _ in range(3)],
        pod("few-pods", container("100m", "64Mi"), phase="Succeeded"),
        pod("down", container("1", "1Gi"), phase="Unknown"),
    ]
    return nodes, pods


def test_realistic_snapshot_cpu_service():
    plan = plan_capacity(*snapshot(), needs("1", "3Gi"))
    assert [(n.name, n.slots, n.limited_by) for n in plan.nodes] == [
        ("cp-1", 0, "excluded"),  # control plane, workers exist
        ("frag-cpu", 0, "cpu"),  # 3900m − 2950m = 950m < 1000m, though 14Gi free
        ("frag-mem", 0, "memory"),  # 7.5Gi − 5Gi = 2.5Gi < 3Gi, though 3500m free
        ("big", 10, "cpu"),  # 16000m − 6000m = 10; memory 64Gi − 3Gi − 4G − 376Mi ≈ 56.9Gi → 18
        ("gpu", 6, "cpu"),  # 6000m → 6; 24Gi → 8
        ("few-pods", 1, "pods"),  # 4 − 3 running pods (the Succeeded one does not count)
        ("down", 0, "excluded"),  # NotReady
        ("cordoned", 0, "excluded"),  # unschedulable
        ("spot", 1, "memory"),  # PreferNoSchedule does not exclude; 4Gi → 1, 2000m → 2
        ("dedicated", 0, "excluded"),  # NoExecute taint not tolerated
    ]
    assert plan.cluster_slots == 18
    assert plan.total == 14  # floor(0.8 × 18)


def test_realistic_snapshot_gpu_service_with_a_toleration():
    policy = Policy(headroom=1, tolerations=({"key": "dedicated", "operator": "Equal", "value": "db"},))
    plan = plan_capacity(*snapshot(), needs("1", "3Gi", gpus=1), policy)
    assert slots_by_node(plan) == {
        "cp-1": 0, "frag-cpu": 0, "frag-mem": 0, "big": 0, "gpu": 1, "few-pods": 0, "down": 0, "cordoned": 0,
        "spot": 0, "dedicated": 0,
    }
    assert plan.nodes[4].limited_by == "gpu"  # 2 GPUs, 1 requested by the running pod
    assert plan.nodes[9].limited_by == "gpu"  # tolerated now, but has no GPU
    assert plan.total == 1
