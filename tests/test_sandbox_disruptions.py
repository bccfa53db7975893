"""Disruptions on a whole sandbox, over its HTTP APIs: the Eviction subresource, a drain and a node joining
while Jobs run, the in-process S3, and the counters a benchmark reads."""
from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator

import pytest
import requests

from oscar_batch_sandbox import SandboxThread
from oscar_batch_sandbox.config import Behaviour, NodeSpec, SandboxConfig, control_plane, workers
from oscar_batch_sandbox.runner import JOBS, PODS
from oscar_batch_sandbox.s3 import input_keys
from support import wait_until

CONFIG = SandboxConfig(nodes=(control_plane(), *workers(2, cpu="2")), tenant_pods=(), items=30,
                       service_cpu="1", service_memory="1Gi", s3_in_process=True,
                       behaviour=Behaviour(item_seconds=10.0, item_jitter=0.0, startup_seconds=1.0, time_scale=0.01,
                                           seed=3, original_script=True))


@pytest.fixture
def sandbox() -> Iterator[SandboxThread]:
    """A sandbox whose bucket has `<prefix>index.txt`, as the original coordinator leaves it (the original
    service script reads only that)."""
    with SandboxThread(dataclasses.replace(CONFIG)) as running:
        config = running.sandbox.config
        s3 = running.sandbox.s3.client(config.s3_access_key, config.s3_secret_key)
        manifest = "".join(f"{key}\n" for key in input_keys(config.prefix, config.items)).encode()
        s3.put_object(config.bucket, f"{config.prefix}index.txt", io.BytesIO(manifest), len(manifest))
        yield running


def invoke(sandbox: SandboxThread, start: int, end: int, name: str | None = None) -> requests.Response:
    oscar = sandbox.info["oscar"]
    headers = {"Authorization": f"Bearer {sandbox.sandbox.config.service_token}"}
    if name:
        headers["X-Delegated-Job-ID"] = name
    return requests.post(f"{oscar['endpoint']}/job/{oscar['service']}", json={"start": start, "end": end},
                         headers=headers, timeout=10)


def read(sandbox: SandboxThread, function):
    async def on_loop():
        return function()
    return sandbox.call(on_loop)


def job(sandbox: SandboxThread, name: str) -> dict:
    return read(sandbox, lambda: sandbox.kube.get(JOBS, "oscar-svc", name)) or {}


def failed_reason(sandbox: SandboxThread, name: str) -> str | None:
    conditions = {c["type"]: c for c in (job(sandbox, name).get("status") or {}).get("conditions", [])}
    return conditions["Failed"]["reason"] if conditions.get("Failed", {}).get("status") == "True" else None


def pod_of(sandbox: SandboxThread, job_name: str) -> dict | None:
    pods = read(sandbox, lambda: sandbox.kube.list(PODS, "oscar-svc"))
    return next((p for p in pods if p["metadata"]["labels"].get("job-name") == job_name), None)


def running(sandbox: SandboxThread, job_name: str) -> dict | None:
    pod = pod_of(sandbox, job_name)
    return pod if pod and pod["status"].get("phase") == "Running" else None


def kube_post(sandbox: SandboxThread, path: str, body: dict) -> requests.Response:
    kubernetes = sandbox.info["kubernetes"]
    return requests.post(f"{kubernetes['server'].rstrip('/')}{path}", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {kubernetes['token']}"})


def test_the_eviction_subresource_over_http_stops_and_removes_the_pod(sandbox):
    assert invoke(sandbox, 1, 10, "evict-me").status_code == 201
    pod = wait_until(lambda: running(sandbox, "evict-me"), message="pod running")
    name = pod["metadata"]["name"]
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "oscar-svc"}}
    response = kube_post(sandbox, f"/api/v1/namespaces/oscar-svc/pods/{name}/eviction", eviction)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "Success"
    wait_until(lambda: pod_of(sandbox, "evict-me") is None, message="pod removed")
    assert wait_until(lambda: failed_reason(sandbox, "evict-me"), message="job failed") == "BackoffLimitExceeded"
    missing = kube_post(sandbox, "/api/v1/namespaces/oscar-svc/pods/no-such-pod/eviction", eviction)
    assert missing.status_code == 404


def test_a_drain_and_a_new_node_while_jobs_run(sandbox):
    for index in range(4):
        assert invoke(sandbox, 1 + 5 * index, 6 + 5 * index, f"job-{index}").status_code == 201
    wait_until(lambda: all(running(sandbox, f"job-{index}") for index in range(4)), message="four running")
    on_worker_1 = [f"job-{i}" for i in range(4) if running(sandbox, f"job-{i}")["spec"]["nodeName"] == "worker-1"]
    assert len(on_worker_1) == 2

    evicted = sandbox.drain("worker-1")
    assert len(evicted) == 2
    for name in on_worker_1:
        assert pod_of(sandbox, name) is None
        assert failed_reason(sandbox, name) == "BackoffLimitExceeded"

    assert invoke(sandbox, 21, 26, "after-drain").status_code == 201
    wait_until(lambda: (pod_of(sandbox, "after-drain") or {}).get("status", {}).get("conditions"),
               message="scheduling decision")
    assert not (pod_of(sandbox, "after-drain")["spec"].get("nodeName"))
    sandbox.add_node(NodeSpec("worker-3", cpu="2", labels={"node-role.kubernetes.io/worker": ""}))
    pod = wait_until(lambda: running(sandbox, "after-drain"), message="running on the new node")
    assert pod["spec"]["nodeName"] == "worker-3"
    runner = sandbox.runner
    assert runner.peak_running == 4
    assert sorted(run.outcome for run in runner.runs if run.ended is not None) == ["Terminated", "Terminated"]
    assert sandbox.sandbox.oscar.accepted_invocations == 5


def test_in_process_s3_objects_are_served_over_http(sandbox):
    config = sandbox.sandbox.config
    s3 = sandbox.sandbox.s3.client(config.s3_access_key, config.s3_secret_key)
    keys = [obj.object_name for obj in s3.list_objects(config.bucket, prefix=config.prefix)]
    assert f"{config.prefix}frame-000030.jpg" in keys and f"{config.prefix}README.txt" in keys
    assert invoke(sandbox, 29, 31, "two-items").status_code == 201
    wait_until(lambda: (job(sandbox, "two-items").get("status") or {}).get("succeeded"), timeout=15,
               message="job completion")
    response = s3.get_object(config.bucket, "output/frame-000030.jpg.json")
    try:
        assert response.json()["input"] == f"{config.prefix}frame-000030.jpg"
    finally:
        response.close()
        response.release_conn()
    assert sandbox.sandbox.s3.keys_in_process(config.bucket, "output/") == [
        "output/frame-000029.jpg.json", "output/frame-000030.jpg.json"]
