"""The sandbox's scheduler, kubelet and Job controller, and the behaviour of the OSCAR service they run.

Kubernetes, reduced to what an operator can observe:
- Job controller: one Pod per Job of the services namespace; Job status and conditions as Kubernetes (1.31+)
  writes them; a Job whose Pod fails or disappears fails (OSCAR's Jobs have backoffLimit 0 and no
  podFailurePolicy: BackoffLimitExceeded, whatever the cause); Pods of deleted Jobs are deleted, failed Pods of
  Jobs that remain are kept.
- Scheduler: binds every unbound Pod of the cluster (FIFO) to a node that passes the default filters
  (unschedulable, taints, nodeSelector, resources incl. `pods` and `nvidia.com/gpu`), preferring the least
  requested node; otherwise the Pod stays Pending with `PodScheduled=False/Unschedulable` and the scheduler's
  message. Free capacity is derived from Pod phases, so it is released when a Pod ends.
- Kubelet: a bound Pod runs. A Job's Pod runs the service behaviour below; any other Pod runs forever. A Pod
  marked for deletion (the Eviction API, e.g. by a drain) has its containers stopped (SIGTERM, exit 143), ends
  Failed and is then removed. Node-pressure eviction (`disruption_rate`) ends a Pod Failed with reason
  `Evicted`, its containers killed (exit 137) and the condition `DisruptionTarget` (TerminationByKubelet); the
  Pod object stays, as with a real kubelet.

The service behaves like the fish detector: parse `EVENT`, read lines [start, end) (1-based, end exclusive) of
the manifest from S3, spend a startup time and then each item's time (`item_seconds`: a function of the seed
and the item alone), writing one result object per input as it goes. A corrupt input ends the run with exit 1
after the outputs of the items before it; the service's own failure (`failure_rate`) is exit 1 after start-up
with no output. Both are told apart from a disruption exactly as in Kubernetes: by the Pod (a
`DisruptionTarget` condition, reason `Evicted`) against a container's exit code.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import io
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kmock
import minio

from oscar_batch.core.planner import tolerates  # one taint rule for the planner and the sandbox scheduler
from oscar_batch.core.quantity import cpu_millicores, whole_units
from oscar_batch_sandbox import kueue
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from oscar_batch_sandbox.kube import DISRUPTION_TARGET, SandboxKubernetes, now_iso
from oscar_batch_sandbox.s3 import input_number

Json = dict[str, Any]

JOBS = "batch/v1/jobs"
PODS = "v1/pods"
NODES = "v1/nodes"
GPU_RESOURCE = "nvidia.com/gpu"
MAIN_CONTAINER = "oscar-container"
# Exit codes of a container stopped from outside: SIGTERM (graceful deletion), SIGKILL (the kubelet's eviction).
SIGTERM_EXIT, SIGKILL_EXIT = 143, 137
EVICTION_MESSAGE = ("The node was low on resource: memory. Threshold quantity: 100Mi, available: 61440Ki. "
                    "Container oscar-container was using 1923Mi, request is {memory}, has larger consumption of "
                    "memory. ")
TERMINATED_PHASES = frozenset({"Succeeded", "Failed"})
BLOCKING_TAINT_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
# A real cluster taints NotReady and cordoned nodes; the sandbox's nodes carry only the condition or the flag.
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
# The alphabet Kubernetes draws generated name suffixes from (no vowels, no look-alike digits).
NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
DEFAULT_PODS_PER_NODE = 110
# Scheduling and deletions are event-driven; the tick only catches changes that raced a reconcile pass.
TICK_SECONDS = 0.1

log = logging.getLogger(__name__)


# ---- resources: the scheduler's arithmetic ----------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Resources:
    cpu: int = 0       # millicores
    memory: int = 0    # bytes
    gpus: int = 0
    pods: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.memory + other.memory, self.gpus + other.gpus,
                         self.pods + other.pods)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu - other.cpu, self.memory - other.memory, self.gpus - other.gpus,
                         self.pods - other.pods)

    def peak(self, other: Resources) -> Resources:
        return Resources(max(self.cpu, other.cpu), max(self.memory, other.memory), max(self.gpus, other.gpus),
                         max(self.pods, other.pods))


def resource_list(quantities: Mapping[str, Any] | None) -> Resources:
    quantities = quantities or {}
    return Resources(cpu=cpu_millicores(quantities.get("cpu", 0)),
                     memory=whole_units(quantities.get("memory", 0)),
                     gpus=whole_units(quantities.get(GPU_RESOURCE, 0)))


def container_requests(container: Json) -> Resources:
    return resource_list((container.get("resources") or {}).get("requests"))


def pod_requests(pod: Json) -> Resources:
    """What the scheduler reserves: max(containers + sidecars, the peak of the init phase) + overhead, one pod."""
    spec = pod.get("spec") or {}
    containers = sum((container_requests(c) for c in spec.get("containers") or ()), Resources())
    sidecars = init_peak = Resources()
    for container in spec.get("initContainers") or ():
        requests = container_requests(container)
        if container.get("restartPolicy") == "Always":  # a native sidecar keeps running beside what follows
            sidecars += requests
            init_peak = init_peak.peak(sidecars)
        else:
            init_peak = init_peak.peak(requests + sidecars)
    return (containers + sidecars).peak(init_peak) + resource_list(spec.get("overhead")) + Resources(pods=1)


def holds_resources(pod: Json) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName")) and pod_phase(pod) not in TERMINATED_PHASES


def pod_phase(pod: Json) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def node_allocatable(node: Json) -> Resources:
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    return resource_list(allocatable) + Resources(pods=int(allocatable.get("pods", DEFAULT_PODS_PER_NODE)))


def node_is_ready(node: Json) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def free_by_node(nodes: Iterable[Json], pods: Iterable[Json]) -> dict[str, Resources]:
    free = {node["metadata"]["name"]: node_allocatable(node) for node in nodes}
    for pod in pods:
        node_name = pod["spec"].get("nodeName")
        if node_name in free and holds_resources(pod):
            free[node_name] -= pod_requests(pod)
    return free


# ---- scheduling decisions ---------------------------------------------------------------------

def _untolerated(taint: Mapping[str, Any], tolerations: list[Json]) -> bool:
    return taint.get("effect") in BLOCKING_TAINT_EFFECTS and not any(tolerates(t, taint) for t in tolerations)


def rejections(node: Json, pod: Json, requests: Resources, free: Resources) -> list[str]:
    """Why the default scheduler's filters reject `node` for `pod`, in its wording; empty when the pod fits.

    Like the scheduler, the first failing filter decides (unschedulable, taints, node selector, resources).
    """
    spec = pod.get("spec") or {}
    tolerations = spec.get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable") and _untolerated(UNSCHEDULABLE_TAINT, tolerations):
        return ["node(s) were unschedulable"]
    taints = list((node.get("spec") or {}).get("taints") or ())
    if not node_is_ready(node):
        taints.append(NOT_READY_TAINT)
    for taint in taints:
        if _untolerated(taint, tolerations):
            return [f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"]
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(key) != value for key, value in (spec.get("nodeSelector") or {}).items()):
        return ["node(s) didn't match Pod's node affinity/selector"]
    reasons = []
    if requests.pods > free.pods:
        reasons.append("Too many pods")
    if requests.cpu > free.cpu:
        reasons.append("Insufficient cpu")
    if requests.memory > free.memory:
        reasons.append("Insufficient memory")
    if requests.gpus > free.gpus:
        reasons.append(f"Insufficient {GPU_RESOURCE}")
    return reasons


@dataclasses.dataclass(frozen=True)
class Placement:
    node: str | None
    message: str = ""   # the scheduler's explanation when `node` is None


def place(pod: Json, nodes: list[Json], free: Mapping[str, Resources]) -> Placement:
    """The node the default scheduler would bind `pod` to (least requested CPU first), or why none fits."""
    if not nodes:
        return Placement(None, "no nodes available to schedule pods")
    requests = pod_requests(pod)
    fitting: list[tuple[int, str]] = []
    reasons: dict[str, int] = {}
    resource_starved = 0
    for node in nodes:
        name = node["metadata"]["name"]
        node_reasons = rejections(node, pod, requests, free[name])
        if not node_reasons:
            fitting.append((-free[name].cpu, name))
            continue
        if node_reasons[0].startswith(("Insufficient", "Too many")):
            resource_starved += 1
        for reason in node_reasons:
            reasons[reason] = reasons.get(reason, 0) + 1
    if fitting:
        return Placement(min(fitting)[1])
    total = len(nodes)
    summary = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    preemption = [f"{count} {reason}" for count, reason in (
        (resource_starved, "No preemption victims found for incoming pod"),
        (total - resource_starved, "Preemption is not helpful for scheduling")) if count]
    return Placement(None, f"0/{total} nodes are available: {summary}. "
                           f"preemption: 0/{total} nodes are available: {', '.join(preemption)}.")


# ---- the service's behaviour ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Invocation:
    start: int
    end: int
    manifest_key: str


def parse_event(event: str, default_manifest_key: str, read_manifest_key: bool = True) -> Invocation:
    """The payload contract of the original service: `start` and `end`; with `read_manifest_key`, a `manifest`
    key names the manifest instead of the default."""
    try:
        payload = json.loads(event)
    except json.JSONDecodeError as error:
        raise ValueError(f"EVENT is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise ValueError("EVENT is not a JSON object")
    start, end = payload.get("start"), payload.get("end")
    if not all(isinstance(bound, int) and not isinstance(bound, bool) for bound in (start, end)):
        raise ValueError("EVENT needs integer 'start' and 'end'")
    if start < 1 or end < start:
        raise ValueError(f"EVENT range [{start}, {end}) is not a 1-based, end-exclusive range")
    manifest_key = (payload.get("manifest") if read_manifest_key else None) or default_manifest_key
    if not isinstance(manifest_key, str):
        raise ValueError("EVENT 'manifest' must be an object key")
    return Invocation(start, end, manifest_key)


def manifest_entries(manifest: str, start: int, end: int) -> list[tuple[int, str]]:
    """(line, key) of lines [start, end) of the manifest, 1-based, as `sed -n` gives them: split on "\n" only
    and kept byte for byte (a key of blanks is a key; "\r" is part of its line); lines past its end are simply
    absent, and so are empty ones, which name no object."""
    lines = manifest.split("\n")
    return [(number, line) for number, line in enumerate(lines[start - 1:end - 1], start) if line]


def manifest_lines(manifest: str, start: int, end: int) -> list[str]:
    """Lines [start, end) of the manifest, 1-based; lines past its end are simply absent, as with `sed -n`."""
    return [line for _, line in manifest_entries(manifest, start, end)]


def output_key(input_key: str, input_prefix: str, output_prefix: str) -> str:
    return f"{output_prefix}{input_key.removeprefix(input_prefix)}.json"


# The `job` of the outputs the sandbox holds when it starts (`SandboxConfig.existing_outputs`), where the
# service writes the Job that made one: a batch that skips them leaves it so.
EARLIER_RUN = "an-earlier-run"


def earlier_output(input_key: str) -> bytes:
    """The body of an output the sandbox holds when it starts, shaped as the service writes one."""
    return json.dumps({"job": EARLIER_RUN, "input": input_key, "range": None}).encode()


def item_seconds(behaviour: Behaviour, line: int, seed: int | str | None = None) -> float:
    """Simulated seconds the service spends on the input of manifest line `line` (1-based): drawn from the seed
    (`behaviour.seed` unless given) and the line alone, so every run that reaches the item spends the same."""
    seed = behaviour.seed if seed is None else seed
    if seed is None:
        raise ValueError("item_seconds needs a seed: the behaviour's, or one given")
    rng = random.Random(f"{seed}:item:{line}")
    mean = behaviour.item_seconds
    if behaviour.item_distribution == "lognormal":
        if mean <= 0:
            return 0.0
        sigma = behaviour.item_sigma
        return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)  # E = exp(mu + sigma²/2) = mean
    return mean * rng.uniform(1 - behaviour.item_jitter, 1 + behaviour.item_jitter)


@dataclasses.dataclass(frozen=True)
class Item:
    line: int          # the item's line as `item_seconds` knows it
    key: str
    seconds: float     # simulated
    corrupt: bool


def plan_items(behaviour: Behaviour, entries: list[tuple[int, str]], input_prefix: str,
               seed: int | str) -> list[Item]:
    """The items of an invocation's lines. An input's work goes by its number for an input of the sandbox (input
    n is line n of the manifest of all inputs), whatever manifest lists it, and for any other key by its line
    in this manifest; an input is corrupt by its key."""
    items = []
    for line, key in entries:
        number = input_number(key, input_prefix) or line
        items.append(Item(number, key, item_seconds(behaviour, number, seed), key in behaviour.corrupt_inputs))
    return items


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one invocation will do apart from its items' work, drawn when it starts."""
    fails: bool                    # the service's own failure: exit 1 after start-up, nothing written
    disrupted_at: float | None     # simulated seconds after start-up at which the kubelet evicts the pod


def scripted_failure(behaviour: Behaviour, invocation: Invocation, number: int) -> bool:
    """Whether the `number`-th invocation (1-based) of this (start, end) fails by `failing_ranges`: every one,
    or with `failing_attempts` only the first that many."""
    if (invocation.start, invocation.end) not in behaviour.failing_ranges:
        return False
    return not behaviour.failing_attempts or number <= behaviour.failing_attempts


def draw_plan(rng: random.Random, behaviour: Behaviour, invocation: Invocation, run_seconds: float,
              number: int = 1) -> Plan:
    """`number` is how many times this (start, end) has been invoked, this one included; `run_seconds` is how
    long its items would take after start-up (up to a corrupt one). Three draws always, so that a behaviour's
    rates change what happens, never which draw decides what."""
    failure, disruption, point = rng.random(), rng.random(), rng.random()
    fails = scripted_failure(behaviour, invocation, number) or failure < behaviour.failure_rate
    return Plan(fails=fails,
                disrupted_at=point * run_seconds if disruption < behaviour.disruption_rate else None)


@dataclasses.dataclass(frozen=True)
class Exit:
    """How a service container ended."""
    code: int
    evicted: bool = False          # killed by the kubelet for node pressure


@dataclasses.dataclass
class ContainerRun:
    """One service container, as the kubelet ran it; times on the monotonic clock."""
    pod: str
    job: str
    node: str
    started: float
    ended: float | None = None
    outcome: str = ""              # Completed, Error, Evicted (node pressure) or Terminated (deleted)


# ---- object shapes the controllers write ------------------------------------------------------

def condition(kind: str, status: bool, reason: str = "", message: str = "", now: str = "") -> Json:
    return {"type": kind, "status": "True" if status else "False", "reason": reason, "message": message,
            "lastProbeTime": None, "lastTransitionTime": now}


def is_finished(job: Json) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or ()
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)


def owner_uid(pod: Json) -> str | None:
    for reference in (pod.get("metadata") or {}).get("ownerReferences") or ():
        if reference.get("kind") == "Job" and reference.get("controller"):
            return reference.get("uid")
    return None


def job_pod(job: Json, suffix: str) -> Json:
    metadata, template = job["metadata"], job["spec"].get("template") or {}
    name, uid = metadata["name"], metadata["uid"]
    template_metadata = template.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-{suffix}",
            "namespace": metadata["namespace"],
            "labels": {**(template_metadata.get("labels") or {}),
                       "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                       "controller-uid": uid, "job-name": name},
            "annotations": dict(template_metadata.get("annotations") or {}),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": dict(template.get("spec") or {}),
        "status": {"phase": "Pending"},
    }


def running_status(pod: Json, now: str) -> Json:
    return {
        "phase": "Running",
        "startTime": now,
        "conditions": [condition(kind, True, now=now)
                       for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
        "containerStatuses": [
            {"name": c["name"], "image": c.get("image", ""), "ready": True, "started": True, "restartCount": 0,
             "state": {"running": {"startedAt": now}}}
            for c in pod["spec"].get("containers") or ()],
    }


def terminated_status(pod: Json, exit_code: int, now: str, *, others_exit: int = 0) -> Json:
    """A Pod whose service container exited with `exit_code`; the other containers (the rclone sidecar, which
    stops cleanly once the main container is done) with `others_exit`. Conditions the Pod had beyond the
    kubelet's own (a `DisruptionTarget` the API server added) are kept."""
    started = (pod.get("status") or {}).get("startTime") or now
    reason = "PodCompleted" if exit_code == 0 else "PodFailed"

    def terminated(container: Json) -> Json:
        code = exit_code if container["name"] == MAIN_CONTAINER else others_exit
        return {"name": container["name"], "image": container.get("image", ""), "ready": False, "started": False,
                "restartCount": 0, "state": {"terminated": {
                    "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                    "startedAt": started, "finishedAt": now}}}

    kubelet_conditions = ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    kept = [c for c in (pod.get("status") or {}).get("conditions") or () if c.get("type") not in kubelet_conditions]
    return {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "conditions": [condition("PodScheduled", True, now=now), condition("Initialized", True, now=now),
                       condition("ContainersReady", False, reason, now=now),
                       condition("Ready", False, reason, now=now), *kept],
        "containerStatuses": [terminated(c) for c in pod["spec"].get("containers") or ()],
    }


def main_container_memory(pod: Json) -> str:
    for container in pod["spec"].get("containers") or ():
        if container.get("name") == MAIN_CONTAINER:
            return str(((container.get("resources") or {}).get("requests") or {}).get("memory", "0"))
    return "0"


def evicted_status(pod: Json, now: str) -> Json:
    """A Pod the kubelet evicted for node pressure, as a real one reads: phase Failed, reason Evicted, the
    eviction manager's message, `DisruptionTarget` (TerminationByKubelet), every container killed (137)."""
    message = EVICTION_MESSAGE.format(memory=main_container_memory(pod))
    status = terminated_status(pod, SIGKILL_EXIT, now, others_exit=SIGKILL_EXIT)
    status["conditions"] = [c for c in status["conditions"] if c["type"] != DISRUPTION_TARGET]
    status["conditions"].append(condition(DISRUPTION_TARGET, True, "TerminationByKubelet", message, now))
    return {**status, "reason": "Evicted", "message": message}


def succeeded_job_status(now: str) -> Json:
    message = "Reached expected number of succeeded pods"
    return {"active": None, "ready": 0, "succeeded": 1, "completionTime": now,
            "conditions": [condition("SuccessCriteriaMet", True, "CompletionsReached", message, now),
                           condition("Complete", True, "CompletionsReached", message, now)]}


def failed_job_status(now: str) -> Json:
    message = "Job has reached the specified backoff limit"
    return {"active": None, "ready": 0, "failed": 1,
            "conditions": [condition("FailureTarget", True, "BackoffLimitExceeded", message, now),
                           condition("Failed", True, "BackoffLimitExceeded", message, now)]}


def main_container_env(pod: Json) -> dict[str, str]:
    for container in pod["spec"].get("containers") or ():
        if container.get("name") == MAIN_CONTAINER:
            return {e["name"]: e.get("value", "") for e in container.get("env") or () if "name" in e}
    return {}


# ---- the controllers --------------------------------------------------------------------------

class ServiceDraws:
    """What the simulated service's behaviour draws on besides its inputs, one for every job runner of a sandbox,
    so that its clusters run one service: the seed (an item's time is the same on every cluster), the containers
    started (the n-th started on any cluster draws the n-th failure and disruption, so clusters do not replay each
    other's) and each range's invocations (`failing_attempts` counts them wherever they ran)."""

    def __init__(self, behaviour: Behaviour) -> None:
        # Item times need a seed; without one, a fresh seed per sandbox still gives each item one time.
        self.seed: int | str = behaviour.seed if behaviour.seed is not None else random.randrange(2**63)
        self.containers_started = itertools.count(1)   # service containers, in the order they start
        self.invocations: collections.Counter[tuple[int, int]] = collections.Counter()   # (start, end) → runs


class JobRunner:
    """Runs the Jobs that the OSCAR simulator creates, as a cluster would. `run()` until cancelled.

    `put(key, body)` and `get(key)`, when given, write the service's outputs and read its manifest instead of
    S3 requests (the sandbox's in-process S3). `runs` records every service container (node, start, end,
    outcome) and `peak_running` the most that ran at once: the slots a batch really used. `draws`: the ones
    the sandbox's other runners share, if any.
    """

    def __init__(self, kube: SandboxKubernetes, config: SandboxConfig, s3: minio.Minio,
                 tick_seconds: float = TICK_SECONDS, put: Callable[[str, bytes], None] | None = None,
                 get: Callable[[str], bytes] | None = None, draws: ServiceDraws | None = None) -> None:
        self._kube = kube
        self._config = config
        self._s3 = s3
        self._put = put
        self._get = get
        self._tick_seconds = tick_seconds
        self._draws = draws or ServiceDraws(config.behaviour)
        self.seed = self._draws.seed
        self._invocations: dict[str, asyncio.Task[None]] = {}   # pod uid → the running behaviour
        self._logs: dict[tuple[str, str], list[str]] = {}       # (namespace, pod name) → log lines
        self._queue_positions: dict[str, int] = {}              # pending pod uid → FIFO position
        self._arrivals = itertools.count()
        self._name_suffixes = random.Random()
        self.runs: list[ContainerRun] = []
        self._open_runs: dict[str, ContainerRun] = {}           # pod uid → its container, while it runs
        self.peak_running = 0

    @property
    def running(self) -> int:
        """Service containers running now."""
        return len(self._open_runs)

    def pod_log(self, namespace: str, pod_name: str) -> str | None:
        """The log of a Pod's service container, as the kubelet would serve it; None when it has none."""
        lines = self._logs.get((namespace, pod_name))
        return None if lines is None else "".join(f"{line}\n" for line in lines)

    async def run(self) -> None:
        try:
            while True:
                seen = self._kube.changes
                try:
                    await self.reconcile()
                except Exception:  # a sandbox keeps serving; the next pass may well succeed
                    log.exception("job runner pass failed")
                # A change during the pass (a Job OSCAR created meanwhile, or the pass's own) means another pass.
                await self._kube.wait_for_change(self._tick_seconds, since=seen)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Cancel every running invocation, as a node going away would; `run()` does this when cancelled."""
        tasks = list(self._invocations.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reconcile(self) -> None:
        """One pass of the Job controller, the scheduler and the kubelet over the current objects."""
        namespace = self._config.services_namespace
        if self._config.kueue_cpu:
            await kueue.admit(self._kube, owner=self._config.kueue_owner, namespace=namespace)
        jobs = self._kube.list(JOBS, namespace)
        pods = self._kube.list(PODS)
        if await self._terminate_deleted(pods):
            jobs, pods = self._kube.list(JOBS, namespace), self._kube.list(PODS)
        await self._collect_garbage(jobs, pods)
        if await self._control_jobs(jobs, [p for p in pods if p["metadata"]["namespace"] == namespace]):
            pods = self._kube.list(PODS)
        pods = await self._schedule(pods)
        await self._start_containers(pods)

    async def _terminate_deleted(self, pods: list[Json]) -> bool:
        """Kubelet: a Pod marked for deletion has its containers stopped (SIGTERM; the simulated service exits
        at once, 143), ends Failed and is then removed; its Job counts it failed. True when any was."""
        namespace = self._config.services_namespace
        terminated = False
        for pod in pods:
            metadata = pod["metadata"]
            if not metadata.get("deletionTimestamp"):
                continue
            terminated = True
            task = self._invocations.pop(metadata["uid"], None)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                # It may have ended by itself meanwhile: its own status then stands.
                pod = self._kube.get(PODS, metadata["namespace"], metadata["name"]) or pod
            now = now_iso()
            if pod_phase(pod) not in TERMINATED_PHASES and pod["spec"].get("nodeName"):
                await self._kube.patch(PODS, metadata["namespace"], metadata["name"],
                                       {"status": terminated_status(pod, SIGTERM_EXIT, now, others_exit=SIGTERM_EXIT)})
                self._end_run(metadata["uid"], "Terminated")
                job_name = (metadata.get("labels") or {}).get("job-name")
                job = self._kube.get(JOBS, namespace, job_name) if job_name and owner_uid(pod) else None
                if metadata["namespace"] == namespace and job is not None and not is_finished(job):
                    await self._kube.patch(JOBS, namespace, job_name, {"status": failed_job_status(now)})
            await self._kube.delete(PODS, metadata["namespace"], metadata["name"])
        return terminated

    async def _collect_garbage(self, jobs: list[Json], pods: list[Json]) -> None:
        """Delete the Pods of deleted Jobs and stop the behaviour of every Pod that is gone."""
        namespace = self._config.services_namespace
        job_uids = {job["metadata"]["uid"] for job in jobs}
        orphans = [pod for pod in pods if pod["metadata"]["namespace"] == namespace
                   and owner_uid(pod) not in (None, *job_uids)]
        for pod in orphans:
            await self._kube.delete(PODS, namespace, pod["metadata"]["name"])
        alive = {pod["metadata"]["uid"] for pod in pods} - {pod["metadata"]["uid"] for pod in orphans}
        for pod_uid in set(self._invocations) - alive:
            self._stop(pod_uid)
        for pod_uid in set(self._open_runs) - alive:
            self._end_run(pod_uid, "Deleted")
        existing = {(pod["metadata"]["namespace"], pod["metadata"]["name"]) for pod in pods}
        for key in set(self._logs) - existing:
            del self._logs[key]

    def _stop(self, pod_uid: str) -> None:
        task = self._invocations.pop(pod_uid, None)
        if task is not None:
            task.cancel()

    def _end_run(self, pod_uid: str, outcome: str) -> None:
        run = self._open_runs.pop(pod_uid, None)
        if run is not None:
            run.ended, run.outcome = time.monotonic(), outcome

    async def _control_jobs(self, jobs: list[Json], pods: list[Json]) -> bool:
        """Give each new Job its Pod; fail a Job whose Pod vanished. True when Pods were created."""
        owned = {owner_uid(pod) for pod in pods}
        created = False
        for job in jobs:
            metadata = job["metadata"]
            if metadata["uid"] in owned or is_finished(job) or job["spec"].get("suspend"):
                continue
            now = now_iso()
            if (job.get("status") or {}).get("active"):
                await self._kube.patch(JOBS, metadata["namespace"], metadata["name"],
                                       {"status": failed_job_status(now)})
                continue
            suffix = "".join(self._name_suffixes.choices(NAME_SUFFIX_ALPHABET, k=5))
            await self._kube.create(PODS, job_pod(job, suffix))
            await self._kube.patch(JOBS, metadata["namespace"], metadata["name"],
                                   {"status": {"active": 1, "ready": 0, "startTime": now}})
            created = True
        return created

    async def _schedule(self, pods: list[Json]) -> list[Json]:
        """Bind pending Pods in arrival order; returns the Pods as they are after binding."""
        nodes = self._kube.list(NODES)
        free = free_by_node(nodes, pods)
        waiting = [pod for pod in pods if not pod["spec"].get("nodeName") and pod_phase(pod) == "Pending"]
        for pod in waiting:
            self._queue_positions.setdefault(pod["metadata"]["uid"], next(self._arrivals))
        waiting.sort(key=lambda pod: self._queue_positions[pod["metadata"]["uid"]])
        for pod in waiting:
            metadata = pod["metadata"]
            placement = place(pod, nodes, free)
            if placement.node is not None:
                free[placement.node] -= pod_requests(pod)
                del self._queue_positions[metadata["uid"]]
                pod["spec"]["nodeName"] = placement.node
                pod["status"] = {"phase": "Pending", "conditions": [condition("PodScheduled", True, now=now_iso())]}
                await self._kube.patch(PODS, metadata["namespace"], metadata["name"],
                                       {"spec": {"nodeName": placement.node}, "status": pod["status"]})
            elif self._scheduling_message(pod) != placement.message:
                conditions = [condition("PodScheduled", False, "Unschedulable", placement.message, now_iso())]
                await self._kube.patch(PODS, metadata["namespace"], metadata["name"],
                                       {"status": {"phase": "Pending", "conditions": conditions}})
        known = {pod["metadata"]["uid"] for pod in waiting}
        for uid in set(self._queue_positions) - known:
            del self._queue_positions[uid]
        return pods

    @staticmethod
    def _scheduling_message(pod: Json) -> str | None:
        for entry in (pod.get("status") or {}).get("conditions") or ():
            if entry.get("type") == "PodScheduled":
                return entry.get("message")
        return None

    async def _start_containers(self, pods: list[Json]) -> None:
        namespace = self._config.services_namespace
        for pod in pods:
            metadata = pod["metadata"]
            if not pod["spec"].get("nodeName") or pod_phase(pod) != "Pending" or metadata.get("deletionTimestamp"):
                continue
            now = now_iso()
            pod["status"] = running_status(pod, now)
            await self._kube.patch(PODS, metadata["namespace"], metadata["name"], {"status": pod["status"]})
            if metadata["namespace"] != namespace or owner_uid(pod) is None:
                continue
            job_name = metadata["labels"]["job-name"]
            with contextlib.suppress(kmock.KubernetesObjectNotFoundError):
                await self._kube.patch(JOBS, namespace, job_name, {"status": {"ready": 1}})
            run = ContainerRun(metadata["name"], job_name, pod["spec"]["nodeName"], time.monotonic())
            self.runs.append(run)
            self._open_runs[metadata["uid"]] = run
            self.peak_running = max(self.peak_running, len(self._open_runs))
            lines = self._logs[(namespace, metadata["name"])] = []
            task = asyncio.create_task(self._invoke(pod, job_name, lines), name=f"invocation {metadata['name']}")
            self._invocations[metadata["uid"]] = task
            task.add_done_callback(lambda _, uid=metadata["uid"]: self._invocations.pop(uid, None))

    async def _invoke(self, pod: Json, job_name: str, lines: list[str]) -> None:
        metadata = pod["metadata"]
        try:
            ended = await self._behave(pod, job_name, lines)
        except Exception as error:  # a crash of the simulated service is a failed invocation, not a runner bug
            lines.append(f"error: {type(error).__name__}: {error}")
            ended = Exit(1)
        now = now_iso()
        self._end_run(metadata["uid"], "Evicted" if ended.evicted else "Completed" if ended.code == 0 else "Error")
        if ended.evicted:
            lines.append("killed: the kubelet evicted the pod (node pressure)")
        # The Job or its Pod may have been deleted meanwhile; then there is nothing left to report to.
        with contextlib.suppress(kmock.KubernetesObjectNotFoundError):
            status = evicted_status(pod, now) if ended.evicted else terminated_status(pod, ended.code, now)
            await self._kube.patch(PODS, metadata["namespace"], metadata["name"], {"status": status})
            job_status = succeeded_job_status(now) if ended.code == 0 else failed_job_status(now)
            await self._kube.patch(JOBS, metadata["namespace"], job_name, {"status": job_status})

    async def _behave(self, pod: Json, job_name: str, lines: list[str]) -> Exit:
        """The fish detector's script, simulated. Each step ends at a deadline on the loop's clock, counted from
        the container's start, so the simulated times add up exactly whatever the sandbox's own delays."""
        config, behaviour = self._config, self._config.behaviour
        loop = asyncio.get_running_loop()
        began = loop.time()
        env = main_container_env(pod)
        try:
            invocation = parse_event(env.get("EVENT", ""), f"{config.prefix}index.txt",
                                     read_manifest_key=not behaviour.original_script)
        except ValueError as error:
            lines.append(f"error: {error}")
            return Exit(1)
        # Counted before anything awaits, so that the n-th container started for a range is its n-th run.
        bounds = (invocation.start, invocation.end)
        self._draws.invocations[bounds] += 1
        number = self._draws.invocations[bounds]
        # Failures and disruptions are drawn per container in the order they start: reproducible for a seed
        # whatever the Jobs are named (the original coordinator leaves naming to OSCAR), fresh for a retry.
        rng = random.Random(f"{self.seed}:container:{next(self._draws.containers_started)}")
        lines.append(f"{config.service}: lines [{invocation.start}, {invocation.end}) of "
                     f"{config.bucket}/{invocation.manifest_key}")
        if self._get is not None:
            manifest = self._get(invocation.manifest_key).decode()
        else:
            manifest = await asyncio.to_thread(self._read_text, invocation.manifest_key)
        items = plan_items(behaviour, manifest_entries(manifest, invocation.start, invocation.end), config.prefix,
                           self.seed)
        corrupt = next((index for index, item in enumerate(items) if item.corrupt), None)
        healthy = items if corrupt is None else items[:corrupt]
        plan = draw_plan(rng, behaviour, invocation, sum(item.seconds for item in healthy), number=number)
        scale = behaviour.time_scale
        at = behaviour.startup_seconds
        await asyncio.sleep(max(0.0, began + at * scale - loop.time()))
        if plan.fails:
            lines.append("error: simulated failure (failure injection)")
            return Exit(1)
        done = 0.0
        for item in healthy:
            if plan.disrupted_at is not None and done + item.seconds > plan.disrupted_at:
                await asyncio.sleep(max(0.0, began + (at + plan.disrupted_at) * scale - loop.time()))
                return Exit(SIGKILL_EXIT, evicted=True)
            done += item.seconds
            await asyncio.sleep(max(0.0, began + (at + done) * scale - loop.time()))
            result = output_key(item.key, config.prefix, behaviour.output_prefix)
            body = {"job": job_name, "input": item.key, "range": [invocation.start, invocation.end]}
            await self._write_output(result, body)
            lines.append(f"{item.key} -> {result}")
        if corrupt is not None:
            lines.append(f"error: {items[corrupt].key}: cannot identify image file (corrupt input)")
            return Exit(1)
        lines.append(f"done: {len(items)} item(s)")
        return Exit(0)

    async def _write_output(self, key: str, body: Json) -> None:
        if self._put is not None:
            self._put(key, json.dumps(body).encode())
        else:
            await asyncio.to_thread(self._write_json, key, body)

    def _read_text(self, key: str) -> str:
        response = self._s3.get_object(self._config.bucket, key)
        try:
            return response.read().decode()
        finally:
            response.close()
            response.release_conn()

    def _write_json(self, key: str, body: Json) -> None:
        data = json.dumps(body).encode()
        self._s3.put_object(self._config.bucket, key, io.BytesIO(data), len(data), content_type="application/json")
