"""A sandbox of several OSCAR clusters, over real HTTP: each cluster serves its own service, status, jobs and
logs over its own object store and runs its Jobs with its own runner, all against the sandbox's one S3; only the
first one's Kubernetes API is served."""
from __future__ import annotations

import io
import json
import pathlib
from collections.abc import Iterator

import pytest
import requests

from oscar_batch.clients.oscar import OscarClient
from oscar_batch.core.tokens import Basic
from oscar_batch_sandbox import Behaviour, NodeSpec, OscarCluster, SandboxConfig, SandboxThread
from oscar_batch_sandbox.handoff import batch_manifests, clusters_spec
from oscar_batch_sandbox.runner import JOBS
from oscar_batch_sandbox.s3 import input_keys
from support import kubectl, wait_until

CONFIG = SandboxConfig(clusters=2, items=6, bucket="clusters-bucket", behaviour=Behaviour(time_scale=0.002, seed=3))


@pytest.fixture(scope="module")
def two_clusters() -> Iterator[SandboxThread]:
    with SandboxThread(CONFIG) as running:
        yield running


def client(cluster: OscarCluster) -> OscarClient:
    return OscarClient(cluster.endpoint, Basic(cluster.config.oscar_user, cluster.config.oscar_password))


def put_manifest(sandbox: SandboxThread, key: str, items: int) -> None:
    config = sandbox.sandbox.config
    manifest = "".join(f"{item}\n" for item in input_keys(config.prefix, items)).encode()
    s3 = sandbox.sandbox.s3.client(config.s3_access_key, config.s3_secret_key)
    s3.put_object(config.bucket, key, io.BytesIO(manifest), len(manifest))


def node_names(status: dict) -> list[str]:
    return [node["name"] for node in status["cluster"]["nodes"]]


def test_the_sandbox_lists_every_cluster_and_keeps_the_first_as_its_oscar(two_clusters: SandboxThread):
    info = two_clusters.info
    first, second = two_clusters.clusters
    assert [cluster["name"] for cluster in info["clusters"]] == ["oscar-1", "oscar-2"]
    assert info["clusters"][0]["endpoint"] == info["oscar"]["endpoint"] == first.endpoint
    assert info["clusters"][1]["endpoint"] == second.endpoint != first.endpoint
    assert all((cluster["username"], cluster["password"]) == (CONFIG.oscar_user, CONFIG.oscar_password)
               for cluster in info["clusters"])
    assert (two_clusters.kube, two_clusters.runner) == (first.kube, first.runner)
    assert second.kube is not first.kube and second.runner is not first.runner


def test_each_cluster_serves_the_service_and_its_own_nodes_status(two_clusters: SandboxThread):
    first, second = two_clusters.clusters
    for cluster in (first, second):
        service = client(cluster).service(CONFIG.service)
        assert service["name"] == CONFIG.service and service["token"] == CONFIG.service_token
        assert node_names(client(cluster).cluster_status()) == ["worker-1", "worker-2", "worker-3"]

    two_clusters.call(lambda: second.add_node(NodeSpec("worker-joined")))
    assert node_names(client(second).cluster_status()) == ["worker-1", "worker-2", "worker-3", "worker-joined"]
    assert node_names(client(first).cluster_status()) == ["worker-1", "worker-2", "worker-3"]


def test_an_invocation_runs_in_its_cluster_only_and_writes_to_the_shared_s3(two_clusters: SandboxThread,
                                                                             tmp_path: pathlib.Path):
    first, second = two_clusters.clusters
    put_manifest(two_clusters, "clusters-manifest.txt", 4)
    jobs = {first: "on-cluster-one", second: "on-cluster-two"}
    for (cluster, job), (start, end) in zip(jobs.items(), ((1, 3), (3, 5)), strict=True):
        client(cluster).invoke(CONFIG.service, CONFIG.service_token,
                               {"start": start, "end": end, "manifest": "clusters-manifest.txt"}, job_name=job)

    def succeeded(cluster: OscarCluster) -> bool:
        return dict(client(cluster).jobs(CONFIG.service)).get(jobs[cluster], {}).get("status") == "Succeeded"

    for cluster in (first, second):
        wait_until(lambda cluster=cluster: succeeded(cluster), timeout=30, message=f"{jobs[cluster]} to succeed")

    # Each Job is in its own cluster's object store, listed by its own OSCAR, run by its own runner.
    for cluster, other in ((first, second), (second, first)):
        assert cluster.kube.get(JOBS, CONFIG.services_namespace, jobs[cluster]) is not None
        assert other.kube.get(JOBS, CONFIG.services_namespace, jobs[cluster]) is None
        assert jobs[cluster] not in dict(client(other).jobs(CONFIG.service))
        assert [run.outcome for run in cluster.runner.runs if run.job == jobs[cluster]] == ["Completed"]
        assert not [run for run in other.runner.runs if run.job == jobs[cluster]]
        logs = requests.get(f"{cluster.endpoint}/system/logs/{CONFIG.service}/{jobs[cluster]}",
                            auth=(CONFIG.oscar_user, CONFIG.oscar_password), timeout=10)
        assert logs.status_code == 200 and "done: 2 item(s)" in logs.text
        # OSCAR answers 500 for the logs of a job it has no pod of.
        assert requests.get(f"{other.endpoint}/system/logs/{CONFIG.service}/{jobs[cluster]}",
                            auth=(CONFIG.oscar_user, CONFIG.oscar_password), timeout=10).status_code == 500

    # Both wrote to the one bucket.
    s3 = two_clusters.sandbox.s3.client(CONFIG.s3_access_key, CONFIG.s3_secret_key)
    writers = {key: json.loads(s3.get_object(CONFIG.bucket, f"output/{key.removeprefix(CONFIG.prefix)}.json").read())
               ["job"] for key in input_keys(CONFIG.prefix, 4)}
    assert list(writers.values()) == ["on-cluster-one"] * 2 + ["on-cluster-two"] * 2

    # The served Kubernetes API is the first cluster's: the second's Job is not there.
    kubeconfig = tmp_path / "kubeconfig"
    two_clusters.sandbox.write_kubeconfig(kubeconfig)
    served = kubectl(kubeconfig, "get", "jobs", "-n", CONFIG.services_namespace, "-o", "name").stdout.split()
    assert "job.batch/on-cluster-one" in served and "job.batch/on-cluster-two" not in served


def test_every_cluster_admits_its_jobs_through_kueue_when_configured():
    config = SandboxConfig(clusters=2, items=2, kueue_cpu="2", behaviour=Behaviour(time_scale=0.002, seed=3))
    with SandboxThread(config) as sandbox:
        second = sandbox.clusters[1]
        put_manifest(sandbox, "kueue-manifest.txt", 2)
        client(second).invoke(config.service, config.service_token,
                              {"start": 1, "end": 3, "manifest": "kueue-manifest.txt"}, job_name="queued-on-two")
        wait_until(lambda: [run.outcome for run in second.runner.runs] == ["Completed"], timeout=30,
                   message="the queued Job of the second cluster to be admitted and run")
        job = second.kube.get(JOBS, config.services_namespace, "queued-on-two")
        assert job is not None and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "oscar-lq-fish-detector"


def test_a_range_failing_its_first_invocation_succeeds_when_retried_on_another_cluster():
    """The service's scripted failures count a range's invocations wherever they run, as its failure draws count
    containers across the sandbox: a second cluster does not replay the first one's failures."""
    config = SandboxConfig(clusters=2, items=2, behaviour=Behaviour(
        time_scale=0.002, seed=3, failing_ranges=frozenset({(1, 2)}), failing_attempts=1))
    with SandboxThread(config) as sandbox:
        put_manifest(sandbox, "retried-manifest.txt", 2)
        outcomes = []
        for cluster, job in zip(sandbox.clusters, ("first-attempt", "retried-elsewhere"), strict=True):
            client(cluster).invoke(config.service, config.service_token,
                                   {"start": 1, "end": 2, "manifest": "retried-manifest.txt"}, job_name=job)
            outcomes += wait_until(lambda cluster=cluster: [run.outcome for run in cluster.runner.runs if run.outcome],
                                   timeout=30, message=f"{job} to end")
        assert outcomes == ["Error", "Completed"]


def test_the_example_batch_over_every_cluster_names_a_secret_each_and_reaches_the_others_remotely(
        two_clusters: SandboxThread):
    info = two_clusters.info
    *secrets, batch = batch_manifests(info, federated=True)
    assert [secret["metadata"]["name"] for secret in secrets] == [
        "oscar-1-credentials", "oscar-2-credentials", "minio-credentials"]
    assert all(secret["metadata"]["labels"] == {"batch.oscarbatch.dev/credentials": "true"} for secret in secrets)
    assert secrets[1]["stringData"] == {"username": CONFIG.oscar_user, "password": CONFIG.oscar_password}
    assert "oscar" not in batch["spec"]
    assert batch["spec"]["clusters"] == clusters_spec(info) == [
        {"name": "oscar-1", "endpoint": info["clusters"][0]["endpoint"], "credentialsSecret": "oscar-1-credentials",
         "access": "InCluster", "maxParallelism": 0},
        {"name": "oscar-2", "endpoint": info["clusters"][1]["endpoint"], "credentialsSecret": "oscar-2-credentials",
         "access": "Remote", "maxParallelism": 0}]
    # `remote`: the first cluster too is reached through its OSCAR API only.
    *_, remote_everywhere = batch_manifests(info, federated=True, remote=True)
    assert [cluster["access"] for cluster in remote_everywhere["spec"]["clusters"]] == ["Remote", "Remote"]
    *single_secrets, single = batch_manifests(info, remote=True)
    assert single["spec"]["oscar"] == {"endpoint": info["oscar"]["endpoint"], "credentialsSecret": "oscar-credentials",
                                       "access": "Remote"}
    assert "clusters" not in single["spec"] and len(single_secrets) == 2
    *_, in_cluster = batch_manifests(info)
    assert "access" not in in_cluster["spec"]["oscar"]


def test_a_sandbox_holds_one_to_sixteen_clusters():
    for clusters in (0, 17):
        with pytest.raises(ValueError, match=r"clusters must be within \[1, 16\]"):
            SandboxConfig(clusters=clusters)
