"""Capacity changes on a running sandbox, the way a cluster administrator makes them: a node drained as
`kubectl drain` does it (cordon, then the Eviction API for each pod), and a node joining.

All of it goes through the sandbox's Kubernetes API (the in-process calls emit the same watch events as HTTP),
so the operator and the job runner see exactly what they would see in a cluster: the node's
`spec.unschedulable`, each pod's `DisruptionTarget` condition (EvictionByEvictionAPI) and `deletionTimestamp`,
its kubelet stopping it (the Job fails: OSCAR's Jobs have backoffLimit 0), the pod gone, a new Node.

Real `kubectl drain` cannot do this against the sandbox: it sends its DeleteOptions and Evictions as protobuf,
which the sandbox does not decode (415). `drain` takes its steps instead.
"""
from __future__ import annotations

import time
from typing import Any

from oscar_batch_sandbox.config import NodeSpec
from oscar_batch_sandbox.kube import SandboxKubernetes

NODES, PODS = "v1/nodes", "v1/pods"
DRAIN_TIMEOUT_SECONDS = 60.0


async def cordon(kube: SandboxKubernetes, node: str) -> None:
    """`kubectl cordon NODE`: new pods are no longer scheduled there; those running stay."""
    await kube.patch(NODES, None, node, {"spec": {"unschedulable": True}})


async def uncordon(kube: SandboxKubernetes, node: str) -> None:
    await kube.patch(NODES, None, node, {"spec": {"unschedulable": False}})


async def drain(kube: SandboxKubernetes, node: str, timeout: float = DRAIN_TIMEOUT_SECONDS) -> list[str]:
    """`kubectl drain NODE --ignore-daemonsets --delete-emptydir-data --force`: cordon, evict every pod bound
    to the node (DaemonSet and mirror pods stay, as with --ignore-daemonsets), then wait until each is gone.
    Returns the evicted pods as `namespace/name`."""
    if kube.get(NODES, None, node) is None:
        raise LookupError(f'nodes "{node}" not found')
    await cordon(kube, node)
    evicted: dict[tuple[str, str], str] = {}
    for pod in kube.list(PODS):
        metadata = pod["metadata"]
        if (pod.get("spec") or {}).get("nodeName") != node or _stays(pod):
            continue
        await kube.evict(metadata["namespace"], metadata["name"])
        evicted[(metadata["namespace"], metadata["name"])] = metadata["uid"]
    deadline = time.monotonic() + timeout
    while True:
        left = [key for key, uid in evicted.items() if ((kube.get(PODS, *key) or {}).get("metadata") or {})
                .get("uid") == uid]
        if not left:
            return [f"{namespace}/{name}" for namespace, name in evicted]
        if time.monotonic() > deadline:
            raise TimeoutError(f"drain {node}: {len(left)} pod(s) still there after {timeout:g} s: "
                               f"{', '.join(f'{ns}/{name}' for ns, name in left)}")
        await kube.wait_for_change(min(0.1, max(deadline - time.monotonic(), 0.001)))


def _stays(pod: dict[str, Any]) -> bool:
    metadata = pod["metadata"]
    if "kubernetes.io/config.mirror" in (metadata.get("annotations") or {}):
        return True
    return any(owner.get("kind") == "DaemonSet" and owner.get("controller")
               for owner in metadata.get("ownerReferences") or ())


async def add_node(kube: SandboxKubernetes, node: NodeSpec) -> None:
    """A node joins the cluster (Ready, schedulable unless the spec says otherwise)."""
    await kube.create(NODES, node.to_object())

