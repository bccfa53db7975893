"""The real OSCAR Manager (built by tools/real/oscar.sh) against the real tier's control plane.

OSCAR reaches Kubernetes only in-cluster (`rest.InClusterConfig()`): KUBERNETES_SERVICE_HOST/PORT and the token,
CA and namespace at the fixed paths /var/run/secrets/kubernetes.io/serviceaccount/. So it runs in a private mount
namespace (`unshare --mount --propagation private`) held by a sleeping process: a tmpfs on /run (`/var/run` links
to it; `mount -n`, so that nothing is written to the machine's /run/mount) carries a real token of OSCAR's own
ServiceAccount `oscar/oscar-sa`, bound by OSCAR's own RBAC (deploy/yaml of its source), and a private /etc/hosts
is bind-mounted so that `oscar.oscar` (the webhook OSCAR registers in MinIO) is 127.0.0.1. MinIO and OSCAR are
started in that namespace with `nsenter`, so OSCAR can be stopped and started again on its own.

What a bare control plane lacks for OSCAR is stood in for: a CRD `nodes.metrics.k8s.io` with one NodeMetrics per
Node (metrics-server), a Deployment `oscar/oscar` (its own, read by /system/status) and a PV + PVC `oscar-pvc`
created bound (no PV controller runs), which every Job's pod mounts.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
import secrets
import urllib.error
import urllib.request
from typing import Any

from realplane import (
    BIN_DIR,
    ControlPlane,
    Minio,
    Process,
    free_port,
    require,
    start_minio,
    unavailable,
    wait_for,
)

OSCAR_NAMESPACE = "oscar"
OSCAR_SA = "oscar-sa"
SERVICES_NAMESPACE = "oscar-svc"
SA_DIR = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run/secrets/… through the /var/run link
DEPLOY_DIR = BIN_DIR / "oscar-deploy"  # OSCAR's deploy/yaml, copied there by tools/real/oscar.sh

NODE_METRICS_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    # metrics.k8s.io is a protected group: a CRD in it needs this annotation.
    "metadata": {"name": "nodes.metrics.k8s.io",
                 "annotations": {"api-approved.kubernetes.io": "unapproved, a stand-in for metrics-server"}},
    "spec": {
        "group": "metrics.k8s.io", "scope": "Cluster",
        "names": {"plural": "nodes", "singular": "nodemetrics", "kind": "NodeMetrics", "listKind": "NodeMetricsList"},
        "versions": [{"name": "v1beta1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {
                "timestamp": {"type": "string"}, "window": {"type": "string"},
                "usage": {"type": "object", "additionalProperties": {"x-kubernetes-int-or-string": True}}}}}}],
    },
}


def node_metrics(name: str, cpu: str = "0", memory: str = "0") -> dict[str, Any]:
    """What metrics-server would serve for a node: here, whatever the test says is used (nothing by default)."""
    return {"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics", "metadata": {"name": name},
            "timestamp": "2026-01-01T00:00:00Z", "window": "20s", "usage": {"cpu": cpu, "memory": memory}}


def sync_node_metrics(plane: ControlPlane) -> None:
    """One NodeMetrics per Node, as metrics-server keeps them; none for a Node that is gone."""
    nodes = {item["metadata"]["name"] for item in plane.get_json("nodes")["items"]}
    metrics = {item["metadata"]["name"] for item in plane.get_json("nodes.metrics.k8s.io")["items"]}
    if nodes - metrics:
        plane.apply([node_metrics(name) for name in sorted(nodes - metrics)])
    if metrics - nodes:
        plane.kubectl("delete", "nodes.metrics.k8s.io", *sorted(metrics - nodes), "--ignore-not-found")


def prepare_cluster(plane: ControlPlane) -> None:
    """OSCAR's namespaces and RBAC from its source, and the stand-ins it needs in a bare control plane."""
    for name in ("oscar-namespaces.yaml", "oscar-rbac.yaml"):
        plane.kubectl("apply", "--validate=true", "-f", str(DEPLOY_DIR / name))
    plane.apply(NODE_METRICS_CRD)
    plane.kubectl("wait", "--for=condition=Established", "crd/nodes.metrics.k8s.io", "--timeout=60s")
    plane.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": "oscar", "namespace": OSCAR_NAMESPACE, "labels": {"app": "oscar"}},
                 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "oscar"}}, "template": {
                     "metadata": {"labels": {"app": "oscar"}},
                     # No deployment controller runs: this Deployment never gets a pod.
                     "spec": {"containers": [{"name": "oscar", "image": "ghcr.io/grycap/oscar:stand-in"}]}}}})
    # Bound from the start, as the PV controller would bind them: the Jobs' pods are schedulable only then.
    plane.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "oscar-pv"}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "hostPath": {"path": "/tmp/oscar-pv"},
        "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": SERVICES_NAMESPACE,
                     "name": "oscar-pvc"}}})
    plane.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {
        "name": "oscar-pvc", "namespace": SERVICES_NAMESPACE,
        "annotations": {"pv.kubernetes.io/bind-completed": "yes"}}, "spec": {
        "accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "",
        "volumeName": "oscar-pv"}})
    plane.kubectl("patch", "pv", "oscar-pv", "--subresource=status", "--type=merge",
                  "-p", json.dumps({"status": {"phase": "Bound"}}))
    plane.kubectl("patch", "pvc", "oscar-pvc", "-n", SERVICES_NAMESPACE, "--subresource=status", "--type=merge",
                  "-p", json.dumps({"status": {"phase": "Bound", "accessModes": ["ReadWriteMany"],
                                               "capacity": {"storage": "1Gi"}}}))
    wait_for(lambda: plane.request(f"/api/v1/namespaces/{SERVICES_NAMESPACE}/serviceaccounts/default")[0] == 200,
             60, f"ServiceAccount {SERVICES_NAMESPACE}/default", alive=plane.processes)


class MountNamespace:
    """A private mount namespace held open by a sleeping process: /run on a tmpfs with the ServiceAccount's
    files at SA_DIR, and /etc/hosts replaced. `wrap(argv)` runs a command inside it."""

    def __init__(self, directory: pathlib.Path, files: dict[str, str], hosts: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        staged = directory / "serviceaccount"
        staged.mkdir(mode=0o700, exist_ok=True)
        for name, content in files.items():
            path = staged / name
            path.write_text(content)
            path.chmod(0o600)
        (directory / "hosts").write_text(hosts)
        ready = directory / "ready"
        script = (f"set -e; mount -n -t tmpfs -o mode=0755 tmpfs /run; mkdir -p {SA_DIR}; "
                  f"cp {staged}/* {SA_DIR}/; mount -n --bind {directory / 'hosts'} /etc/hosts; "
                  f"touch {ready}; exec sleep infinity")
        self.process = Process("mount namespace", ["unshare", "--mount", "--propagation", "private",
                                                   "sh", "-c", script], directory / "namespace.log")
        try:
            wait_for(ready.exists, 30, "the private mount namespace", alive=[self.process])
        except BaseException:
            self.process.stop()
            raise

    def wrap(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--target={self.process.popen.pid}", "--mount", "--", *argv]

    def stop(self) -> None:
        self.process.stop()


@dataclasses.dataclass
class RealOscar:
    """The OSCAR Manager process, restartable, and a small HTTP client of it (no retries, every status)."""
    url: str
    username: str
    password: str
    minio: Minio
    namespace: MountNamespace
    argv: list[str]
    env: dict[str, str]
    directory: pathlib.Path
    process: Process | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        self.process = Process("oscar-manager", self.namespace.wrap(self.argv),
                               self.directory / f"oscar-manager-{self.starts}.log", env=self.env)
        wait_for(lambda: self.call("GET", "/health", auth=None)[0] == 200, 60, "OSCAR /health",
                 alive=[self.process])

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self, **env: str | None) -> None:
        """Stop and start again, with `env` changed (None removes a variable)."""
        self.stop()
        for key, value in env.items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self.start()

    def basic(self, username: str | None = None, password: str | None = None) -> str:
        pair = f"{username or self.username}:{password or self.password}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def call(self, method: str, path: str, *, auth: str | None = "basic", body: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes]:
        """(status, body). `auth`: "basic" (the cluster's credentials), None, or an Authorization header value."""
        all_headers = dict(headers or {})
        if auth is not None:
            all_headers["Authorization"] = self.basic() if auth == "basic" else auth
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 0, b""

    def create_service(self, definition: dict[str, Any]) -> dict[str, Any]:
        """POST /system/services (registers the MinIO webhook and restarts MinIO: ~7 s), then the stored definition."""
        status, body = self.call("POST", "/system/services", body=json.dumps(definition).encode(),
                                 headers={"Content-Type": "application/json"}, timeout=120)
        assert status == 201, (status, body[:500], self.tail())
        status, body = self.call("GET", f"/system/services/{definition['name']}")
        assert status == 200, (status, body[:500])
        return json.loads(body)

    def tail(self) -> str:
        return self.process.tail() if self.process is not None else ""

    def logs(self) -> str:
        """The output of every start so far."""
        return "".join(path.read_text(errors="replace")
                       for path in sorted(self.directory.glob("oscar-manager-*.log")))


def service_request(name: str, cpu: str = "1", memory: str = "1Gi") -> dict[str, Any]:
    """A POST /system/services body: a plain service (no bucket mount, so no privileged sidecar) with an input
    and an output bucket of its own, as services are usually written; the batch names its own bucket."""
    return {"name": name, "image": "ghcr.io/grycap/oscar-batch-fish-detector:real-tier",
            "script": "#!/bin/sh\necho \"$EVENT\"\n", "cpu": cpu, "memory": memory,
            "input": [{"storage_provider": "minio.default", "path": f"{name}-in"}],
            "output": [{"storage_provider": "minio.default", "path": f"{name}-out"}]}


def start_oscar(plane: ControlPlane, directory: pathlib.Path) -> RealOscar:
    """MinIO and the OSCAR Manager in a private mount namespace, against `plane` (which must run the scheduler and
    controller manager: the ServiceAccount token controller and the Job controller)."""
    binary = require("oscar-manager", "minio")["oscar-manager"]
    missing = [name for name in ("oscar-namespaces.yaml", "oscar-rbac.yaml") if not (DEPLOY_DIR / name).exists()]
    if missing:
        unavailable([f"oscar-deploy/{name}" for name in missing])
    prepare_cluster(plane)
    token = plane.kubectl("create", "token", OSCAR_SA, "-n", OSCAR_NAMESPACE, "--duration=2h").stdout.strip()
    namespace = MountNamespace(directory / "mountns", {
        "token": token, "ca.crt": plane.pki.ca_cert.read_text(), "namespace": OSCAR_NAMESPACE},
        hosts="127.0.0.1 localhost\n127.0.0.1 oscar.oscar oscar.oscar.svc oscar.oscar.svc.cluster.local\n")
    minio: Minio | None = None
    try:
        minio = start_minio(directory / "minio", wrap=namespace.wrap)
        port = free_port()
        host, api_port = plane.url.removeprefix("https://").rsplit(":", 1)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory),
               "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": api_port,
               "OSCAR_USERNAME": "oscar", "OSCAR_PASSWORD": secrets.token_urlsafe(12),
               "MINIO_ACCESS_KEY": minio.access_key, "MINIO_SECRET_KEY": minio.secret_key,
               "MINIO_ENDPOINT": minio.url, "MINIO_REGION": "us-east-1", "MINIO_TLS_VERIFY": "false",
               "OSCAR_SERVICE_PORT": str(port), "GIN_MODE": "release",
               # A plain cluster: no Kueue controller, no managed volumes.
               "KUEUE_ENABLE": "false", "VOLUME_ENABLE": "false"}
        oscar = RealOscar(f"http://127.0.0.1:{port}", env["OSCAR_USERNAME"], env["OSCAR_PASSWORD"], minio, namespace,
                          [str(binary)], env, directory)
        oscar.start()
    except BaseException:
        if minio is not None:
            minio.process.stop()
        namespace.stop()
        raise
    return oscar


def stop_oscar(oscar: RealOscar) -> None:
    oscar.stop()
    oscar.minio.process.stop()
    oscar.namespace.stop()
