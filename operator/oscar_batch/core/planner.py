"""How many invocations of one OSCAR service the cluster fits at once, node by node, as the scheduler sees it.

Pure: Kubernetes API JSON (or OSCAR's /system/status) in, a `Plan` out. A pod cannot span nodes, so slots are
counted per node from allocatable minus the requests of the pods bound there, never from summed free capacity.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from oscar_batch.core.quantity import cpu_millicores, format_bytes, format_millicores, whole_units

Json = Mapping[str, Any]
LimitedBy = Literal["cpu", "memory", "gpu", "pods", "excluded"]

GPU_RESOURCE = "nvidia.com/gpu"
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
_BLOCKING_TAINT_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
_TERMINATED_PHASES = frozenset({"Succeeded", "Failed"})
_NODES_NAMED_IN_EXPLANATION = 5


@dataclass(frozen=True)
class Needs:
    """One invocation's requests; the overheads are what the OSCAR job adds to every pod (e.g. the mount sidecar)."""

    cpu_millicores: int
    memory_bytes: int
    gpus: int = 0
    overhead_cpu_millicores: int = 0
    overhead_memory_bytes: int = 0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")

    @classmethod
    def parse(
        cls, cpu: str, memory: str, gpus: int = 0, overhead_cpu: str = "0", overhead_memory: str = "0"
    ) -> Needs:
        """From Kubernetes quantities, as an OSCAR service definition gives them ("0.5", "3Gi")."""
        return cls(
            cpu_millicores(cpu), whole_units(memory), gpus, cpu_millicores(overhead_cpu), whole_units(overhead_memory)
        )

    @property
    def pod_cpu(self) -> int:
        return self.cpu_millicores + self.overhead_cpu_millicores

    @property
    def pod_memory(self) -> int:
        return self.memory_bytes + self.overhead_memory_bytes


@dataclass(frozen=True)
class Policy:
    """headroom: share of the cluster's slots one batch may use; maximum: cap on the total, None for none."""

    headroom: Fraction | Decimal | float | str = Fraction(4, 5)
    maximum: int | None = None
    tolerations: tuple[Json, ...] = ()

    def __post_init__(self) -> None:
        # Through str() so 0.29 means 29/100, not the nearest binary float, and floor(0.29 × 100) is 29.
        invalid = ValueError(f"headroom must be a number in (0, 1], got {self.headroom!r}")
        try:
            headroom = Fraction(str(self.headroom))
        except ValueError:
            raise invalid from None
        if not 0 < headroom <= 1:
            raise invalid
        if self.maximum is not None and self.maximum < 1:
            raise ValueError(f"maximum must be at least 1, got {self.maximum}")
        object.__setattr__(self, "headroom", headroom)
        object.__setattr__(self, "tolerations", tuple(self.tolerations))


@dataclass(frozen=True)
class NodePlan:
    name: str
    slots: int
    limited_by: LimitedBy
    reason: str
    free_cpu_millicores: int
    free_memory_bytes: int
    free_gpus: int
    free_pods: int | None  # None when the source does not say (OSCAR status)


@dataclass(frozen=True)
class Plan:
    total: int
    nodes: tuple[NodePlan, ...]
    cluster_slots: int  # Σ per-node slots at full free capacity, before headroom and maximum
    explanation: str = ""  # why total is 0; empty otherwise


def plan_capacity(
    nodes: Iterable[Json],
    pods: Iterable[Json],
    needs: Needs,
    policy: Policy = Policy(),
    ignore_pod: Callable[[Json], bool] | None = None,
) -> Plan:
    """Plan from Node and Pod objects (the `items` of `kubectl get nodes/pods -o json`).

    Pods for which `ignore_pod` returns True are left out of the used capacity: the operator passes its own
    batch's pods, so re-planning while they run counts their slots as the batch's own.
    """
    millicores, units = _Parsed(cpu_millicores), _Parsed(whole_units)
    used_by_node = _requests_by_node(pods, ignore_pod, millicores, units)
    nodes = list(nodes)
    workers_exist = not all(_is_control_plane(node) for node in nodes)
    plans = []
    for node in nodes:
        name = node.get("metadata", {}).get("name", "")
        try:
            allocatable = node.get("status", {}).get("allocatable") or {}
            cpu, memory, gpus, pod_count = used_by_node.get(name, (0, 0, 0, 0))
            free_cpu = millicores[allocatable.get("cpu", 0)] - cpu
            free_memory = units[allocatable.get("memory", 0)] - memory
            free_gpus = units[allocatable.get(GPU_RESOURCE, 0)] - gpus
            free_pods = units[allocatable.get("pods", 0)] - pod_count
        except ValueError as error:
            raise ValueError(f"node {name}: {error}") from None
        exclusion = _exclusion_reason(node, workers_exist, policy.tolerations)
        plans.append(_node_plan(name, exclusion, free_cpu, free_memory, free_gpus, free_pods, needs))
    return _plan(plans, needs, policy)


def plan_from_oscar_status(status: Json, needs: Needs, policy: Policy = Policy()) -> Plan:
    """Fallback when Nodes may not be listed: OSCAR's GET /system/status, current or legacy format."""
    if not (needs.pod_cpu or needs.pod_memory or needs.gpus):
        raise ValueError("OSCAR status gives no pod limit: cannot plan for a service that requests nothing")
    if isinstance(status.get("cluster"), Mapping):
        plans = [_current_status_node(node, needs) for node in status["cluster"].get("nodes") or ()]
    elif isinstance(status.get("detail"), list):
        plans = [_legacy_status_node(node, needs) for node in status["detail"]]
    else:
        raise ValueError("not an OSCAR /system/status: neither 'cluster' (current) nor 'detail' (legacy)")
    return _plan(plans, needs, policy)


def pod_requests(pod: Json) -> tuple[int, int, int]:
    """(cpu millicores, memory bytes, GPUs) the scheduler reserves for a pod, native sidecars included."""
    return _pod_requests(pod.get("spec") or {}, _Parsed(cpu_millicores), _Parsed(whole_units))


def tolerates(toleration: Json, taint: Json) -> bool:
    """Kubernetes' matching: empty effect matches every effect; empty key with Exists matches every taint."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and toleration.get("value", "") == taint.get("value", "")


class _Parsed(dict[str | int, int]):
    """Memo of one quantity parser for one plan: pods share a handful of distinct strings."""

    def __init__(self, parse: Callable[[str | int], int]) -> None:
        super().__init__()
        self._parse = parse

    def __missing__(self, value: str | int) -> int:
        parsed = self[value] = self._parse(value)
        return parsed


def _pod_requests(spec: Json, millicores: _Parsed, units: _Parsed) -> tuple[int, int, int]:
    cpu = memory = gpus = 0
    for container in spec.get("containers") or ():
        c, m, g = _container_requests(container, millicores, units)
        cpu, memory, gpus = cpu + c, memory + m, gpus + g
    init_containers = spec.get("initContainers")
    if init_containers:
        # An init container runs alone, beside the native sidecars (restartPolicy Always) started before it;
        # sidecars keep running with the main containers. Without sidecars: max(Σ containers, largest init).
        sidecar_cpu = sidecar_memory = sidecar_gpus = 0
        init_cpu = init_memory = init_gpus = 0
        for container in init_containers:
            c, m, g = _container_requests(container, millicores, units)
            if container.get("restartPolicy") == "Always":
                sidecar_cpu, sidecar_memory, sidecar_gpus = sidecar_cpu + c, sidecar_memory + m, sidecar_gpus + g
                cpu, memory, gpus = cpu + c, memory + m, gpus + g
                c, m, g = sidecar_cpu, sidecar_memory, sidecar_gpus
            else:
                c, m, g = c + sidecar_cpu, m + sidecar_memory, g + sidecar_gpus
            init_cpu, init_memory, init_gpus = max(init_cpu, c), max(init_memory, m), max(init_gpus, g)
        cpu, memory, gpus = max(cpu, init_cpu), max(memory, init_memory), max(gpus, init_gpus)
    overhead = spec.get("overhead")
    if overhead:
        cpu += millicores[overhead.get("cpu", 0)]
        memory += units[overhead.get("memory", 0)]
        gpus += units[overhead.get(GPU_RESOURCE, 0)]
    return cpu, memory, gpus


def _container_requests(container: Json, millicores: _Parsed, units: _Parsed) -> tuple[int, int, int]:
    requests = (container.get("resources") or {}).get("requests")
    if not requests:
        return 0, 0, 0
    return millicores[requests.get("cpu", 0)], units[requests.get("memory", 0)], units[requests.get(GPU_RESOURCE, 0)]


def _requests_by_node(
    pods: Iterable[Json], ignore_pod: Callable[[Json], bool] | None, millicores: _Parsed, units: _Parsed
) -> dict[str, list[int]]:
    """One pass over all pods: node name → [cpu, memory, gpus, pod count] of the pods holding resources there."""
    used: dict[str, list[int]] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        node_name = spec.get("nodeName")
        if not node_name or (pod.get("status") or {}).get("phase") in _TERMINATED_PHASES:
            continue
        if ignore_pod is not None and ignore_pod(pod):
            continue
        try:
            cpu, memory, gpus = _pod_requests(spec, millicores, units)
        except ValueError as error:
            metadata = pod.get("metadata") or {}
            raise ValueError(f"pod {metadata.get('namespace', '')}/{metadata.get('name', '')}: {error}") from None
        totals = used.get(node_name)
        if totals is None:
            used[node_name] = [cpu, memory, gpus, 1]
        else:
            totals[0] += cpu
            totals[1] += memory
            totals[2] += gpus
            totals[3] += 1
    return used


def _is_control_plane(node: Json) -> bool:
    labels = node.get("metadata", {}).get("labels") or {}
    return any(label in labels for label in CONTROL_PLANE_LABELS)


def _exclusion_reason(node: Json, workers_exist: bool, tolerations: tuple[Json, ...]) -> str | None:
    if workers_exist and _is_control_plane(node):
        return "control-plane node (worker nodes exist)"
    conditions = node.get("status", {}).get("conditions") or ()
    if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
        return "NotReady"
    if node.get("spec", {}).get("unschedulable"):
        return "cordoned (unschedulable)"
    for taint in node.get("spec", {}).get("taints") or ():
        if taint.get("effect") in _BLOCKING_TAINT_EFFECTS and not any(tolerates(t, taint) for t in tolerations):
            value = f"={taint['value']}" if taint.get("value") else ""
            return f"taint {taint.get('key', '')}{value}:{taint['effect']} not tolerated"
    return None


def _current_status_node(node: Json, needs: Needs) -> NodePlan:
    name = str(node.get("name", ""))
    try:
        cpu, memory = node.get("cpu") or {}, node.get("memory") or {}
        free_cpu = whole_units(cpu.get("capacity_cores", 0)) - whole_units(cpu.get("request_cores", 0))
        free_memory = whole_units(memory.get("capacity_bytes", 0)) - whole_units(memory.get("request_bytes", 0))
        gpus = whole_units(node.get("gpu", 0))
    except ValueError as error:
        raise ValueError(f"OSCAR status node {name}: {error}") from None
    conditions = node.get("conditions")
    if conditions is None:
        ready = node.get("status") == "Ready"
    else:
        ready = any(c.get("type") == "Ready" and c.get("status") in (True, "True") for c in conditions)
    exclusion = None
    if node.get("is_interlink"):
        exclusion = "interLink virtual node"
    elif not ready:
        exclusion = "NotReady"
    note = "OSCAR status: GPUs in use are not reported" if needs.gpus else ""
    return _node_plan(name, exclusion, free_cpu, free_memory, gpus, None, needs, note)


def _legacy_status_node(node: Json, needs: Needs) -> NodePlan:
    name = str(node.get("nodeName", ""))
    try:
        free_cpu = whole_units(node.get("cpuCapacity", "0")) - whole_units(node.get("cpuUsage", "0"))
        free_memory = whole_units(node.get("memoryCapacity", "0")) - whole_units(node.get("memoryUsage", "0"))
    except ValueError as error:
        raise ValueError(f"OSCAR status node {name}: {error}") from None
    note = "legacy OSCAR status: live usage, not requests" + ("; no per-node GPU count" if needs.gpus else "")
    return _node_plan(name, None, free_cpu, free_memory, 0, None, needs, note)


def _node_plan(
    name: str,
    exclusion: str | None,
    free_cpu: int,
    free_memory: int,
    free_gpus: int,
    free_pods: int | None,
    needs: Needs,
    note: str = "",
) -> NodePlan:
    if exclusion is not None:
        return NodePlan(name, 0, "excluded", exclusion, free_cpu, free_memory, free_gpus, free_pods)
    # A resource the invocation does not request never limits it, as in the scheduler's fit check.
    requested: tuple[tuple[int, int, LimitedBy], ...] = (
        (free_cpu, needs.pod_cpu, "cpu"),
        (free_memory, needs.pod_memory, "memory"),
        (free_gpus, needs.gpus, "gpu"),
    )
    limits = [(max(0, free // need), resource) for free, need, resource in requested if need > 0]
    if free_pods is not None:
        limits.append((max(0, free_pods), "pods"))
    slots, limited_by = min(limits, key=lambda limit: limit[0])
    free = [f"cpu {format_millicores(free_cpu)}", f"memory {format_bytes(free_memory)}"]
    if needs.gpus:
        free.append(f"gpu {free_gpus}")
    if free_pods is not None:
        free.append(f"pods {free_pods}")
    reason = "free " + ", ".join(free) + (f" ({note})" if note else "")
    return NodePlan(name, slots, limited_by, reason, free_cpu, free_memory, free_gpus, free_pods)


def _plan(nodes: list[NodePlan], needs: Needs, policy: Policy) -> Plan:
    # Headroom applies to the cluster's total: applied per node, rounding would waste up to a slot on each.
    cluster_slots = sum(node.slots for node in nodes)
    total = math.floor(Fraction(policy.headroom) * cluster_slots)
    if policy.maximum is not None:
        total = min(total, policy.maximum)
    explanation = "" if total else _explain_nothing_fits(nodes, needs, policy, cluster_slots)
    return Plan(total, tuple(nodes), cluster_slots, explanation)


def _explain_nothing_fits(nodes: list[NodePlan], needs: Needs, policy: Policy, cluster_slots: int) -> str:
    if not nodes:
        return "no nodes to plan on"
    eligible = [node for node in nodes if node.limited_by != "excluded"]
    if not eligible:
        named = ", ".join(f"{node.name} {node.reason}" for node in nodes[:_NODES_NAMED_IN_EXPLANATION])
        more = len(nodes) - _NODES_NAMED_IN_EXPLANATION
        return f"no eligible worker node: {named}" + (f" and {more} more" if more > 0 else "")
    if cluster_slots:
        return f"the cluster fits {cluster_slots}, and headroom {float(policy.headroom):g} of that rounds down to 0"
    shortfalls = []
    for label, need, overhead, largest, show in (
        ("CPU", needs.pod_cpu, needs.overhead_cpu_millicores, max(n.free_cpu_millicores for n in eligible),
         format_millicores),
        ("memory", needs.pod_memory, needs.overhead_memory_bytes, max(n.free_memory_bytes for n in eligible),
         format_bytes),
        ("GPU", needs.gpus, 0, max(n.free_gpus for n in eligible), str),
    ):
        if need and need > largest:
            including = f" including {show(overhead)} per-pod overhead" if overhead else ""
            shortfalls.append(
                f"largest free {label} on any eligible node is {show(max(largest, 0))}; "
                f"the service needs {show(need)}{including}"
            )
    if all(node.limited_by == "pods" for node in eligible):
        shortfalls.append("every eligible node is at its pod limit")
    if shortfalls:
        return "; ".join(shortfalls)
    short_of = ", ".join(f"{node.name} short of {node.limited_by}" for node in eligible[:_NODES_NAMED_IN_EXPLANATION])
    return f"free capacity is fragmented: no eligible node has enough of everything at once ({short_of})"
