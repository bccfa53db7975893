"""What a sandbox holds: its nodes, other tenants' pods, inputs, the OSCAR service and how that service behaves."""
from __future__ import annotations

import dataclasses
import random
import secrets
from typing import Any

from oscar_batch_sandbox.s3 import input_key

SERVICES_NAMESPACE = "oscar-svc"
MAX_CLUSTERS = 16   # a batch's spec.clusters names at most 16 (the CRD's bound)
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    name: str
    cpu: str = "4"
    memory: str = "8Gi"
    pods: int = 110
    gpus: int = 0
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    ready: bool = True
    unschedulable: bool = False

    def to_object(self) -> dict[str, Any]:
        allocatable = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods)}
        if self.gpus:
            allocatable["nvidia.com/gpu"] = str(self.gpus)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": {"kubernetes.io/hostname": self.name, **self.labels}},
            "spec": {"unschedulable": self.unschedulable, "taints": [dict(t) for t in self.taints]},
            "status": {
                "capacity": dict(allocatable),
                "allocatable": allocatable,
                "conditions": [{"type": "Ready", "status": "True" if self.ready else "False",
                                "reason": "KubeletReady" if self.ready else "KubeletNotReady"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0-sandbox"},
            },
        }


def control_plane(name: str = "control-plane") -> NodeSpec:
    return NodeSpec(name=name, cpu="2", memory="4Gi", labels={CONTROL_PLANE_LABEL: ""},
                    taints=({"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"},))


def workers(count: int, cpu: str = "4", memory: str = "8Gi") -> list[NodeSpec]:
    return [NodeSpec(name=f"worker-{index}", cpu=cpu, memory=memory,
                     labels={"node-role.kubernetes.io/worker": ""}) for index in range(1, count + 1)]


@dataclasses.dataclass(frozen=True)
class TenantPod:
    """A pod of another tenant, already bound to a node: it takes capacity the batch cannot use."""
    name: str
    node: str
    cpu: str = "500m"
    memory: str = "1Gi"
    namespace: str = "other-tenant"

    def to_object(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": {"app": self.name}},
            "spec": {"nodeName": self.node, "containers": [{
                "name": "main", "image": "registry.example/app:1",
                "resources": {"requests": {"cpu": self.cpu, "memory": self.memory}}}]},
            "status": {"phase": "Running"},
        }


ITEM_DISTRIBUTIONS = ("uniform", "lognormal")


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """How the simulated service behaves. Durations are in simulated seconds; `time_scale` maps them to real ones.

    An item's work and corruption are properties of the input, not of a manifest line: the seconds of input n
    (`frame-<n>.jpg`, line n of the manifest of all the sandbox's inputs) are drawn from (`seed`, n) alone
    (`runner.item_seconds`), and a corrupt input is named by its key (`corrupt_inputs`), so every invocation
    that reaches an input, on either side of a benchmark, on every retry and from a manifest of any subset (a
    re-run over what is missing, a batch that skipped the inputs with outputs), spends the same time on it and
    fails on it alike.
    """
    item_seconds: float = 2.0         # the mean time of one item
    # "uniform": item_seconds × uniform(1 - jitter, 1 + jitter); "lognormal": mean item_seconds, log-sd item_sigma
    item_distribution: str = "uniform"
    item_jitter: float = 0.5
    item_sigma: float = 0.8
    startup_seconds: float = 3.0      # container start before the first item
    failure_rate: float = 0.0         # probability that one invocation fails: the service's own error, exit 1
    failing_ranges: frozenset[tuple[int, int]] = frozenset()  # (start, end) pairs that fail (see below)
    # A range in `failing_ranges` fails only its first N invocations, then succeeds; 0 means always. The
    # runner counts invocations per (start, end) in the order their containers start.
    failing_attempts: int = 0
    # Keys of the inputs the service cannot process: it writes the outputs of the items before the first of
    # them in its range, then exits 1, on every attempt.
    corrupt_inputs: frozenset[str] = frozenset()
    # Probability that the kubelet evicts one invocation's pod for node pressure at a uniformly random point of
    # its run after start-up (outputs written before stay): a transient disruption, not the service's failure.
    disruption_rate: float = 0.0
    time_scale: float = 0.01          # real seconds per simulated second
    output_prefix: str = "output/"
    # The original fish detector reads only `start`/`end` and always `<prefix>index.txt`; a newer script may
    # honour the payload's `manifest` key instead.
    original_script: bool = False
    # Seeds item times and, per invocation in the order containers start, failures and disruptions. None: a
    # seed drawn once per job runner (items still keep their time within one sandbox).
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.failing_attempts < 0:
            raise ValueError(f"failing_attempts must be 0 (always fail) or more, got {self.failing_attempts}")
        if self.item_distribution not in ITEM_DISTRIBUTIONS:
            raise ValueError(f"item_distribution must be one of {', '.join(ITEM_DISTRIBUTIONS)}, "
                             f"got {self.item_distribution!r}")
        if not 0 <= self.item_jitter <= 1:
            raise ValueError(f"item_jitter must be within [0, 1], got {self.item_jitter}")
        if self.item_sigma < 0 or self.item_seconds < 0 or self.startup_seconds < 0:
            raise ValueError("item_seconds, item_sigma and startup_seconds must be >= 0")
        for name in ("failure_rate", "disruption_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if not all(isinstance(key, str) and key for key in self.corrupt_inputs):
            raise ValueError("corrupt_inputs are object keys")


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    nodes: tuple[NodeSpec, ...] = (control_plane(), *workers(3))
    tenant_pods: tuple[TenantPod, ...] = (TenantPod("tenant-db", "worker-1", cpu="1", memory="2Gi"),)
    items: int = 60
    bucket: str = "fish-detector"
    prefix: str = "input/"
    service: str = "fish-detector"
    service_cpu: str = "1"
    service_memory: str = "1Gi"
    service_gpu: bool = False
    behaviour: Behaviour = Behaviour()
    # Input keys whose outputs the bucket holds when the sandbox starts, named as the service names them
    # (`runner.output_key`): an earlier run's, for a batch that declares its outputs to skip.
    existing_outputs: frozenset[str] = frozenset()
    services_namespace: str = SERVICES_NAMESPACE
    oscar_user: str = "oscar"
    # Fresh per sandbox: nothing outside this process can know them.
    oscar_password: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(12))
    service_token: str = dataclasses.field(default_factory=lambda: secrets.token_hex(32))
    s3_access_key: str = dataclasses.field(default_factory=lambda: "sandbox" + secrets.token_hex(4))
    s3_secret_key: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(24))
    legacy_status: bool = False       # serve GET /system/status in the 2024 format
    # OIDC as a shared OSCAR takes it: with a lifetime (seconds), the simulator serves a token endpoint (the
    # refresh-token grant of this client id and refresh token) whose access tokens /system/* takes until they
    # expire. None: no token endpoint.
    token_lifetime: float | None = None
    oidc_client_id: str = "oscar-batch-sandbox"
    oidc_refresh_token: str = dataclasses.field(default_factory=lambda: "sandbox-refresh-" + secrets.token_urlsafe(18))
    rotate_refresh_tokens: bool = False  # each grant answers a new refresh token and revokes the one spent
    # Seed the inputs and write the service's outputs straight into moto's backend in this process (the same
    # objects, without HTTP): moto's server takes ~500 PUT/s, which a large batch would otherwise measure.
    # Everything else (listing, the manifest, the operator's objects) still goes through S3's HTTP API.
    s3_in_process: bool = False
    # How often kmock's record of requests (matched against on every request) and past object versions are
    # dropped: a run of many requests per second slows down without it.
    housekeeping_seconds: float = 30.0
    forbidden: frozenset[str] = frozenset()  # resources ("v1/nodes") every API client is denied, as by RBAC
    # OSCAR v4's Kueue mode: the service belongs to an OIDC user whose ClusterQueue has this nominal cpu quota;
    # its Jobs are created suspended and admitted by quota. "" for a cluster admin's service (no Kueue).
    kueue_cpu: str = ""
    kueue_memory: str = "64Gi"
    kueue_owner: str = "alice"
    # Emulated OSCAR clusters, each with its own copy of `nodes`, its own OSCAR Manager and job runner; the sandbox
    # serves the first one's Kubernetes API (`Sandbox`).
    clusters: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.clusters <= MAX_CLUSTERS:
            raise ValueError(f"clusters must be within [1, {MAX_CLUSTERS}], got {self.clusters}")

    def with_drawn_inputs(self, *, corrupt: float = 0.0, existing_outputs: float = 0.0,
                          seed: int | str = 0) -> SandboxConfig:
        """This config with round(share × items) of its inputs drawn, reproducibly for `seed`, to be corrupt and
        to have outputs already. The two are apart: a corrupt input never had an output (the service cannot make
        one), so the outputs are drawn among the other inputs (all of them, when there are fewer)."""
        for name, share in (("corrupt", corrupt), ("existing_outputs", existing_outputs)):
            if not 0 <= share <= 1:
                raise ValueError(f"{name} must be a share of the inputs within [0, 1], got {share}")
        numbers = range(1, self.items + 1)
        corrupt_numbers = set(random.Random(f"corrupt:{seed}").sample(numbers, round(corrupt * self.items)))
        healthy = [number for number in numbers if number not in corrupt_numbers]
        with_outputs = random.Random(f"existing-outputs:{seed}").sample(
            healthy, min(len(healthy), round(existing_outputs * self.items)))
        return dataclasses.replace(
            self, existing_outputs=frozenset(input_key(self.prefix, number) for number in with_outputs),
            behaviour=dataclasses.replace(self.behaviour, corrupt_inputs=frozenset(
                input_key(self.prefix, number) for number in corrupt_numbers)))

    def service_definition(self, storage_provider: str = "minio.default") -> dict[str, Any]:
        """The service as OSCAR's GET /system/services/{name} returns it: every field OSCAR v4 serves (the real
        tier's conformance test compares the shape), with an input and an output path as OSCAR stores them."""
        return {
            "name": self.service,
            "cluster_id": "sandbox",
            "memory": self.service_memory,
            "cpu": self.service_cpu,
            "ephemeral_storage_request": "",
            "enable_gpu": self.service_gpu,
            "enable_sgx": False,
            "image_prefetch": False,
            "total_memory": "", "total_cpu": "",
            "synchronous": {"min_scale": 0, "max_scale": 0},
            "log_level": "INFO",
            "image": "ghcr.io/grycap/oscar-batch-fish-detector:sandbox",
            "alpine": False,
            "token": self.service_token,
            "file_stage_in": False,
            "input": [{"storage_provider": storage_provider, "path": f"{self.service}/{self.service}-in"}],
            # Where the simulated service writes its outputs: a batch declaring `outputs: {}` finds them here.
            "output": [{"storage_provider": storage_provider,
                        "path": f"{self.bucket}/{self.behaviour.output_prefix}".rstrip("/")}],
            "script": "#!/bin/sh\nSTART=$(jq .start \"$INPUT_FILE_PATH\")\nEND=$(jq .end \"$INPUT_FILE_PATH\")\n",
            "expose": {"min_scale": 0, "max_scale": 0, "cpu_threshold": 0, "rewrite_target": False,
                       "default_command": False, "set_auth": False, "health_path": ""},
            "environment": {"variables": {}, "secrets": {}},
            "annotations": {},
            "vo": "",
            # What OSCAR labels a service created with the cluster's credentials with (and so its Jobs).
            "labels": {"applicationId": self.service, "oscar.grycap/user-service": "true",
                       "oscar_service": self.service, "owner_name": "oscar",
                       "queue": f"root.oscar-queue.{self.service}"},
            "storage_providers": {"minio": {"default": {
                "endpoint": "http://minio.sandbox", "verify": False, "access_key": "hidden", "secret_key": "hidden",
                "region": "us-east-1"}}},
            # OSCAR's owner of a service made with the cluster's credentials; an OIDC user's in Kueue mode.
            "owner": self.kueue_owner if self.kueue_cpu else "cluster_admin",
            "namespace": self.services_namespace,
            "interlink_node_name": "",
            "visibility": "private",
            "allowed_users": [],
            "isolation_level": "",
            "bucket_list": [],
            "mount": {"storage_provider": storage_provider, "path": f"{self.bucket}/{self.prefix}".rstrip("/")},
            "volume_status": {"enabled": False},
        }
