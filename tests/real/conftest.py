"""The real tier: etcd and kube-apiserver (and kube-scheduler, kube-controller-manager) on localhost.

envtest-style: real binaries built from their Go modules by tools/real/build.sh into ~/.cache/oscar-batch/real/bin/,
started here on random free loopback ports in temporary directories, with self-signed serving certificates,
token authentication (`--token-auth-file`) and `--authorization-mode=RBAC`.

Without the binaries every test here is skipped with the reason, so `make test` stays green on a machine
that has not built them; `make test-real` builds them and sets OSCAR_REAL_REQUIRED=1, which turns that skip
into a failure.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from realoscar import RealOscar, service_request, start_oscar, stop_oscar
from realplane import (
    ROOT,
    ControlPlane,
    Minio,
    install_operator,
    require,
    start_components,
    start_control_plane,
    start_minio,
    stop_all,
)

# ---- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver, token authentication, RBAC; `real_plane.kubeconfig` is the admin's."""
    require("etcd", "kube-apiserver")
    directory = tmp_path_factory.mktemp("real-plane")
    plane = start_control_plane(directory)
    try:
        yield plane
    finally:
        stop_all(plane.processes)
        if os.environ.get("OSCAR_REAL_KEEP", "") in ("", "0"):
            shutil.rmtree(directory / "etcd", ignore_errors=True)


@pytest.fixture(scope="session")
def real_crd(real_plane: ControlPlane) -> str:
    """crds/batchjob.yaml applied and Established; the CRD's name."""
    real_plane.kubectl("apply", "--validate=true", "-f", str(ROOT / "crds" / "batchjob.yaml"))
    name = "oscarbatchjobs.batch.oscarbatch.dev"
    real_plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    return name


@pytest.fixture(scope="session")
def real_cluster(real_plane: ControlPlane) -> Iterator[ControlPlane]:
    """The control plane plus kube-scheduler and kube-controller-manager."""
    processes = start_components(real_plane)
    real_plane.processes.extend(processes)
    try:
        yield real_plane
    finally:
        stop_all(processes)
        for process in processes:
            real_plane.processes.remove(process)


@pytest.fixture
def namespace(real_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    real_plane.kubectl("create", "namespace", name)
    yield name
    real_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def real_minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minio]:
    """A MinIO server built from its module: the real tier's S3, in place of moto."""
    require("minio")
    server = start_minio(tmp_path_factory.mktemp("real-minio"))
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture(scope="session")
def installed(real_plane: ControlPlane, real_crd: str) -> ControlPlane:
    """manifests/ applied with kustomize: the operator's Namespace, ServiceAccount, ClusterRole and binding."""
    install_operator(real_plane)
    return real_plane


@pytest.fixture(scope="session")
def real_oscar(real_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealOscar]:
    """The real OSCAR Manager (and a MinIO of its own) in a private mount namespace, as OSCAR's ServiceAccount."""
    oscar = start_oscar(real_cluster, tmp_path_factory.mktemp("real-oscar"))
    try:
        yield oscar
    finally:
        stop_oscar(oscar)


# The service every real-OSCAR test invokes: one invocation per core, as the sandbox's fish detector.
REAL_SERVICE = "fish-detector"


@pytest.fixture(scope="session")
def real_oscar_service(real_oscar: RealOscar) -> dict[str, Any]:
    """A service created through the real OSCAR's POST /system/services (basic auth); its stored definition."""
    return real_oscar.create_service(service_request(REAL_SERVICE))
