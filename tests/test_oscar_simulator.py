"""The OSCAR Manager simulator's contract, over real HTTP, as oscar-api.md states it."""
from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from oscar_batch.clients.oscar import OscarClient
from oscar_batch.core.tokens import Basic
from oscar_batch_sandbox.config import NodeSpec, SandboxConfig, TenantPod, control_plane
from oscar_batch_sandbox.kube import SandboxKubernetes
from oscar_batch_sandbox.oscar import OscarSimulator
from oscar_batch_sandbox.runner import JOBS, NODES, PODS

NAMESPACE = "oscar-svc"
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
GIB = 2**30


class Oscar:
    """A client that knows the sandbox's credentials, and the emulator behind the simulator."""

    def __init__(self, url: str, session: aiohttp.ClientSession, kube: SandboxKubernetes, config: SandboxConfig,
                 simulator: OscarSimulator) -> None:
        self.url, self.session, self.kube, self.config, self.simulator = url, session, kube, config, simulator
        self.basic = basic_auth(config.oscar_user, config.oscar_password)

    def service_token(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.service_token}"}

    async def invoke(self, body: object, job_id: str | None = None, service: str | None = None,
                     headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        headers = dict(self.service_token() if headers is None else headers)
        if job_id is not None:
            headers["X-Delegated-Job-ID"] = job_id
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.session.post(f"{self.url}/job/{service or self.config.service}",
                                     data=data, headers=headers) as response:
            return response.status, await response.read()

    async def get(self, path: str, headers: dict[str, str] | None = None, **kwargs) -> tuple[int, str]:
        async with self.session.get(f"{self.url}{path}", headers=self.basic if headers is None else headers,
                                    **kwargs) as response:
            return response.status, await response.text()

    async def delete(self, path: str) -> int:
        async with self.session.delete(f"{self.url}{path}", headers=self.basic) as response:
            return response.status


def basic_auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


async def start_oscar(config: SandboxConfig, **options) -> AsyncIterator[Oscar]:
    kube = SandboxKubernetes(strict=False)
    async with kube:
        kube.install_builtins()
        for node in config.nodes:
            await kube.create(NODES, node.to_object())
        for pod in config.tenant_pods:
            await kube.create(PODS, pod.to_object())
        simulator = OscarSimulator(kube, config, **options)
        url = await simulator.start()
        try:
            async with aiohttp.ClientSession() as session:
                yield Oscar(url, session, kube, config, simulator)
        finally:
            await simulator.stop()


@pytest.fixture
async def oscar() -> AsyncIterator[Oscar]:
    async for running in start_oscar(SandboxConfig(), job_listing_limit=3):
        yield running


# ---- authentication ----------------------------------------------------------------------------

async def test_health_needs_no_credentials(oscar):
    assert await oscar.get("/health", headers={}) == (200, "Ok")


@pytest.mark.parametrize("path", ["/system/info", "/system/config", "/system/services",
                                  "/system/services/fish-detector", "/system/status", "/system/logs/fish-detector"])
async def test_system_endpoints_refuse_missing_or_wrong_credentials(oscar, path):
    assert (await oscar.get(path, headers={}))[0] == 401
    assert (await oscar.get(path, headers=basic_auth(oscar.config.oscar_user, "wrong")))[0] == 401
    assert (await oscar.get(path, headers=basic_auth("intruder", oscar.config.oscar_password)))[0] == 401
    # On /system a bearer is an OIDC token; the service token is not one.
    assert (await oscar.get(path, headers=oscar.service_token()))[0] == 401
    assert (await oscar.get(path))[0] == 200


async def test_a_configured_oidc_token_opens_system_endpoints():
    async for oscar in start_oscar(SandboxConfig(), oidc_tokens=["oidc-token-of-a-user"]):
        oidc = {"Authorization": "Bearer oidc-token-of-a-user"}
        assert (await oscar.get("/system/services/fish-detector", headers=oidc))[0] == 200
        assert (await oscar.invoke({"start": 1, "end": 2}, headers=oidc))[0] == 201


async def test_job_accepts_only_the_service_bearer_token(oscar):
    assert await oscar.invoke({"start": 1, "end": 2}, headers={}) == (401, b"")
    assert (await oscar.invoke({"start": 1, "end": 2}, headers={"Authorization": "Bearer " + "0" * 64}))[0] == 401
    basic = basic_auth(oscar.config.oscar_user, oscar.config.oscar_password)
    assert (await oscar.invoke({"start": 1, "end": 2}, headers=basic))[0] == 401
    assert oscar.kube.list(JOBS) == []


async def test_unknown_service_is_404_but_401_to_invoke(oscar):
    assert (await oscar.get("/system/services/no-such-service"))[0] == 404
    assert (await oscar.get("/system/logs/no-such-service"))[0] == 404
    # As the real OSCAR: /job checks the token first, and no service's token matches for an unknown service.
    assert (await oscar.invoke({"start": 1, "end": 2}, service="no-such-service"))[0] == 401
    # Deleting a Job of an unknown service is refused as a permission problem.
    assert await oscar.delete("/system/logs/no-such-service/some-job") == 403


async def test_a_token_not_of_64_characters_is_taken_as_oidc_and_refused_with_502(oscar):
    status, body = await oscar.invoke({"start": 1, "end": 2}, headers={"Authorization": "Bearer short"})
    assert status == 502 and body
    assert oscar.kube.list(JOBS) == []


async def grant(oscar: Oscar, **form: str) -> tuple[int, dict]:
    """A refresh-token grant at the simulator's token endpoint, of its client and refresh token unless `form`
    says otherwise."""
    assert oscar.simulator.token_endpoint
    form = {"grant_type": "refresh_token", "client_id": oscar.config.oidc_client_id,
            "refresh_token": oscar.config.oidc_refresh_token, **form}
    async with oscar.session.post(oscar.simulator.token_endpoint, data=form) as response:
        return response.status, await response.json()


async def test_the_token_endpoint_grants_access_tokens_that_expire():
    """The simulated identity provider: the refresh-token grant of one client (RFC 6749 §6, errors as §5.2), on
    a port of its own; its access tokens open /system/* until they expire, then OSCAR's bare 401 (its OIDC
    middleware aborts with no body and no WWW-Authenticate), and /job answers 500 (OSCAR dereferences the user
    info the issuer did not give)."""
    config = SandboxConfig(token_lifetime=600)
    async for oscar in start_oscar(config):
        endpoint = oscar.simulator.token_endpoint
        assert endpoint and endpoint.endswith("/oidc/token") and not endpoint.startswith(oscar.url)

        assert await grant(oscar, grant_type="password") == (400, {"error": "unsupported_grant_type"})
        assert await grant(oscar, client_id="someone-else") == (401, {"error": "invalid_client"})
        assert await grant(oscar, refresh_token="not-issued") == (
            400, {"error": "invalid_grant", "error_description": "Invalid refresh token"})
        status, answer = await grant(oscar)
        assert status == 200 and answer["token_type"] == "Bearer" and answer["expires_in"] == 600
        assert "refresh_token" not in answer                       # no rotation unless configured
        token = answer["access_token"]
        assert len(token) != 64            # OSCAR takes a bearer of 64 characters for a service token
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await oscar.get("/system/services/fish-detector", headers=bearer))[0] == 200
        assert (await oscar.invoke({"start": 1, "end": 2}, headers=bearer))[0] == 201

        oscar.simulator.expire_access_tokens()
        async with oscar.session.get(f"{oscar.url}/system/status", headers=bearer) as response:
            assert (response.status, await response.read()) == (401, b"")
            assert "WWW-Authenticate" not in response.headers
        assert await oscar.invoke({"start": 3, "end": 4}, headers=bearer) == (500, b"")
        assert oscar.simulator.expired_refusals == 1
        # An access token the simulator never issued is refused as before.
        assert (await oscar.get("/system/status", headers={"Authorization": "Bearer unknown"}))[0] == 401


async def test_a_rotating_token_endpoint_revokes_the_refresh_token_it_was_given():
    config = SandboxConfig(token_lifetime=5.5, rotate_refresh_tokens=True)
    async for oscar in start_oscar(config):
        status, answer = await grant(oscar)
        assert status == 200 and answer["expires_in"] == 5.5 and answer["refresh_token"] != config.oidc_refresh_token
        assert (await grant(oscar))[1] == {"error": "invalid_grant", "error_description": "Invalid refresh token"}
        assert (await grant(oscar, refresh_token=answer["refresh_token"]))[0] == 200


async def test_without_a_token_lifetime_there_is_no_token_endpoint(oscar):
    assert oscar.simulator.token_endpoint is None
    with pytest.raises(ValueError, match="no token lifetime"):
        oscar.simulator.issue_access_token()


# ---- services, info, config -------------------------------------------------------------------

async def test_service_definition_is_served_as_configured(oscar):
    status, body = await oscar.get("/system/services/fish-detector")
    assert status == 200
    service = json.loads(body)
    assert service == oscar.config.service_definition()
    assert service["token"] == oscar.config.service_token
    assert (service["cpu"], service["memory"], service["enable_gpu"]) == ("1", "1Gi", False)
    assert json.loads((await oscar.get("/system/services"))[1]) == [service]


async def test_info_and_config(oscar):
    info = json.loads((await oscar.get("/system/info"))[1])
    # No serverless_backend without SERVERLESS_BACKEND (the plain Kubernetes backend), as OSCAR v4.
    assert set(info) == {"version", "git_commit", "architecture", "kubernetes_version"} and info["version"]
    config = json.loads((await oscar.get("/system/config"))[1])
    assert config["services_namespace"] == NAMESPACE


# ---- POST /job ---------------------------------------------------------------------------------

async def test_invocation_creates_the_job_oscar_creates(oscar):
    assert await oscar.invoke({"start": 1, "end": 5, "batch": "b-1"}, job_id="batch-1-range-0-try-1") == (201, b"")

    job = oscar.kube.get(JOBS, NAMESPACE, "batch-1-range-0-try-1")
    assert job is not None
    assert job["metadata"]["labels"] == {"oscar_service": "fish-detector", "applicationId": "fish-detector",
                                         "oscar.grycap/user-service": "true", "owner_name": "oscar",
                                         "queue": "root.oscar-queue.fish-detector"}
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 2592000
    template = job["spec"]["template"]
    assert template["metadata"]["labels"]["oscar_service"] == "fish-detector"
    assert template["spec"]["restartPolicy"] == "Never"
    main, sidecar = template["spec"]["containers"]
    assert main["name"] == "oscar-container"
    assert main["image"] == oscar.config.service_definition()["image"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert json.loads(env["EVENT"]) == {"start": 1, "end": 5, "batch": "b-1"}
    assert env["JOB_UUID"] == "batch-1-range-0-try-1"
    assert main["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    # The service mounts its bucket: OSCAR's rclone container, which requests nothing.
    assert sidecar["name"] == "rclone-container"
    assert "resources" not in sidecar
    assert {e["name"]: e["value"] for e in sidecar["env"]}["MINIO_BUCKET"] == "fish-detector/input"


async def test_event_is_passed_byte_for_byte(oscar):
    assert (await oscar.invoke(b'{"end": 3,  "start":1}', job_id="raw"))[0] == 201
    env = {e["name"]: e.get("value") for e in
           oscar.kube.get(JOBS, NAMESPACE, "raw")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["EVENT"] == '{"end": 3,  "start":1}'


async def test_without_delegated_id_the_name_is_service_and_uuid4(oscar):
    assert (await oscar.invoke({"start": 1, "end": 2}))[0] == 201
    [job] = oscar.kube.list(JOBS, NAMESPACE)
    name = job["metadata"]["name"]
    assert re.fullmatch(f"fish-detector-{UUID4}", name)
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JOB_UUID"] == name


@pytest.mark.parametrize(("service", "prefix"), [
    ("a-service-named-24-chars", "a-service-named-24-chars"),        # 24: kept whole
    ("a-service-named-25-chars-", "a-service-named-"),                # 25: cut to 16
    ("a-rather-long-service-name-of-38-chars", "a-rather-long-se"),
])
async def test_long_service_names_are_cut_to_16_characters_in_job_names(service, prefix):
    async for oscar in start_oscar(SandboxConfig(service=service)):
        assert (await oscar.invoke({"start": 1, "end": 2}))[0] == 201
        [job] = oscar.kube.list(JOBS, NAMESPACE)
        assert re.fullmatch(f"{re.escape(prefix)}-{UUID4}", job["metadata"]["name"])
        assert job["metadata"]["labels"]["oscar_service"] == service


async def test_gpu_service_asks_for_one_gpu():
    config = SandboxConfig(service_gpu=True, service_cpu="500m", service_memory="3Gi")
    async for oscar in start_oscar(config):
        assert (await oscar.invoke({"start": 1, "end": 2}, job_id="gpu-job"))[0] == 201
        main = oscar.kube.get(JOBS, NAMESPACE, "gpu-job")["spec"]["template"]["spec"]["containers"][0]
        assert main["resources"]["limits"] == {"cpu": "500m", "memory": "3Gi", "nvidia.com/gpu": "1"}


async def test_existing_job_name_is_a_500_with_a_text_body(oscar):
    assert (await oscar.invoke({"start": 1, "end": 2}, job_id="twice"))[0] == 201
    status, body = await oscar.invoke(b"{}", job_id="twice")
    assert status == 500
    assert b"already exists" in body


async def test_invalid_delegated_job_id_is_refused_as_the_api_server_would(oscar):
    for bad in ("Upper-Case", "x" * 64, "ends-with-dash-"):
        status, body = await oscar.invoke(b"{}", job_id=bad)
        assert status == 500
        assert b"is invalid" in body
    assert oscar.kube.list(JOBS) == []


# ---- /system/status ----------------------------------------------------------------------------

STATUS_NODES = (
    control_plane(),
    NodeSpec("w1", cpu="4", memory="8Gi"),
    NodeSpec("w2", cpu="2", memory="4Gi", gpus=1),
    NodeSpec("w3", cpu="8", memory="16Gi", ready=False),
    NodeSpec("w4", cpu="8", memory="16Gi", unschedulable=True),
)


async def add_pod(kube: SandboxKubernetes, name: str, node: str, cpu: str, memory: str, phase: str,
                  namespace: str = "other") -> None:
    await kube.create(PODS, {"metadata": {"name": name, "namespace": namespace},
                             "spec": {"nodeName": node, "containers": [
                                 {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
                             "status": {"phase": phase}})


async def status_cluster(legacy: bool) -> AsyncIterator[Oscar]:
    config = SandboxConfig(nodes=STATUS_NODES, tenant_pods=(TenantPod("db", "w1", cpu="1", memory="2Gi"),),
                           legacy_status=legacy)
    async for oscar in start_oscar(config):
        await add_pod(oscar.kube, "done", "w1", "2", "1Gi", "Succeeded")      # finished: holds nothing
        await add_pod(oscar.kube, "starting", "w2", "500m", "1Gi", "Pending")  # bound: requested, not yet used
        await add_pod(oscar.kube, "system", "control-plane", "1", "1Gi", "Running")
        # OSCAR's sum: sidecar 250m + the larger of the containers (500m) and the other init container (1):
        # 1250m, where the scheduler reserves 1 (the init container runs before the sidecar starts).
        await oscar.kube.create(PODS, {
            "metadata": {"name": "initialising", "namespace": "other"},
            "spec": {"nodeName": "w2", "initContainers": [
                {"name": "fetch", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "250m",
                                                                                         "memory": "256Mi"}}}],
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}]},
            "status": {"phase": "Pending"}})
        yield oscar


async def test_current_status_is_computed_from_nodes_and_pods():
    async for oscar in status_cluster(legacy=False):
        status, body = await oscar.get("/system/status")
        assert status == 200
        cluster = json.loads(body)["cluster"]
        nodes = {node["name"]: node for node in cluster["nodes"]}
        assert set(nodes) == {"w1", "w2", "w3", "w4"}  # the control plane is left out: workers exist
        assert cluster["nodes_count"] == 4
        assert nodes["w1"]["cpu"] == {"capacity_cores": 4000, "usage_cores": 750, "request_cores": 1000}
        assert nodes["w1"]["memory"] == {"capacity_bytes": 8 * GIB, "usage_bytes": int(1.5 * GIB),
                                         "request_bytes": 2 * GIB}
        # A zero usage is left out (Go's omitempty), as OSCAR serves it.
        assert nodes["w2"]["cpu"] == {"capacity_cores": 2000, "request_cores": 500 + 1250}
        assert nodes["w2"]["memory"]["request_bytes"] == GIB + GIB + GIB // 4
        assert nodes["w2"]["gpu"] == 1
        assert nodes["w1"]["status"] == "Ready" and nodes["w1"]["conditions"] == [{"type": "Ready", "status": True}]
        assert nodes["w3"]["status"] == "NotReady" and nodes["w3"]["conditions"] == [{"type": "Ready", "status": False}]
        assert nodes["w1"]["is_interlink"] is False

        cpu, memory = cluster["metrics"]["cpu"], cluster["metrics"]["memory"]
        assert cpu["total_free_cores"] == 3250 + 2000 + 8000 + 8000
        assert cpu["max_free_on_node_cores"] == 8000
        # Schedulable: allocatable minus requests over every reported node, NotReady (w3) and cordoned (w4)
        # included, as OSCAR counts it (the planner reads the nodes and leaves NotReady ones out).
        assert cpu["total_schedulable_cores"] == 3000 + 250 + 8000 + 8000
        assert cpu["total_schedulable_on_node_cores"] == 8000
        assert memory["total_schedulable_bytes"] == 6 * GIB + (4 * GIB - 9 * GIB // 4) + 16 * GIB + 16 * GIB
        assert memory["max_schedulable_on_node_bytes"] == 16 * GIB
        assert cluster["metrics"]["gpu"] == {"total_gpu": 1}


async def test_legacy_status_has_the_2024_shape_with_strings():
    async for oscar in status_cluster(legacy=True):
        status = json.loads((await oscar.get("/system/status"))[1])
        assert status["numberNodes"] == 4
        assert (status["hasGPU"], status["gpusTotal"]) == (True, 1)
        detail = {node["nodeName"]: node for node in status["detail"]}
        assert detail["w1"] == {"nodeName": "w1", "cpuCapacity": "4000", "cpuUsage": "750", "cpuPercentage": "18.75",
                                "memoryCapacity": str(8 * GIB), "memoryUsage": str(int(1.5 * GIB)),
                                "memoryPercentage": "18.75"}
        assert status["cpuFreeTotal"] == 3250 + 2000 + 8000 + 8000
        assert status["cpuMaxFree"] == 8000
        assert status["memoryMaxFree"] == 16 * GIB


async def test_status_with_only_a_control_plane_reports_it():
    async for oscar in start_oscar(SandboxConfig(nodes=(control_plane(),), tenant_pods=())):
        cluster = json.loads((await oscar.get("/system/status"))[1])["cluster"]
        assert [node["name"] for node in cluster["nodes"]] == ["control-plane"]


# ---- /system/logs ------------------------------------------------------------------------------

async def test_job_listing_pages_with_a_token(oscar):
    names = [f"job-{index}" for index in range(7)]
    for name in reversed(names):
        assert (await oscar.invoke({"start": 1, "end": 2}, job_id=name))[0] == 201
    pages, token = [], None
    while True:
        status, body = await oscar.get("/system/logs/fish-detector", params={"page": token} if token else None)
        assert status == 200
        page = json.loads(body)
        pages.append(page)
        token = page.get("next_page")
        if not token:
            break
    assert [list(page["jobs"]) for page in pages] == [names[0:3], names[3:6], names[6:7]]
    # As the real OSCAR: the continue token only while there are more; never a count (a label-selected list).
    assert ["next_page" in page for page in pages] == [True, True, False]
    assert not any("remaining_jobs" in page for page in pages)
    entry = pages[0]["jobs"]["job-0"]
    assert entry == {"status": "Suspended"}  # no pod yet: OSCAR says Suspended, and has no pod startTime
    assert (await oscar.get("/system/logs/fish-detector", params={"page": "%%%"}))[0] == 400


async def test_the_operators_client_reads_every_page_of_the_listing(oscar):
    names = {f"paged-{index}" for index in range(8)}                 # three pages of 3
    for name in names:
        assert (await oscar.invoke({"start": 1, "end": 2}, job_id=name))[0] == 201
    client = OscarClient(oscar.url, Basic(oscar.config.oscar_user, oscar.config.oscar_password))
    listed = await asyncio.to_thread(lambda: dict(client.jobs("fish-detector")))
    assert set(listed) == names


async def test_job_listing_reports_the_pod_phase_and_container_times(oscar):
    assert (await oscar.invoke({"start": 1, "end": 2}, job_id="ran"))[0] == 201
    await oscar.kube.create(PODS, {
        "metadata": {"name": "ran-abcde", "namespace": NAMESPACE,
                     "labels": {"oscar_service": "fish-detector", "job-name": "ran"}},
        "spec": {"nodeName": "worker-2", "containers": [{"name": "oscar-container"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "oscar-container", "state": {
            "terminated": {"exitCode": 0, "startedAt": "2026-01-01T10:00:00Z",
                           "finishedAt": "2026-01-01T10:05:00Z"}}}]}})
    jobs = json.loads((await oscar.get("/system/logs/fish-detector"))[1])["jobs"]
    assert jobs["ran"]["status"] == "Succeeded"
    assert (jobs["ran"]["start_time"], jobs["ran"]["finish_time"]) == ("2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z")

    oscar.simulator.pod_logs = lambda namespace, pod: "processed 1 item\n" if pod == "ran-abcde" else None
    assert await oscar.get("/system/logs/fish-detector/ran") == (200, "processed 1 item\n")
    # The real OSCAR v4 answers 500 here (a nil error dereferenced); the simulator does the same.
    assert (await oscar.get("/system/logs/fish-detector/no-such-job"))[0] == 500


async def test_delete_one_job_removes_it_and_its_pods(oscar):
    assert (await oscar.invoke({"start": 1, "end": 2}, job_id="doomed"))[0] == 201
    await oscar.kube.create(PODS, {"metadata": {"name": "doomed-xyz12", "namespace": NAMESPACE,
                                                "labels": {"oscar_service": "fish-detector", "job-name": "doomed"}},
                                   "spec": {"containers": [{"name": "oscar-container"}]}})
    assert await oscar.delete("/system/logs/fish-detector/doomed") == 204
    assert oscar.kube.get(JOBS, NAMESPACE, "doomed") is None
    assert oscar.kube.get(PODS, NAMESPACE, "doomed-xyz12") is None
    assert await oscar.delete("/system/logs/fish-detector/doomed") == 404


async def test_delete_all_removes_finished_jobs_and_with_all_true_every_job(oscar):
    for name in ("done", "failed", "running"):
        assert (await oscar.invoke({"start": 1, "end": 2}, job_id=name))[0] == 201
    for name, kind in (("done", "Complete"), ("failed", "Failed")):
        await oscar.kube.patch(JOBS, NAMESPACE, name, {"status": {"conditions": [{"type": kind, "status": "True"}]}})
    assert await oscar.delete("/system/logs/fish-detector") == 204
    assert [job["metadata"]["name"] for job in oscar.kube.list(JOBS, NAMESPACE)] == ["running"]
    assert await oscar.delete("/system/logs/fish-detector?all=true") == 204
    assert oscar.kube.list(JOBS, NAMESPACE) == []


async def test_accepted_invocations_are_counted_and_outlive_their_jobs(oscar):
    assert (await oscar.invoke({"start": 1, "end": 2}, job_id="counted"))[0] == 201
    assert (await oscar.invoke({"start": 1, "end": 2}, job_id="counted"))[0] == 500         # already exists
    assert (await oscar.invoke({"start": 1, "end": 2}, headers={}))[0] == 401              # no token
    assert (await oscar.invoke({"start": 1, "end": 2}, service="nope"))[0] == 401
    assert (await oscar.invoke({"start": 2, "end": 3}))[0] == 201
    assert oscar.simulator.accepted_invocations == 2
    assert await oscar.delete(f"/system/logs/{oscar.config.service}/counted") == 204
    assert oscar.simulator.accepted_invocations == 2
