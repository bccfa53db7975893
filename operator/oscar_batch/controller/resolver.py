"""From a batch's spec to working clients: its Secrets, its OSCAR service and what one invocation needs.

Shared by the batch controller and the cancellation on delete. Anything that must change outside the operator
(a missing Secret, a wrong service, an unreachable peer) comes out as `Waiting` with a reason that becomes the
batch's condition; no message ever carries a credential. A client is made only for an endpoint the operator's
allow-list admits and from a Secret that opted in (`core.endpoints`, `core.credentials`): until both hold,
nothing is sent anywhere.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import minio

from oscar_batch.clients import cluster, manifest
from oscar_batch.clients.oscar import OscarClient, OscarError
from oscar_batch.controller.peer_calls import PeerCalls
from oscar_batch.core import credentials, outputs, planner, tokens
from oscar_batch.core.endpoints import EndpointPolicy
from oscar_batch.core.pacing import Retry
from oscar_batch.core.spec import DEFAULT_SERVICES_NAMESPACE, BatchSpec, ClusterSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
# Blocking calls (pykube-ng, minio, requests) run off the event loop; a slow call holds a thread only for one
# call, never for a batch's life. The Kubernetes API's in the loop's default pool of IO_THREADS (set by
# `handlers`), the batches' peers' (OSCAR, S3) in a pool of their own, of which one endpoint may hold PEER_SHARE:
# a stalled peer leaves the others, and every batch's status, their threads. Each client's connection pool is
# sized to the calls it may have in flight at once.
IO_THREADS = 32
PEER_THREADS, PEER_SHARE = 32, 16
# Reasons a person must act on; the others (a peer down) clear by themselves and are retried sooner.
NEEDS_A_PERSON = frozenset({
    "InvalidSpec", "SecretNotFound", "SecretIncomplete", "SecretUnreadable", "OscarUnauthorized",
    "ServiceNotFound", "ServiceTokenMissing", "ServiceResourcesInvalid", "BucketNotFound", "KeyConflict",
    "ManifestKeyInUse", "NamespaceNotWatched", "UnsupportedPreviousRelease", "SecretNotAllowed",
    "EndpointNotAllowed", "TokenRefreshFailed",
})


class Waiting(Exception):
    """Something outside the operator must change; report it and try again later."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def retry(self) -> Retry:
        return Retry.NEEDS_A_PERSON if self.reason in NEEDS_A_PERSON else Retry.CLEARS_BY_ITSELF


@dataclasses.dataclass(frozen=True, kw_only=True)
class Peers:
    """The batch's client for its S3, resolved from its spec and Secrets, and the peers' thread pool blocking calls
    run in (each OSCAR cluster's client is its `OscarCluster`'s)."""
    s3: Any
    s3_endpoint: str
    calls: PeerCalls

    async def on_s3(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.calls.run(self.s3_endpoint, call, *args, **kwargs)


@dataclasses.dataclass(frozen=True)
class Service:
    """What the batch's OSCAR service says of its invocations: what one needs, and where their Jobs are."""
    needs: planner.Needs
    jobs_namespace: str     # the spec's override, else the service's own


class KnownSecrets:
    """The Secret values each batch last read, by batch UID, in this process's memory only (never written, logged
    or reported): when a namespace is deleted its Secrets may go before a batch's finalizer runs, and cancelling
    the batch still has to delete its Jobs and manifest. Read and written from the I/O threads."""

    def __init__(self) -> None:
        self._values: dict[str, dict[str, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def remember(self, uid: str, name: str, values: dict[str, str]) -> None:
        with self._lock:
            self._values.setdefault(uid, {})[name] = dict(values)

    def recall(self, uid: str, name: str) -> dict[str, str] | None:
        with self._lock:
            return self._values.get(uid, {}).get(name)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._values.pop(uid, None)


@dataclasses.dataclass(frozen=True)
class Resolver:
    kube: cluster.Kube
    namespace: str
    endpoints: EndpointPolicy
    # With `known`, the values read are remembered for the batch `uid`; with `recall_missing` too (the
    # cancellation), a Secret gone is replaced by what was last read from it.
    known: KnownSecrets | None = None
    uid: str = ""
    recall_missing: bool = False

    def secret(self, name: str, keys: tuple[str, ...]) -> dict[str, str]:
        try:
            secret = self.kube.secret(self.namespace, name)
        except cluster.KubeError as error:
            if error.code == 404:
                recalled = self.known.recall(self.uid, name) if self.known and self.recall_missing else None
                if recalled is not None:
                    log.info("Secret %s/%s is gone: using the values last read from it", self.namespace, name)
                    return recalled
                raise Waiting("SecretNotFound", f"Secret {self.namespace}/{name} does not exist") from None
            raise Waiting("SecretUnreadable", str(error)) from None
        refused = credentials.refusal(secret)
        if refused:
            raise Waiting("SecretNotAllowed", refused)
        values = credentials.values(secret, keys)
        if self.known:
            self.known.remember(self.uid, name, values)
        return values

    def oscar_client(self, cluster: ClusterSpec) -> OscarClient:
        """A client with the cluster's OSCAR Secret's credentials, which it renews from the Secret read again when
        OSCAR answers 401 (a refresher may have rotated the token); with refresh keys, its first access token
        obtained."""
        if refused := self.endpoints.oscar_refusal(cluster.endpoint):
            raise Waiting("EndpointNotAllowed", refused)

        def renew() -> tokens.Login:
            try:
                return _oscar_login(self, cluster)
            except Waiting as waiting:
                raise OscarError(f"no others could be read: {waiting.message}", 401) from None

        oscar = OscarClient(cluster.endpoint, _oscar_login(self, cluster), renew=renew, pool_size=PEER_SHARE)
        try:
            oscar.authorize()
        except OscarError as error:
            raise Waiting("TokenRefreshFailed" if error.status == 401 else "OscarUnavailable", str(error)) from None
        return oscar

    def service(self, oscar: OscarClient, spec: BatchSpec) -> dict[str, Any]:
        try:
            service = oscar.service(spec.service)
        except OscarError as error:
            reason = {401: "OscarUnauthorized", 403: "OscarUnauthorized", 404: "ServiceNotFound"}.get(
                error.status or 0, "OscarUnavailable")
            raise Waiting(reason, str(error)) from None
        if not service.get("token"):
            raise Waiting("ServiceTokenMissing", f"OSCAR service {spec.service!r} has no invocation token; "
                                                 "the credentials may not own it")
        return service

    @staticmethod
    def jobs_namespace(cluster: ClusterSpec, service: dict[str, Any]) -> str:
        return cluster.services_namespace or str(service.get("namespace") or "") or DEFAULT_SERVICES_NAMESPACE

    @staticmethod
    def with_outputs_prefix(spec: BatchSpec, service: dict[str, Any]) -> BatchSpec:
        """`spec` with its declared outputs' prefix resolved: the spec's own, else the OSCAR service's first output
        when that is on the batch's storage (`outputs.service_output_prefix`). Raises Waiting (InvalidSpec) when
        there is none, or when outputs there would be the next run's inputs."""
        declared = spec.outputs
        if declared is None:
            return spec
        if declared.prefix is None:
            prefix = outputs.service_output_prefix(service, bucket=declared.bucket, s3_endpoint=spec.s3_endpoint)
            if prefix is None:
                first = (service.get("output") or [None])[0]
                named = (f"its first output is {first.get('path')!r} on {first.get('storage_provider')!r}"
                         if isinstance(first, dict) else "it declares no output")
                raise Waiting("InvalidSpec", f"spec.outputs.prefix is required: OSCAR service {spec.service!r} "
                                             f"gives no default on the batch's storage and bucket "
                                             f"{declared.bucket!r} ({named}); set spec.outputs.prefix")
            spec = dataclasses.replace(spec, outputs=dataclasses.replace(declared, prefix=prefix))
        assert spec.outputs is not None and spec.outputs.prefix is not None
        if problem := spec.outputs_problem(spec.outputs.prefix):
            raise Waiting("InvalidSpec", problem)
        return spec

    @staticmethod
    def needs(service: dict[str, Any]) -> planner.Needs:
        try:
            return planner.Needs.parse(str(service.get("cpu") or "0"), str(service.get("memory") or "0"),
                                       gpus=1 if service.get("enable_gpu") else 0)
        except ValueError as error:
            raise Waiting("ServiceResourcesInvalid",
                          f"OSCAR service {service.get('name')!r} has unreadable resources: {error}") from None

    def s3_client(self, spec: BatchSpec) -> minio.Minio:
        if refused := self.endpoints.s3_refusal(spec.s3_endpoint):
            raise Waiting("EndpointNotAllowed", refused)
        keys = self.secret(spec.s3_secret, ("accessKey", "secretKey"))
        if not (keys.get("accessKey") and keys.get("secretKey")):
            raise Waiting("SecretIncomplete",
                          f"Secret {self.namespace}/{spec.s3_secret} needs keys `accessKey` and `secretKey`")
        return manifest.client(spec, keys["accessKey"], keys["secretKey"], pool_size=PEER_SHARE)


def _oscar_login(resolver: Resolver, cluster: ClusterSpec) -> tokens.Login:
    """What an OSCAR cluster's Secret says to log in with (`tokens.oscar_login`); refresh keys only with a token
    endpoint on the allow-list."""
    where = f"{resolver.namespace}/{cluster.secret}"
    try:
        login = tokens.oscar_login(resolver.secret(cluster.secret, tokens.OSCAR_SECRET_KEYS))
    except ValueError as error:
        raise Waiting("SecretIncomplete", f"Secret {where} {error}") from None
    refused = (resolver.endpoints.token_endpoint_refusal(login.token_endpoint, where)
               if isinstance(login, tokens.RefreshKeys) else None)
    if refused:
        raise Waiting("EndpointNotAllowed", refused)
    return login
