"""Kueue, as OSCAR v4 uses it for an OIDC user's services: the owner's ClusterQueue with nominal cpu and memory
quotas, the service's LocalQueue, and an admission controller that unsuspends queued Jobs in creation order while
the quota has room, keeping the ClusterQueue's `status.flavorsUsage` as Kueue does (kueue.x-k8s.io/v1beta2)."""
from __future__ import annotations

from typing import Any

from oscar_batch.core.kueue import QUEUE_LABEL
from oscar_batch.core.quantity import cpu_millicores, format_millicores, whole_units
from oscar_batch_sandbox.kube import CRD_RESOURCE, SandboxKubernetes

Json = dict[str, Any]
API = "kueue.x-k8s.io/v1beta2"
CLUSTER_QUEUES = f"{API}/clusterqueues"
LOCAL_QUEUES = f"{API}/localqueues"
JOBS = "batch/v1/jobs"
FLAVOR = "default-flavor"


def cluster_queue_name(owner: str) -> str:
    return f"oscar-cq-{owner}"


def local_queue_name(service: str) -> str:
    return f"oscar-lq-{service}"


def _crd(plural: str, kind: str, scope: str) -> Json:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.kueue.x-k8s.io"},
            "spec": {"group": "kueue.x-k8s.io", "scope": scope,
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                     "versions": [{"name": "v1beta2", "served": True, "storage": True,
                                   "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


def crds() -> list[Json]:
    """Kueue's two queue kinds, schemaless: what the operator reads of them, served as a cluster with Kueue does."""
    return [_crd("clusterqueues", "ClusterQueue", "Cluster"), _crd("localqueues", "LocalQueue", "Namespaced")]


async def install(kube: SandboxKubernetes, *, owner: str, service: str, namespace: str, cpu: str,
                  memory: str) -> None:
    for crd in crds():
        await kube.create(CRD_RESOURCE, crd)
    await kube.create(CLUSTER_QUEUES, {
        "apiVersion": API, "kind": "ClusterQueue", "metadata": {"name": cluster_queue_name(owner)},
        "spec": {"namespaceSelector": {}, "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [
            {"name": FLAVOR, "resources": [{"name": "cpu", "nominalQuota": cpu},
                                           {"name": "memory", "nominalQuota": memory}]}]}]},
        "status": {"flavorsUsage": [], "admittedWorkloads": 0}})
    await kube.create(LOCAL_QUEUES, {
        "apiVersion": API, "kind": "LocalQueue",
        "metadata": {"name": local_queue_name(service), "namespace": namespace},
        "spec": {"clusterQueue": cluster_queue_name(owner)}})


def _requests(job: Json) -> tuple[int, int]:
    """(cpu millicores, memory bytes) of a Job's pod: requests, else limits (which the API server copies)."""
    cpu = memory = 0
    for container in job["spec"]["template"]["spec"].get("containers") or ():
        resources = container.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        cpu += cpu_millicores(wanted.get("cpu", 0))
        memory += whole_units(wanted.get("memory", 0))
    return cpu, memory


def _finished(job: Json) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or ())


async def admit(kube: SandboxKubernetes, *, owner: str, namespace: str) -> None:
    """One pass of Kueue's scheduler over the owner's queue."""
    queue = kube.get(CLUSTER_QUEUES, None, cluster_queue_name(owner))
    if queue is None:
        return
    quota = {resource["name"]: resource["nominalQuota"]
             for resource in queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"]}
    cpu_quota, memory_quota = cpu_millicores(quota["cpu"]), whole_units(quota["memory"])
    jobs = sorted((job for job in kube.list(JOBS, namespace)
                   if (job["metadata"].get("labels") or {}).get(QUEUE_LABEL) and not _finished(job)),
                  key=lambda job: int(job["metadata"].get("resourceVersion") or 0))
    admitted = [job for job in jobs if not job["spec"].get("suspend")]
    cpu = sum(_requests(job)[0] for job in admitted)
    memory = sum(_requests(job)[1] for job in admitted)
    for job in jobs:
        if not job["spec"].get("suspend"):
            continue
        job_cpu, job_memory = _requests(job)
        if cpu + job_cpu > cpu_quota or memory + job_memory > memory_quota:
            break   # strict FIFO, as Kueue's default queueing strategy
        await kube.patch(JOBS, namespace, job["metadata"]["name"], {"spec": {"suspend": False}})
        cpu, memory = cpu + job_cpu, memory + job_memory
        admitted.append(job)
    usage = {"flavorsUsage": [{"name": FLAVOR, "resources": [
        {"name": "cpu", "total": format_millicores(cpu), "borrowed": "0"},
        {"name": "memory", "total": str(memory), "borrowed": "0"}]}], "admittedWorkloads": len(admitted)}
    if (queue.get("status") or {}) != usage:
        await kube.patch(CLUSTER_QUEUES, None, cluster_queue_name(owner), {"status": usage})
