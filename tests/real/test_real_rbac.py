"""Authentication and RBAC for real: tokens, the operator's least-privilege ClusterRole, the operator as its SA.

`kubectl apply -k manifests/` installs what a user installs; the operator then runs with a token the API server
issued to its ServiceAccount (TokenRequest), so every request it makes is authorized by the ClusterRole of
manifests/base/rbac.yaml and nothing else.
"""
from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from realplane import OPERATOR_SUBJECT as SUBJECT
from realplane import ControlPlane, Process, create_credentials, rbac_denials, start_operator, wait_for
from test_real_crd import batch

from oscar_batch_sandbox import kueue


def test_tokens_are_required_and_rbac_denies_by_default(real_plane: ControlPlane) -> None:
    assert real_plane.request("/api/v1/namespaces")[0] == 200
    assert real_plane.request("/api/v1/namespaces", user="nobody")[0] == 403
    real_plane.tokens["forged"] = "not-a-token-of-the-file"
    try:
        assert real_plane.request("/api/v1/namespaces", user="forged")[0] == 401
    finally:
        del real_plane.tokens["forged"]
    denied = real_plane.kubectl("get", "pods", "-n", "default", user="nobody", check=False)
    assert denied.returncode != 0 and 'User "nobody" cannot list resource "pods"' in denied.stderr, denied.stderr


def can(plane: ControlPlane, verb: str, resource: str, namespace: str | None = "default",
        subresource: str | None = None) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={SUBJECT}"]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    if subresource:
        args.append(f"--subresource={subresource}")
    result = plane.kubectl(*args, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


# What the operator does (kopf included) and what it must not be able to do.
ALLOWED = [
    ("list", "oscarbatchjobs.batch.oscarbatch.dev", None, None),
    ("watch", "oscarbatchjobs.batch.oscarbatch.dev", None, None),
    ("patch", "oscarbatchjobs.batch.oscarbatch.dev", "default", None),
    ("patch", "oscarbatchjobs.batch.oscarbatch.dev", "default", "status"),
    ("list", "nodes", None, None),
    ("list", "pods", None, None),
    ("watch", "jobs.batch", "oscar-svc", None),
    ("list", "jobs.batch", None, None),                   # the Jobs watch lists cluster-wide first
    ("get", "localqueues.kueue.x-k8s.io", "oscar-alice", None),   # an owner's Kueue quota
    ("get", "clusterqueues.kueue.x-k8s.io", None, None),
    ("get", "secrets", "default", None),
    ("create", "events", "default", None),
    ("create", "events.events.k8s.io", "default", None),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", None, None),
]
DENIED = [
    ("list", "secrets", "default", None),  # named Secrets only, never a listing of them all
    ("watch", "secrets", "default", None),
    ("create", "jobs.batch", "oscar-svc", None),  # OSCAR creates the Jobs, not the operator
    ("delete", "pods", "oscar-svc", None),
    ("create", "oscarbatchjobs.batch.oscarbatch.dev", "default", None),
    ("delete", "oscarbatchjobs.batch.oscarbatch.dev", "default", None),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", None, None),
    ("patch", "nodes", None, None),
    ("create", "pods", "default", None),
    ("patch", "clusterqueues.kueue.x-k8s.io", None, None),   # reads quotas, never changes them
]


@pytest.fixture(scope="module")
def with_kueue(installed: ControlPlane) -> ControlPlane:
    """Kueue's queue kinds served, as in a cluster running OSCAR v4 with Kueue: kubectl resolves only served kinds."""
    for crd in kueue.crds():
        installed.apply(crd)
    for crd in kueue.crds():
        installed.kubectl("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}", "--timeout=60s")
    return installed


@pytest.mark.parametrize(("verb", "resource", "namespace", "subresource"),
                         [pytest.param(*rule, id=f"{rule[0]}-{rule[1]}{'-' + rule[3] if rule[3] else ''}")
                          for rule in ALLOWED])
def test_operator_role_allows(with_kueue: ControlPlane, verb: str, resource: str, namespace: str | None,
                              subresource: str | None) -> None:
    assert can(with_kueue, verb, resource, namespace, subresource)


@pytest.mark.parametrize(("verb", "resource", "namespace", "subresource"),
                         [pytest.param(*rule, id=f"{rule[0]}-{rule[1]}") for rule in DENIED])
def test_operator_role_denies(installed: ControlPlane, verb: str, resource: str, namespace: str | None,
                              subresource: str | None) -> None:
    assert not can(installed, verb, resource, namespace, subresource)


@pytest.fixture
def operator(installed: ControlPlane, tmp_path: pathlib.Path) -> Iterator[Process]:
    """`oscar-batch run` authenticated by a token the API server issued to the operator's ServiceAccount."""
    process = start_operator(installed, tmp_path)
    try:
        yield process
    finally:
        process.stop()


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") == kind), None)


def test_operator_works_under_its_own_service_account(installed: ControlPlane, operator: Process,
                                                      namespace: str) -> None:
    """A batch whose Secrets are missing, then whose OSCAR is down: each is read and reported, nothing is denied."""
    plane = installed
    obj = batch("least-privilege")
    obj["spec"]["oscar"]["endpoint"] = "http://127.0.0.1:9"  # the discard port: nothing listens there
    obj["spec"]["storage"]["endpoint"] = "http://127.0.0.1:9"
    plane.apply(obj, "-n", namespace)

    def reason() -> str | None:
        current = plane.get_json("oscarbatchjobs", "least-privilege", "-n", namespace)
        condition = _condition(current, "Progressing")
        return condition and condition.get("reason")

    assert wait_for(lambda: reason() == "SecretNotFound", 60, "the operator to report the missing Secret",
                    alive=[operator])
    events = plane.get_json("events", "-n", namespace, "--field-selector",
                            "involvedObject.name=least-privilege")["items"]
    assert any(event["reason"] == "SecretNotFound" for event in events), [e["reason"] for e in events]
    # kopf's finalizer went in through the operator's patch permission.
    finalizers = plane.get_json("oscarbatchjobs", "least-privilege", "-n", namespace)["metadata"].get("finalizers")
    assert finalizers, "no finalizer: kopf could not patch the batch"

    # Both Secrets: nothing is sent to OSCAR before the S3 credentials are known to be usable too.
    create_credentials(plane, namespace, "oscar-credentials", {"username": "oscar", "password": "secret"})
    create_credentials(plane, namespace, "minio-credentials", {"accessKey": "ak", "secretKey": "sk"})
    assert wait_for(lambda: reason() == "OscarUnavailable", 60, "the operator to report OSCAR unreachable",
                    alive=[operator])

    assert not rbac_denials(operator), operator.tail()


def test_operator_watching_named_namespaces_is_not_denied(installed: ControlPlane, namespace: str,
                                                          tmp_path: pathlib.Path) -> None:
    plane = installed
    obj = batch("namespaced")
    obj["spec"]["oscar"]["endpoint"] = "http://127.0.0.1:9"
    plane.apply(obj, "-n", namespace)
    operator = start_operator(plane, tmp_path, "--namespace", namespace)
    try:
        def picked_up_or_denied() -> bool:
            condition = _condition(plane.get_json("oscarbatchjobs", "namespaced", "-n", namespace), "Progressing")
            return bool(rbac_denials(operator)) or (condition or {}).get("reason") == "SecretNotFound"

        # Denied at once today (kopf then retries for about a minute before it falls back); picked up in seconds
        # once the ClusterRole lets it list and watch Namespaces.
        wait_for(picked_up_or_denied, 60, "the operator to pick the batch up or be denied", alive=[operator])
        assert not rbac_denials(operator), rbac_denials(operator)[:1]
    finally:
        operator.stop()
