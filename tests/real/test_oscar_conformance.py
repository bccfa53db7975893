"""Differential conformance: the same scripted requests to the project's OSCAR simulator and to the real OSCAR
Manager, both over the same real control plane, compared by status code and JSON *shape* (keys and types, not
values). Every endpoint and error case the operator's OscarClient and oscar-python use.

Both serve their own service (the simulator's Jobs are created in the real API server through RealKube), and
both page the job listing by 2 (the real OSCAR restarted with JOB_LISTING_LIMIT=2 for this module), so that three
Jobs give a first page with the paging keys and a last without.
The Jobs' pods are bound by the real scheduler and then given a phase as a kubelet would: one Pending, one
Running, one Succeeded, so that every shape of a listing entry shows.
"""
from __future__ import annotations

import dataclasses
import json
import secrets
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from realoscar import RealOscar, node_metrics, service_request, sync_node_metrics
from realplane import ControlPlane, wait_for
from test_real_e2e import SERVICES_NAMESPACE, Loop, RealKube, now_iso
from test_real_scheduling import add_nodes, node, remove_nodes

from oscar_batch.clients.oscar import OscarClient
from oscar_batch.core.tokens import Basic
from oscar_batch_sandbox.config import SandboxConfig
from oscar_batch_sandbox.oscar import OscarSimulator
from oscar_batch_sandbox.runner import running_status, terminated_status

PAGE = 2
NODES = ["conformance-1", "conformance-2"]


@dataclasses.dataclass
class Target:
    """One OSCAR under test: where it is, how to authenticate, its service and that service's token."""
    name: str
    http: RealOscar  # for the simulator, only its HTTP client (call, basic)
    service: str
    token: str

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        return self.http.call(method, path, **kwargs)

    def basic(self, password: str | None = None) -> str:
        return self.http.basic(password=password)


def shape(value: Any) -> Any:
    """Keys and types, not values; a list by the distinct shapes of its items."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        shapes = []
        for item in value:
            if shape(item) not in shapes:
                shapes.append(shape(item))
        return sorted(shapes, key=json.dumps)
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else "string"


def merged(shapes: list[Any]) -> Any:
    """One shape with every key any of `shapes` (dicts) has."""
    result: dict[str, Any] = {}
    for item in shapes:
        for key, value in item.items():
            result[key] = merged([result[key], value]) if isinstance(value, dict) and key in result else value
    return dict(sorted(result.items()))


def body_shape(body: bytes, names_are_keys: bool = False) -> Any:
    """"empty", "text" or the shape of the JSON; with `names_are_keys`, the `jobs` map (keyed by job name) is
    taken as a list of its entries. The nodes of /system/status are merged into one: which of them has a
    usage (an omitempty field) depends on what is measured, metrics-server's NodeMetrics or the simulator's
    model of Running pods."""
    if not body.strip():
        return "empty"
    try:
        parsed = json.loads(body)
    except ValueError:
        return "text"
    if names_are_keys and isinstance(parsed, dict) and isinstance(parsed.get("jobs"), dict):
        parsed = {**parsed, "jobs": list(parsed["jobs"].values())}
    result = shape(parsed)
    if isinstance(result, dict) and isinstance((result.get("cluster") or {}).get("nodes"), list):
        result["cluster"]["nodes"] = [merged(result["cluster"]["nodes"])]
    return result


@pytest.fixture(scope="module")
def targets(real_oscar: RealOscar, real_cluster: ControlPlane) -> Iterator[list[Target]]:
    plane = real_cluster
    add_nodes(plane, [node(name, "4", "8Gi") for name in NODES])
    sync_node_metrics(plane)
    # Measured usage that is not zero, so that OSCAR's omitempty fields show.
    plane.apply([node_metrics(name, cpu="250m", memory="512Mi") for name in NODES])

    real_oscar.restart(JOB_LISTING_LIMIT=str(PAGE))
    service = real_oscar.create_service(service_request("conformance"))
    real = Target("real", real_oscar, service["name"], service["token"])

    config = SandboxConfig(service="conformance-sim", items=0, bucket="conformance-sim")
    loop = Loop()
    simulator = OscarSimulator(RealKube(plane), config, job_listing_limit=PAGE)
    url = loop.run(simulator.start())
    clone = RealOscar(url, config.oscar_user, config.oscar_password, real_oscar.minio, real_oscar.namespace,
                      [], {}, real_oscar.directory)  # only its HTTP client
    simulated = Target("simulator", clone, config.service, config.service_token)
    try:
        yield [simulated, real]
    finally:
        real_oscar.restart(JOB_LISTING_LIMIT=None)  # OSCAR's default again: 70
        loop.run(simulator.stop())
        loop.close()
        for target in (simulated, real):
            plane.kubectl("delete", "jobs", "-n", SERVICES_NAMESPACE, "-l", f"oscar_service={target.service}",
                          "--wait=false", check=False)
        plane.kubectl("delete", "pods", "-n", SERVICES_NAMESPACE, "--all", "--grace-period=0", "--force",
                      check=False)
        # More pods than the two nodes fit were left Pending: their FailedScheduling Events go too.
        plane.kubectl("delete", "events", "-n", SERVICES_NAMESPACE, "--all", check=False)
        remove_nodes(plane, NODES)
        sync_node_metrics(plane)


def job_name(target: Target, index: int) -> str:
    return f"conformance-{target.name[:3]}-{index}"


def script(target: Target, plane: ControlPlane) -> dict[str, tuple[int, Any]]:
    """Every request, in order; each answer as (status, shape)."""
    answers: dict[str, tuple[int, Any]] = {}
    svc, token = target.service, target.token

    def ask(key: str, method: str, path: str, *, auth: str | None = "basic", body: bytes | None = None,
            headers: dict[str, str] | None = None, names_are_keys: bool = False) -> bytes:
        status, data = target.call(method, path, auth=auth, body=body, headers=headers)
        answers[key] = (status, body_shape(data, names_are_keys))
        return data

    def invoke(key: str, name: str | None, authorization: str | None, service: str = svc) -> None:
        headers = {"Content-Type": "application/json", **({"X-Delegated-Job-ID": name} if name else {})}
        ask(key, "POST", f"/job/{service}", auth=authorization, headers=headers,
            body=json.dumps({"start": 1, "end": 3, "bucket": "b", "manifest": "input/index.txt"}).encode())

    ask("health", "GET", "/health", auth=None)
    ask("service", "GET", f"/system/services/{svc}")
    ask("service unknown", "GET", "/system/services/no-such-service")
    ask("service wrong password", "GET", f"/system/services/{svc}", auth=target.basic(password="wrong"))
    ask("service no credentials", "GET", f"/system/services/{svc}", auth=None)
    ask("services", "GET", "/system/services")
    ask("info", "GET", "/system/info")
    # Not GET /system/config: OSCAR serves its whole configuration there (some 80 fields), which the simulator
    # does not model; neither the operator nor a batch reads it.

    for index in (1, 2, 3):
        invoke(f"invoke {index}", job_name(target, index), f"Bearer {token}")
    invoke("invoke repeated job id", job_name(target, 1), f"Bearer {token}")
    invoke("invoke unknown service", None, f"Bearer {token}", service="no-such-service")
    invoke("invoke short token", None, "Bearer not-a-service-token")
    invoke("invoke wrong token", None, f"Bearer {secrets.token_hex(32)}")
    invoke("invoke no token", None, None)
    invoke("invoke basic auth", None, target.basic())

    # The pods as a kubelet leaves them: bound and Pending, Running, Succeeded.
    names = [job_name(target, index) for index in (1, 2, 3)]
    pods = wait_for(lambda: bound_pods(plane, names), 60, f"the {target.name}'s pods to be bound")
    kube = RealKube(plane)
    kube.patch_status("v1/pods", SERVICES_NAMESPACE, pods[names[1]]["metadata"]["name"],
                      running_status(pods[names[1]], now_iso()))
    kube.patch_status("v1/pods", SERVICES_NAMESPACE, pods[names[2]]["metadata"]["name"],
                      terminated_status(pods[names[2]], 0, now_iso()))

    first = ask("jobs first page", "GET", f"/system/logs/{svc}", names_are_keys=True)
    page = json.loads(first).get("next_page") if first.strip().startswith(b"{") else None
    if page:
        ask("jobs last page", "GET", f"/system/logs/{svc}?page={urllib.parse.quote(page)}", names_are_keys=True)
    ask("jobs unknown service", "GET", "/system/logs/no-such-service")
    ask("jobs wrong password", "GET", f"/system/logs/{svc}", auth=target.basic(password="wrong"))
    ask("job logs unknown job", "GET", f"/system/logs/{svc}/no-such-job")
    ask("job logs pod bound, no kubelet", "GET", f"/system/logs/{svc}/{names[0]}")
    ask("delete job", "DELETE", f"/system/logs/{svc}/{names[0]}")
    ask("delete job again", "DELETE", f"/system/logs/{svc}/{names[0]}")
    ask("delete unknown job", "DELETE", f"/system/logs/{svc}/no-such-job")
    ask("delete job of unknown service", "DELETE", f"/system/logs/no-such-service/{names[1]}")
    ask("status", "GET", "/system/status")
    ask("status wrong password", "GET", "/system/status", auth=target.basic(password="wrong"))
    return answers


def bound_pods(plane: ControlPlane, jobs: list[str]) -> dict[str, dict[str, Any]] | None:
    pods = {(pod["metadata"].get("labels") or {}).get("job-name"): pod
            for pod in plane.get_json("pods", "-n", SERVICES_NAMESPACE)["items"]}
    found = {name: pods[name] for name in jobs if name in pods and pods[name]["spec"].get("nodeName")}
    return found if len(found) == len(jobs) else None


def shape_differences(simulated: Any, real: Any, path: str = "") -> list[str]:
    """Where two shapes differ, one line each: `path: simulator … / real …`."""
    if isinstance(simulated, dict) and isinstance(real, dict):
        return [line for key in sorted(set(simulated) | set(real))
                for line in (shape_differences(simulated.get(key, "(absent)"), real.get(key, "(absent)"),
                                               f"{path}.{key}") if key in simulated and key in real
                             else [f"{path}.{key}: simulator {json.dumps(simulated.get(key, '(absent)'))[:80]}"
                                   f" / real {json.dumps(real.get(key, '(absent)'))[:80]}"])]
    if simulated != real:
        return [f"{path or '.'}: simulator {json.dumps(simulated)[:120]} / real {json.dumps(real)[:120]}"]
    return []


@pytest.mark.timeout(240)
def test_simulator_answers_as_the_real_oscar(targets: list[Target], real_cluster: ControlPlane) -> None:
    simulated, real = (script(target, real_cluster) for target in targets)
    assert list(simulated) == list(real)
    differences = [f"{key}: " + "; ".join(
        ([f"status: simulator {simulated[key][0]} / real {real[key][0]}"] if simulated[key][0] != real[key][0] else [])
        + shape_differences(simulated[key][1], real[key][1])) for key in real if simulated[key] != real[key]]
    assert not differences, "\n".join(differences)


# OSCAR never sends `remaining_jobs` (Kubernetes counts no remaining items for a label-selected list): the client
# follows `next_page` alone.
@pytest.mark.parametrize("which", ["simulator", "real"])
def test_the_operators_client_reads_every_page_of_the_job_listing(targets: list[Target], which: str) -> None:
    """The operator's OscarClient over more Jobs than one page holds (pages of 2): every Job is listed."""
    target = next(target for target in targets if target.name == which)
    names = [f"pages-{which[:3]}-{index}" for index in range(1, 6)]
    for name in names:
        status, _ = target.call("POST", f"/job/{target.service}", auth=f"Bearer {target.token}",
                                headers={"X-Delegated-Job-ID": name}, body=b'{"start": 1, "end": 2}')
        assert status == 201
    client = OscarClient(target.http.url, Basic(target.http.username, target.http.password))
    listed = {name for name, _ in client.jobs(target.service)}
    assert set(names) <= listed, sorted(set(names) - listed)
