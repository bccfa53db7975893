"""The batch end to end on real servers: the operator (as its ServiceAccount) → the OSCAR simulator → real Jobs
→ the real Job controller's Pods → the real scheduler → a simulated kubelet doing the service's work on MinIO.

What is real: kube-apiserver, etcd, kube-scheduler, kube-controller-manager (Job controller), MinIO, the
operator and its RBAC. What is simulated: the OSCAR Manager (the project's simulator, its Jobs created in the
real API server) and the kubelet (pods bound to the simulated nodes are "run" here: the service's behaviour
reads EVENT, does the work against MinIO and reports the pod's phase; the Job controller does the rest).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import io
import json
import pathlib
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kmock
import minio.error
import pytest
from realoscar import RealOscar, sync_node_metrics
from realplane import ControlPlane, Minio, Process, create_credentials, rbac_denials, start_operator, wait_for
from test_real_scheduling import add_nodes, node, remove_nodes

from oscar_batch.core.invocation import identify
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from oscar_batch_sandbox.oscar import OscarSimulator
from oscar_batch_sandbox.runner import (
    main_container_env,
    manifest_lines,
    output_key,
    parse_event,
    running_status,
    terminated_status,
)
from proxy import TcpProxy

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
    write one output per input) and ends Succeeded, or Failed when the behaviour fails.

    With `run_seconds`, a pod stays Running that long before it does its work and ends, so that Jobs are in
    flight; pods run side by side. A pod being deleted (deletionTimestamp set, as OSCAR's job deletion and the
    garbage collector do it) is stopped and its deletion confirmed with grace period 0, as a kubelet does once
    the containers are gone; it never writes its outputs."""

    def __init__(self, kube: RealKube, s3: Any, config: SandboxConfig, run_seconds: float = 0.0) -> None:
        self._kube, self._s3, self._config = kube, s3, config
        self._run_seconds = run_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulated-kubelet", daemon=True)
        self._running: dict[str, tuple[dict[str, Any], float]] = {}  # pod uid → (pod, when its work is done)
        self._seen: set[str] = set()  # uids of pods started once: a stale listing never starts one again
        self.ran: list[str] = []
        self.killed: list[str] = []  # the Jobs whose pod was deleted while it ran
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
                    if not pod["spec"].get("nodeName"):
                        continue
                    if pod["metadata"].get("deletionTimestamp"):
                        self._confirm_deletion(pod)
                    elif (pod.get("status") or {}).get("phase") == "Pending" \
                            and pod["metadata"]["uid"] not in self._seen:
                        self._start(pod)
                self._finish_due()
            except Exception as error:  # noqa: BLE001 - reported by the test, never swallowed silently
                self.errors.append(f"{type(error).__name__}: {error}")
            self._stop.wait(0.05)

    def _start(self, pod: dict[str, Any]) -> None:
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        self._seen.add(uid)
        started = now_iso()
        try:
            self._kube.patch_status("v1/pods", SERVICES_NAMESPACE, name, running_status(pod, started))
        except kmock.KubernetesError as error:
            if error.status != 404:  # deleted between the listing and now: nothing to run
                raise
            return
        pod["status"] = {"startTime": started}
        self._running[uid] = (pod, time.monotonic() + self._run_seconds)

    def _finish_due(self) -> None:
        now = time.monotonic()
        for uid, (pod, done_at) in list(self._running.items()):
            if done_at > now:
                continue
            del self._running[uid]
            name = pod["metadata"]["name"]
            code = self._behave(pod)
            try:
                self._kube.patch_status("v1/pods", SERVICES_NAMESPACE, name, terminated_status(pod, code, now_iso()))
            except kmock.KubernetesError as error:
                if error.status != 404:
                    raise
                # Gone under it: its outputs were written, its phase never reported.
                self.killed.append(pod["metadata"]["labels"].get("job-name", name))
                continue
            self.ran.append(name)

    def _confirm_deletion(self, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        if self._running.pop(metadata["uid"], None) is not None:
            self.killed.append((metadata.get("labels") or {}).get("job-name", metadata["name"]))
        if metadata.get("deletionGracePeriodSeconds") == 0:
            return  # confirmed already; what is left is the Job controller's finalizer
        with contextlib.suppress(kmock.KubernetesError):  # gone already, or a new pod of the same name
            self._kube.call("DELETE", f"/api/v1/namespaces/{SERVICES_NAMESPACE}/pods/{metadata['name']}", {
                "kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                "preconditions": {"uid": metadata["uid"]}})

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


@dataclasses.dataclass(frozen=True)
class Stack:
    """What a test asks of `oscar_stack` (by indirect parametrization); the defaults are the first test's."""
    operator_args: tuple[str, ...] = ()        # appended to the operator's command line: the last flag wins
    run_seconds: float = 0.0                   # how long each pod runs (Kubelet)
    failing_ranges: frozenset[tuple[int, int]] = frozenset({(1, 3), (1, 2)})   # line 1 always fails
    inputs: int = 20
    real_oscar: bool = False                   # the real OSCAR Manager (and its MinIO) instead of the simulator
    operator: bool = True                      # False: the test starts its own (another account, other flags)


# Short delays so that faults heal within a test: the new flags of `oscar-batch run`.
CANCEL_TIMEOUT = 10.0
FAST = ("--retry-delay", "0.5", "--max-backoff", "4", "--unseen-job-timeout", "2",
        "--cancel-timeout", f"{CANCEL_TIMEOUT:g}")
REAL = Stack(real_oscar=True)
# The operator's pace in these tests: a look at the Jobs every 0.2 s, status as often, a plan every second.
OPERATOR_FLAGS = ("--tick", "0.2", "--plan-interval", "1", "--status-interval", "0.2")


@pytest.fixture
def oscar_stack(real_cluster: ControlPlane, installed: ControlPlane, tmp_path: pathlib.Path,
                request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    options: Stack = getattr(request, "param", Stack())
    plane = real_cluster
    nodes = ["e2e-worker-1", "e2e-worker-2"]
    add_nodes(plane, [node(name, "4", "8Gi") for name in nodes])
    if plane.kubectl("get", "namespace", SERVICES_NAMESPACE, check=False).returncode != 0:
        plane.kubectl("create", "namespace", SERVICES_NAMESPACE)
    wait_for(lambda: plane.request(f"/api/v1/namespaces/{SERVICES_NAMESPACE}/serviceaccounts/default")[0] == 200,
             60, f"ServiceAccount {SERVICES_NAMESPACE}/default", alive=plane.processes)

    behaviour = Behaviour(failing_ranges=options.failing_ranges)
    bucket = f"e2e-{secrets.token_hex(4)}"
    real: RealOscar | None = None
    if options.real_oscar:
        real = request.getfixturevalue("real_oscar")
        service = request.getfixturevalue("real_oscar_service")
        assert service["namespace"] == SERVICES_NAMESPACE, service["namespace"]
        sync_node_metrics(plane)
        server: Minio = real.minio
        config = SandboxConfig(bucket=bucket, items=0, behaviour=behaviour, service=service["name"],
                               oscar_user=real.username, oscar_password=real.password)
    else:
        server = request.getfixturevalue("real_minio")
        config = SandboxConfig(bucket=bucket, items=0, behaviour=behaviour)
    s3 = server.client()
    s3.make_bucket(config.bucket)
    inputs = [f"{config.prefix}frame-{index:06d}.jpg" for index in range(1, options.inputs + 1)]
    for key in [*inputs, f"{config.prefix}README.txt", "archive/frame-000001.jpg"]:
        s3.put_object(config.bucket, key, io.BytesIO(b"\xff\xd8jpeg"), 6)

    kube = RealKube(plane)
    loop: Loop | None = None
    simulator: OscarSimulator | None = None
    operator: Process | None = None
    try:
        if real is not None:
            oscar_url = real.url
        else:
            loop = Loop()
            simulator = OscarSimulator(kube, config)
            oscar_url = loop.run(simulator.start())
        with Kubelet(kube, s3, config, run_seconds=options.run_seconds) as kubelet:
            if options.operator:
                # Cluster-wide, as manifests/base/deployment.yaml runs it (see test_real_rbac for --namespace).
                operator = start_operator(plane, tmp_path, *OPERATOR_FLAGS, *options.operator_args)
            yield {"plane": plane, "config": config, "oscar_url": oscar_url, "s3": s3, "inputs": inputs,
                   "kubelet": kubelet, "operator": operator, "minio": server, "real_oscar": real}
    finally:
        if operator is not None:
            operator.stop()
        if loop is not None and simulator is not None:
            loop.run(simulator.stop())
            loop.close()
        plane.kubectl("delete", "jobs", "--all", "-n", SERVICES_NAMESPACE, "--wait=false", check=False)
        plane.kubectl("delete", "pods", "--all", "-n", SERVICES_NAMESPACE, "--grace-period=0", "--force",
                      "--wait=true", "--timeout=60s", check=False)
        remove_nodes(plane, nodes)
        if real is not None:
            sync_node_metrics(plane)


def start_batch(stack: dict[str, Any], namespace: str, name: str = "e2e", oscar_endpoint: str | None = None,
                **spec: Any) -> None:
    """The credential Secrets and an OscarBatchJob over the stack's bucket (OSCAR at `oscar_endpoint`, by
    default the simulator itself); `spec` adds to or overrides the batch's spec."""
    plane, config, minio = stack["plane"], stack["config"], stack["minio"]
    create_credentials(plane, namespace, "oscar-credentials",
                       {"username": config.oscar_user, "password": config.oscar_password})
    create_credentials(plane, namespace, "minio-credentials",
                       {"accessKey": minio.access_key, "secretKey": minio.secret_key})
    plane.apply({
        "apiVersion": "batch.oscarbatch.dev/v1alpha1", "kind": "OscarBatchJob", "metadata": {"name": name},
        "spec": {"service": config.service,
                 "oscar": {"endpoint": oscar_endpoint or stack["oscar_url"], "credentialsSecret": "oscar-credentials",
                           "servicesNamespace": SERVICES_NAMESPACE},
                 "storage": {"endpoint": minio.url, "credentialsSecret": "minio-credentials",
                             "bucket": config.bucket, "prefix": config.prefix, "include": ["*.jpg"]},
                 # The tests read the Jobs afterwards; the clean-up is tested on its own.
                 "keepJobs": True, **spec},
    }, "-n", namespace)


def batch_finished(plane: ControlPlane, namespace: str, name: str = "e2e") -> dict[str, Any] | None:
    batch = plane.get_json("oscarbatchjobs", name, "-n", namespace)
    return batch if (batch.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None




def jobs_of(plane: ControlPlane, uid: str) -> list[dict[str, Any]]:
    """The batch's Jobs in the real API server: `<service>-<uid[:12]>-l<start>-<end>-a<attempt>`."""
    marker = f"-{uid.replace('-', '')[:12]}-l"
    return [job for job in plane.get_json("jobs", "-n", SERVICES_NAMESPACE)["items"]
            if marker in job["metadata"]["name"]]


def verdict(job: dict[str, Any]) -> str | None:
    """The Job controller's terminal condition, None while the Job is in flight."""
    return next((c["type"] for c in (job.get("status") or {}).get("conditions") or ()
                 if c["type"] in ("Complete", "Failed") and c["status"] == "True"), None)


def lines_of(job: dict[str, Any]) -> tuple[int, int]:
    identity = identify(job)
    assert identity is not None, job["metadata"]["name"]
    return identity.start, identity.end


def batch_events(plane: ControlPlane, namespace: str, name: str = "e2e",
                 reason: str | None = None) -> list[dict[str, Any]]:
    """The batch's Events; they outlive the object."""
    selector = f"involvedObject.kind=OscarBatchJob,involvedObject.name={name}"
    if reason:
        selector += f",reason={reason}"
    return plane.get_json("events", "-n", namespace, "--field-selector", selector)["items"]


def read_json(s3: Any, bucket: str, key: str) -> Any:
    response = s3.get_object(bucket, key)
    try:
        return json.loads(response.read())
    finally:
        response.close()
        response.release_conn()


def batch_gone(plane: ControlPlane, namespace: str, name: str = "e2e") -> bool:
    result = plane.kubectl("get", "oscarbatchjob", name, "-n", namespace, "--ignore-not-found", "-o", "name")
    return result.stdout.strip() == ""


@pytest.mark.parametrize("oscar_stack", [Stack(), REAL], indirect=True, ids=["simulator", "real-oscar"])
@pytest.mark.timeout(BATCH_TIMEOUT + 120)
def test_batch_runs_to_succeeded_on_real_servers(oscar_stack: dict[str, Any], namespace: str) -> None:
    """Failures and retries: range [1, 3) fails, then its half [1, 2) fails twice; every other input once."""
    plane, config, s3 = oscar_stack["plane"], oscar_stack["config"], oscar_stack["s3"]
    kubelet, operator = oscar_stack["kubelet"], oscar_stack["operator"]
    start_batch(oscar_stack, namespace, itemsPerInvocation=2, retries=1, toleratedFailures=1)
    uid = plane.get_json("oscarbatchjob", "e2e", "-n", namespace)["metadata"]["uid"]

    batch = wait_for(lambda: batch_finished(plane, namespace), BATCH_TIMEOUT, "the batch to finish",
                     alive=[operator], interval=0.5)
    assert not kubelet.errors, kubelet.errors
    status = batch["status"]
    # Range [1, 3) fails and runs as its halves; line 1 alone fails twice (retries 1), tolerated (1).
    assert status["phase"] == "Succeeded", (status, operator.tail())
    assert status["items"]["total"] == 20 and status["items"]["succeeded"] == 19
    assert status["items"]["failed"] == 1 and status["failedItems"] == "1"
    assert status["failedItemDetails"][0]["key"] == oscar_stack["inputs"][0]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Complete"]["status"] == "True"

    outputs = sorted(obj.object_name for obj in s3.list_objects(config.bucket, prefix="output/", recursive=True))
    processed = {key.removeprefix("output/").removesuffix(".json") for key in outputs}
    expected = {key.removeprefix(config.prefix) for key in oscar_stack["inputs"][1:]}
    assert processed == expected, sorted(processed ^ expected)  # every input once, the failed item's none

    # The Jobs were finished by the real Job controller from the pods' phases.
    verdicts = sorted(str(verdict(job)) for job in jobs_of(plane, uid))
    assert verdicts.count("Failed") == 3 and verdicts.count("Complete") == 10, verdicts
    # 8 slots (2 nodes × 4 cores) in flight at most, and nothing left unschedulable.
    assert 0 < kubelet.max_running <= 8, kubelet.max_running
    marker = f"-{uid.replace('-', '')[:12]}-l"  # the batch's pods, as in jobs_of: Events outlive other tests
    unschedulable = [event for event in plane.get_json("events", "-n", SERVICES_NAMESPACE, "--field-selector",
                                                       "reason=FailedScheduling")["items"]
                     if marker in event["involvedObject"]["name"]]
    assert not unschedulable, [e["message"] for e in unschedulable]
    results = json.loads(s3.get_object(config.bucket, status["results"].removeprefix(f"s3://{config.bucket}/"))
                         .read())
    assert results, "no results manifest"
    assert not rbac_denials(operator), operator.tail()
    assert_oscar_clean(oscar_stack)


@pytest.mark.timeout(2 * BATCH_TIMEOUT + 120)
def test_a_redriven_batch_keeps_its_round_across_a_restart(oscar_stack: dict[str, Any], namespace: str,
                                                           tmp_path: pathlib.Path) -> None:
    """Line 1 always fails. Redriven once it runs again, fails again; the round (status.redrive) must survive the
    API server's pruning, or the restarted operator redrives the batch a second time."""
    plane, operator = oscar_stack["plane"], oscar_stack["operator"]
    start_batch(oscar_stack, namespace, itemsPerInvocation=2, retries=0)
    uid = plane.get_json("oscarbatchjob", "e2e", "-n", namespace)["metadata"]["uid"]
    assert wait_for(lambda: batch_finished(plane, namespace), BATCH_TIMEOUT, "the batch to fail", alive=[operator],
                    interval=0.5)["status"]["failedItems"] == "1"
    plane.kubectl("patch", "oscarbatchjob", "e2e", "-n", namespace, "--type=merge", "-p", '{"spec": {"redrive": 1}}')
    batch = wait_for(lambda: (b := batch_finished(plane, namespace)) and b["status"].get("observedGeneration") == 2
                     and b, BATCH_TIMEOUT, "the redriven batch to end", alive=[operator], interval=0.5)
    assert batch["status"]["redrive"] == 1 and batch["status"]["failedItems"] == "1", batch["status"]

    operator.stop()
    (restarted := tmp_path / "restarted").mkdir()
    operator = start_operator(plane, restarted, *OPERATOR_FLAGS)
    try:
        # An edit the restarted operator must answer (a new verdict): once it has, it has seen the round too.
        plane.kubectl("patch", "oscarbatchjob", "e2e", "-n", namespace, "--type=merge",
                      "-p", '{"spec": {"toleratedFailures": 1}}')
        batch = wait_for(lambda: (b := batch_finished(plane, namespace)) and b["status"]["phase"] == "Succeeded"
                         and b, BATCH_TIMEOUT, "the edited batch's new verdict", alive=[operator], interval=0.5)
        assert batch["status"]["redrive"] == 1
        assert len(batch_events(plane, namespace, reason="Redriven")) == 1, operator.tail()
        round_one = [job["metadata"]["name"] for job in jobs_of(plane, uid) if job["metadata"]["name"].endswith("-d1")]
        assert len(round_one) == 1, round_one            # line 1 ran once in round 1, not again after the restart
    finally:
        operator.stop()


def assert_oscar_clean(stack: dict[str, Any]) -> None:
    """The real OSCAR, if it served the test, was never refused by RBAC under its own ServiceAccount, and
    neither its log nor the operator's holds a credential."""
    real: RealOscar | None = stack["real_oscar"]
    if real is None:
        return
    logs = real.logs()
    denied = [line for line in logs.splitlines() if "forbidden" in line]
    assert not denied, denied[:5]
    token = json.loads(real.call("GET", f"/system/services/{stack['config'].service}")[1])["token"]
    operator_log = stack["operator"].log.read_text(errors="replace")
    for secret in (real.password, token, real.minio.secret_key):
        assert secret not in logs and secret not in operator_log


OUTAGE_SECONDS = 5.0


@pytest.mark.parametrize("oscar_stack", [Stack(operator_args=FAST, run_seconds=1.5, failing_ranges=frozenset(),
                                               inputs=40)], indirect=True, ids=["pods-run-1.5s"])
@pytest.mark.timeout(BATCH_TIMEOUT + 120)
def test_oscar_outage_mid_batch_heals_and_runs_every_range_once(oscar_stack: dict[str, Any], namespace: str) -> None:
    """OSCAR's endpoint behind a real TCP proxy, cut off once a few ranges succeeded: the invocations fail,
    the Jobs in flight finish meanwhile; restored, the batch goes on and every range succeeds in one Job."""
    plane = oscar_stack["plane"]
    kubelet, operator = oscar_stack["kubelet"], oscar_stack["operator"]
    with TcpProxy(oscar_stack["oscar_url"]) as proxy:
        start_batch(oscar_stack, namespace, oscar_endpoint=proxy.url, itemsPerInvocation=2, retries=1)
        uid = plane.get_json("oscarbatchjob", "e2e", "-n", namespace)["metadata"]["uid"]

        def succeeded() -> int:
            return sum(verdict(job) == "Complete" for job in jobs_of(plane, uid))

        wait_for(lambda: succeeded() >= 3, 60, "a few ranges to succeed", alive=[operator], interval=0.2)
        assert not batch_events(plane, namespace, reason="InvocationFailed"), "no invocation failed before the cut"
        proxy.cut()
        cut_at = time.monotonic()
        # The operator's invocations fail while OSCAR is away...
        wait_for(lambda: batch_events(plane, namespace, reason="InvocationFailed"), 30,
                 "an invocation to fail while OSCAR is cut off", alive=[operator], interval=0.2)
        # ...and the Jobs in flight finish meanwhile: the kubelet and the Job controller need no OSCAR.
        wait_for(lambda: all(verdict(job) for job in jobs_of(plane, uid)), 30,
                 "the Jobs in flight to finish during the outage", alive=[operator], interval=0.2)
        held = time.monotonic() - cut_at
        if held < OUTAGE_SECONDS:
            time.sleep(OUTAGE_SECONDS - held)  # the outage lasts its intended duration
        left = 20 - succeeded()
        assert left >= 4, f"only {left} range(s) left for after the outage"
        proxy.restore()

        batch = wait_for(lambda: batch_finished(plane, namespace), BATCH_TIMEOUT, "the batch to finish",
                         alive=[operator], interval=0.5)
        assert proxy.cuts == 1
    assert not kubelet.errors, kubelet.errors
    status = batch["status"]
    assert status["phase"] == "Succeeded", (status, operator.tail())
    assert status["items"]["total"] == status["items"]["succeeded"] == 40, status["items"]
    assert status["items"]["failed"] == 0

    assert_every_range_ran_once(oscar_stack, namespace, uid, ranges=20)
    assert not rbac_denials(operator), operator.tail()


def assert_every_range_ran_once(stack: dict[str, Any], namespace: str, uid: str, ranges: int) -> None:
    """Every line in exactly one Complete Job, no other Job of the batch, and every input exactly one output,
    written by the Job that succeeded for its range."""
    plane, config, s3 = stack["plane"], stack["config"], stack["s3"]
    lines = len(stack["inputs"])
    jobs = jobs_of(plane, uid)
    complete = {job["metadata"]["name"]: lines_of(job) for job in jobs if verdict(job) == "Complete"}
    per_line = collections.Counter(line for span in complete.values() for line in range(*span))
    assert per_line == collections.Counter(range(1, lines + 1)), \
        ({r: n for r, n in per_line.items() if n != 1}, sorted(set(range(1, lines + 1)) - set(per_line)))
    assert not [job["metadata"]["name"] for job in jobs if verdict(job) != "Complete"]
    assert len(jobs) == ranges, sorted(job["metadata"]["name"] for job in jobs)  # nothing was invoked twice
    assert not batch_events(plane, namespace, reason="InvocationLost")

    outputs = {obj.object_name: read_json(s3, config.bucket, obj.object_name)
               for obj in s3.list_objects(config.bucket, prefix="output/", recursive=True)}
    processed = {key.removeprefix("output/").removesuffix(".json") for key in outputs}
    expected = {key.removeprefix(config.prefix) for key in stack["inputs"]}
    assert processed == expected, sorted(processed ^ expected)  # every input exactly one output
    for key, body in outputs.items():  # written by the one Job that succeeded for its range
        assert body["job"] in complete and complete[body["job"]] == tuple(body["range"]), (key, body)


@pytest.mark.parametrize("restart", [False, True], ids=["steady", "restarted"])
@pytest.mark.parametrize("oscar_stack", [Stack(operator_args=FAST, run_seconds=1.0, failing_ranges=frozenset(),
                                               inputs=30, real_oscar=True)], indirect=True, ids=["real-oscar"])
@pytest.mark.timeout(BATCH_TIMEOUT + 120)
def test_real_oscar_runs_every_input_once(oscar_stack: dict[str, Any], namespace: str, restart: bool) -> None:
    """The whole batch through the real OSCAR Manager; `restarted`: the OSCAR process is stopped once a few
    ranges succeeded, stays down until an invocation failed against it, and is started again: the batch goes
    on and every range still runs in exactly one Job."""
    plane, kubelet, operator = oscar_stack["plane"], oscar_stack["kubelet"], oscar_stack["operator"]
    real: RealOscar = oscar_stack["real_oscar"]
    start_batch(oscar_stack, namespace, itemsPerInvocation=2, retries=1)
    uid = plane.get_json("oscarbatchjob", "e2e", "-n", namespace)["metadata"]["uid"]
    if restart:
        wait_for(lambda: sum(verdict(job) == "Complete" for job in jobs_of(plane, uid)) >= 3, 60,
                 "a few ranges to succeed", alive=[operator], interval=0.2)
        real.stop()
        wait_for(lambda: batch_events(plane, namespace, reason="InvocationFailed"), 30,
                 "an invocation to fail while OSCAR is stopped", alive=[operator], interval=0.2)
        real.start()
        assert sum(verdict(job) == "Complete" for job in jobs_of(plane, uid)) < 15, "nothing left after the restart"

    batch = wait_for(lambda: batch_finished(plane, namespace), BATCH_TIMEOUT, "the batch to finish",
                     alive=[operator], interval=0.5)
    assert not kubelet.errors, kubelet.errors
    status = batch["status"]
    assert status["phase"] == "Succeeded", (status, operator.tail())
    assert status["items"]["total"] == status["items"]["succeeded"] == 30, status["items"]
    assert_every_range_ran_once(oscar_stack, namespace, uid, ranges=15)
    assert not rbac_denials(operator), operator.tail()
    assert_oscar_clean(oscar_stack)


@pytest.mark.parametrize("oscar_stack", [Stack(operator_args=FAST, run_seconds=1.0, failing_ranges=frozenset(),
                                               inputs=20, real_oscar=True)], indirect=True, ids=["real-oscar"])
@pytest.mark.timeout(BATCH_TIMEOUT + 120)
def test_an_output_aware_batch_through_real_oscar_invokes_only_the_inputs_without_outputs(
        oscar_stack: dict[str, Any], namespace: str) -> None:
    """12 of 20 inputs already have their outputs in MinIO: the real OSCAR Manager is asked for the other 8 only,
    the outputs there are not written again, and the API server's CEL rule keeps spec.outputs as it started."""
    plane, config, s3 = oscar_stack["plane"], oscar_stack["config"], oscar_stack["s3"]
    kubelet, operator = oscar_stack["kubelet"], oscar_stack["operator"]
    done_before = oscar_stack["inputs"][:12]
    for key in done_before:
        body = json.dumps({"job": "an-earlier-run", "input": key}).encode()
        s3.put_object(config.bucket, output_key(key, config.prefix, config.behaviour.output_prefix),
                      io.BytesIO(body), len(body), content_type="application/json")
    seeded = {obj.object_name: obj.etag for obj in s3.list_objects(config.bucket, prefix="output/", recursive=True)}
    start_batch(oscar_stack, namespace, itemsPerInvocation=2, outputs={"prefix": "output/"})
    uid = plane.get_json("oscarbatchjob", "e2e", "-n", namespace)["metadata"]["uid"]
    wait_for(lambda: (plane.get_json("oscarbatchjob", "e2e", "-n", namespace).get("status") or {}).get("startTime"),
             60, "the batch to start", alive=[operator], interval=0.2)
    edit = plane.kubectl("patch", "oscarbatchjob", "e2e", "-n", namespace, "--type", "merge", "-p",
                         json.dumps({"spec": {"outputs": {"prefix": "output/v2/"}}}), check=False)
    assert edit.returncode != 0 and "spec.outputs cannot" in edit.stderr, edit.stderr

    batch = wait_for(lambda: batch_finished(plane, namespace), BATCH_TIMEOUT, "the batch to finish",
                     alive=[operator], interval=0.5)
    assert not kubelet.errors, kubelet.errors
    status = batch["status"]
    assert status["phase"] == "Succeeded", (status, operator.tail())
    assert (status["items"]["total"], status["items"]["skipped"], status["items"]["succeeded"]) == (8, 12, 8)
    assert status["pinned"]["outputs"]["prefix"] == "output/"
    jobs = jobs_of(plane, uid)
    assert sorted(line for job in jobs for line in range(*lines_of(job))) == list(range(1, 9)), \
        [job["metadata"]["name"] for job in jobs]
    outputs = {obj.object_name: obj.etag for obj in s3.list_objects(config.bucket, prefix="output/", recursive=True)}
    assert {key: outputs[key] for key in seeded} == seeded              # none written again
    written = {key: read_json(s3, config.bucket, key) for key in outputs}
    assert sorted(body["input"] for body in written.values()) == oscar_stack["inputs"]
    assert sorted(body["input"] for body in written.values() if body["job"] != "an-earlier-run") == \
        oscar_stack["inputs"][12:]
    results = read_json(s3, config.bucket, status["results"].removeprefix(f"s3://{config.bucket}/"))
    assert results["items"]["skipped"] == 12
    assert read_json(s3, config.bucket, results["skippedItemsAt"].removeprefix(f"s3://{config.bucket}/")) == \
        done_before
    assert not rbac_denials(operator), operator.tail()
    assert_oscar_clean(oscar_stack)


# As many as the CancelIncomplete Event names one by one (cancel.SHOWN_JOBS); with OSCAR refusing connections
# each DELETE takes 1.5 s of client retries, so 5 Jobs also show whether --cancel-timeout bounds the cleanup.
IN_FLIGHT = 5
CANCEL_MARGIN = 5.0  # kopf noticing the deletion, stopping the daemon and releasing the finalizer


def pods_of(plane: ControlPlane, jobs: set[str]) -> list[dict[str, Any]]:
    return [pod for pod in plane.get_json("pods", "-n", SERVICES_NAMESPACE)["items"]
            if (pod["metadata"].get("labels") or {}).get("job-name") in jobs]


def manifest_exists(stack: dict[str, Any], key: str) -> bool:
    try:
        stack["s3"].stat_object(stack["config"].bucket, key)
    except minio.error.S3Error as error:
        if error.code == "NoSuchKey":
            return False
        raise
    return True


@pytest.mark.parametrize("oscar_down", [False, True], ids=["oscar-up", "oscar-cut"])
@pytest.mark.parametrize("oscar_stack", [Stack(operator_args=FAST, run_seconds=120, failing_ranges=frozenset())],
                         indirect=True, ids=["pods-run-120s"])
@pytest.mark.timeout(180)
def test_deleting_a_batch_cancels_its_jobs_in_flight(oscar_stack: dict[str, Any], namespace: str,
                                                     oscar_down: bool) -> None:
    """`kubectl delete` a running batch: behind the finalizer the operator deletes the Jobs in flight through
    OSCAR (the simulator deletes them and their pods in the real API server) and the manifest in MinIO, and
    says so in a `Cancelled` Event. With OSCAR cut off, the object still goes within --cancel-timeout, and a
    `CancelIncomplete` Warning names the Jobs left behind."""
    plane, kubelet, operator = oscar_stack["plane"], oscar_stack["kubelet"], oscar_stack["operator"]
    with TcpProxy(oscar_stack["oscar_url"]) as proxy:
        start_batch(oscar_stack, namespace, oscar_endpoint=proxy.url, itemsPerInvocation=2,
                    maxParallelism=IN_FLIGHT)
        uid = plane.get_json("oscarbatchjob", "e2e", "-n", namespace)["metadata"]["uid"]

        def running() -> set[str] | None:
            jobs = {job["metadata"]["name"] for job in jobs_of(plane, uid) if verdict(job) is None}
            pods = [pod for pod in pods_of(plane, jobs) if (pod.get("status") or {}).get("phase") == "Running"]
            return jobs if len(jobs) == IN_FLIGHT and len(pods) == IN_FLIGHT else None

        in_flight = wait_for(running, 60, f"{IN_FLIGHT} Jobs of the batch to run", alive=[operator], interval=0.2)
        batch = plane.get_json("oscarbatchjob", "e2e", "-n", namespace)
        manifest_key = batch["status"]["manifest"].removeprefix(f"s3://{oscar_stack['config'].bucket}/")
        assert manifest_exists(oscar_stack, manifest_key)

        if oscar_down:
            proxy.cut()
        deleted_at = time.monotonic()
        plane.kubectl("delete", "oscarbatchjob", "e2e", "-n", namespace, "--wait=false")
        wait_for(lambda: batch_gone(plane, namespace), CANCEL_TIMEOUT + CANCEL_MARGIN,
                 "the deleted batch to go (its finalizer released)", alive=[operator], interval=0.2)
        took = time.monotonic() - deleted_at
        left = {job["metadata"]["name"] for job in jobs_of(plane, uid) if verdict(job) is None}

    assert not manifest_exists(oscar_stack, manifest_key), "the batch's manifest is removed from MinIO"
    if not oscar_down:
        assert took < CANCEL_TIMEOUT, f"cleaning up with OSCAR up took {took:.1f}s"
        # Deleted before the finalizer was released: through OSCAR, Jobs and their pods in the real API server.
        assert not left, sorted(left)
        assert not {job["metadata"]["name"] for job in jobs_of(plane, uid)} & in_flight
        wait_for(lambda: not pods_of(plane, in_flight), 30, "the pods of the cancelled Jobs to go")
        assert set(kubelet.killed) == in_flight, (kubelet.killed, in_flight)  # stopped, never finished
        events = wait_for(lambda: batch_events(plane, namespace, reason="Cancelled"), 15,
                          "the Cancelled Event", alive=[operator])
        message = events[0]["message"]
        assert events[0]["type"] == "Normal"
        assert f"deleted {IN_FLIGHT} Job(s) in flight" in message and "removed the manifest" in message, message
        assert not batch_events(plane, namespace, reason="CancelIncomplete")
    else:
        # Nothing could reach OSCAR: the Jobs are still there, still running, and named in the Warning.
        assert left == in_flight, (sorted(left), sorted(in_flight))
        assert not kubelet.killed, kubelet.killed
        events = wait_for(lambda: batch_events(plane, namespace, reason="CancelIncomplete"), 15,
                          "the CancelIncomplete Event", alive=[operator])
        message = events[0]["message"]
        assert events[0]["type"] == "Warning"
        assert f"{IN_FLIGHT} Job(s) still in OSCAR" in message, message
        assert all(name in message for name in in_flight), (message, sorted(in_flight))
        assert "removed the manifest" in message, message
        assert not batch_events(plane, namespace, reason="Cancelled")
    print(f"cancel with OSCAR {'cut off' if oscar_down else 'up'}: the batch was gone {took:.1f}s after "
          "kubectl delete")
    assert not kubelet.errors, kubelet.errors
    assert not rbac_denials(operator), operator.tail()
