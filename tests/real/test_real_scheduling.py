"""The capacity planner's slot count against the real kube-scheduler, and the real Job controller.

Simulated nodes: Node objects with allocatable cpu/memory/pods (and GPUs) marked Ready through the status
subresource. No kubelet runs, so no container starts, but the scheduler binds pods to them for real and
leaves the ones that do not fit Pending with PodScheduled=False/Unschedulable. The planner is given what
`kubectl get nodes/pods -o json` shows; N+1 pods of the service's size must leave exactly one Pending.
"""
from __future__ import annotations

import datetime
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from realplane import ControlPlane, wait_for

from oscar_batch.core.planner import Needs, Policy, plan_capacity, pod_requests

GPU = "nvidia.com/gpu"
SCHEDULE_TIMEOUT = 60.0


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node(name: str, cpu: str, memory: str, pods: str = "110", gpus: int = 0, *, labels: dict[str, str] | None = None,
         taints: list[dict[str, str]] | None = None, unschedulable: bool = False, ready: bool = True) -> dict[str, Any]:
    allocatable = {"cpu": cpu, "memory": memory, "pods": pods}
    if gpus:
        allocatable[GPU] = str(gpus)
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"capacity": allocatable, "allocatable": allocatable, "conditions": [
            {"type": "Ready", "status": "True" if ready else "False", "reason": "Simulated",
             "message": "no kubelet: a Node object of the real tier", "lastHeartbeatTime": now(),
             "lastTransitionTime": now()}]},
    }


def add_nodes(plane: ControlPlane, nodes: list[dict[str, Any]]) -> None:
    """Create the Nodes, then give them their status and the taints they should have.

    The API server's TaintNodesByCondition admission adds node.kubernetes.io/not-ready:NoSchedule to every new
    Node; the node lifecycle controller would remove it once the kubelet reports Ready. Here the test is that
    controller: a Ready node gets exactly the taints it declares, a NotReady one keeps the not-ready taint.
    """
    for obj in nodes:
        plane.kubectl("create", "-f", "-", stdin=json.dumps({k: v for k, v in obj.items() if k != "status"}))
        plane.kubectl("patch", "node", obj["metadata"]["name"], "--subresource=status", "--type=merge",
                      "-p", json.dumps({"status": obj["status"]}))
        ready = obj["status"]["conditions"][0]["status"] == "True"
        created = plane.get_json("node", obj["metadata"]["name"])
        assert {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"} in [
            {k: t[k] for k in ("key", "effect")} for t in created["spec"].get("taints", [])], created["spec"]
        taints = obj["spec"]["taints"] if ready else created["spec"]["taints"]
        plane.kubectl("patch", "node", obj["metadata"]["name"], "--type=json",
                      "-p", json.dumps([{"op": "replace", "path": "/spec/taints", "value": taints}]))


def remove_nodes(plane: ControlPlane, names: list[str]) -> None:
    plane.kubectl("delete", "node", *names, "--wait=true", "--timeout=60s", check=False)


def pod(name: str, template: dict[str, Any], node_name: str | None = None) -> dict[str, Any]:
    spec = json.loads(json.dumps(template))
    if node_name:
        spec["nodeName"] = node_name  # bound without the scheduler, as a DaemonSet pod or a static pod is
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "capacity"}},
            "spec": spec}


def container(name: str, cpu: str, memory: str, gpus: int = 0, **extra: Any) -> dict[str, Any]:
    requests = {"cpu": cpu, "memory": memory}
    resources: dict[str, Any] = {"requests": requests}
    if gpus:
        requests[GPU] = str(gpus)
        resources["limits"] = {GPU: str(gpus)}  # extended resources need limits equal to requests
    return {"name": name, "image": "registry.invalid/oscar-service:none", "resources": resources, **extra}


def pod_spec(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers), "automountServiceAccountToken": False,
                            "terminationGracePeriodSeconds": 0, "restartPolicy": "Never"}
    if init:
        spec["initContainers"] = list(init)
    return spec


# The invocation sizes checked: a plain one; one with a native sidecar (an init container that keeps running)
# and a larger plain init container, which the scheduler counts as max(Σ containers + sidecars, init + sidecars);
# and one asking for a GPU (an extended resource).
SERVICES = {
    "plain": pod_spec(container("main", "1", "1Gi")),
    "sidecar-and-init": pod_spec(
        container("main", "700m", "512Mi"),
        init=(container("mount", "300m", "256Mi", restartPolicy="Always"), container("setup", "2", "100Mi"))),
    "gpu": pod_spec(container("main", "500m", "512Mi", gpus=1)),
}


def cluster_nodes(prefix: str) -> list[dict[str, Any]]:
    """Nodes limited by cpu, memory, pod count and GPUs in turn, plus three the scheduler must not use."""
    return [
        node(f"{prefix}-cpu", "4", "8Gi", gpus=2),
        node(f"{prefix}-memory", "8", "3Gi"),
        node(f"{prefix}-pods", "16", "64Gi", pods="3"),
        node(f"{prefix}-control-plane", "16", "64Gi", gpus=4,
             labels={"node-role.kubernetes.io/control-plane": ""},
             taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        node(f"{prefix}-cordoned", "16", "64Gi", gpus=4, unschedulable=True),
        node(f"{prefix}-not-ready", "16", "64Gi", gpus=4, ready=False),
    ]


@pytest.fixture
def workload_namespace(real_cluster: ControlPlane, namespace: str) -> Iterator[str]:
    """A namespace whose default ServiceAccount exists (pods are admitted); its pods are force-deleted after."""
    wait_for(lambda: real_cluster.kubectl("get", "serviceaccount", "default", "-n", namespace,
                                          check=False).returncode == 0,
             SCHEDULE_TIMEOUT, f"ServiceAccount {namespace}/default", alive=real_cluster.processes)
    yield namespace
    # Bound pods wait for a kubelet to confirm their deletion; there is none.
    real_cluster.kubectl("delete", "pods", "--all", "-n", namespace, "--grace-period=0", "--force",
                         "--wait=true", "--timeout=60s", check=False)


def scheduled_or_refused(obj: dict[str, Any]) -> bool:
    return any(c["type"] == "PodScheduled" for c in obj.get("status", {}).get("conditions", []))


@pytest.mark.parametrize("service", list(SERVICES))
def test_planned_slots_match_the_scheduler(real_cluster: ControlPlane, workload_namespace: str,
                                           service: str) -> None:
    plane, namespace, template = real_cluster, workload_namespace, SERVICES[service]
    nodes = cluster_nodes(f"cap-{service}")
    names = [n["metadata"]["name"] for n in nodes]
    add_nodes(plane, nodes)
    try:
        # Already on the cpu node: a pod bound there holding 1.5 cores, and a finished one that holds nothing.
        plane.apply([pod("resident", pod_spec(container("c", "1500m", "256Mi")), node_name=names[0]),
                     pod("finished", pod_spec(container("c", "2", "1Gi")), node_name=names[0])], "-n", namespace)
        plane.kubectl("patch", "pod", "finished", "-n", namespace, "--subresource=status", "--type=merge",
                      "-p", json.dumps({"status": {"phase": "Succeeded"}}))

        cpu, memory, gpus = pod_requests({"spec": template})
        plan = plan_capacity(plane.get_json("nodes")["items"], plane.get_json("pods", "-A")["items"],
                             Needs(cpu, memory, gpus), Policy(headroom=1))
        assert plan.total > 0, plan
        planned = {n.name: n.slots for n in plan.nodes if n.slots}

        batch = [pod(f"{service}-{index}", template) for index in range(plan.total + 1)]
        plane.apply(batch, "-n", namespace)

        def all_decided() -> list[dict[str, Any]] | None:
            pods = plane.get_json("pods", "-n", namespace, "-l", "app=capacity")["items"]
            mine = [p for p in pods if p["metadata"]["name"].startswith(f"{service}-")]
            return mine if len(mine) == len(batch) and all(map(scheduled_or_refused, mine)) else None

        pods = wait_for(all_decided, SCHEDULE_TIMEOUT, f"the scheduler to decide on {len(batch)} pods",
                        alive=plane.processes)
        pending = [p for p in pods if not p["spec"].get("nodeName")]
        assert len(pending) == 1, (f"planned {plan.total}, {len(pending)} of {len(batch)} left Pending; "
                                   f"placement {Counter(p['spec'].get('nodeName') for p in pods)}")
        refusal = next(c for c in pending[0]["status"]["conditions"] if c["type"] == "PodScheduled")
        assert (refusal["status"], refusal["reason"]) == ("False", "Unschedulable"), refusal
        placed = Counter(p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName"))
        assert placed == planned, f"scheduler placed {dict(placed)}, planner counted {planned}"

        # With the batch in place, the planner sees a full cluster, as the scheduler does.
        after = plan_capacity(plane.get_json("nodes")["items"], plane.get_json("pods", "-A")["items"],
                              Needs(cpu, memory, gpus), Policy(headroom=1))
        assert after.total == 0, after
    finally:
        plane.kubectl("delete", "pods", "--all", "-n", namespace, "--grace-period=0", "--force",
                      "--wait=true", "--timeout=60s", check=False)
        remove_nodes(plane, names)


def test_job_controller_runs_a_job_on_simulated_nodes(real_cluster: ControlPlane, workload_namespace: str) -> None:
    """The real Job controller creates the pods, the scheduler binds them; the test plays the kubelet."""
    plane, namespace = real_cluster, workload_namespace
    names = ["job-node-a", "job-node-b"]
    add_nodes(plane, [node(name, "4", "8Gi") for name in names])
    try:
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "range-0-9", "labels": {"oscar_service": "fish-detector"}},
               "spec": {"completions": 2, "parallelism": 2, "backoffLimit": 0,
                        "template": {"metadata": {"labels": {"oscar_service": "fish-detector"}},
                                     "spec": pod_spec(container("main", "1", "1Gi",
                                                                env=[{"name": "EVENT", "value": "{}"}]))}}}
        plane.apply(job, "-n", namespace)

        def bound_pods() -> list[dict[str, Any]] | None:
            pods = plane.get_json("pods", "-n", namespace, "-l", "batch.kubernetes.io/job-name=range-0-9")["items"]
            return pods if len(pods) == 2 and all(p["spec"].get("nodeName") for p in pods) else None

        pods = wait_for(bound_pods, SCHEDULE_TIMEOUT, "the Job's 2 pods to be created and bound",
                        alive=plane.processes)
        for item in pods:
            assert item["metadata"]["ownerReferences"][0]["kind"] == "Job"
            started = now()
            plane.kubectl("patch", "pod", item["metadata"]["name"], "-n", namespace, "--subresource=status",
                          "--type=merge", "-p", json.dumps({"status": {
                              "phase": "Succeeded", "startTime": started,
                              "containerStatuses": [{"name": "main", "ready": False, "restartCount": 0,
                                                     "image": "registry.invalid/oscar-service:none", "imageID": "",
                                                     "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                                              "startedAt": started,
                                                                              "finishedAt": now()}}}]}}))

        def complete() -> dict[str, Any] | None:
            current = plane.get_json("job", "range-0-9", "-n", namespace)
            conditions = {c["type"]: c["status"] for c in current.get("status", {}).get("conditions", [])}
            return current if conditions.get("Complete") == "True" else None

        finished = wait_for(complete, SCHEDULE_TIMEOUT, "the Job controller to mark the Job Complete",
                            alive=plane.processes)
        assert finished["status"]["succeeded"] == 2
        assert finished["status"].get("completionTime")
    finally:
        plane.kubectl("delete", "pods", "--all", "-n", namespace, "--grace-period=0", "--force",
                      "--wait=true", "--timeout=60s", check=False)
        remove_nodes(plane, names)
