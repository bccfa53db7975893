"""The job runner: a scheduler, a kubelet and a Job controller over the emulator, and the service's behaviour."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import minio
import pytest

from oscar_batch_sandbox.config import Behaviour, NodeSpec, SandboxConfig, TenantPod, control_plane
from oscar_batch_sandbox.kube import SandboxKubernetes
from oscar_batch_sandbox.oscar import invocation_job
from oscar_batch_sandbox.runner import (
    JOBS,
    NODES,
    PODS,
    JobRunner,
    Resources,
    draw_plan,
    free_by_node,
    manifest_lines,
    output_key,
    parse_event,
    place,
    pod_requests,
    scripted_failure,
)
from oscar_batch_sandbox.s3 import S3Server, input_keys, seed_bucket
from support import wait_until_async as wait_until

NAMESPACE = "oscar-svc"
ITEMS = 10
FAST = Behaviour(item_seconds=1.0, item_jitter=0.5, startup_seconds=1.0, time_scale=0.002, seed=3)
# Slow enough to be seen running, still well under a second.
SLOW = Behaviour(item_seconds=10.0, item_jitter=0.0, startup_seconds=10.0, time_scale=0.01, seed=3)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server: S3Server) -> tuple[minio.Minio, str]:
    """A bucket of its own per test, holding ITEMS inputs and their manifest at input/index.txt."""
    client = s3_server.client("testing", "testing-secret")
    name = f"runner-{uuid.uuid4().hex[:12]}"
    keys = input_keys("input/", ITEMS)
    seed_bucket(client, name, keys)
    manifest = "".join(f"{key}\n" for key in keys).encode()
    client.put_object(name, "input/index.txt", io.BytesIO(manifest), len(manifest))
    return client, name


def outputs(client: minio.Minio, bucket: str) -> dict[str, Any]:
    result = {}
    for obj in client.list_objects(bucket, prefix="output/", recursive=True):
        response = client.get_object(bucket, obj.object_name)
        try:
            result[obj.object_name] = json.loads(response.read())
        finally:
            response.close()
            response.release_conn()
    return result


class Cluster:
    def __init__(self, kube: SandboxKubernetes, runner: JobRunner, config: SandboxConfig) -> None:
        self.kube, self.runner, self.config = kube, runner, config

    async def invoke(self, name: str, event: dict[str, Any], tolerations: list[dict[str, str]] | None = None) -> None:
        job = invocation_job(self.config.service_definition(), name, NAMESPACE, json.dumps(event))
        if tolerations:
            job["spec"]["template"]["spec"]["tolerations"] = tolerations
        await self.kube.create(JOBS, job)

    def job(self, name: str) -> dict[str, Any]:
        return self.kube.get(JOBS, NAMESPACE, name) or {}

    def pod(self, job_name: str) -> dict[str, Any] | None:
        pods = [p for p in self.kube.list(PODS, NAMESPACE) if p["metadata"]["labels"].get("job-name") == job_name]
        return pods[0] if pods else None

    def phase(self, job_name: str) -> str | None:
        pod = self.pod(job_name)
        return pod["status"].get("phase") if pod else None

    def node_of(self, job_name: str) -> str | None:
        pod = self.pod(job_name)
        return pod["spec"].get("nodeName") if pod else None

    def conditions(self, job_name: str) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in self.job(job_name).get("status", {}).get("conditions", [])}

    def scheduling(self, job_name: str) -> dict[str, Any] | None:
        pod = self.pod(job_name)
        return next((c for c in (pod or {}).get("status", {}).get("conditions", []) if c["type"] == "PodScheduled"),
                    None)

    def unschedulable(self, job_name: str) -> str | None:
        condition = self.scheduling(job_name)
        if condition and condition["status"] == "False" and condition["reason"] == "Unschedulable":
            return condition["message"]
        return None


@contextlib.asynccontextmanager
async def cluster(s3: minio.Minio, bucket: str, *, nodes: tuple[NodeSpec, ...], behaviour: Behaviour = FAST,
                  tenant_pods: tuple[TenantPod, ...] = (), service_cpu: str = "1",
                  run: bool = True) -> AsyncIterator[Cluster]:
    """An emulator with `nodes`, and a runner, running by itself unless `run` is False (then: `reconcile()`)."""
    config = SandboxConfig(nodes=nodes, tenant_pods=tenant_pods, bucket=bucket, service_cpu=service_cpu,
                           service_memory="1Gi", behaviour=behaviour)
    kube = SandboxKubernetes(strict=False)
    async with kube:
        kube.install_builtins()
        for node in nodes:
            await kube.create(NODES, node.to_object())
        for pod in tenant_pods:
            await kube.create(PODS, pod.to_object())
        runner = JobRunner(kube, config, s3, tick_seconds=0.05)
        task = asyncio.create_task(runner.run()) if run else None
        try:
            yield Cluster(kube, runner, config)
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await runner.stop()


# ---- a Job's life ------------------------------------------------------------------------------

async def test_successful_job_writes_one_output_per_line_and_completes(bucket):
    client, name = bucket
    async with cluster(client, name, nodes=(control_plane(), NodeSpec("w1"))) as c:
        await c.invoke("range-3-7", {"start": 3, "end": 7, "extra": "ignored"})
        await wait_until(lambda: "Complete" in c.conditions("range-3-7"), message="job completion")

        job = c.job("range-3-7")
        assert c.conditions("range-3-7")["SuccessCriteriaMet"]["status"] == "True"
        assert c.conditions("range-3-7")["Complete"]["status"] == "True"
        assert job["status"]["succeeded"] == 1 and job["status"]["completionTime"] and job["status"]["startTime"]
        assert "active" not in job["status"]

        pod = c.pod("range-3-7")
        assert pod["status"]["phase"] == "Succeeded"
        assert pod["spec"]["nodeName"] == "w1"  # the control plane is tainted
        assert re.fullmatch(r"range-3-7-[bcdfghjklmnpqrstvwxz2456789]{5}", pod["metadata"]["name"])
        assert pod["metadata"]["labels"]["job-name"] == "range-3-7"
        assert pod["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
        main = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "oscar-container")
        assert main["state"]["terminated"]["exitCode"] == 0

        written = outputs(client, name)
        assert sorted(written) == [f"output/frame-{index:06d}.jpg.json" for index in range(3, 7)]
        assert written["output/frame-000003.jpg.json"] == {"job": "range-3-7", "input": "input/frame-000003.jpg",
                                                           "range": [3, 7]}
        log = c.runner.pod_log(NAMESPACE, pod["metadata"]["name"])
        assert "input/frame-000006.jpg -> output/frame-000006.jpg.json" in log and "done: 4 item(s)" in log


async def test_a_manifest_named_in_the_event_is_read_instead(bucket):
    client, name = bucket
    other = b"input/frame-000009.jpg\ninput/frame-000010.jpg\n"
    client.put_object(name, "manifests/batch.txt", io.BytesIO(other), len(other))
    async with cluster(client, name, nodes=(NodeSpec("w1"),)) as c:
        await c.invoke("custom", {"start": 2, "end": 3, "manifest": "manifests/batch.txt"})
        await wait_until(lambda: "Complete" in c.conditions("custom"), message="job completion")
        assert list(outputs(client, name)) == ["output/frame-000010.jpg.json"]


@pytest.mark.parametrize("behaviour", [
    Behaviour(failing_ranges=frozenset({(1, 4)}), time_scale=0.002, seed=1),
    Behaviour(failure_rate=1.0, time_scale=0.002, seed=1),
])
async def test_failing_job_fails_like_kubernetes_and_writes_nothing(bucket, behaviour):
    client, name = bucket
    async with cluster(client, name, nodes=(NodeSpec("w1"),), behaviour=behaviour) as c:
        await c.invoke("doomed", {"start": 1, "end": 4})
        await wait_until(lambda: "Failed" in c.conditions("doomed"), message="job failure")

        conditions = c.conditions("doomed")
        assert conditions["FailureTarget"]["status"] == "True"
        assert conditions["Failed"]["status"] == "True" and conditions["Failed"]["reason"] == "BackoffLimitExceeded"
        status = c.job("doomed")["status"]
        assert status["failed"] == 1 and "active" not in status and "completionTime" not in status
        pod = c.pod("doomed")
        assert pod["status"]["phase"] == "Failed"
        main = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "oscar-container")
        assert main["state"]["terminated"]["exitCode"] == 1
        assert outputs(client, name) == {}
        assert "simulated failure" in c.runner.pod_log(NAMESPACE, pod["metadata"]["name"])


async def test_a_range_with_failing_attempts_fails_only_its_first_invocations(bucket):
    client, name = bucket
    behaviour = Behaviour(failing_ranges=frozenset({(1, 4)}), failing_attempts=2, time_scale=0.002, seed=1)
    async with cluster(client, name, nodes=(NodeSpec("w1"),), behaviour=behaviour) as c:
        outcomes = []
        for attempt in range(1, 5):
            job = f"flaky-a{attempt}"
            await c.invoke(job, {"start": 1, "end": 4})
            await wait_until(lambda job=job: {"Complete", "Failed"} & set(c.conditions(job)), message=f"{job} ending")
            outcomes.append("Complete" if "Complete" in c.conditions(job) else "Failed")
        assert outcomes == ["Failed", "Failed", "Complete", "Complete"]
        assert sorted(outputs(client, name)) == [f"output/frame-{index:06d}.jpg.json" for index in range(1, 4)]

        # Counted per (start, end): another range is not failing at all, and [1, 4) keeps its count.
        await c.invoke("other", {"start": 4, "end": 6})
        await wait_until(lambda: "Complete" in c.conditions("other"), message="other range completion")


async def test_an_event_without_a_range_fails_the_invocation(bucket):
    client, name = bucket
    async with cluster(client, name, nodes=(NodeSpec("w1"),)) as c:
        await c.invoke("no-range", {"first": 1})
        await wait_until(lambda: "Failed" in c.conditions("no-range"), message="job failure")
        assert "integer 'start' and 'end'" in c.runner.pod_log(NAMESPACE, c.pod("no-range")["metadata"]["name"])


async def test_a_job_deleted_while_running_loses_its_pod(bucket):
    client, name = bucket
    async with cluster(client, name, nodes=(NodeSpec("w1"),), behaviour=SLOW) as c:
        await c.invoke("cancelled", {"start": 1, "end": 10})
        pod = await wait_until(lambda: c.phase("cancelled") == "Running" and c.pod("cancelled"), message="running")
        invocation = f"invocation {pod['metadata']['name']}"
        assert invocation in {task.get_name() for task in asyncio.all_tasks()}
        await c.kube.delete(JOBS, NAMESPACE, "cancelled")
        await wait_until(lambda: c.pod("cancelled") is None, message="pod deleted")
        await wait_until(lambda: invocation not in {task.get_name() for task in asyncio.all_tasks()},
                         message="invocation cancelled")


async def test_a_job_whose_running_pod_is_deleted_fails(bucket):
    client, name = bucket
    async with cluster(client, name, nodes=(NodeSpec("w1"),), behaviour=SLOW) as c:
        await c.invoke("lost", {"start": 1, "end": 10})
        pod = await wait_until(lambda: c.phase("lost") == "Running" and c.pod("lost"), message="pod running")
        await c.kube.delete(PODS, NAMESPACE, pod["metadata"]["name"])
        await wait_until(lambda: "Failed" in c.conditions("lost"), message="job failure")
        assert c.pod("lost") is None  # backoffLimit 0: no replacement


# ---- scheduling --------------------------------------------------------------------------------

async def test_a_pod_that_fits_nowhere_stays_pending_and_starts_once_capacity_frees(bucket):
    client, name = bucket
    nodes = (control_plane(), NodeSpec("w1", cpu="2"))
    async with cluster(client, name, nodes=nodes, tenant_pods=(TenantPod("busy", "w1", cpu="1500m"),)) as c:
        await c.invoke("waits", {"start": 1, "end": 3})
        message = await wait_until(lambda: c.unschedulable("waits"), message="Unschedulable condition")
        assert message == ("0/2 nodes are available: 1 Insufficient cpu, "
                           "1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. "
                           "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, "
                           "1 Preemption is not helpful for scheduling.")
        assert c.phase("waits") == "Pending" and c.node_of("waits") is None
        assert c.job("waits")["status"]["active"] == 1  # a pending pod is an active one

        await c.kube.patch(PODS, "other-tenant", "busy", {"status": {"phase": "Succeeded"}})
        await wait_until(lambda: "Complete" in c.conditions("waits"), message="job completion after capacity freed")
        assert c.node_of("waits") == "w1"
        assert c.scheduling("waits")["status"] == "True"


async def test_pending_pods_start_in_arrival_order_as_running_ones_finish(bucket):
    client, name = bucket
    async with cluster(client, name, nodes=(NodeSpec("w1", cpu="2"),), service_cpu="2", run=False) as c:
        for index in range(3):
            await c.invoke(f"job-{index}", {"start": index + 1, "end": index + 2})
        await c.runner.reconcile()
        assert [c.node_of(f"job-{index}") for index in range(3)] == ["w1", None, None]
        assert c.unschedulable("job-1") and c.unschedulable("job-2")
        await wait_until(lambda: "Complete" in c.conditions("job-0"), message="first job completion")
        await c.runner.reconcile()
        assert [c.node_of(f"job-{index}") for index in range(3)] == ["w1", "w1", None]


async def test_cordoned_not_ready_and_tainted_nodes_are_not_used(bucket):
    client, name = bucket
    nodes = (NodeSpec("cordoned", unschedulable=True), NodeSpec("not-ready", ready=False),
             NodeSpec("tainted", taints=({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},)),
             NodeSpec("open", cpu="1"))
    async with cluster(client, name, nodes=nodes, behaviour=SLOW, run=False) as c:
        await c.invoke("first", {"start": 1, "end": 2})
        await c.invoke("second", {"start": 2, "end": 3})
        await c.invoke("tolerant", {"start": 3, "end": 4},
                       tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
        await c.runner.reconcile()
        assert c.node_of("first") == "open"
        assert c.node_of("second") is None
        assert c.unschedulable("second") == (
            "0/4 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}, "
            "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable. "
            "preemption: 0/4 nodes are available: 1 No preemption victims found for incoming pod, "
            "3 Preemption is not helpful for scheduling.")
        assert c.node_of("tolerant") == "tainted"


async def test_nodes_changed_at_runtime_are_honoured(bucket):
    client, name = bucket
    async with cluster(client, name, nodes=(NodeSpec("w1", cpu="1"),), behaviour=SLOW) as c:
        await c.kube.patch(NODES, None, "w1", {"spec": {"unschedulable": True}})
        await c.invoke("needs-a-node", {"start": 1, "end": 2})
        assert "were unschedulable" in await wait_until(lambda: c.unschedulable("needs-a-node"), message="pending")

        await c.kube.create(NODES, NodeSpec("w2", cpu="2").to_object())
        await wait_until(lambda: c.node_of("needs-a-node") == "w2", message="binding to the new node")
        await wait_until(lambda: "Complete" in c.conditions("needs-a-node"), message="job completion")


# ---- the pure parts ----------------------------------------------------------------------------

def test_pod_requests_follow_the_scheduler_rules():
    pod = {"spec": {
        "containers": [{"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                       {"resources": {"limits": {"cpu": "4"}}}],  # limits alone: no request here
        "initContainers": [{"restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                           {"resources": {"requests": {"cpu": "2", "memory": "512Mi"}}}],
        "overhead": {"cpu": "10m"}}}
    assert pod_requests(pod) == Resources(cpu=2110, memory=2**30, gpus=0, pods=1)


def test_a_gpu_pod_needs_a_node_with_a_free_gpu():
    nodes = [NodeSpec("cpu-only").to_object(), NodeSpec("gpu", gpus=1).to_object()]
    pod = {"spec": {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]}}
    busy = {"spec": {"nodeName": "gpu", "containers": pod["spec"]["containers"]}, "status": {"phase": "Running"}}
    assert place(pod, nodes, free_by_node(nodes, [])).node == "gpu"
    placement = place(pod, nodes, free_by_node(nodes, [busy]))
    assert placement.node is None
    assert placement.message.startswith("0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")


def test_the_least_requested_node_is_preferred():
    nodes = [NodeSpec("a").to_object(), NodeSpec("b").to_object()]
    busy = {"spec": {"nodeName": "a", "containers": [{"resources": {"requests": {"cpu": "1"}}}]},
            "status": {"phase": "Running"}}
    assert place({"spec": {"containers": [{}]}}, nodes, free_by_node(nodes, [busy])).node == "b"


def test_failing_attempts_limit_a_failing_range_to_its_first_invocations():
    flaky = Behaviour(failing_ranges=frozenset({(1, 3)}), failing_attempts=1)
    always = Behaviour(failing_ranges=frozenset({(1, 3)}))
    listed, other = parse_event('{"start": 1, "end": 3}', "m"), parse_event('{"start": 3, "end": 5}', "m")
    assert [scripted_failure(flaky, listed, number) for number in (1, 2, 3)] == [True, False, False]
    assert [scripted_failure(always, listed, number) for number in (1, 2, 50)] == [True, True, True]
    assert not scripted_failure(flaky, other, 1) and not scripted_failure(always, other, 1)
    rng = random.Random(0)
    assert draw_plan(rng, flaky, listed, 2, number=1).fails and not draw_plan(rng, flaky, listed, 2, number=2).fails
    with pytest.raises(ValueError, match="failing_attempts"):
        Behaviour(failing_attempts=-1)


def test_event_parsing_honours_the_original_contract():
    assert parse_event('{"start": 2, "end": 5, "attempt": 1}', "input/index.txt").manifest_key == "input/index.txt"
    for bad in ("not json", "[1, 2]", '{"start": "1", "end": 2}', '{"start": 0, "end": 2}', '{"start": 3, "end": 2}'):
        with pytest.raises(ValueError):
            parse_event(bad, "input/index.txt")


def test_manifest_lines_are_one_based_and_end_exclusive():
    manifest = "a\nb\nc\nd\n"
    assert manifest_lines(manifest, 1, 3) == ["a", "b"]
    assert manifest_lines(manifest, 4, 5) == ["d"]
    assert manifest_lines(manifest, 4, 9) == ["d"]
    assert manifest_lines(manifest, 2, 2) == []
    assert output_key("input/sub/x.jpg", "input/", "output/") == "output/sub/x.jpg.json"
