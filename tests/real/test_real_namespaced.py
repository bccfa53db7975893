"""The namespaced install (manifests/overlays/namespaced) against the real API server with RBAC enforced: Roles in a
batches namespace and a services namespace, no ClusterRole; the operator run as its ServiceAccount with both
`--namespace` flags and `--peering` gets no denial, reports a batch as the cluster-wide one does, and cannot
read a Secret anywhere else.

The overlay is rendered as a user would after setting its two namespaces (the literals of its kustomization),
into an operator namespace of its own: the session's cluster-wide install binds a ClusterRole to the
ServiceAccount of oscar-batch-system, which would grant everything this test must see refused.
"""
from __future__ import annotations

import pathlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from realplane import (
    KUBECTL,
    OPERATOR_NS,
    ROOT,
    ControlPlane,
    Process,
    create_credentials,
    rbac_denials,
    start_operator,
    subject,
    wait_for,
)
from test_real_crd import batch

ACCOUNT_NS = "oscar-batch-namespaced"   # where this test's operator ServiceAccount lives


@pytest.fixture(scope="module")
def scopes(installed: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(batches, services, elsewhere): three namespaces, the overlay installed for the first two."""
    plane = installed
    suffix = secrets.token_hex(3)
    batches, services, elsewhere = (f"ns-{what}-{suffix}" for what in ("batches", "services", "elsewhere"))
    for name in (batches, services, elsewhere):
        plane.kubectl("create", "namespace", name)
    copy = tmp_path_factory.mktemp("namespaced")
    for directory in ("crds", "manifests"):
        shutil.copytree(ROOT / directory, copy / directory)
    kustomization = copy / "manifests" / "overlays" / "namespaced" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("batches=default ", f"batches={batches} ")
                             .replace("services=oscar-svc ", f"services={services} "))
    rendered = subprocess.run([str(KUBECTL), "kustomize", str(kustomization.parent)], capture_output=True, text=True,
                              check=True, timeout=60).stdout
    plane.apply([_in_account_namespace(document) for document in yaml.safe_load_all(rendered)])
    wait_for(lambda: plane.kubectl("get", "serviceaccount", "oscar-batch-operator", "-n", ACCOUNT_NS,
                                   check=False).returncode == 0, 30, "the namespaced operator's ServiceAccount")
    try:
        yield batches, services, elsewhere
    finally:
        for name in (batches, services, elsewhere, ACCOUNT_NS):
            plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _in_account_namespace(document: dict[str, Any]) -> dict[str, Any]:
    metadata = document["metadata"]
    if document["kind"] == "Namespace" and metadata["name"] == OPERATOR_NS:
        metadata["name"] = ACCOUNT_NS
    if metadata.get("namespace") == OPERATOR_NS:
        metadata["namespace"] = ACCOUNT_NS
    for account in document.get("subjects") or ():
        account["namespace"] = ACCOUNT_NS
    return document


def can(plane: ControlPlane, verb: str, resource: str, namespace: str | None) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={subject(ACCOUNT_NS)}"]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    result = plane.kubectl(*args, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def test_the_roles_allow_the_two_namespaces_and_nothing_beyond(installed: ControlPlane,
                                                               scopes: tuple[str, str, str]) -> None:
    batches, services, elsewhere = scopes
    allowed = [("get", "secrets", batches), ("watch", "oscarbatchjobs.batch.oscarbatch.dev", batches),
               ("patch", "oscarbatchjobs.batch.oscarbatch.dev", batches), ("create", "events", batches),
               ("watch", "jobs.batch", services), ("list", "pods", services),
               ("watch", "oscarbatchjobs.batch.oscarbatch.dev", services),
               ("patch", "kopfpeerings.kopf.dev", batches), ("create", "kopfpeerings.kopf.dev", services)]
    denied = [("get", "secrets", services), ("get", "secrets", elsewhere), ("list", "secrets", batches),
              ("list", "nodes", None), ("list", "pods", None), ("list", "jobs.batch", None),
              ("list", "pods", elsewhere), ("watch", "oscarbatchjobs.batch.oscarbatch.dev", elsewhere),
              ("list", "namespaces", None), ("list", "customresourcedefinitions.apiextensions.k8s.io", None),
              ("patch", "clusterkopfpeerings.kopf.dev", None), ("create", "jobs.batch", services)]
    assert [rule for rule in allowed if not can(installed, *rule)] == []
    assert [rule for rule in denied if can(installed, *rule)] == []


@pytest.fixture
def operator(installed: ControlPlane, scopes: tuple[str, str, str], tmp_path: pathlib.Path) -> Iterator[Process]:
    batches, services, _ = scopes
    process = start_operator(installed, tmp_path, "--namespace", batches, "--namespace", services,
                             "--peering", "oscar-batch", account_namespace=ACCOUNT_NS)
    try:
        yield process
    finally:
        process.stop()


def _reason(plane: ControlPlane, namespace: str, name: str) -> str | None:
    conditions = (plane.get_json("oscarbatchjobs", name, "-n", namespace).get("status") or {}).get("conditions")
    return next((c.get("reason") for c in conditions or () if c.get("type") == "Progressing"), None)


def test_the_namespaced_operator_reports_a_batch_and_cannot_read_secrets_elsewhere(
        installed: ControlPlane, scopes: tuple[str, str, str], operator: Process) -> None:
    plane = installed
    batches, services, elsewhere = scopes
    obj = batch("namespaced-install")
    obj["spec"]["oscar"]["endpoint"] = "http://127.0.0.1:9"   # the discard port: nothing listens there
    obj["spec"]["storage"]["endpoint"] = "http://127.0.0.1:9"
    plane.apply(obj, "-n", batches)
    assert wait_for(lambda: _reason(plane, batches, "namespaced-install")
                    == "SecretNotFound", 60, "the operator to report the missing Secret", alive=[operator])
    for namespace in (batches, elsewhere):
        create_credentials(plane, namespace, "oscar-credentials", {"username": "oscar", "password": "secret"})
        create_credentials(plane, namespace, "minio-credentials", {"accessKey": "ak", "secretKey": "sk"})
    assert wait_for(lambda: _reason(plane, batches, "namespaced-install") == "OscarUnavailable", 60,
                    "the operator to report OSCAR unreachable", alive=[operator])

    # kopf's peers of a namespaced operator: a KopfPeering in each namespace, made by the operator and kept alive.
    for namespace in (batches, services):
        assert wait_for(lambda ns=namespace: (plane.get_json("kopfpeerings", "oscar-batch", "-n", ns)
                                              .get("status")), 30, f"a keep-alive in {namespace}")

    user = subject(ACCOUNT_NS)
    assert plane.request(f"/api/v1/namespaces/{batches}/secrets/oscar-credentials", user=user)[0] == 200
    assert plane.request(f"/api/v1/namespaces/{elsewhere}/secrets/oscar-credentials", user=user)[0] == 403
    assert plane.request("/api/v1/nodes", user=user)[0] == 403
    assert not rbac_denials(operator, ACCOUNT_NS), rbac_denials(operator, ACCOUNT_NS)[:3]
