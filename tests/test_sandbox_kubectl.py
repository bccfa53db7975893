"""Real kubectl against the sandbox's Kubernetes API: what a user of the sandbox types."""
from __future__ import annotations

import json
import pathlib
import re

from oscar_batch_sandbox.kmock_extension import sees
from support import kubectl, table_rows, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[1]

BATCH = """\
apiVersion: batch.oscarbatch.dev/v1alpha1
kind: OscarBatchJob
metadata:
  name: {name}
spec:
  service: fish-detector
  oscar: {{endpoint: "http://oscar.invalid", credentialsSecret: oscar-auth}}
  storage: {{endpoint: "http://s3.invalid", credentialsSecret: s3-auth, bucket: fish-detector}}
"""

# A running batch as the operator reports it, with Kueue holding Jobs back.
STATUS = {"phase": "Running", "progress": "3/10", "parallelism": 4, "reason": "WaitingForKueue",
          "items": {"total": 250, "failed": 1}, "invocations": {"running": 4}, "startTime": "2026-12-01T00:00:00Z"}


def test_fields_the_crd_does_not_name_are_pruned_as_the_api_server_prunes_them(kubeconfig, tmp_path):
    """Without strict validation a real API server drops unknown fields of a custom resource, in its spec on
    apply and in its status on a /status patch; the sandbox does too, so a field the CRD lacks shows here."""
    manifest = tmp_path / "batch.yaml"
    manifest.write_text(BATCH.format(name="pruned") + "  paralelism: 4\n")
    kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifest))
    kubectl(kubeconfig, "patch", "obatch", "pruned", "--subresource=status", "--type=merge", "-p", json.dumps(
        {"status": {"phase": "Running", "redriveRound": 3, "items": {"total": 5, "overlooked": 1},
                    "kopf": {"progress": {"anything": {"goes": True}}}}}))
    obj = json.loads(kubectl(kubeconfig, "get", "oscarbatchjob", "pruned", "-o", "json").stdout)
    assert "paralelism" not in obj["spec"] and obj["spec"]["service"] == "fish-detector"
    assert obj["status"] == {"phase": "Running", "items": {"total": 5},
                             "kopf": {"progress": {"anything": {"goes": True}}}}
    kubectl(kubeconfig, "delete", "oscarbatchjob", "pruned")


def test_get_nodes_lists_the_simulated_nodes(kubeconfig):
    table = kubectl(kubeconfig, "get", "nodes").stdout
    assert table.split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    for name in ("control-plane", "worker-1", "worker-2", "worker-3"):
        assert name in table
    nodes = json.loads(kubectl(kubeconfig, "get", "--raw", "/api/v1/nodes").stdout)
    assert nodes["kind"] == "NodeList" and nodes["apiVersion"] == "v1"
    assert {n["metadata"]["name"] for n in nodes["items"]} >= {"worker-1", "control-plane"}


def test_namespaces_are_served_as_a_cluster_wide_resource(kubeconfig):
    """`/api/v1/namespaces[/NAME]` names the namespaces resource (kmock alone reads it as a namespace prefix)."""
    assert {"namespace/default", "namespace/oscar"} <= set(kubectl(kubeconfig, "get", "namespaces", "-o", "name")
                                                           .stdout.split())
    namespace = json.loads(kubectl(kubeconfig, "get", "namespace", "oscar", "-o", "json").stdout)
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == "oscar"


def test_other_tenants_pods_are_there_with_their_requests(kubeconfig):
    pods = json.loads(kubectl(kubeconfig, "get", "pods", "-A", "-o", "json").stdout)
    tenant = next(p for p in pods["items"] if p["metadata"]["name"] == "tenant-db")
    assert tenant["spec"]["nodeName"] == "worker-1"
    assert tenant["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}


def test_crd_is_installed_and_a_batch_applies_and_reads_back(kubeconfig, tmp_path):
    assert "oscarbatchjobs.batch.oscarbatch.dev" in kubectl(kubeconfig, "get", "crd").stdout
    manifest = tmp_path / "batch.yaml"
    manifest.write_text(BATCH.format(name="kubectl-roundtrip"))
    assert "created" in kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifest)).stdout
    assert "unchanged" in kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifest)).stdout

    obj = json.loads(kubectl(kubeconfig, "get", "oscarbatchjob", "kubectl-roundtrip", "-o", "json").stdout)
    assert obj["metadata"]["uid"] and obj["metadata"]["generation"] == 1
    assert obj["spec"]["service"] == "fish-detector"

    kubectl(kubeconfig, "patch", "obatch", "kubectl-roundtrip", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": STATUS}))
    headers, rows = table_rows(kubectl(kubeconfig, "get", "oscarbatchjobs").stdout)
    assert headers == ["NAME", "PHASE", "PROGRESS", "RUNNING", "FAILED", "REASON", "AGE"]
    row = next(row for row in rows if row["NAME"] == "kubectl-roundtrip")
    assert [row[h] for h in headers[1:6]] == ["Running", "3/10", "4", "1", "WaitingForKueue"]
    headers, rows = table_rows(kubectl(kubeconfig, "get", "oscarbatchjobs", "-o", "wide").stdout)
    assert headers == ["NAME", "PHASE", "PROGRESS", "RUNNING", "FAILED", "REASON", "AGE",
                       "PARALLELISM", "ITEMS", "STARTED", "COMPLETED", "SERVICE", "CLUSTERS"]
    row = next(row for row in rows if row["NAME"] == "kubectl-roundtrip")
    assert (row["PARALLELISM"], row["ITEMS"], row["COMPLETED"], row["SERVICE"]) == ("4", "250", "", "fish-detector")
    assert row["STARTED"] and row["STARTED"] != "<unknown>"   # an age, as kubectl prints dates

    kubectl(kubeconfig, "delete", "oscarbatchjob", "kubectl-roundtrip")
    wait_until(lambda: "kubectl-roundtrip" not in kubectl(kubeconfig, "get", "oscarbatchjobs").stdout,
               message="the batch to be deleted")


def test_status_and_spec_are_kept_apart_like_a_real_api_server(kubeconfig, tmp_path):
    manifest = tmp_path / "batch.yaml"
    manifest.write_text(BATCH.format(name="status-apart"))
    kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifest))
    # A spec patch carrying status changes the spec only, and bumps the generation.
    kubectl(kubeconfig, "patch", "obatch", "status-apart", "--type=merge",
            "-p", '{"spec": {"retries": 5}, "status": {"phase": "Succeeded"}}')
    obj = json.loads(kubectl(kubeconfig, "get", "obatch", "status-apart", "-o", "json").stdout)
    assert obj["spec"]["retries"] == 5 and "status" not in obj
    assert obj["metadata"]["generation"] == 2
    # A status patch carrying spec changes the status only, and keeps the generation.
    kubectl(kubeconfig, "patch", "obatch", "status-apart", "--subresource=status", "--type=merge",
            "-p", '{"spec": {"retries": 9}, "status": {"phase": "Running"}}')
    obj = json.loads(kubectl(kubeconfig, "get", "obatch", "status-apart", "-o", "json").stdout)
    assert obj["spec"]["retries"] == 5 and obj["status"]["phase"] == "Running"
    assert obj["metadata"]["generation"] == 2


def test_label_selectors_filter_on_the_server(kubeconfig):
    assert "tenant-db" in kubectl(kubeconfig, "get", "pods", "-A", "-l", "app=tenant-db").stdout
    assert "tenant-db" not in kubectl(kubeconfig, "get", "pods", "-A", "-l", "app in (web, cache)").stdout
    assert "tenant-db" in kubectl(kubeconfig, "get", "pods", "-A", "-l", "app,!missing").stdout


def test_field_selectors_filter_on_the_server(kubeconfig):
    assert "tenant-db" in kubectl(kubeconfig, "get", "pods", "-A", "--field-selector", "spec.nodeName=worker-1").stdout
    assert "tenant-db" not in kubectl(kubeconfig, "get", "pods", "-A", "--field-selector",
                                      "spec.nodeName=worker-1,status.phase!=Running").stdout


def test_the_emulator_matches_each_request_to_the_reactions_kmock_would(sandbox, kubeconfig, tmp_path):
    """`sees` is kmock's `request in view` without listing every recorded request: for every request kubectl
    makes (discovery, apply, get, patch, watch, delete, an unknown path) and every reaction, both agree."""
    manifest = tmp_path / "batch.yaml"
    manifest.write_text(BATCH.format(name="matching"))
    kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifest))
    kubectl(kubeconfig, "get", "obatch", "matching", "-o", "json")
    kubectl(kubeconfig, "patch", "obatch", "matching", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": STATUS}))
    kubectl(kubeconfig, "get", "obatch", "--watch", "--request-timeout=1s", check=False)
    kubectl(kubeconfig, "get", "--raw", "/apis/no.such.group/v1/things", check=False)
    kubectl(kubeconfig, "delete", "obatch", "matching")

    async def compare() -> tuple[int, list[tuple[str, str, bool]]]:
        # kmock's own answer, from its internals as `kmock_extension` reads them (it has no public ones).
        kube = sandbox.sandbox.kube
        requests = list(kube._requests)
        disagreements = [(f"{request.method} {request.url}", repr(payload._source), sees(payload._source, request))
                         for request in requests for payload in kube._payloads
                         if sees(payload._source, request) != (request in payload._source)]
        return len(requests), disagreements

    compared, disagreements = sandbox.call(compare)
    assert compared >= 6 and disagreements == []


def test_a_generated_name_takes_five_characters_of_the_api_servers_alphabet(kubeconfig, tmp_path):
    manifest = tmp_path / "generated.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: generated-}\ndata: {a: b}\n")
    created = kubectl(kubeconfig, "create", "--validate=false", "-f", str(manifest), "-o", "name").stdout.strip()
    assert re.fullmatch(r"configmap/generated-[bcdfghjklmnpqrstvwxz2456789]{5}", created), created
