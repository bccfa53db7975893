"""Tenants kept apart, end to end: the operator (`oscar-batch run`, real kopf) against the sandbox, with stub HTTP
peers (tests/stub_peer.py) that record what reaches them.

Whoever may create an OscarBatchJob chooses its Secrets and endpoints: only Secrets labelled as opted in are
used, only allow-listed endpoints are contacted, and nothing is sent before both hold. Only Jobs in the
service's namespace, labelled with its service and carrying the batch's full UID, settle a batch's lines. A 500
from OSCAR is "already exists" only in OSCAR's exact words.
"""
from __future__ import annotations

import json
from typing import Any

import yaml

from harness import Harness
from oscar_batch.core import invocation
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from oscar_batch_sandbox.handoff import CREDENTIALS_LABELS
from oscar_batch_sandbox.runner import succeeded_job_status
from stub_peer import StubPeer
from support import kubectl, wait_until
from test_lifecycle_e2e import condition, wait_for_event, wait_for_reason

FAST = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, seed=3)
SERVICE_TOKEN = "0f" * 32


def config(**overrides: Any) -> SandboxConfig:
    return SandboxConfig(**{"items": 10, "bucket": "tenancy", "behaviour": FAST, **overrides})


def apply_secret(harness: Harness, name: str, values: dict[str, str], *, labels: dict[str, str] | None = None,
                 kind: str = "Opaque") -> None:
    metadata: dict[str, Any] = {"name": name, "namespace": "default"}
    if labels:
        metadata["labels"] = labels
    path = harness.tmp_path / f"secret-{name}.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": metadata,
                                    "stringData": values}))
    kubectl(harness.kubeconfig, "apply", "--validate=false", "-f", str(path))


def message_of(batch: dict[str, Any]) -> str:
    return (condition(batch, "Progressing") or {}).get("message", "")


def test_a_batch_naming_a_secret_that_did_not_opt_in_sends_nothing_anywhere(tmp_path):
    with StubPeer() as oscar, Harness(config(), tmp_path) as harness:
        # A ServiceAccount's token, even labelled: the classic way out of a namespace.
        apply_secret(harness, "builder-token", {"token": "sa-token-value"}, labels=CREDENTIALS_LABELS,
                     kind="kubernetes.io/service-account-token")
        apply_secret(harness, "team-db", {"accessKey": "db-user", "secretKey": "db-password"})   # not opted in
        harness.apply("sa-token", oscar={"endpoint": oscar.url, "credentialsSecret": "builder-token"})
        harness.apply("unlabelled", oscar={"endpoint": oscar.url}, storage={"credentialsSecret": "team-db"})

        refused = wait_for_reason(harness, "SecretNotAllowed", name="sa-token")
        assert "holds a ServiceAccount token" in message_of(refused)
        unlabelled = wait_for_reason(harness, "SecretNotAllowed", name="unlabelled")
        assert "default/team-db is not labelled batch.oscarbatch.dev/credentials=true" in message_of(unlabelled)
        for name in ("sa-token", "unlabelled"):
            wait_for_event(harness, "SecretNotAllowed", name)
            assert harness.batch(name)["status"]["reason"] == "SecretNotAllowed"
        # The second batch's OSCAR Secret is usable, and still nothing went to OSCAR: the S3 one is not.
        assert oscar.requests == []

        # Opting in is all it takes (the batch is retried at once when edited; here it backs off and retries).
        apply_secret(harness, "team-db", {"accessKey": "db-user", "secretKey": "db-password"},
                     labels=CREDENTIALS_LABELS)
        wait_until(lambda: oscar.requests, timeout=30, message="the batch to use the Secret once it opted in")
        assert "sa-token-value" not in json.dumps(harness.batch("sa-token")) + json.dumps(harness.events(
            "SecretNotAllowed"))


def test_endpoints_outside_the_allow_list_are_refused_without_a_connection(tmp_path):
    with StubPeer() as peer, Harness(config(), tmp_path) as harness:
        port = peer.server_address[1]
        # The operator allows 127.0.0.1 (the harness's --allow-oscar/--allow-s3 127.0.0.1:*); the same stub under
        # another name is another host.
        harness.apply("other-oscar", oscar={"endpoint": f"http://localhost:{port}"})
        harness.apply("other-s3", oscar={"endpoint": peer.url}, storage={"endpoint": f"http://localhost:{port}"})
        # Query, fragment and user info are refused as such, whatever the host.
        harness.apply("query", oscar={"endpoint": f"{peer.url}/?x=1"})
        harness.apply("userinfo", oscar={"endpoint": f"http://user:pw@127.0.0.1:{port}"})

        for name, field in (("other-oscar", "oscar.endpoint"), ("other-s3", "storage.endpoint")):
            batch = wait_for_reason(harness, "EndpointNotAllowed", name=name)
            assert f"spec.{field} 'http://localhost:{port}' names a host this operator may not send credentials " \
                   "to (its --allow-" in message_of(batch)
            wait_for_event(harness, "EndpointNotAllowed", name)
        for name in ("query", "userinfo"):
            assert "without user info, query or fragment" in message_of(wait_for_reason(harness, "InvalidSpec",
                                                                                       name=name))
        assert "http://[redacted]@127.0.0.1" in message_of(harness.batch("userinfo"))
        assert "pw" not in json.dumps(harness.batch("userinfo").get("status"))
        assert peer.requests == []


def forged_job(name: str, namespace: str, service: str, event: dict[str, Any]) -> dict[str, Any]:
    """A Job made by hand to look like one of the operator's, finished. Suspended, so that the sandbox's job
    runner leaves it alone: nothing of its service ever runs."""
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": {"oscar_service": service}},
            "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "oscar-container", "image": "evil",
                 "env": [{"name": "EVENT", "value": json.dumps(event)}]}]}}}}


def test_forged_and_foreign_jobs_settle_no_line(tmp_path):
    sandbox_config = config()
    service, services = sandbox_config.service, sandbox_config.services_namespace
    with Harness(sandbox_config, tmp_path) as harness:
        harness.apply(suspend=True, itemsPerInvocation=2)
        batch = wait_for_reason(harness, "Suspended")
        uid = batch["metadata"]["uid"]

        def event(start: int, end: int, attempt: int = 1, batch_uid: str = uid) -> dict[str, Any]:
            return invocation.payload(start=start, end=end, bucket=sandbox_config.bucket, manifest_key="x",
                                      batch_uid=batch_uid, batch="default/batch", attempt=attempt)

        same_prefix = uid[:-4] + ("0000" if not uid.endswith("0000") else "1111")
        forged = [
            # another namespace, the very name and EVENT the operator's Job for lines 1-2 will have
            forged_job(invocation.job_name(service, uid, 1, 3, 1), "default", service, event(1, 3)),
            # the service's namespace, a name of the batch, an EVENT of another batch with the same UID prefix
            forged_job(invocation.job_name(service, uid, 3, 5, 7), services, service, event(3, 5, 7, same_prefix)),
            # the service's namespace, the batch's full UID, but labelled with another service
            forged_job(f"{service}-forged", services, "other-service", event(5, 7)),
            # a name claiming lines 7-8, an EVENT that says otherwise
            forged_job(invocation.job_name(service, uid, 7, 9, 3), services, service, event(9, 11, 3)),
        ]
        for job in forged:
            metadata = job["metadata"]
            harness.sandbox.call(lambda job=job: harness.sandbox.kube.create("batch/v1/jobs", job))
            harness.sandbox.call(lambda metadata=metadata: harness.sandbox.kube.patch(
                "batch/v1/jobs", metadata["namespace"], metadata["name"],
                {"status": succeeded_job_status("2026-12-01T00:00:00Z")}))

        harness.apply(suspend=False, itemsPerInvocation=2)
        done = harness.wait_for_phase("Succeeded", "Failed", timeout=90)
        assert done["status"]["phase"] == "Succeeded"
        # Every line ran in the service, each once: had a forged Job settled lines, their inputs would have no
        # output (the job runner writes one per input it processes).
        outputs = harness.objects(sandbox_config.behaviour.output_prefix)
        assert len(outputs) == sandbox_config.items
        lines = sorted(line for job in harness.jobs() if not job["spec"].get("suspend") for line in _lines(job))
        assert lines == list(range(1, sandbox_config.items + 1))


def _lines(job: dict[str, Any]) -> range:
    identity = invocation.identify(job)
    assert identity is not None, job["metadata"]["name"]
    return range(identity.start, identity.end)


def stub_oscar(service: str, invoke_answer: tuple[int, str]) -> StubPeer:
    """An OSCAR with one service whose every invocation gets `invoke_answer`."""
    return StubPeer({
        ("GET", f"/system/services/{service}"): (200, {"name": service, "token": SERVICE_TOKEN, "cpu": "1",
                                                        "memory": "1Gi", "namespace": "oscar-svc"}),
        ("POST", f"/job/{service}"): invoke_answer,
        ("GET", f"/system/logs/{service}"): (200, {"jobs": {}}),
    })


def test_a_plain_500_is_no_acceptance_even_for_a_service_called_exist(tmp_path):
    service = "exist-fish"
    # OSCAR's text for a failed invocation, with a credential in it that must not reach status or Events.
    answer = (500, f"error ensuring credentials for user oscar: Bearer {SERVICE_TOKEN} rejected")
    with stub_oscar(service, answer) as oscar, Harness(config(), tmp_path) as harness:
        harness.apply(service=service, oscar={"endpoint": oscar.url}, itemsPerInvocation=2)
        harness.start_sampling()
        # Several refusals, each followed by the backoff: had one been taken as accepted, its range would run
        # (status says so) and, unseen after --unseen-job-timeout (2 s), be declared lost.
        wait_until(lambda: oscar.count("POST", f"/job/{service}") >= 4, timeout=60, message="four invocations")
        batch = wait_for_reason(harness, "InvocationFailed")
        assert "OSCAR answered 500: error ensuring credentials for user oscar: Bearer [redacted] rejected" in \
            message_of(batch)
        assert all(sample.status.get("invocations", {}).get("running", 0) == 0 for sample in harness.samples)
        assert harness.events("InvocationLost") == []
        assert SERVICE_TOKEN not in json.dumps(harness.batch()) + json.dumps(harness.events("InvocationFailed"))
