"""A Remote batch end to end on real servers: the operator reaches the real OSCAR Manager through OSCAR's API alone
(`spec.oscar.access: Remote`) and runs as a ServiceAccount that may touch nothing of OSCAR's cluster.

What is real: kube-apiserver (RBAC, and its audit log of every request the operator made), etcd, kube-scheduler,
the Job controller, MinIO, the OSCAR Manager and the operator. The kubelet is played by the test (test_real_e2e's
`Kubelet`): the real scheduler binds the pods of the Jobs OSCAR creates, the test runs them, the Job controller
finishes the Jobs, and OSCAR's job listing (`GET /system/logs/{service}`) shows the pods' phases to the operator,
which deletes each Job through `DELETE /system/logs/{service}/{job}` once status recorded it.

The operator's ServiceAccount holds a Role in the batch's namespace only: its OscarBatchJobs (and their status), the
Secrets it reads, Events. No Nodes, Pods or Jobs anywhere; the audit log shows what it asked for.
"""
from __future__ import annotations

import pathlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import test_real_e2e
from realoscar import NODE_METRICS_CRD, OSCAR_NAMESPACE, OSCAR_SA, RealOscar, sync_node_metrics
from realplane import (
    OPERATOR_SA,
    ControlPlane,
    Process,
    create_credentials,
    free_port,
    rbac_denials,
    start_operator,
    subject,
    wait_for,
)
from test_real_crd import batch
from test_real_e2e import (
    BATCH_TIMEOUT,
    FAST,
    OPERATOR_FLAGS,
    SERVICES_NAMESPACE,
    Stack,
    assert_oscar_clean,
    read_json,
    start_batch,
)

from oscar_batch.core.invocation import name_identity

oscar_stack = test_real_e2e.oscar_stack   # the fixture: nodes, the real OSCAR, a bucket of inputs, the kubelet
ACCOUNT_NS = "oscar-batch-remote"   # where the Remote operator's ServiceAccount lives
OSCAR_USER = f"system:serviceaccount:{OSCAR_NAMESPACE}:{OSCAR_SA}"
# What a Remote batch needs of the Kubernetes API it runs in, and nothing more (compare the namespaced overlay's
# Role, which also lets the operator watch Jobs).
REMOTE_RULES = [
    {"apiGroups": ["batch.oscarbatch.dev"], "resources": ["oscarbatchjobs"],
     "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["batch.oscarbatch.dev"], "resources": ["oscarbatchjobs/status"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
OSCARS_CLUSTER = {"jobs", "pods", "nodes"}
PAGE = 4           # the real OSCAR's JOB_LISTING_LIMIT here: a batch's Jobs span several pages of its listing
LIST_INTERVAL = ("--list-interval", "0.5")
# Range [1, 3) fails once (its pod ends Failed, which only the listing tells) and succeeds as its two halves.
REMOTE = Stack(real_oscar=True, operator=False, run_seconds=1.0, failing_ranges=frozenset({(1, 3)}), inputs=20)


@pytest.fixture(scope="module")
def remote_account(installed: ControlPlane) -> Iterator[str]:
    """The Remote operator's namespace and ServiceAccount: bound to nothing until a test grants it its Role."""
    installed.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ACCOUNT_NS}},
                     {"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": OPERATOR_SA, "namespace": ACCOUNT_NS}}])
    try:
        yield ACCOUNT_NS
    finally:
        installed.kubectl("delete", "namespace", ACCOUNT_NS, "--wait=false", check=False)


def start_remote_operator(plane: ControlPlane, namespace: str, directory: pathlib.Path, *extra: str) -> Process:
    """`oscar-batch run --namespace <the batch's> --remote-only` as the Remote ServiceAccount, granted REMOTE_RULES
    there only (as manifests/overlays/remote installs it)."""
    plane.apply([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                  "metadata": {"name": "oscar-batch-remote", "namespace": namespace}, "rules": REMOTE_RULES},
                 {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                  "metadata": {"name": "oscar-batch-remote", "namespace": namespace},
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "oscar-batch-remote"},
                  "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_SA, "namespace": ACCOUNT_NS}]}])
    return start_operator(plane, directory, "--namespace", namespace, "--remote-only", *OPERATOR_FLAGS, *FAST,
                          *LIST_INTERVAL, *extra, account_namespace=ACCOUNT_NS)


@pytest.fixture
def remote_operator(installed: ControlPlane, remote_account: str, namespace: str,
                    tmp_path: pathlib.Path) -> Iterator[Process]:
    process = start_remote_operator(installed, namespace, tmp_path)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def paged_listing(oscar_stack: dict[str, Any]) -> Iterator[RealOscar]:
    """The real OSCAR restarted with JOB_LISTING_LIMIT=PAGE, and with its default (70) again afterwards."""
    real: RealOscar = oscar_stack["real_oscar"]
    real.restart(JOB_LISTING_LIMIT=str(PAGE))
    try:
        yield real
    finally:
        real.restart(JOB_LISTING_LIMIT=None)


@pytest.fixture
def no_node_metrics(oscar_stack: dict[str, Any]) -> Iterator[None]:
    """No metrics API, as in a cluster without metrics-server: the stand-in CRD deleted (OSCAR's /system/status then
    answers 500), and served again with the nodes' metrics afterwards (before oscar_stack's teardown reads them)."""
    plane: ControlPlane = oscar_stack["plane"]
    name = NODE_METRICS_CRD["metadata"]["name"]
    plane.kubectl("delete", "crd", name, "--wait=true", "--timeout=60s")
    try:
        yield
    finally:
        plane.apply(NODE_METRICS_CRD)
        plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
        sync_node_metrics(plane)


def remote_oscar(stack: dict[str, Any]) -> dict[str, Any]:
    """spec.oscar of a Remote batch: no servicesNamespace (the service definition's), no Kubernetes API."""
    return {"endpoint": stack["oscar_url"], "credentialsSecret": "oscar-credentials", "access": "Remote"}


def watch_clusters(plane: ControlPlane, namespace: str, operator: Process) -> tuple[dict[str, Any], list[dict]]:
    """Wait for the batch's verdict, keeping every distinct status.clusters[0] seen on the way."""
    seen: list[dict[str, Any]] = []

    def finished() -> dict[str, Any] | None:
        batch = plane.get_json("oscarbatchjob", "e2e", "-n", namespace)
        status = batch.get("status") or {}
        for cluster in (status.get("clusters") or [])[:1]:
            if cluster not in seen:
                seen.append(cluster)
        return batch if status.get("phase") in ("Succeeded", "Failed") else None

    batch = wait_for(finished, BATCH_TIMEOUT, "the batch to finish", alive=[operator], interval=0.3)
    return batch, seen


def requests_on(plane: ControlPlane, operator: Process, resources: set[str]) -> list[str]:
    """`verb resource namespace/name -> code` of the Remote operator's audited requests on those resources."""
    return [f"{event['verb']} {ref.get('resource')} {ref.get('namespace', '')}/{ref.get('name', '')} -> "
            f"{event.get('responseStatus', {}).get('code')}"
            for event in plane.audited(subject(ACCOUNT_NS), since=operator.started)
            if (ref := event.get("objectRef") or {}).get("resource") in resources]


def batch_jobs(plane: ControlPlane, uid: str, verb: str) -> list[str]:
    """The names of the batch's Jobs on which OSCAR's ServiceAccount succeeded with `verb` (audit log)."""
    prefix = uid.replace("-", "")[:12]
    names = []
    for event in plane.audited(OSCAR_USER):
        ref = event.get("objectRef") or {}
        identity = name_identity(ref.get("name") or "")
        if (event["verb"], ref.get("resource"), ref.get("subresource")) == (verb, "jobs", None) \
                and identity is not None and identity.batch_uid == prefix \
                and event.get("responseStatus", {}).get("code", 0) < 300:
            names.append(ref["name"])
    return names


def assert_nothing_of_oscars_cluster_asked(plane: ControlPlane, namespace: str, operator: Process) -> None:
    """No request of the operator's on Nodes, Pods or Jobs, and no refusal of any kind."""
    assert requests_on(plane, operator, OSCARS_CLUSTER) == []
    refused = [event for event in plane.audited(subject(ACCOUNT_NS), since=operator.started)
               if event.get("responseStatus", {}).get("code") == 403]
    assert refused == [] and rbac_denials(operator, ACCOUNT_NS) == []


def assert_every_input_once(stack: dict[str, Any]) -> None:
    config, s3 = stack["config"], stack["s3"]
    outputs = [read_json(s3, config.bucket, obj.object_name)
               for obj in s3.list_objects(config.bucket, prefix="output/", recursive=True)]
    assert sorted(body["input"] for body in outputs) == stack["inputs"]


@pytest.mark.parametrize("oscar_stack", [REMOTE], indirect=True, ids=["real-oscar"])
@pytest.mark.timeout(BATCH_TIMEOUT + 120)
def test_a_remote_batch_runs_through_the_real_oscar_api_alone(oscar_stack: dict[str, Any], paged_listing: RealOscar,
                                                              remote_operator: Process, namespace: str) -> None:
    """20 inputs, 2 per invocation, range [1, 3) failing once: the batch succeeds with its parallelism from OSCAR's
    /system/status, its Jobs followed through OSCAR's listing (pages of 4) and deleted through OSCAR, and no
    request of the operator's on Jobs, Pods or Nodes."""
    plane, kubelet = oscar_stack["plane"], oscar_stack["kubelet"]
    start_batch(oscar_stack, namespace, oscar=remote_oscar(oscar_stack), itemsPerInvocation=2, retries=1,
                keepJobs=False)
    uid = plane.get_json("oscarbatchjob", "e2e", "-n", namespace)["metadata"]["uid"]
    finished, seen = watch_clusters(plane, namespace, remote_operator)

    assert not kubelet.errors, kubelet.errors
    status = finished["status"]
    assert status["phase"] == "Succeeded", (status, remote_operator.tail())
    assert status["items"]["total"] == status["items"]["succeeded"] == 20 and status["items"]["failed"] == 0
    assert status["completedItems"] == "1-20"
    assert status["invocations"]["retried"] == 1, status["invocations"]   # [1, 3) failed, run again as halves
    [cluster] = status["clusters"]
    assert (cluster["name"], cluster["access"], cluster["reachable"]) == ("oscar", "Remote", True), cluster
    assert (cluster["succeeded"], cluster["running"]) == (20, 0), cluster
    assert status["clusterSummary"].startswith("oscar 0/"), status["clusterSummary"]
    # Planned from OSCAR's /system/status: 2 nodes of 4 CPUs (no measured usage), a 1-CPU service.
    planned = [entry for entry in seen if entry["parallelism"] > 0]
    assert planned and all("the cluster fits" in entry["message"] for entry in planned), seen
    assert 0 < kubelet.max_running <= 8, kubelet.max_running
    assert_every_input_once(oscar_stack)

    # Its listing had later pages: OSCAR read their Jobs' pods with the page's continue token (getPod in logs.go
    # reuses the Jobs' ListOptions: a Jobs continue token on a Pods list, served at that token's resourceVersion).
    assert [event for event in plane.audited(OSCAR_USER, since=remote_operator.started)
            if (event.get("objectRef") or {}).get("resource") == "pods" and "continue=" in event["requestURI"]]

    # Every Job OSCAR created for the batch — the 10 ranges and the two halves of [1, 3) — was deleted by OSCAR
    # (its DELETE /system/logs/{service}/{job}), and none is left.
    created = batch_jobs(plane, uid, "create")
    assert len(created) == len(set(created)) == 12, created
    wait_for(lambda: set(batch_jobs(plane, uid, "delete")) == set(created), 30,
             "OSCAR to delete every Job of the batch", alive=[remote_operator])
    assert not [job for job in plane.get_json("jobs", "-n", SERVICES_NAMESPACE)["items"]
                if job["metadata"]["name"] in created]

    # The operator asked the Kubernetes API for nothing of OSCAR's cluster but the Jobs of the batch's own namespace
    # (its Jobs watch, refused: test_a_remote_only_operator_makes_no_request_on_jobs), and was refused nothing else.
    assert_nothing_of_oscars_cluster_asked(plane, namespace, remote_operator)
    assert_oscar_clean({**oscar_stack, "operator": remote_operator})


@pytest.mark.parametrize("oscar_stack", [REMOTE], indirect=True, ids=["real-oscar"])
@pytest.mark.timeout(BATCH_TIMEOUT + 120)
def test_a_remote_batch_without_oscars_capacity_runs_at_its_max_parallelism(
        oscar_stack: dict[str, Any], no_node_metrics: None, remote_operator: Process, namespace: str) -> None:
    """No metrics API in OSCAR's cluster: its /system/status answers 500, and the batch runs at spec.maxParallelism,
    which status.clusters[0].message says, asking for it to be set to what the cluster fits."""
    plane, kubelet, real = oscar_stack["plane"], oscar_stack["kubelet"], oscar_stack["real_oscar"]
    code, body = real.call("GET", "/system/status")
    assert code == 500 and b"Error getting metrics info" in body, (code, body[:300])
    start_batch(oscar_stack, namespace, oscar=remote_oscar(oscar_stack), itemsPerInvocation=2, retries=1,
                maxParallelism=3, keepJobs=False)
    finished, seen = watch_clusters(plane, namespace, remote_operator)

    assert not kubelet.errors, kubelet.errors
    status = finished["status"]
    assert status["phase"] == "Succeeded", (status, remote_operator.tail())
    assert status["items"]["succeeded"] == 20
    fallback = [entry for entry in seen if entry["parallelism"] == 3]
    assert fallback, seen
    message = fallback[0]["message"]
    assert message.startswith("3 range(s) in flight allowed (maxParallelism): OSCAR's capacity is not readable"), \
        message
    assert "OSCAR answered 500" in message and "Error getting metrics info" in message, message
    assert message.endswith("set maxParallelism to what the cluster fits"), message
    assert all(entry["parallelism"] <= 3 and entry["reachable"] for entry in seen), seen
    assert 0 < kubelet.max_running <= 3, kubelet.max_running
    assert_every_input_once(oscar_stack)
    assert_nothing_of_oscars_cluster_asked(plane, namespace, remote_operator)


@pytest.mark.timeout(120)
def test_a_remote_only_operator_makes_no_request_on_jobs(installed: ControlPlane, remote_account: str,
                                                         namespace: str, tmp_path: pathlib.Path) -> None:
    """The operator of Remote batches alone, granted nothing of Jobs: it asks for none, and its /readyz is ready."""
    plane = installed
    port = free_port()
    operator = start_remote_operator(plane, namespace, tmp_path, "--readiness", f"127.0.0.1:{port}")
    try:
        obj = batch("remote-only", oscar={"endpoint": "http://127.0.0.1:9", "access": "Remote"},
                    storage={"endpoint": "http://127.0.0.1:9"})
        create_credentials(plane, namespace, "oscar-credentials", {"username": "oscar", "password": "secret"})
        create_credentials(plane, namespace, "minio-credentials", {"accessKey": "ak", "secretKey": "sk"})
        plane.apply(obj, "-n", namespace)
        wait_for(lambda: (plane.get_json("oscarbatchjobs", "remote-only", "-n", namespace).get("status") or {})
                 .get("reason") == "OscarUnavailable", 60, "the operator to report OSCAR unreachable",
                 alive=[operator])
        assert requests_on(plane, operator, OSCARS_CLUSTER) == []
        wait_for(lambda: readyz(port) == 200, 10, "the operator's /readyz to answer 200", alive=[operator])
    finally:
        operator.stop()


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0
