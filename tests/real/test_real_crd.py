"""crds/batchjob.yaml against a real kube-apiserver: structural schema, defaults, bounds, CEL, status, columns.

The sandbox's emulator accepts whatever it is sent; these verdicts are the API server's own. Each request goes
through real kubectl with `--validate=true` (server-side field validation, strict).
"""
from __future__ import annotations

import asyncio
import copy
import json
import pathlib
import random
import re
from typing import Any

import pytest
import yaml
from realplane import ROOT, ControlPlane

from oscar_batch.core import status
from support import a_million_settled, merge_patch, table_rows
from written_status import field_paths, written_status

GROUP_VERSION = "batch.oscarbatch.dev/v1alpha1"
RESOURCE = "oscarbatchjobs.batch.oscarbatch.dev"


def batch(name: str, **spec: Any) -> dict[str, Any]:
    """The smallest valid OscarBatchJob, with `spec` merged over it (None deletes a key)."""
    obj: dict[str, Any] = {
        "apiVersion": GROUP_VERSION, "kind": "OscarBatchJob", "metadata": {"name": name},
        "spec": {
            "service": "fish-detector",
            "oscar": {"endpoint": "https://oscar.example.org", "credentialsSecret": "oscar-credentials"},
            "storage": {"endpoint": "https://minio.example.org", "credentialsSecret": "minio-credentials",
                        "bucket": "fish-detector"},
        },
    }
    merge_patch(obj["spec"], spec)
    return obj



def rejected(plane: ControlPlane, namespace: str, obj: dict[str, Any]) -> str:
    """Apply `obj`, expect the API server to refuse it; kubectl's error text."""
    result = plane.apply(obj, "-n", namespace, check=False)
    assert result.returncode != 0, f"accepted, expected a rejection:\n{yaml.safe_dump(obj)}\n{result.stdout}"
    assert plane.kubectl("get", "oscarbatchjobs", obj["metadata"]["name"], "-n", namespace,
                         check=False).returncode != 0, "rejected by kubectl but stored anyway"
    return result.stderr


def patch_status(plane: ControlPlane, namespace: str, name: str, status: dict[str, Any],
                 check: bool = True):
    return plane.kubectl("patch", "oscarbatchjobs", name, "-n", namespace, "--subresource=status",
                         "--type=merge", "-p", json.dumps({"status": status}), check=check)


def get(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return plane.get_json("oscarbatchjobs", name, "-n", namespace)


def test_crd_is_structural_and_established(real_plane: ControlPlane, real_crd: str) -> None:
    crd = real_plane.get_json("crd", real_crd)
    conditions = {c["type"]: c for c in crd["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["status"] == "True"
    # A non-structural schema shows up as this condition (and would make the CEL rules unusable).
    assert "NonStructuralSchema" not in conditions, conditions["NonStructuralSchema"]
    assert set(crd["status"]["acceptedNames"]["shortNames"]) == {"obj", "obatch"}
    # Served and resolvable by every name kubectl users type.
    for name in ("oscarbatchjobs", "oscarbatchjob", "obj", "obatch", "oscar"):
        real_plane.kubectl("get", name, "-A")


def test_example_batch_is_accepted(real_plane: ControlPlane, real_crd: str, namespace: str) -> None:
    real_plane.kubectl("apply", "--validate=true", "-n", namespace, "-f", str(ROOT / "examples" / "batchjob.yaml"))
    example = yaml.safe_load((ROOT / "examples" / "batchjob.yaml").read_text())
    stored = get(real_plane, namespace, example["metadata"]["name"])
    assert stored["spec"]["storage"]["include"] == example["spec"]["storage"]["include"]


def test_valid_batch_gets_the_schema_defaults(real_plane: ControlPlane, real_crd: str, namespace: str) -> None:
    real_plane.apply(batch("defaults"), "-n", namespace)
    spec = get(real_plane, namespace, "defaults")["spec"]
    assert spec["retries"] == 2
    assert spec["capacityHeadroom"] == 1.0
    assert spec["itemsPerInvocation"] == 0
    assert spec["maxParallelism"] == 0
    assert spec["toleratedFailures"] == 0
    assert spec["suspend"] is False
    assert "servicesNamespace" not in spec["oscar"]   # the service definition's namespace, unless set
    assert spec["oscar"]["access"] == "InCluster" and "clusters" not in spec
    assert spec["storage"]["region"] == "us-east-1"
    assert spec["storage"]["prefix"] == ""
    assert spec["storage"]["include"] == [] and spec["storage"]["exclude"] == []
    assert "manifestKey" not in spec and "resultsKey" not in spec  # defaulted by the operator, not the schema


@pytest.mark.parametrize(("case", "spec", "expected"), [pytest.param(*case, id=case[0]) for case in [
    ("service-40-chars", {"service": "s" * 40}, "spec.service: Too long"),
    ("service-uppercase", {"service": "Fish"}, "spec.service: Invalid value"),
    ("bucket-underscore", {"storage": {"bucket": "Bad_Bucket"}}, "spec.storage.bucket: Invalid value"),
    ("bucket-short", {"storage": {"bucket": "ab"}}, "spec.storage.bucket: Invalid value"),
    ("bucket-two-periods", {"storage": {"bucket": "a..b"}}, "two adjacent periods"),
    ("bucket-ip", {"storage": {"bucket": "192.168.1.1"}}, "cannot look like an IP address"),
    ("headroom-0", {"capacityHeadroom": 0}, "spec.capacityHeadroom: Invalid value"),
    ("headroom-1.5", {"capacityHeadroom": 1.5}, "spec.capacityHeadroom: Invalid value"),
    ("retries-negative", {"retries": -1}, "spec.retries: Invalid value"),
    ("same-keys", {"manifestKey": "index.txt", "resultsKey": "index.txt"},
     "spec.manifestKey and spec.resultsKey must name different objects"),
    ("no-storage", {"storage": None}, "spec.storage: Required value"),
    ("endpoint-no-scheme", {"oscar": {"endpoint": "oscar.example.org"}}, "spec.oscar.endpoint: Invalid value"),
    # What the minio client refuses with a ValueError (found by tests/test_fuzz_spec.py)
    ("s3-endpoint-bracket", {"storage": {"endpoint": "http://["}}, "spec.storage.endpoint: Invalid value"),
    ("s3-endpoint-user", {"storage": {"endpoint": "http://u:p@minio"}}, "spec.storage.endpoint: Invalid value"),
    ("region-colon", {"storage": {"region": ":"}}, "spec.storage.region: Invalid value"),
    ("unknown-field", {"paralelism": 3}, 'unknown field "spec.paralelism"'),
    ("inline-password", {"oscar": {"password": "hunter2"}}, 'unknown field "spec.oscar.password"'),
]])
def test_bad_input_is_rejected(real_plane: ControlPlane, real_crd: str, namespace: str,
                               case: str, spec: dict[str, Any], expected: str) -> None:
    message = rejected(real_plane, namespace, batch(f"bad-{case.replace('.', '-')}", **spec))
    assert expected in message, message


def cluster(name: str, **fields: Any) -> dict[str, Any]:
    """One entry of spec.clusters, its credentials Secret named after it."""
    return {"name": name, "endpoint": f"https://{name}.example.org", "credentialsSecret": f"{name}-credentials",
            **fields}


def test_a_federated_spec_is_accepted_with_its_defaults(real_plane: ControlPlane, real_crd: str,
                                                        namespace: str) -> None:
    """spec.clusters instead of spec.oscar: two clusters, the first with every default (access InCluster,
    maxParallelism 0), the second Remote with its own bound and services namespace."""
    remote = cluster("oscar-2", access="Remote", maxParallelism=5, servicesNamespace="oscar-svc")
    real_plane.apply(batch("federated", oscar=None, clusters=[cluster("oscar-1"), remote]), "-n", namespace)
    spec = get(real_plane, namespace, "federated")["spec"]
    assert "oscar" not in spec
    assert spec["clusters"] == [{**cluster("oscar-1"), "access": "InCluster", "maxParallelism": 0}, remote]
    # Remote ones alone, and as many as the schema allows (16), are fine too.
    real_plane.apply(batch("all-remote", oscar=None, clusters=[cluster(f"c{n}", access="Remote") for n in range(16)]),
                     "-n", namespace)
    assert len(get(real_plane, namespace, "all-remote")["spec"]["clusters"]) == 16


ONE_OR_THE_OTHER = "name one OSCAR cluster in spec.oscar, or several in spec.clusters (not both)"
ONE_IN_CLUSTER = "at most one cluster can be InCluster (the operator's own); give the others access Remote"


@pytest.mark.parametrize(("case", "spec", "expected"), [pytest.param(*case, id=case[0]) for case in [
    ("oscar-and-clusters", {"clusters": [cluster("oscar-1", access="Remote")]}, ONE_OR_THE_OTHER),
    ("neither", {"oscar": None}, ONE_OR_THE_OTHER),
    ("two-in-cluster", {"oscar": None, "clusters": [cluster("a", access="InCluster"),
                                                    cluster("b", access="InCluster")]}, ONE_IN_CLUSTER),
    # A missing access is InCluster: the rule counts it so (the default is applied before the rule runs).
    ("two-in-cluster-by-default", {"oscar": None, "clusters": [cluster("a"), cluster("b")]}, ONE_IN_CLUSTER),
    ("duplicate-names", {"oscar": None, "clusters": [cluster("a", access="Remote"), cluster("a", access="Remote")]},
     "spec.clusters[1]: Duplicate value"),
    ("no-clusters", {"oscar": None, "clusters": []}, "spec.clusters: Invalid value"),
    ("seventeen", {"oscar": None, "clusters": [cluster(f"c{n}", access="Remote") for n in range(17)]},
     "spec.clusters: Too many"),
    ("name-uppercase", {"oscar": None, "clusters": [cluster("Oscar")]}, "spec.clusters[0].name: Invalid value"),
    ("name-33-chars", {"oscar": None, "clusters": [cluster("c" * 33)]}, "spec.clusters[0].name: Too long"),
    ("no-endpoint", {"oscar": None, "clusters": [{"name": "a", "credentialsSecret": "a"}]},
     "spec.clusters[0].endpoint: Required value"),
    ("access-bogus", {"oscar": None, "clusters": [cluster("a", access="Federated")]},
     "spec.clusters[0].access: Unsupported value"),
    ("oscar-access-bogus", {"oscar": {"access": "Remotely"}}, "spec.oscar.access: Unsupported value"),
    ("max-parallelism-negative", {"oscar": None, "clusters": [cluster("a", maxParallelism=-1)]},
     "spec.clusters[0].maxParallelism: Invalid value"),
    ("inline-password", {"oscar": None, "clusters": [cluster("a", password="hunter2")]},
     'unknown field "spec.clusters[0].password"'),
]])
def test_bad_cluster_specs_are_rejected(real_plane: ControlPlane, real_crd: str, namespace: str,
                                        case: str, spec: dict[str, Any], expected: str) -> None:
    message = rejected(real_plane, namespace, batch(f"bad-{case}", **spec))
    assert expected in message, message


def test_the_clusters_status_keeps_every_cluster_within_its_bounds(real_plane: ControlPlane, real_crd: str,
                                                                   namespace: str) -> None:
    """status.clusters and clusterSummary as core.status writes them for 16 clusters with the longest names and
    messages (cut to the CRD's bounds) are read back whole; one character more than a bound is refused."""
    real_plane.apply(batch("clusters-status"), "-n", namespace)
    reports = [status.ClusterReport(name=f"{n:02d}" + "c" * 30, access="Remote" if n else "InCluster",
                                    parallelism=n, running=n // 2, succeeded=100 * n, reachable=n % 3 != 0,
                                    message=f"cannot reach OSCAR: {n} " + "x" * 2000) for n in range(16)]
    written = {**status.clusters(reports), "invocations": {"total": 40, "running": 3, "reassigned": 2,
                                                           "duplicates": 1}}
    assert all(len(entry["message"]) == status.CLUSTER_MESSAGE_LENGTH for entry in written["clusters"])
    patch_status(real_plane, namespace, "clusters-status", written)
    assert get(real_plane, namespace, "clusters-status")["status"] == written

    too_long = copy.deepcopy(written["clusters"])
    too_long[0]["message"] += "x"
    result = patch_status(real_plane, namespace, "clusters-status", {"clusters": too_long}, check=False)
    assert result.returncode != 0 and "status.clusters[0].message: Too long" in result.stderr, result.stderr
    summary = "s" * (status.CLUSTER_SUMMARY_LENGTH + 1)
    result = patch_status(real_plane, namespace, "clusters-status", {"clusterSummary": summary}, check=False)
    assert result.returncode != 0 and "status.clusterSummary: Too long" in result.stderr, result.stderr
    seventeen = [*written["clusters"], written["clusters"][0]]
    result = patch_status(real_plane, namespace, "clusters-status", {"clusters": seventeen}, check=False)
    assert result.returncode != 0 and "status.clusters: Too many" in result.stderr, result.stderr


def test_headroom_bounds_are_inclusive_at_one(real_plane: ControlPlane, real_crd: str, namespace: str) -> None:
    real_plane.apply(batch("headroom-one", capacityHeadroom=1), "-n", namespace)
    real_plane.apply(batch("headroom-small", capacityHeadroom=0.01), "-n", namespace)
    real_plane.apply(batch("service-39", service="s" * 39), "-n", namespace)


def test_unknown_fields_are_pruned_without_strict_validation(real_plane: ControlPlane, real_crd: str,
                                                             namespace: str) -> None:
    real_plane.kubectl("apply", "--validate=false", "-n", namespace, "-f", "-",
                       stdin=yaml.safe_dump(batch("pruned", paralelism=3)))
    assert "paralelism" not in get(real_plane, namespace, "pruned")["spec"]


def test_status_is_ignored_on_create_and_spec_on_status_patch(real_plane: ControlPlane, real_crd: str,
                                                              namespace: str) -> None:
    obj = batch("status-split")
    obj["status"] = {"phase": "Succeeded", "items": {"total": 5}}
    real_plane.apply(obj, "-n", namespace)
    stored = get(real_plane, namespace, "status-split")
    assert "status" not in stored or "phase" not in stored["status"], stored.get("status")
    assert stored["metadata"]["generation"] == 1

    real_plane.kubectl("patch", "oscarbatchjobs", "status-split", "-n", namespace, "--subresource=status",
                       "--type=merge", "-p", json.dumps({"spec": {"retries": 7}, "status": {"phase": "Running"}}))
    stored = get(real_plane, namespace, "status-split")
    assert stored["status"]["phase"] == "Running"
    assert stored["spec"]["retries"] == 2  # the status subresource ignores spec
    assert stored["metadata"]["generation"] == 1  # and a status write is no new generation

    real_plane.kubectl("patch", "oscarbatchjobs", "status-split", "-n", namespace, "--type=merge",
                       "-p", json.dumps({"spec": {"retries": 3}, "status": {"phase": "Failed"}}))
    stored = get(real_plane, namespace, "status-split")
    assert stored["status"]["phase"] == "Running"  # the main resource ignores status
    assert stored["spec"]["retries"] == 3
    assert stored["metadata"]["generation"] == 2

    real_plane.kubectl("label", "oscarbatchjobs", "status-split", "-n", namespace, "team=fish")
    assert get(real_plane, namespace, "status-split")["metadata"]["generation"] == 2  # metadata: no generation


def test_status_is_validated_against_its_schema(real_plane: ControlPlane, real_crd: str, namespace: str) -> None:
    real_plane.apply(batch("status-enum"), "-n", namespace)
    result = patch_status(real_plane, namespace, "status-enum", {"phase": "Exploded"}, check=False)
    assert result.returncode != 0
    assert "status.phase: Unsupported value" in result.stderr, result.stderr
    result = patch_status(real_plane, namespace, "status-enum",
                          {"conditions": [{"type": "Complete", "status": "Maybe"}]}, check=False)
    assert result.returncode != 0 and "status.conditions[0].status" in result.stderr, result.stderr


def test_every_status_field_the_controller_writes_survives_the_api_server(real_plane: ControlPlane, real_crd: str,
                                                                         namespace: str) -> None:
    """A status holding every field the controller writes (gathered from its own patches, tests/written_status.py)
    is accepted as it is and read back whole: nothing pruned, nothing refused."""
    status = asyncio.run(written_status())
    real_plane.apply(batch("written-status"), "-n", namespace)
    patch_status(real_plane, namespace, "written-status", status)
    stored = get(real_plane, namespace, "written-status")["status"]
    assert sorted(field_paths(status) - field_paths(stored)) == []
    assert stored == status


def test_status_keeps_the_inputs_left_out_of_the_manifest(real_plane: ControlPlane, real_crd: str,
                                                          namespace: str) -> None:
    """Not pruned: status.items.unlisted and status.unlistedItems are in the schema, keys with line breaks too."""
    real_plane.apply(batch("unlisted"), "-n", namespace)
    left_out = [{"key": f"in/a\rb-{n}.jpg", "reason": "the key holds a carriage return (U+000D)"} for n in range(10)]
    patch_status(real_plane, namespace, "unlisted", {"items": {"total": 3, "unlisted": 12}, "unlistedItems": left_out})
    stored = get(real_plane, namespace, "unlisted")["status"]
    assert stored["items"] == {"total": 3, "unlisted": 12} and stored["unlistedItems"] == left_out
    result = patch_status(real_plane, namespace, "unlisted", {"unlistedItems": [*left_out, left_out[0]]}, check=False)
    assert result.returncode != 0 and "status.unlistedItems: Too many" in result.stderr, result.stderr


def test_started_batch_keeps_its_inputs_but_not_its_tuning(real_plane: ControlPlane, real_crd: str,
                                                           namespace: str) -> None:
    real_plane.apply(batch("started", storage={"prefix": "in/"}), "-n", namespace)
    # Before the start every field may change.
    real_plane.kubectl("patch", "oscarbatchjobs", "started", "-n", namespace, "--type=merge",
                       "-p", json.dumps({"spec": {"service": "other-service"}}))
    patch_status(real_plane, namespace, "started", {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"})

    immutable = [
        {"service": "fish-detector-v3"},
        {"storage": {"bucket": "another-bucket"}},
        {"storage": {"prefix": "other/"}},
        {"storage": {"include": ["*.png"]}},
        {"storage": {"exclude": ["*.tmp"]}},
        {"manifestKey": "index-2.txt"},
    ]
    for change in immutable:
        result = real_plane.kubectl("patch", "oscarbatchjobs", "started", "-n", namespace, "--type=merge",
                                    "-p", json.dumps({"spec": change}), check=False)
        assert result.returncode != 0, f"{change} accepted after the start"
        assert "cannot change once the batch has started" in result.stderr, result.stderr

    for change in ({"retries": 5}, {"capacityHeadroom": 0.5}, {"maxParallelism": 3}, {"suspend": True}):
        real_plane.kubectl("patch", "oscarbatchjobs", "started", "-n", namespace, "--type=merge",
                           "-p", json.dumps({"spec": change}))
    stored = get(real_plane, namespace, "started")
    assert stored["spec"]["service"] == "other-service" and stored["spec"]["retries"] == 5
    assert stored["spec"]["suspend"] is True


def test_printer_columns(real_plane: ControlPlane, real_crd: str, namespace: str) -> None:
    real_plane.apply(batch("columns"), "-n", namespace)
    patch_status(real_plane, namespace, "columns",
                 {"phase": "Pending", "progress": "3/10", "parallelism": 4, "reason": "SecretNotFound",
                  "items": {"total": 250, "failed": 1}, "invocations": {"running": 4},
                  "startTime": "2026-01-01T00:00:00Z", "clusterSummary": "oscar 4/4 3 done"})
    output = real_plane.kubectl("get", "oscarbatchjobs", "-n", namespace).stdout
    headers, [row] = table_rows(output)
    assert headers == ["NAME", "PHASE", "PROGRESS", "RUNNING", "FAILED", "REASON", "AGE"], output
    assert [row[h] for h in headers[:6]] == ["columns", "Pending", "3/10", "4", "1", "SecretNotFound"], output
    # `-o wide` adds the priority-1 columns; a date column prints as an age, and blank before it is set.
    output = real_plane.kubectl("get", "oscarbatchjobs", "-n", namespace, "-o", "wide").stdout
    headers, [row] = table_rows(output)
    assert headers == ["NAME", "PHASE", "PROGRESS", "RUNNING", "FAILED", "REASON", "AGE",
                       "PARALLELISM", "ITEMS", "STARTED", "COMPLETED", "SERVICE", "CLUSTERS"], output
    assert (row["PARALLELISM"], row["ITEMS"], row["COMPLETED"], row["SERVICE"], row["CLUSTERS"]) == \
        ("4", "250", "", "fish-detector", "oscar 4/4 3 done"), output
    assert re.fullmatch(r"\d+d", row["STARTED"]), output    # days since 2026-01-01

    # A batch without status yet: the API server's Table has null cells, which kubectl prints as blanks.
    real_plane.apply(batch("fresh"), "-n", namespace)
    status, body = real_plane.request(f"/apis/{GROUP_VERSION}/namespaces/{namespace}/oscarbatchjobs/fresh",
                                      headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert status == 200, body
    table = json.loads(body)
    assert [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]] == [
        ("Name", "string", 0), ("Phase", "string", 0), ("Progress", "string", 0), ("Running", "integer", 0),
        ("Failed", "integer", 0), ("Reason", "string", 0), ("Age", "date", 0), ("Parallelism", "integer", 1),
        ("Items", "integer", 1), ("Started", "date", 1), ("Completed", "date", 1), ("Service", "string", 1),
        ("Clusters", "string", 1)]
    cells = table["rows"][0]["cells"]
    assert cells[:6] == ["fresh", None, None, None, None, None] and cells[7:11] == [None] * 4, cells
    assert cells[11] == "fish-detector" and cells[12] is None, cells
    fresh = real_plane.kubectl("get", "obj", "fresh", "-n", namespace).stdout.splitlines()
    assert fresh[1].split()[0] == "fresh" and len(fresh[1].split()) == 2, fresh  # name and age only


def test_resource_versions_conflict(real_plane: ControlPlane, real_crd: str, namespace: str) -> None:
    """An update carrying a stale resourceVersion is refused (409): what kopf's patches must cope with."""
    real_plane.apply(batch("conflict"), "-n", namespace)
    stale = get(real_plane, namespace, "conflict")
    patch_status(real_plane, namespace, "conflict", {"phase": "Listing"})
    update = copy.deepcopy(stale)
    update["spec"]["retries"] = 9
    result = real_plane.kubectl("replace", "-n", namespace, "-f", "-", stdin=json.dumps(update), check=False)
    assert result.returncode != 0
    assert "the object has been modified" in result.stderr, result.stderr


def test_stale_patches_are_refused(real_plane: ControlPlane, real_crd: str, namespace: str) -> None:
    """A merge patch naming an old resourceVersion gets 409; a JSON patch whose `test` fails gets 422 (kopf's
    finalizer and status patches carry such a test)."""
    real_plane.apply(batch("stale"), "-n", namespace)
    old = get(real_plane, namespace, "stale")["metadata"]["resourceVersion"]
    patch_status(real_plane, namespace, "stale", {"phase": "Listing"})
    merge = real_plane.kubectl("patch", "oscarbatchjobs", "stale", "-n", namespace, "--type=merge", "-p",
                               json.dumps({"metadata": {"resourceVersion": old}, "spec": {"retries": 4}}),
                               check=False)
    assert merge.returncode != 0 and "Conflict" in merge.stderr, merge.stderr
    test_op = real_plane.kubectl("patch", "oscarbatchjobs", "stale", "-n", namespace, "--type=json", "-p",
                                 json.dumps([{"op": "test", "path": "/metadata/resourceVersion", "value": old},
                                             {"op": "replace", "path": "/spec/retries", "value": 4}]), check=False)
    assert test_op.returncode != 0 and "The request is invalid" in test_op.stderr, test_op.stderr
    assert get(real_plane, namespace, "stale")["spec"]["retries"] == 2


def test_deletion_waits_for_finalizers(real_plane: ControlPlane, real_crd: str, namespace: str) -> None:
    """What kopf's finalizer meets: a deletion marks the object (RFC 3339 time, seconds, `Z`; generation + 1),
    forbids new finalizers, and completes when the last finalizer goes."""
    real_plane.apply(batch("finalized"), "-n", namespace)
    real_plane.kubectl("patch", "oscarbatchjobs", "finalized", "-n", namespace, "--type=merge",
                       "-p", json.dumps({"metadata": {"finalizers": ["batch.oscarbatch.dev/test"]}}))
    real_plane.kubectl("delete", "oscarbatchjobs", "finalized", "-n", namespace, "--wait=false")
    metadata = get(real_plane, namespace, "finalized")["metadata"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", metadata["deletionTimestamp"]), metadata
    assert metadata["generation"] == 2
    more = real_plane.kubectl("patch", "oscarbatchjobs", "finalized", "-n", namespace, "--type=merge", "-p",
                              json.dumps({"metadata": {"finalizers": ["batch.oscarbatch.dev/test", "x/y"]}}),
                              check=False)
    assert more.returncode != 0 and "no new finalizers can be added" in more.stderr, more.stderr
    real_plane.kubectl("patch", "oscarbatchjobs", "finalized", "-n", namespace, "--type=merge",
                       "-p", json.dumps({"metadata": {"finalizers": None}}))
    gone = real_plane.kubectl("get", "oscarbatchjobs", "finalized", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stderr


def test_a_million_items_status_fits_once_scattered_line_sets_live_in_the_results_object(
        real_plane: ControlPlane, real_crd: str, namespace: str, tmp_path: pathlib.Path) -> None:
    """10% of 1,000,000 items failed at random: with the line sets in status (~93,000 characters each) the API
    server refuses the whole patch; as the operator sends it (`itemsAt` instead of them) it is taken."""
    real_plane.apply(batch("million"), "-n", namespace)
    listing = {"phase": "Listing", "listed": 230_000, "progress": "listed 230000"}
    patch_status(real_plane, namespace, "million", listing)
    assert {key: get(real_plane, namespace, "million")["status"].get(key) for key in listing} == listing
    book = a_million_settled(sorted(random.Random(19).sample(range(1, 1_000_001), 100_000)))
    inline = status.progress(book, 0)

    def patched(body: dict[str, Any]) -> Any:
        patch_file = tmp_path / "status.json"        # too long for a command-line argument
        patch_file.write_text(json.dumps({"status": body}))
        return real_plane.kubectl("patch", "oscarbatchjobs", "million", "-n", namespace, "--subresource=status",
                                  "--type=merge", "--patch-file", str(patch_file), check=False)

    refused = patched(inline)
    assert refused.returncode != 0 and "status.completedItems: Too long" in refused.stderr, refused.stderr
    where = "s3://fish-detector/index.txt.results.json"
    taken = patched(status.line_sets_at(status.progress(book, 0), where))
    assert taken.returncode == 0, taken.stderr
    stored = get(real_plane, namespace, "million")["status"]
    assert stored["itemsAt"] == where and "completedItems" not in stored and "failedItems" not in stored
    assert stored["items"]["failed"] == 100_000 and len(json.dumps(stored)) < 256 * 1024
