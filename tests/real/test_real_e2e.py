"""The batch end to end on real servers: the operator (as its ServiceAccount) → the OSCAR simulator → real Jobs
→ the real Job controller's Pods → the real scheduler → a simulated kubelet doing the service's work on MinIO.

What is real: kube-apiserver, etcd, kube-scheduler, kube-controller-manager (Job controller), MinIO, the
operator and its RBAC. What is simulated: the OSCAR Manager (the project's simulator, its Jobs created in the
real API server) and the kubelet (pods bound to the simulated nodes are "run" here: the service's behaviour
reads EVENT, does the work against MinIO and reports the pod's phase; the Job controller does the rest).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import json
import pathlib
import secrets
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kmock
import pytest

from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from oscar_batch_sandbox.oscar import OscarSimulator
from oscar_batch_sandbox.runner import (main_container_env, manifest_lines, output_key, parse_event,
                                        running_status, terminated_status)
from realplane import ControlPlane, Minio, Process, rbac_denials, start_operator, wait_for
from test_real_scheduling import add_nodes, node, remove_nodes

SERVICES_NAMESPACE = "oscar-svc"
BATCH_TIMEOUT = 150.0


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RealKube:
    """The part of the sandbox emulator's interface the OSCAR simulator uses, over the real API server."""

    def __init__(self, plane: ControlPlane) -> None:
        self._base = plane.url
        self._token = plane.tokens["admin"]  # OSCAR Manager runs with a broad ClusterRole of its own
        self._context = ssl.create_default_context(cafile=str(plane.pki.ca_cert))

    def _path(self, resource: str, namespace: str | None, name: str | None = None) -> str:
        parts = resource.split("/")
        group_version, plural = "/".join(parts[:-1]), parts[-1]
        root = "/api/" if "/" not in group_version else "/apis/"
        path = root + group_version + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
        return path + (f"/{name}" if name else "")

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self._base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self._token}", "Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=10) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            status = json.loads(error.read() or b"{}")
            raise kmock.KubernetesError(error.code, status.get("reason"), status.get("message")) from None

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.call("GET", self._path(resource, namespace))["items"]

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.call("GET", self._path(resource, namespace, name))
        except kmock.KubernetesError as error:
            if error.status == 404:
                return None
            raise

    async def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        namespace = obj.get("metadata", {}).get("namespace")
        return await asyncio.to_thread(self.call, "POST", self._path(resource, namespace), obj)

    async def delete(self, resource: str, namespace: str | None, name: str) -> None:
        with contextlib.suppress(kmock.KubernetesError):
            await asyncio.to_thread(self.call, "DELETE", self._path(resource, namespace, name),
                                    {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})

    def patch_status(self, resource: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.call("PATCH", self._path(resource, namespace, name) + "/status", {"status": status},
                  content_type="application/merge-patch+json")


class Loop:
    """An event loop on a thread of its own, for the OSCAR simulator."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="oscar-simulator", daemon=True)
        self._thread.start()

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Kubelet:
    """Plays the kubelet of every simulated node: a bound, Pending pod of the services namespace runs the
    service's behaviour (the sandbox's fish detector: read the manifest lines [start, end) named by EVENT,
    write one output per input) and ends Succeeded, or Failed when the behaviour fails."""

    def __init__(self, kube: RealKube, s3: Any, config: SandboxConfig) -> None:
        self._kube, self._s3, self._config = kube, s3, config
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulated-kubelet", daemon=True)
        self.ran: list[str] = []
        self.max_running = 0
        self.errors: list[str] = []

    def __enter__(self) -> Kubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self._kube.list("v1/pods", SERVICES_NAMESPACE)
                running = sum(1 for p in pods if (p.get("status") or {}).get("phase") in ("Pending", "Running")
                              and p["spec"].get("nodeName"))
                self.max_running = max(self.max_running, running)
                for pod in pods:
                    if pod["spec"].get("nodeName") and (pod.get("status") or {}).get("phase") == "Pending" \
                            and not pod["metadata"].get("deletionTimestamp"):
                        self._start(pod)
            except Exception as error:  # noqa: BLE001 - reported by the test, never swallowed silently
                self.errors.append(f"{type(error).__name__}: {error}")
            self._stop.wait(0.05)

    def _start(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        self._kube.patch_status("v1/pods", SERVICES_NAMESPACE, name, running_status(pod, now_iso()))
        pod["status"] = {"startTime": now_iso()}
        code = self._behave(pod)
        self._kube.patch_status("v1/pods", SERVICES_NAMESPACE, name, terminated_status(pod, code, now_iso()))
        self.ran.append(name)

    def _behave(self, pod: dict[str, Any]) -> int:
        config = self._config
        try:
            invocation = parse_event(main_container_env(pod).get("EVENT", ""), f"{config.prefix}index.txt")
        except ValueError as error:
            self.errors.append(f"{pod['metadata']['name']}: {error}")
            return 1
        if (invocation.start, invocation.end) in config.behaviour.failing_ranges:
            return 1
        response = self._s3.get_object(config.bucket, invocation.manifest_key)
        try:
            manifest = response.read().decode()
        finally:
            response.close()
            response.release_conn()
        job = pod["metadata"]["labels"].get("job-name", "")
        for key in manifest_lines(manifest, invocation.start, invocation.end):
            body = json.dumps({"job": job, "input": key, "range": [invocation.start, invocation.end]}).encode()
            self._s3.put_object(config.bucket, output_key(key, config.prefix, config.behaviour.output_prefix),
                                io.BytesIO(body), len(body), content_type="application/json")
        return 0


@pytest.fixture
def oscar_stack(real_cluster: ControlPlane, installed: ControlPlane, real_minio: Minio,
                tmp_path: pathlib.Path) -> Iterator[dict[str, Any]]:
    plane = real_cluster
    nodes = ["e2e-worker-1", "e2e-worker-2"]
    add_nodes(plane, [node(name, "4", "8Gi") for name in nodes])
    if plane.kubectl("get", "namespace", SERVICES_NAMESPACE, check=False).returncode != 0:
        plane.kubectl("create", "namespace", SERVICES_NAMESPACE)
    wait_for(lambda: plane.request(f"/api/v1/namespaces/{SERVICES_NAMESPACE}/serviceaccounts/default")[0] == 200,
             60, f"ServiceAccount {SERVICES_NAMESPACE}/default", alive=plane.processes)

    config = SandboxConfig(bucket=f"e2e-{secrets.token_hex(4)}", items=0, behaviour=Behaviour(failing_ranges=frozenset({(1, 3)})))
    s3 = real_minio.client()
    s3.make_bucket(config.bucket)
    inputs = [f"{config.prefix}frame-{index:06d}.jpg" for index in range(1, 21)]
    for key in [*inputs, f"{config.prefix}README.txt", "archive/frame-000001.jpg"]:
        s3.put_object(config.bucket, key, io.BytesIO(b"\xff\xd8jpeg"), 6)

    kube = RealKube(plane)
    loop = Loop()
    simulator = OscarSimulator(kube, config)
    operator: Process | None = None
    try:
        oscar_url = loop.run(simulator.start())
        with Kubelet(kube, s3, config) as kubelet:
            # Cluster-wide, as manifests/deployment.yaml runs it (see test_real_rbac for --namespace).
            operator = start_operator(plane, tmp_path, "--tick", "0.2", "--plan-interval", "1",
                                      "--status-interval", "0.2")
            yield {"plane": plane, "config": config, "oscar_url": oscar_url, "s3": s3, "inputs": inputs,
                   "kubelet": kubelet, "operator": operator, "minio": real_minio}
    finally:
        if operator is not None:
            operator.stop()
        loop.run(simulator.stop())
        loop.close()
        plane.kubectl("delete", "jobs", "--all", "-n", SERVICES_NAMESPACE, "--wait=false", check=False)
        plane.kubectl("delete", "pods", "--all", "-n", SERVICES_NAMESPACE, "--grace-period=0", "--force",
                      "--wait=true", "--timeout=60s", check=False)
        remove_nodes(plane, nodes)


@pytest.mark.timeout(BATCH_TIMEOUT + 120)
def test_batch_runs_to_succeeded_on_real_servers(oscar_stack: dict[str, Any], namespace: str) -> None:
    plane, config, s3 = oscar_stack["plane"], oscar_stack["config"], oscar_stack["s3"]
    minio, kubelet, operator = oscar_stack["minio"], oscar_stack["kubelet"], oscar_stack["operator"]
    plane.kubectl("create", "secret", "generic", "oscar-credentials", "-n", namespace,
                  f"--from-literal=username={config.oscar_user}", f"--from-literal=password={config.oscar_password}")
    plane.kubectl("create", "secret", "generic", "minio-credentials", "-n", namespace,
                  f"--from-literal=accessKey={minio.access_key}", f"--from-literal=secretKey={minio.secret_key}")
    plane.apply({
        "apiVersion": "batch.oscarbatch.dev/v1alpha1", "kind": "OscarBatchJob", "metadata": {"name": "e2e"},
        "spec": {"service": config.service,
                 "oscar": {"endpoint": oscar_stack["oscar_url"], "credentialsSecret": "oscar-credentials",
                           "servicesNamespace": SERVICES_NAMESPACE},
                 "storage": {"endpoint": minio.url, "credentialsSecret": "minio-credentials",
                             "bucket": config.bucket, "prefix": config.prefix, "include": ["*.jpg"]},
                 "itemsPerInvocation": 2, "retries": 1, "toleratedFailures": 1},
    }, "-n", namespace)

    def finished() -> dict[str, Any] | None:
        batch = plane.get_json("oscarbatchjobs", "e2e", "-n", namespace)
        return batch if (batch.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    batch = wait_for(finished, BATCH_TIMEOUT, "the batch to finish", alive=[operator], interval=0.5)
    assert not kubelet.errors, kubelet.errors
    status = batch["status"]
    # Range [1, 3) always fails: tried twice (retries 1), tolerated (toleratedFailures 1).
    assert status["phase"] == "Succeeded", (status, operator.tail())
    assert status["items"] == 20
    assert status["ranges"]["total"] == 10 and status["ranges"]["succeeded"] == 9
    assert status["ranges"]["failed"] == 1 and status["failedRanges"] == "0"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Complete"]["status"] == "True"

    outputs = sorted(obj.object_name for obj in s3.list_objects(config.bucket, prefix="output/", recursive=True))
    processed = {key.removeprefix("output/").removesuffix(".json") for key in outputs}
    expected = {key.removeprefix(config.prefix) for key in oscar_stack["inputs"][2:]}
    assert processed == expected, sorted(processed ^ expected)  # every input once, the failed range's none

    # The Jobs were finished by the real Job controller from the pods' phases.
    jobs = plane.get_json("jobs", "-n", SERVICES_NAMESPACE)["items"]
    verdicts = sorted(next(c["type"] for c in job["status"]["conditions"]
                           if c["type"] in ("Complete", "Failed") and c["status"] == "True") for job in jobs)
    assert verdicts.count("Failed") == 2 and verdicts.count("Complete") == 9, verdicts
    # 8 slots (2 nodes × 4 cores) × headroom 0.8 = 6 in flight at most, and nothing left unschedulable.
    assert 0 < kubelet.max_running <= 6, kubelet.max_running
    unschedulable = plane.get_json("events", "-n", SERVICES_NAMESPACE, "--field-selector",
                                   "reason=FailedScheduling")["items"]
    assert not unschedulable, [e["message"] for e in unschedulable]
    results = json.loads(s3.get_object(config.bucket, status["results"].removeprefix(f"s3://{config.bucket}/"))
                         .read())
    assert results, "no results manifest"
    assert not rbac_denials(operator), operator.tail()
