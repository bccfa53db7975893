"""The job runner: a scheduler, a kubelet and a Job controller over the emulator, and the service's behaviour."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import random
import re
import statistics
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import minio
import pytest

from oscar_batch_sandbox import nodes
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
    item_seconds,
    manifest_entries,
    manifest_lines,
    output_key,
    parse_event,
    place,
    plan_items,
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


def test_manifest_lines_are_split_on_line_feeds_only_and_kept_as_they_are():
    manifest = " \n\t\nx\ry\n a \nl\u2028s\n"
    assert manifest_lines(manifest, 1, 6) == [" ", "\t", "x\ry", " a ", "l\u2028s"]
    assert manifest_lines(manifest, 3, 4) == ["x\ry"]


# ---- per-item work, corrupt inputs, disruptions, drains ------------------------------------------

def main_status(pod: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in pod["status"]["containerStatuses"] if s["name"] == "oscar-container")


def pod_conditions(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in pod["status"].get("conditions", [])}


def written_lines(client: minio.Minio, bucket: str) -> list[int]:
    return sorted(int(key.removeprefix("output/frame-").removesuffix(".jpg.json")) for key in outputs(client, bucket))


def test_an_items_time_is_a_function_of_the_seed_and_its_line_alone():
    uniform = Behaviour(item_seconds=2.0, item_jitter=0.5, seed=4)
    assert item_seconds(uniform, 17) == item_seconds(uniform, 17) == item_seconds(Behaviour(seed=4), 17, seed=4)
    assert item_seconds(uniform, 17) != item_seconds(uniform, 18)
    assert item_seconds(uniform, 17) != item_seconds(uniform, 17, seed=5)
    times = [item_seconds(uniform, line) for line in range(1, 5001)]
    assert min(times) >= 1.0 and max(times) <= 3.0
    assert statistics.fmean(times) == pytest.approx(2.0, rel=0.02)

    lognormal = Behaviour(item_seconds=2.0, item_distribution="lognormal", item_sigma=0.8, seed=4)
    times = [item_seconds(lognormal, line) for line in range(1, 20001)]
    assert statistics.fmean(times) == pytest.approx(2.0, rel=0.03)                       # the mean is kept
    assert statistics.median(times) == pytest.approx(2.0 * math.exp(-0.8**2 / 2), rel=0.03)  # exp(mu)
    assert statistics.stdev(math.log(t) for t in times) == pytest.approx(0.8, rel=0.03)
    with pytest.raises(ValueError, match="needs a seed"):
        item_seconds(Behaviour(), 1)
    with pytest.raises(ValueError, match="item_distribution"):
        Behaviour(item_distribution="normal")


def test_an_input_keeps_its_work_and_corruption_in_any_manifest():
    behaviour = Behaviour(corrupt_inputs=frozenset({"input/frame-000003.jpg", "elsewhere/bad.jpg"}), seed=2)
    full = "".join(f"{key}\n" for key in input_keys("input/", 5))
    subset = "input/frame-000003.jpg\n\ninput/frame-000005.jpg\nelsewhere/a.jpg\nelsewhere/bad.jpg\n"
    items = plan_items(behaviour, manifest_entries(full, 1, 6), "input/", 2)
    assert [(item.line, item.corrupt) for item in items] == [(1, False), (2, False), (3, True), (4, False),
                                                             (5, False)]
    again = plan_items(behaviour, manifest_entries(subset, 1, 6), "input/", 2)
    # Input 3 is the same item on line 1 of the subset; a key that is not a sandbox input goes by its line for
    # its work, and by its key for corruption, as every input.
    assert [(item.line, item.key, item.corrupt) for item in again] == [
        (3, "input/frame-000003.jpg", True), (5, "input/frame-000005.jpg", False), (4, "elsewhere/a.jpg", False),
        (5, "elsewhere/bad.jpg", True)]
    assert again[0].seconds == items[2].seconds == item_seconds(behaviour, 3)
    with pytest.raises(ValueError, match="corrupt_inputs are object keys"):
        Behaviour(corrupt_inputs=frozenset({""}))


async def test_a_container_spends_start_up_plus_its_items_exact_times(bucket):
    client, name = bucket
    behaviour = Behaviour(item_seconds=5.0, item_jitter=0.5, startup_seconds=10.0, time_scale=0.01, seed=9)
    async with cluster(client, name, nodes=(NodeSpec("w1"),), behaviour=behaviour) as c:
        await c.invoke("timed", {"start": 2, "end": 6})
        await wait_until(lambda: "Complete" in c.conditions("timed"), message="job completion")
        [run] = c.runner.runs
        expected = (10.0 + sum(item_seconds(behaviour, line) for line in range(2, 6))) * 0.01
        assert run.outcome == "Completed" and run.node == "w1" and run.job == "timed"
        # Deadlines from the container's start: never shorter, and late only by the loop's own delay.
        assert expected <= run.ended - run.started < expected + 0.15


async def test_a_corrupt_input_fails_its_run_after_the_outputs_before_it(bucket):
    client, name = bucket
    behaviour = Behaviour(corrupt_inputs=frozenset({"input/frame-000004.jpg"}), item_seconds=1.0,
                          startup_seconds=1.0, time_scale=0.002, seed=1)
    async with cluster(client, name, nodes=(NodeSpec("w1"),), behaviour=behaviour) as c:
        await c.invoke("poisoned", {"start": 2, "end": 7})
        await wait_until(lambda: "Failed" in c.conditions("poisoned"), message="job failure")
        assert written_lines(client, name) == [2, 3]
        assert c.conditions("poisoned")["Failed"]["reason"] == "BackoffLimitExceeded"
        pod = c.pod("poisoned")
        assert pod is not None, "the Job controller keeps a Job's failed pods"
        assert pod["status"]["phase"] == "Failed" and "reason" not in pod["status"]
        assert main_status(pod)["state"]["terminated"]["exitCode"] == 1
        assert main_status(pod)["state"]["terminated"]["reason"] == "Error"
        assert "DisruptionTarget" not in pod_conditions(pod)
        assert "frame-000004.jpg: cannot identify image file" in c.runner.pod_log(NAMESPACE, pod["metadata"]["name"])

        # Every attempt fails at the same input; a range past it is fine.
        await c.invoke("poisoned-again", {"start": 4, "end": 6})
        await c.invoke("after", {"start": 5, "end": 8})
        await wait_until(lambda: "Failed" in c.conditions("poisoned-again") and "Complete" in c.conditions("after"),
                         message="both ending")
        assert written_lines(client, name) == [2, 3, 5, 6, 7]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_disrupted_invocation_is_evicted_by_the_kubelet_as_in_kubernetes(bucket, seed):
    client, name = bucket
    behaviour = Behaviour(disruption_rate=1.0, item_seconds=1.0, startup_seconds=1.0, time_scale=0.004, seed=seed)
    async with cluster(client, name, nodes=(NodeSpec("w1"),), behaviour=behaviour) as c:
        await c.invoke("disrupted", {"start": 1, "end": 11})
        await wait_until(lambda: "Failed" in c.conditions("disrupted"), message="job failure")
        assert c.conditions("disrupted")["Failed"]["reason"] == "BackoffLimitExceeded"
        assert c.job("disrupted")["status"]["failed"] == 1
        pod = c.pod("disrupted")
        assert pod is not None, "an evicted pod stays until its Job is deleted"
        status = pod["status"]
        assert status["phase"] == "Failed" and status["reason"] == "Evicted"
        assert status["message"].startswith("The node was low on resource: memory. ")
        assert "request is 1Gi" in status["message"]
        target = pod_conditions(pod)["DisruptionTarget"]
        assert (target["status"], target["reason"]) == ("True", "TerminationByKubelet")
        assert pod_conditions(pod)["Ready"]["status"] == "False"
        assert {s["state"]["terminated"]["exitCode"] for s in status["containerStatuses"]} == {137}
        # Cut at a point of the run: what was written before it stays, in order, and it never finished.
        lines = written_lines(client, name)
        assert lines == list(range(1, len(lines) + 1)) and len(lines) < 10
        assert c.runner.runs[0].outcome == "Evicted"


async def test_the_services_failure_and_a_disruption_differ_only_as_in_kubernetes(bucket):
    """Nothing sandbox-specific tells them apart: the pod's DisruptionTarget condition and reason, and the
    container's exit code."""
    client, name = bucket
    async with cluster(client, name, nodes=(NodeSpec("w1"),),
                       behaviour=Behaviour(failure_rate=1.0, time_scale=0.002, seed=1)) as c:
        await c.invoke("failing", {"start": 1, "end": 3})
        await wait_until(lambda: "Failed" in c.conditions("failing"), message="job failure")
        failed = c.pod("failing")
    async with cluster(client, name, nodes=(NodeSpec("w1"),),
                       behaviour=Behaviour(disruption_rate=1.0, time_scale=0.002, seed=1)) as c:
        await c.invoke("evicted", {"start": 1, "end": 3})
        await wait_until(lambda: "Failed" in c.conditions("evicted"), message="job failure")
        evicted = c.pod("evicted")
    assert failed["status"]["phase"] == evicted["status"]["phase"] == "Failed"
    assert "reason" not in failed["status"] and "DisruptionTarget" not in pod_conditions(failed)
    assert main_status(failed)["state"]["terminated"]["exitCode"] == 1
    assert evicted["status"]["reason"] == "Evicted" and "DisruptionTarget" in pod_conditions(evicted)
    assert main_status(evicted)["state"]["terminated"]["exitCode"] == 137


async def test_disruptions_are_reproducible_for_a_seed(bucket):
    client, name = bucket
    behaviour = Behaviour(disruption_rate=0.5, item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, seed=5)
    seen = []
    for _ in range(2):
        async with cluster(client, name, nodes=(NodeSpec("w1", cpu="1"),), behaviour=behaviour) as c:
            outcomes = []
            for index in range(6):
                job = f"run-{index}"
                await c.invoke(job, {"start": 1, "end": 9})
                await wait_until(lambda job=job: {"Complete", "Failed"} & set(c.conditions(job)), message=job)
                outcomes.append(c.runner.runs[-1].outcome)
            seen.append(outcomes)
    assert seen[0] == seen[1]
    assert {"Evicted", "Completed"} <= set(seen[0])


async def test_the_eviction_api_marks_the_pod_and_its_kubelet_stops_and_removes_it(bucket):
    client, name = bucket
    async with cluster(client, name, nodes=(NodeSpec("w1"),), behaviour=SLOW, run=False) as c:
        await c.invoke("evictee", {"start": 1, "end": 10})
        await c.runner.reconcile()   # Pod created
        await c.runner.reconcile()   # bound and started
        pod = c.pod("evictee")
        assert pod["status"]["phase"] == "Running" and c.runner.running == 1

        await c.kube.evict(NAMESPACE, pod["metadata"]["name"])
        marked = c.pod("evictee")
        assert marked["metadata"]["deletionTimestamp"] and marked["metadata"]["deletionGracePeriodSeconds"] == 5
        target = pod_conditions(marked)["DisruptionTarget"]
        assert (target["status"], target["reason"], target["message"]) == (
            "True", "EvictionByEvictionAPI", "Eviction API: evicting")

        await c.runner.reconcile()   # the kubelet stops the containers, the Job fails, the Pod goes
        assert c.pod("evictee") is None
        assert c.conditions("evictee")["Failed"]["reason"] == "BackoffLimitExceeded"
        assert c.runner.running == 0 and c.runner.runs[0].outcome == "Terminated"
        await c.runner.reconcile()
        assert c.pod("evictee") is None, "backoffLimit 0: no replacement pod"


async def test_a_drain_evicts_a_nodes_pods_and_a_new_node_takes_work(bucket):
    client, name = bucket
    nodes_ = (NodeSpec("w1", cpu="2"), NodeSpec("w2", cpu="2"))
    tenant = TenantPod("tenant-db", "w1", cpu="500m")
    async with cluster(client, name, nodes=nodes_, behaviour=SLOW, tenant_pods=(tenant,)) as c:
        for index in range(3):
            await c.invoke(f"job-{index}", {"start": index + 1, "end": index + 2})
        await wait_until(lambda: all(c.phase(f"job-{index}") == "Running" for index in range(3)), message="running")
        on_w1 = [f"job-{index}" for index in range(3) if c.node_of(f"job-{index}") == "w1"]
        on_w2 = [f"job-{index}" for index in range(3) if c.node_of(f"job-{index}") == "w2"]
        assert len(on_w1) == 1 and len(on_w2) == 2
        assert c.runner.peak_running == 3

        doomed = f"{NAMESPACE}/{c.pod(on_w1[0])['metadata']['name']}"
        evicted = await nodes.drain(c.kube, "w1")
        assert sorted(evicted) == sorted([doomed, "other-tenant/tenant-db"])
        assert c.kube.get(NODES, None, "w1")["spec"]["unschedulable"] is True
        assert c.kube.get(PODS, "other-tenant", "tenant-db") is None
        assert c.pod(on_w1[0]) is None
        assert c.conditions(on_w1[0])["Failed"]["reason"] == "BackoffLimitExceeded"
        assert all(c.phase(job) == "Running" for job in on_w2)

        await c.invoke("after-drain", {"start": 5, "end": 6})
        assert "were unschedulable" in await wait_until(lambda: c.unschedulable("after-drain"), message="pending")
        await nodes.add_node(c.kube, NodeSpec("w3", cpu="2"))
        await wait_until(lambda: c.node_of("after-drain") == "w3", message="binding to the new node")
        assert c.runner.peak_running == 3


async def test_evicting_a_pod_that_is_not_running_removes_it_at_once(bucket):
    client, name = bucket
    async with cluster(client, name, nodes=(NodeSpec("w1", cpu="1"),), behaviour=SLOW, run=False) as c:
        await c.invoke("first", {"start": 1, "end": 2})
        await c.invoke("second", {"start": 2, "end": 3})
        await c.runner.reconcile()
        await c.runner.reconcile()
        assert c.unschedulable("second")
        await c.kube.evict(NAMESPACE, c.pod("second")["metadata"]["name"])
        assert c.pod("second") is None
        await c.runner.reconcile()
        assert c.conditions("second")["Failed"]["reason"] == "BackoffLimitExceeded"
        with pytest.raises(Exception, match="NotFound|not found"):
            await c.kube.evict(NAMESPACE, "no-such-pod")


async def test_a_change_during_a_pass_is_not_waited_for():
    kube = SandboxKubernetes(strict=False)
    async with kube:
        kube.install_builtins()
        seen = kube.changes
        await kube.create(NODES, NodeSpec("w1").to_object())
        assert kube.changes > seen
        async with asyncio.timeout(0.5):   # would wait the whole timeout if the change were missed
            await kube.wait_for_change(60.0, since=seen)
        assert kube.count(NODES, None, lambda node: node["metadata"]["name"] == "w1") == 1
