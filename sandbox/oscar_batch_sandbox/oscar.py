"""The sandbox's OSCAR Manager: the REST API of `oscar-api.md`, served over the emulator's objects.

What OSCAR reads from Kubernetes (Nodes, Pods, Jobs) it reads from the emulator; what it creates (one Job per
asynchronous invocation) it creates there. Two things a real cluster has are modelled:
- live usage (metrics-server) is a fixed share of the requests of the Pods that are Running;
- Pod logs come from the job runner (`pod_logs`), the sandbox's kubelet.
Errors are bare status codes, as OSCAR answers them, except 500 (and 400 for a bad page token): a text body.
"""
from __future__ import annotations

import base64
import binascii
import collections
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from typing import Any

import aiohttp.web
import aiohttp.web_app
import kmock

from oscar_batch.core.kueue import QUEUE_LABEL
from oscar_batch_sandbox import kueue
from oscar_batch_sandbox.config import CONTROL_PLANE_LABEL, SandboxConfig
from oscar_batch_sandbox.kube import SandboxKubernetes
from oscar_batch_sandbox.runner import (
    GPU_RESOURCE,
    JOBS,
    MAIN_CONTAINER,
    NODES,
    PODS,
    Resources,
    container_requests,
    holds_resources,
    is_finished,
    node_allocatable,
    node_is_ready,
    pod_phase,
)

Json = dict[str, Any]
PodLogs = Callable[[str, str], str | None]

JOB_LISTING_LIMIT = 70
TTL_JOB_SECONDS = 2592000
SERVICE_LABEL = "oscar_service"
# OSCAR shortens long service names in generated job names so that they stay valid object names.
LONG_SERVICE_NAME = 25
SHORTENED_SERVICE_NAME = 16
CONTROL_PLANE_LABELS = (CONTROL_PLANE_LABEL, "node-role.kubernetes.io/master")
# No metrics-server in the sandbox: live usage is modelled as this share of what Running pods request.
USAGE_SHARE_OF_REQUESTS = 0.75
# Job names become the `job-name` label of their pods, hence the 63-character limit of a label value.
JOB_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_JOB_NAME = 63
TRUE_WORDS = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # what Go's strconv.ParseBool accepts as true
RCLONE_MOUNT_POINT = "/mnt"
VERSION = "v3.6.0-sandbox"
BASIC_REALM = 'Basic realm="Authorization Required"'
KUBERNETES_VERSION = "v1.33.0"
POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")  # /system/status counts every one
# OSCAR's own Deployment, as /system/status describes it.
OSCAR_DEPLOYMENT = {"available_replicas": 1, "ready_replicas": 1, "replicas": 1,
                    "creation_timestamp": "2025-01-01T00:00:00Z", "strategy": "RollingUpdate",
                    "labels": {"app": "oscar"}}
OSCAR_TOKEN_LENGTH = 64  # a Bearer token of this length is taken as a service token, any other as OIDC
TOKEN_PATH = "/oidc/token"   # the simulated identity provider's token endpoint, on a port of its own
ACCESS_TOKEN_PREFIX = "sandbox-access-"  # + 32 characters: 47 in all, never taken for a service token


# ---- /system/status: pure functions of Nodes and Pods ------------------------------------------

def _is_control_plane(node: Json) -> bool:
    labels = node["metadata"].get("labels") or {}
    return any(label in labels for label in CONTROL_PLANE_LABELS)


def reported_nodes(nodes: list[Json]) -> list[Json]:
    """The nodes OSCAR reports: control-plane nodes are left out when worker nodes exist."""
    workers = [node for node in nodes if not _is_control_plane(node)]
    return workers or nodes


def oscar_pod_requests(pod: Json) -> Resources:
    """A pod's requests as OSCAR sums them (`handlers/status.go`): its native sidecars, plus the larger of its
    containers' sum and its largest other init container. Not quite the scheduler's rule, which adds to an init
    container only the sidecars started before it, and the overhead."""
    spec = pod["spec"]
    containers = sum((container_requests(c) for c in spec.get("containers") or ()), Resources())
    sidecars = largest_init = Resources()
    for container in spec.get("initContainers") or ():
        if container.get("restartPolicy") == "Always":
            sidecars += container_requests(container)
        else:
            largest_init = largest_init.peak(container_requests(container))
    return sidecars + containers.peak(largest_init)


def node_load(nodes: Iterable[Json], pods: Iterable[Json]) -> dict[str, tuple[Resources, Resources]]:
    """Node name → (requests, usage), over the pods bound to the node that are not Succeeded/Failed."""
    load = {node["metadata"]["name"]: (Resources(), Resources()) for node in nodes}
    for pod in pods:
        node_name = pod["spec"].get("nodeName")
        if node_name not in load or not holds_resources(pod):
            continue
        requests = oscar_pod_requests(pod)
        requested, used = load[node_name]
        if pod_phase(pod) == "Running":
            used += Resources(cpu=int(requests.cpu * USAGE_SHARE_OF_REQUESTS),
                              memory=int(requests.memory * USAGE_SHARE_OF_REQUESTS))
        load[node_name] = (requested + requests, used)
    return load


def current_status(nodes: list[Json], pods: list[Json], jobs: list[Json], services_namespace: str) -> Json:
    """The status format since late 2025. Free = allocatable − live usage and schedulable = allocatable −
    requests, both over every reported node: cordoned and NotReady ones too, as OSCAR counts them."""
    nodes = reported_nodes(nodes)
    load = node_load(nodes, pods)
    details, free, schedulable = [], [], []
    for node in nodes:
        name = node["metadata"]["name"]
        capacity = node_allocatable(node)
        requested, used = load[name]
        free.append(capacity - used)
        schedulable.append(capacity - requested)
        conditions = (node.get("status") or {}).get("conditions") or ()
        details.append({
            "name": name,
            # Go's omitempty: a zero capacity, usage or request is left out.
            "cpu": _nonzero({"capacity_cores": capacity.cpu, "usage_cores": used.cpu,
                             "request_cores": requested.cpu}),
            "memory": _nonzero({"capacity_bytes": capacity.memory, "usage_bytes": used.memory,
                                "request_bytes": requested.memory}),
            "gpu": capacity.gpus,
            "is_interlink": False,
            "status": "Ready" if node_is_ready(node) else "NotReady",
            "conditions": [{"type": c.get("type"), "status": c.get("status") == "True"} for c in conditions],
        })
    service_pods = [pod for pod in pods if pod["metadata"].get("namespace") == services_namespace]
    states = dict.fromkeys(POD_PHASES, 0)
    for pod in service_pods:
        states[pod_phase(pod)] = states.get(pod_phase(pod), 0) + 1
    return {
        "cluster": {
            "nodes_count": len(nodes),
            "metrics": {
                "cpu": {"total_free_cores": sum(r.cpu for r in free),
                        "max_free_on_node_cores": max((r.cpu for r in free), default=0),
                        "total_schedulable_cores": sum(r.cpu for r in schedulable),
                        "total_schedulable_on_node_cores": max((r.cpu for r in schedulable), default=0)},
                "memory": {"total_free_bytes": sum(r.memory for r in free),
                           "max_free_on_node_bytes": max((r.memory for r in free), default=0),
                           "total_schedulable_bytes": sum(r.memory for r in schedulable),
                           "max_schedulable_on_node_bytes": max((r.memory for r in schedulable), default=0)},
                "gpu": {"total_gpu": sum(node_allocatable(node).gpus for node in nodes)},
            },
            "nodes": details,
        },
        "oscar": {"deployment_name": "oscar", "ready": True, "deployment": OSCAR_DEPLOYMENT,
                  # OSCAR sums what the Jobs' status counts: active, succeeded and failed pods.
                  "jobs_count": sum(sum((job.get("status") or {}).get(key) or 0
                                        for key in ("active", "succeeded", "failed")) for job in jobs),
                  "pods": {"total": len(service_pods), "states": states},
                  # OSCAR splits the empty setting: one empty issuer, one empty group.
                  "oidc": {"enabled": False, "issuers": [""], "groups": [""]}},
        # The simulator does not look into the object store.
        "minio": {"buckets_count": 0, "total_objects": 0},
    }


def _nonzero(fields: dict[str, int]) -> dict[str, int]:
    return {key: value for key, value in fields.items() if value}


def legacy_status(nodes: list[Json], pods: list[Json]) -> Json:
    """The 2024 format: strings per node, free = allocatable − live usage, summed over the reported nodes."""
    nodes = reported_nodes(nodes)
    load = node_load(nodes, pods)
    details, free = [], []
    for node in nodes:
        name = node["metadata"]["name"]
        capacity = node_allocatable(node)
        used = load[name][1]
        free.append(capacity - used)
        details.append({
            "nodeName": name,
            "cpuCapacity": str(capacity.cpu), "cpuUsage": str(used.cpu),
            "cpuPercentage": f"{_percent(used.cpu, capacity.cpu):.2f}",
            "memoryCapacity": str(capacity.memory), "memoryUsage": str(used.memory),
            "memoryPercentage": f"{_percent(used.memory, capacity.memory):.2f}",
        })
    gpus = sum(node_allocatable(node).gpus for node in nodes)
    return {
        "numberNodes": len(nodes),
        "cpuFreeTotal": sum(r.cpu for r in free), "cpuMaxFree": max((r.cpu for r in free), default=0),
        "memoryFreeTotal": sum(r.memory for r in free), "memoryMaxFree": max((r.memory for r in free), default=0),
        "hasGPU": gpus > 0, "gpusTotal": gpus,
        "detail": details,
    }


def _percent(part: int, whole: int) -> float:
    return 100 * part / whole if whole else 0.0


# ---- POST /job: the Job OSCAR creates -----------------------------------------------------------

def generated_job_name(service_name: str) -> str:
    prefix = service_name[:SHORTENED_SERVICE_NAME] if len(service_name) >= LONG_SERVICE_NAME else service_name
    return f"{prefix}-{uuid.uuid4()}"


def job_name_problem(name: str) -> str | None:
    """The API server's objection to `name` as a Job name, in its words; None when valid."""
    if len(name) > MAX_JOB_NAME:
        return f"must be no more than {MAX_JOB_NAME} characters"
    if not JOB_NAME.fullmatch(name):
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character")
    return None


def service_resources(service: Json) -> Json:
    """The container resources of one invocation. OSCAR sets limits; the API server defaults requests to them."""
    limits = {key: service[field] for key, field in (("cpu", "cpu"), ("memory", "memory")) if service.get(field)}
    if service.get("enable_gpu"):
        limits[GPU_RESOURCE] = "1"
    return {"limits": limits, "requests": dict(limits)}


def mount_sidecar(service: Json) -> Json:
    """OSCAR's rclone container for a service `mount`. OSCAR gives it no resources, so it requests none.
    The storage credentials OSCAR passes it are left out: in the sandbox nothing mounts anything."""
    return {
        "name": "rclone-container",
        "image": "rclone/rclone",
        "command": ["/bin/sh"],
        "ports": [{"containerPort": 9000}],
        "securityContext": {"privileged": True},
        "env": [{"name": "MNT_POINT", "value": RCLONE_MOUNT_POINT},
                {"name": "MINIO_BUCKET", "value": service["mount"]["path"]}],
        "volumeMounts": [{"name": "shared-data", "mountPath": RCLONE_MOUNT_POINT, "mountPropagation": "Bidirectional"},
                         {"name": "ephemeral-data", "mountPath": "/tmpfolder", "mountPropagation": "Bidirectional"}],
    }


def invocation_job(service: Json, name: str, namespace: str, event: str) -> Json:
    """The batch/v1 Job that OSCAR's POST /job/{service} creates for one event."""
    variables = (service.get("environment") or {}).get("variables") or {}
    container: Json = {
        "name": MAIN_CONTAINER,
        "image": service["image"],
        "env": [*({"name": key, "value": value} for key, value in sorted(variables.items())),
                {"name": "EVENT", "value": event},
                {"name": "JOB_UUID", "value": name},
                {"name": "RESOURCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "resources": service_resources(service),
    }
    pod_spec: Json = {"containers": [container], "restartPolicy": "Never"}
    if (service.get("mount") or {}).get("storage_provider"):
        container["volumeMounts"] = [
            {"name": "shared-data", "mountPath": RCLONE_MOUNT_POINT, "mountPropagation": "HostToContainer"},
            {"name": "ephemeral-data", "mountPath": "/tmpfolder", "mountPropagation": "HostToContainer"}]
        pod_spec["containers"].append(mount_sidecar(service))
        pod_spec["volumes"] = [{"name": "shared-data", "emptyDir": {}}, {"name": "ephemeral-data", "emptyDir": {}}]
        pod_spec["terminationGracePeriodSeconds"] = 5
    labels = {**(service.get("labels") or {}), SERVICE_LABEL: service["name"]}
    annotations = dict(service.get("annotations") or {})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": TTL_JOB_SECONDS,
            "template": {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}, "spec": pod_spec},
        },
    }


# ---- /system/logs: listing a service's jobs -----------------------------------------------------

def job_info(job: Json, pods: list[Json]) -> Json:
    """One entry of the job listing: the pod's phase and the times of its service container."""
    # A Job without a pod yet (suspended, or not reached by the Job controller) reads "Suspended".
    info: Json = {"status": "Suspended"}
    if pods:
        pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        info["status"] = pod_phase(pod)
        # OSCAR's creation_time is the pod's startTime, which only a kubelet sets.
        info["creation_time"] = (pod.get("status") or {}).get("startTime")
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            if status.get("name") != MAIN_CONTAINER:
                continue
            state = status.get("state") or {}
            if "running" in state:
                info["start_time"] = state["running"].get("startedAt")
            elif "terminated" in state:
                info["start_time"] = state["terminated"].get("startedAt")
                info["finish_time"] = state["terminated"].get("finishedAt")
    return {key: value for key, value in info.items() if value is not None}


def encode_page_token(last_name: str) -> str:
    return base64.urlsafe_b64encode(last_name.encode()).decode()


def decode_page_token(token: str) -> str:
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("invalid page token") from None


def job_page(names: list[str], after: str | None, limit: int) -> tuple[list[str], str, int]:
    """(names on this page, token of the next page or "", how many jobs remain after it), in name order
    as Kubernetes lists them."""
    remaining = sorted(name for name in names if after is None or name > after)
    page, rest = remaining[:limit], remaining[limit:]
    return page, (encode_page_token(page[-1]) if rest else ""), len(rest)


# ---- credentials ------------------------------------------------------------------------------

def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(request: aiohttp.web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme == "Bearer" and token.strip() else None


def basic_credentials(request: aiohttp.web.Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Basic":
        return None
    try:
        user, separator, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if separator else None


# ---- the server -------------------------------------------------------------------------------

class OscarSimulator:
    """OSCAR Manager for one service of the sandbox. `await start()` returns its base URL."""

    def __init__(self, kube: SandboxKubernetes, config: SandboxConfig, *,
                 pod_logs: PodLogs | None = None, job_listing_limit: int = JOB_LISTING_LIMIT,
                 oidc_tokens: Collection[str] = ()) -> None:
        self._kube = kube
        self._config = config
        # Set by whoever runs the pods (the job runner's `pod_log`); without it, logs are empty.
        self.pod_logs = pod_logs
        self._job_listing_limit = job_listing_limit
        self._oidc_tokens = tuple(oidc_tokens)   # valid for ever
        self._issued: dict[str, float] = {}     # access tokens issued → when they expire (monotonic)
        self._refresh_tokens = {config.oidc_refresh_token}
        self._services = {config.service: config.service_definition()}
        self._runners: list[aiohttp.web.AppRunner] = []
        self.token_endpoint: str | None = None   # with config.token_lifetime, once started
        # Invocations answered 201, counted for benchmarks: they outlive the Jobs, which get deleted.
        self.accepted_invocations = 0
        self.accepted_at: list[float] = []   # when each was accepted, on the monotonic clock
        self.grants = 0                      # refresh-token grants answered with an access token
        self.expired_refusals = 0            # /system/* calls refused because their access token had expired
        # Every request received, by (method, route template): what a batch costs an OSCAR, for benchmarks.
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = aiohttp.web.Application(middlewares=[self._count, self._system_auth])
        app.router.add_get("/health", self._health)
        app.router.add_get("/system/info", self._info)
        app.router.add_get("/system/config", self._system_config)
        app.router.add_get("/system/services", self._list_services)
        app.router.add_get("/system/services/{service}", self._read_service)
        app.router.add_delete("/system/services/{service}", self._delete_service)
        app.router.add_get("/system/status", self._status)
        app.router.add_get("/system/logs/{service}", self._list_jobs)
        app.router.add_delete("/system/logs/{service}", self._delete_jobs)
        app.router.add_get("/system/logs/{service}/{job}", self._job_logs)
        app.router.add_delete("/system/logs/{service}/{job}", self._delete_job)
        app.router.add_post("/job/{service}", self._invoke)
        url = await self._serve(app, host, port)
        if self._config.token_lifetime is not None:
            # An identity provider is a host of its own, as EGI Check-in's is beside a shared OSCAR.
            identity_provider = aiohttp.web.Application()
            identity_provider.router.add_post(TOKEN_PATH, self._token)
            self.token_endpoint = await self._serve(identity_provider, host, 0) + TOKEN_PATH
        return url

    async def _serve(self, app: aiohttp.web.Application, host: str, port: int) -> str:
        # No access log: it would only repeat every poll of the operator.
        runner = aiohttp.web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        await aiohttp.web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        return f"http://{bound_host}:{bound_port}"

    async def stop(self) -> None:
        while self._runners:
            await self._runners.pop().cleanup()
        # aiohttp memoises each handler's middleware chain in a module-wide cache of 1,024 entries, keyed by
        # this simulator's bound methods: without this, a stopped sandbox (its emulator with every object it
        # ever held) stays alive for the next ones in the process, e.g. the scale benchmark's next scenario.
        cached_chains = getattr(aiohttp.web_app, "_cached_build_middleware", None)
        if cached_chains is not None:
            cached_chains.cache_clear()

    @aiohttp.web.middleware
    async def _count(self, request: aiohttp.web.Request, handler):
        resource = request.match_info.route.resource
        self.requests[request.method, resource.canonical if resource is not None else "(no route)"] += 1
        return await handler(request)

    # ---- auth ----

    def issue_access_token(self, lifetime: float | None = None) -> str:
        """An OIDC access token /system/* takes for `lifetime` seconds (the config's token_lifetime by default), as
        the token endpoint issues them; for tests that hand one out without a grant."""
        lifetime = self._config.token_lifetime if lifetime is None else lifetime
        if lifetime is None:
            raise ValueError("no token lifetime: set SandboxConfig.token_lifetime or give one")
        token = ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(24)
        self._issued[token] = time.monotonic() + lifetime
        return token

    @property
    def issued_access_tokens(self) -> list[str]:
        """Every access token issued so far, for tests that look for them where they must never show."""
        return list(self._issued)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far expires now: what an hour does to a shared OSCAR's tokens."""
        now = time.monotonic()
        self._issued = dict.fromkeys(self._issued, now)

    def _oidc_token_state(self, token: str) -> str | None:
        """"valid", "expired" (one this simulator issued, past its lifetime), or None: not an OIDC token it knows."""
        if any(_same(token, known) for known in self._oidc_tokens):
            return "valid"
        expires = self._issued.get(token)
        if expires is None:
            return None
        return "valid" if time.monotonic() < expires else "expired"

    @aiohttp.web.middleware
    async def _system_auth(self, request: aiohttp.web.Request, handler):
        """/system/*: HTTP Basic with the cluster's credentials, or a Bearer OIDC token."""
        if request.path.startswith("/system/"):
            token = bearer_token(request)
            credentials = basic_credentials(request)
            if token is not None:
                state = self._oidc_token_state(token)
                if state == "expired":
                    # OSCAR's OIDC middleware: the issuer's verifier refuses an expired token, and OSCAR aborts with
                    # a bare 401 (no body, no WWW-Authenticate: that header is gin's Basic auth's).
                    self.expired_refusals += 1
                    raise aiohttp.web.HTTPUnauthorized(text="")
                allowed = state == "valid"
            elif credentials is not None:
                # Both compared, always: the time taken says nothing about which one was wrong.
                user_ok = _same(credentials[0], self._config.oscar_user)
                password_ok = _same(credentials[1], self._config.oscar_password)
                allowed = user_ok and password_ok
            else:
                allowed = False
            if not allowed:
                raise aiohttp.web.HTTPUnauthorized(text="", headers={"WWW-Authenticate": BASIC_REALM})
        return await handler(request)

    async def _token(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        """POST /oidc/token: the refresh-token grant (RFC 6749 §6) of one public client, errors as §5.2 words
        them (with Keycloak's description of a refresh token it does not know)."""
        form = await request.post()
        if form.get("grant_type") != "refresh_token":
            return aiohttp.web.json_response({"error": "unsupported_grant_type"}, status=400)
        if not _same(str(form.get("client_id", "")), self._config.oidc_client_id):
            return aiohttp.web.json_response({"error": "invalid_client"}, status=401)
        spent = str(form.get("refresh_token", ""))
        if not any(_same(spent, known) for known in self._refresh_tokens):
            return aiohttp.web.json_response({"error": "invalid_grant", "error_description": "Invalid refresh token"},
                                             status=400)
        lifetime = self._config.token_lifetime
        assert lifetime is not None
        answer: Json = {"access_token": self.issue_access_token(), "token_type": "Bearer",
                        "expires_in": int(lifetime) if lifetime == int(lifetime) else lifetime}
        if self._config.rotate_refresh_tokens:
            self._refresh_tokens.discard(spent)
            answer["refresh_token"] = "sandbox-refresh-" + secrets.token_urlsafe(18)
            self._refresh_tokens.add(answer["refresh_token"])
        self.grants += 1
        return aiohttp.web.json_response(answer)

    # ---- handlers ----

    def _service(self, request: aiohttp.web.Request) -> Json:
        service = self._services.get(request.match_info["service"])
        if service is None:
            raise aiohttp.web.HTTPNotFound(text="")
        return service

    async def _health(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="Ok")

    async def _info(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        # No `serverless_backend`: that is only there with SERVERLESS_BACKEND set (Knative, OpenFaaS).
        return aiohttp.web.json_response({
            "version": VERSION, "git_commit": "sandbox", "architecture": "amd64",
            "kubernetes_version": KUBERNETES_VERSION})

    async def _system_config(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({
            "name": "oscar", "namespace": "oscar", "services_namespace": self._config.services_namespace,
            "gpu_available": any(node.gpus for node in self._config.nodes),
            "interLink_available": False, "yunikorn_enable": False, "oidc_groups": []})

    async def _list_services(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response(list(self._services.values()))

    async def _read_service(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response(self._service(request))

    async def _delete_service(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        """As OSCAR's Kubernetes backend: the service goes, and every Job of it (with its pods) goes with it."""
        service = self._service(request)
        for job in self._service_jobs(service):
            await self._delete_with_pods(job)
        del self._services[service["name"]]
        return aiohttp.web.Response(status=204)

    async def _status(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        nodes, pods = self._kube.list(NODES), self._kube.list(PODS)
        if self._config.legacy_status:
            return aiohttp.web.json_response(legacy_status(nodes, pods))
        jobs = self._kube.list(JOBS, self._config.services_namespace)
        return aiohttp.web.json_response(current_status(nodes, pods, jobs, self._config.services_namespace))

    async def _invoke(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        # As OSCAR decides: no Bearer token is 401; a token of 64 characters must be the service's token (an
        # unknown service has none, so 401 too); any other token is taken as OIDC, and one no issuer knows is
        # 502 (OSCAR writes two messages one after the other).
        token = bearer_token(request)
        service = self._services.get(request.match_info["service"])
        if token is None:
            raise aiohttp.web.HTTPUnauthorized(text="")
        state = self._oidc_token_state(token)
        if len(token) == OSCAR_TOKEN_LENGTH and state is None:
            if service is None or not _same(token, service["token"]):
                raise aiohttp.web.HTTPUnauthorized(text="")
        elif state is None:
            return aiohttp.web.Response(status=502, text="token contains an invalid number of segments"
                                                         "Error getting oidc manager for issuer ''")
        elif state == "expired":
            # OSCAR asks the issuer for the user's info, gets an error and no info, and dereferences it: gin's
            # recovery answers 500 with no body (handlers/job.go).
            return aiohttp.web.Response(status=500)
        elif service is None:
            raise aiohttp.web.HTTPNotFound(text="")
        event = (await request.read()).decode("utf-8", errors="replace")
        name = request.headers.get("X-Delegated-Job-ID") or generated_job_name(service["name"])
        problem = job_name_problem(name)
        if problem is not None:
            return aiohttp.web.Response(status=500, text=f'Job.batch "{name}" is invalid: metadata.name: '
                                                         f'Invalid value: "{name}": {problem}')
        job = invocation_job(service, name, self._config.services_namespace, event)
        if self._config.kueue_cpu:   # OSCAR v4: an OIDC user's Jobs wait in the service's LocalQueue
            job["spec"]["suspend"] = True
            job["metadata"]["labels"][QUEUE_LABEL] = kueue.local_queue_name(service["name"])
        try:
            await self._kube.create(JOBS, job)
        except kmock.KubernetesError as error:
            if error.status == 409:
                return aiohttp.web.Response(status=500, text=f'jobs.batch "{name}" already exists')
            raise
        self.accepted_invocations += 1
        self.accepted_at.append(time.monotonic())
        return aiohttp.web.Response(status=201)

    def _service_jobs(self, service: Json) -> list[Json]:
        return [job for job in self._kube.list(JOBS, self._config.services_namespace)
                if (job["metadata"].get("labels") or {}).get(SERVICE_LABEL) == service["name"]]

    def _job_pods(self, job_name: str) -> list[Json]:
        return [pod for pod in self._kube.list(PODS, self._config.services_namespace)
                if (pod["metadata"].get("labels") or {}).get("job-name") == job_name]

    async def _list_jobs(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        service = self._service(request)
        token = request.query.get("page")
        try:
            after = decode_page_token(token) if token else None
        except ValueError as error:
            return aiohttp.web.Response(status=400, text=str(error))
        jobs = {job["metadata"]["name"]: job for job in self._service_jobs(service)}
        page, next_page, _ = job_page(list(jobs), after, self._job_listing_limit)
        # The namespace's pods listed once for the page, not once per Job: each listing copies every pod.
        pods_of: dict[str, list[Json]] = {}
        for pod in self._kube.list(PODS, self._config.services_namespace):
            pods_of.setdefault((pod["metadata"].get("labels") or {}).get("job-name", ""), []).append(pod)
        listing: Json = {"jobs": {name: job_info(jobs[name], pods_of.get(name, [])) for name in page}}
        # As OSCAR passes on Kubernetes' list metadata: `next_page` (the continue token) is left out on the last
        # page, and `remaining_jobs` always, since the API server counts no remaining items for a list with a
        # label selector.
        if next_page:
            listing["next_page"] = next_page
        return aiohttp.web.json_response(listing)

    async def _job_logs(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        service = self._service(request)
        job_name = request.match_info["job"]
        pods = [pod for pod in self._job_pods(job_name)
                if (pod["metadata"].get("labels") or {}).get(SERVICE_LABEL) == service["name"]]
        if not pods:
            # OSCAR v4 dereferences a nil error here and its recovery answers 500 (logs.go, MakeGetLogsHandler).
            return aiohttp.web.Response(status=500)
        pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        if pod_phase(pod) == "Pending":
            # The kubelet has no log before the container starts; OSCAR turns any error of the log into 404.
            raise aiohttp.web.HTTPNotFound(text="")
        text = self.pod_logs(pod["metadata"]["namespace"], pod["metadata"]["name"]) if self.pod_logs else None
        return aiohttp.web.Response(text=text or "")

    async def _delete_job(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        service = self._services.get(request.match_info["service"])
        if service is None:
            # OSCAR answers "no permission" for a service it does not find here.
            raise aiohttp.web.HTTPForbidden(text="You do not have permission to access this service")
        job = self._kube.get(JOBS, self._config.services_namespace, request.match_info["job"])
        if job is None or (job["metadata"].get("labels") or {}).get(SERVICE_LABEL) != service["name"]:
            raise aiohttp.web.HTTPNotFound(text="")
        await self._delete_with_pods(job)
        return aiohttp.web.Response(status=204)

    async def _delete_jobs(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        service = self._service(request)
        everything = request.query.get("all", "false") in TRUE_WORDS
        for job in self._service_jobs(service):
            if everything or is_finished(job):
                await self._delete_with_pods(job)
        return aiohttp.web.Response(status=204)

    async def _delete_with_pods(self, job: Json) -> None:
        """Background propagation, done at once: the Job, then the Pods it owns."""
        name = job["metadata"]["name"]
        await self._kube.delete(JOBS, self._config.services_namespace, name)
        for pod in self._job_pods(name):
            await self._kube.delete(PODS, self._config.services_namespace, pod["metadata"]["name"])
