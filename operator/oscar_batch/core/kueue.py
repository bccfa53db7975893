"""What an owner's Kueue quota admits. OSCAR v4 creates the Jobs of an OIDC user's service suspended, in the
service's LocalQueue; Kueue admits (unsuspends) one when the LocalQueue's ClusterQueue has nominal quota left for
its requests. A suspended Job is queued, not running, and the node capacity the quota cannot reach is no slot.
Pure."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from oscar_batch.core.planner import Needs
from oscar_batch.core.quantity import cpu_millicores, format_bytes, format_millicores, whole_units

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GPU = "nvidia.com/gpu"


def queue_name(job: Mapping[str, Any]) -> str:
    """The LocalQueue a Job waits in, or "" for a Job Kueue does not manage."""
    return str((job.get("metadata", {}).get("labels") or {}).get(QUEUE_LABEL) or "")


def queued(job: Mapping[str, Any]) -> bool:
    """Created suspended and not admitted yet: no pod exists or will, until Kueue lets it go."""
    return bool(job.get("spec", {}).get("suspend"))


@dataclasses.dataclass(frozen=True)
class QueueRoom:
    slots: int                 # invocations the quota lets this batch have in flight, its admitted ones included
    quota: dict[str, int]      # resource → nominal quota (millicores, bytes, units)
    used: dict[str, int]       # resource → admitted usage, every workload of the ClusterQueue counted
    short_of: str = ""         # the resource that limits, or the one the quota does not cover at all

    def describe(self) -> str:
        shown = [name for name in ("cpu", "memory", GPU) if name in self.quota]
        return (f"quota {', '.join(f'{name} {_format(name, self.quota[name])}' for name in shown)}, "
                f"in use {', '.join(f'{name} {_format(name, self.used.get(name, 0))}' for name in shown)}")


def room(cluster_queue: Mapping[str, Any], needs: Needs, admitted: int) -> QueueRoom:
    """`admitted`: this batch's Jobs Kueue has admitted and that have not finished; they are in `used` already."""
    quota: dict[str, int] = {}
    for group in cluster_queue.get("spec", {}).get("resourceGroups") or ():
        for flavor in group.get("flavors") or ():
            for resource in flavor.get("resources") or ():
                quota[resource["name"]] = quota.get(resource["name"], 0) + _amount(resource["name"],
                                                                                 resource.get("nominalQuota", 0))
    used: dict[str, int] = {}
    for flavor in cluster_queue.get("status", {}).get("flavorsUsage") or ():
        for resource in flavor.get("resources") or ():
            used[resource["name"]] = used.get(resource["name"], 0) + _amount(resource["name"],
                                                                            resource.get("total", 0))
    wanted = {"cpu": needs.cpu_millicores + needs.overhead_cpu_millicores,
              "memory": needs.memory_bytes + needs.overhead_memory_bytes, GPU: needs.gpus}
    more, short_of = None, ""
    for name, amount in wanted.items():
        if amount <= 0:
            continue
        if name not in quota:
            return QueueRoom(0, quota, used, short_of=name)   # Kueue never admits what its quota does not cover
        fits = max(quota[name] - used.get(name, 0), 0) // amount
        if more is None or fits < more:
            more, short_of = fits, name
    return QueueRoom(admitted + (more or 0), quota, used, short_of)


def _amount(resource: str, value: Any) -> int:
    if resource == "cpu":
        return cpu_millicores(value)
    return whole_units(value)


def _format(resource: str, amount: int) -> str:
    if resource == "cpu":
        return str(amount // 1000) if amount % 1000 == 0 else format_millicores(amount)
    if resource == "memory":
        return format_bytes(amount)
    return str(amount)
