"""The embedded sandbox: a Kubernetes API, an S3 store and OSCAR clusters on localhost, in one process.

One implementation serves the pytest fixtures, `make demo` and `oscar-batch-sandbox`. `Sandbox` runs on the
caller's event loop; `SandboxThread` runs it on a loop of its own for synchronous callers.

A sandbox holds `SandboxConfig.clusters` emulated OSCAR clusters (`OscarCluster`), each with its own Kubernetes
object store, nodes, OSCAR Manager and job runner. Only the first one's Kubernetes API is served over HTTP: there
the batches live and the operator runs; the others are reachable only through their OSCAR endpoint, as remote
clusters are. All of them share the sandbox's one S3: in reality each cluster's service mounts the batch's MinIO
as an external storage provider, so every cluster reads the same inputs and writes to the same bucket.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import pathlib
import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import kmock
import minio
import yaml

from oscar_batch_sandbox import kueue, nodes
from oscar_batch_sandbox.config import Behaviour, NodeSpec, SandboxConfig, TenantPod
from oscar_batch_sandbox.kube import CRD_RESOURCE, SandboxKubernetes
from oscar_batch_sandbox.oscar import OscarSimulator
from oscar_batch_sandbox.runner import JobRunner, ServiceDraws, earlier_output, output_key
from oscar_batch_sandbox.s3 import REGION, S3Server, decoy_keys, input_keys, seed_bucket

__all__ = ["Behaviour", "NodeSpec", "OscarCluster", "Sandbox", "SandboxConfig", "SandboxThread", "TenantPod",
           "CRD_PATH"]

# Package data (a link to crds/batchjob.yaml in the source tree, a copy in the wheel): found from any install.
CRD_PATH = pathlib.Path(__file__).resolve().parent / "batchjob.yaml"
T = TypeVar("T")


class OscarCluster:
    """One emulated OSCAR cluster, every one built alike from the sandbox's config: a Kubernetes object store
    with the config's nodes, namespaces, other tenants' pods and Kueue (when configured); the OSCAR Manager with
    the config's service and credentials over it; and the job runner, its scheduler, kubelet and service, which
    reads inputs from and writes outputs to the sandbox's one S3."""

    def __init__(self, name: str, config: SandboxConfig) -> None:
        self.name = name   # a DNS label, as spec.clusters names it
        self.config = config
        self.kube = SandboxKubernetes(strict=False, forbidden={kmock.resource(r) for r in config.forbidden})
        self.oscar = OscarSimulator(self.kube, config)
        self.endpoint = ""   # the OSCAR Manager's base URL, once started
        self._runner: JobRunner | None = None

    @property
    def runner(self) -> JobRunner:
        assert self._runner is not None, f"the cluster {self.name} is not started"
        return self._runner

    async def populate(self) -> None:
        """What the cluster holds before anything runs; its object store must be entered."""
        config = self.config
        self.kube.install_builtins()
        for namespace in ("default", "kube-system", "oscar", config.services_namespace,
                          *{pod.namespace for pod in config.tenant_pods}):
            await self.kube.create("v1/namespaces", {"metadata": {"name": namespace}})
        for node in config.nodes:
            await self.kube.create("v1/nodes", node.to_object())
        if config.kueue_cpu:
            await kueue.install(self.kube, owner=config.kueue_owner, service=config.service,
                                namespace=config.services_namespace, cpu=config.kueue_cpu, memory=config.kueue_memory)
        for pod in config.tenant_pods:
            await self.kube.create("v1/pods", pod.to_object())

    def start_runner(self, s3_client: minio.Minio, put: Callable[[str, bytes], None] | None,
                     get: Callable[[str], bytes] | None, draws: ServiceDraws) -> JobRunner:
        """The job runner over this cluster's Jobs (for the caller to run), and the source of its pods' logs."""
        runner = self._runner = JobRunner(self.kube, self.config, s3_client, put=put, get=get, draws=draws)
        self.oscar.pod_logs = runner.pod_log
        return runner

    def info(self) -> dict[str, str]:
        return {"name": self.name, "endpoint": self.endpoint, "username": self.config.oscar_user,
                "password": self.config.oscar_password}

    # ---- capacity changes at run time (`nodes`) ----

    async def drain(self, node: str) -> list[str]:
        """`kubectl drain` of `node` through the Eviction API; returns the evicted pods once they are gone."""
        return await nodes.drain(self.kube, node)

    async def add_node(self, node: NodeSpec) -> None:
        """A node joins; the job runner's scheduler uses it from its next pass."""
        await nodes.add_node(self.kube, node)


class Sandbox:
    def __init__(self, config: SandboxConfig | None = None, crd_path: pathlib.Path = CRD_PATH) -> None:
        self.config = config or SandboxConfig()
        self.crd_path = crd_path
        self.clusters = [OscarCluster(f"oscar-{number}", self.config)
                         for number in range(1, self.config.clusters + 1)]
        # The first cluster: its Kubernetes API is the one served, where the batches live and the operator runs.
        self.kube = self.clusters[0].kube
        self.oscar = self.clusters[0].oscar
        self.s3 = S3Server()
        self._kube_server = kmock.Server(self.kube)
        self._stack = contextlib.AsyncExitStack()
        self._user_token = secrets.token_hex(16)
        self.info: dict[str, Any] = {}

    @property
    def runner(self) -> JobRunner:
        """The first cluster's scheduler, kubelet and service, once started."""
        return self.clusters[0].runner

    async def __aenter__(self) -> Sandbox:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        config = self.config
        for cluster in self.clusters:
            await self._stack.enter_async_context(cluster.kube)
            await cluster.populate()
        await self._stack.enter_async_context(self._kube_server)
        await self.kube.create(CRD_RESOURCE, yaml.safe_load(self.crd_path.read_text()))

        s3_endpoint = await asyncio.to_thread(self.s3.start)
        self._stack.callback(self.s3.stop)
        s3_client = self.s3.client(config.s3_access_key, config.s3_secret_key)
        keys = input_keys(config.prefix, config.items) + decoy_keys(config.prefix)
        output_prefix = config.behaviour.output_prefix
        outputs = {output_key(key, config.prefix, output_prefix): earlier_output(key)
                   for key in sorted(config.existing_outputs)}
        if config.s3_in_process:
            await asyncio.to_thread(self.s3.seed_in_process, s3_client, config.bucket, keys, outputs)
        else:
            await asyncio.to_thread(seed_bucket, s3_client, config.bucket, keys, outputs)

        put = functools.partial(self.s3.put_in_process, config.bucket) if config.s3_in_process else None
        get = functools.partial(self.s3.get_in_process, config.bucket) if config.s3_in_process else None
        draws = ServiceDraws(config.behaviour)   # one service, however many clusters run it
        for cluster in self.clusters:
            cluster.endpoint = await cluster.oscar.start()
            self._stack.push_async_callback(cluster.oscar.stop)
            self._background(cluster.start_runner(s3_client, put, get, draws).run())
        self._background(self._housekeeping())

        self.info = {
            "kubernetes": {"server": str(self._kube_server.url), "token": self._user_token},
            "s3": {"endpoint": s3_endpoint, "region": REGION, "accessKey": config.s3_access_key,
                   "secretKey": config.s3_secret_key, "bucket": config.bucket, "prefix": config.prefix,
                   "items": config.items, "outputPrefix": output_prefix,
                   "existingOutputs": len(config.existing_outputs),
                   "corruptInputs": sorted(config.behaviour.corrupt_inputs)},
            "oscar": {"endpoint": self.clusters[0].endpoint, "username": config.oscar_user,
                      "password": config.oscar_password, "service": config.service,
                      "servicesNamespace": config.services_namespace},
            "clusters": [cluster.info() for cluster in self.clusters],
        }
        if self.oscar.token_endpoint is not None:
            # The refresh-token grant's keys, as an OSCAR Secret gives them (README, "OIDC tokens that expire").
            self.info["oidc"] = {"tokenEndpoint": self.oscar.token_endpoint, "clientId": config.oidc_client_id,
                                 "refreshToken": config.oidc_refresh_token}

    def _background(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self._stack.push_async_callback(cancel)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.config.housekeeping_seconds)
            for cluster in self.clusters:
                cluster.kube.forget_history()

    def kubeconfig(self) -> str:
        """A kubeconfig for the sandbox's API server, for kubectl, kopf and pykube alike."""
        return yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "oscar-batch-sandbox", "cluster": {"server": self.info["kubernetes"]["server"]}}],
            "users": [{"name": "sandbox-admin", "user": {"token": self._user_token}}],
            "contexts": [{"name": "oscar-batch-sandbox",
                          "context": {"cluster": "oscar-batch-sandbox", "user": "sandbox-admin",
                                      "namespace": "default"}}],
            "current-context": "oscar-batch-sandbox",
        }, sort_keys=False)

    def write_kubeconfig(self, path: pathlib.Path) -> None:
        path.write_text(self.kubeconfig())
        path.chmod(0o600)

    # ---- capacity changes at run time, in the first cluster ----

    async def drain(self, node: str) -> list[str]:
        return await self.clusters[0].drain(node)

    async def add_node(self, node: NodeSpec) -> None:
        await self.clusters[0].add_node(node)


class SandboxThread:
    """A `Sandbox` on an event loop of its own thread, for synchronous code (tests, the demo)."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.sandbox = Sandbox(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="oscar-batch-sandbox", daemon=True)

    def __enter__(self) -> SandboxThread:
        self._thread.start()
        self.call(self.sandbox.__aenter__)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.call(lambda: self.sandbox.__aexit__(None, None, None))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    @property
    def info(self) -> dict[str, Any]:
        return self.sandbox.info

    @property
    def kube(self) -> SandboxKubernetes:
        return self.sandbox.kube

    @property
    def runner(self) -> JobRunner:
        return self.sandbox.runner

    @property
    def clusters(self) -> list[OscarCluster]:
        """Every cluster, the first included: its object store (`kube`), `oscar` simulator, `runner`, `endpoint`."""
        return self.sandbox.clusters

    def drain(self, node: str, timeout: float = 60) -> list[str]:
        return self.call(lambda: self.sandbox.drain(node), timeout=timeout)

    def add_node(self, node: NodeSpec) -> None:
        self.call(lambda: self.sandbox.add_node(node))

    def call(self, coroutine_function: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
        """Run a coroutine on the sandbox's loop, e.g. `call(lambda: sb.kube.create('v1/nodes', node))`."""
        return self.submit(coroutine_function).result(timeout)

    def submit(self, coroutine_function: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Start a coroutine on the sandbox's loop without waiting for it (e.g. a drain at a given time)."""
        async def wrapper() -> T:
            return await coroutine_function()
        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop)
