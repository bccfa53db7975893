"""Remote access end to end in the sandbox: the operator reaches the OSCAR cluster through OSCAR's API alone (real
kopf as `oscar-batch run`, real HTTP to the OSCAR simulator, real S3 protocol), with the Kubernetes API denying it
the Nodes, Pods and Jobs it reads in-cluster."""
from __future__ import annotations

import collections
import json
import subprocess
import time

from harness import Harness
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from oscar_batch_sandbox.s3 import input_keys
from proxy import TcpProxy
from support import BIN, kubectl, lines_of, table_rows, wait_until

# What an operator outside the OSCAR cluster cannot read there (the sandbox denies every API client alike).
NOT_ITS_CLUSTER = frozenset({"v1/nodes", "v1/pods", "batch/v1/jobs"})


def config(**overrides) -> SandboxConfig:
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, failure_rate=0.1, seed=5)
    return SandboxConfig(**{"items": 40, "bucket": "remote-bucket", "behaviour": behaviour,
                            "forbidden": NOT_ITS_CLUSTER, **overrides})


def test_a_remote_batch_with_failures_succeeds_through_the_oscar_api_alone(tmp_path):
    with Harness(config(), tmp_path, operator_args=("--remote-only",)) as harness:
        assert "forbidden" in kubectl(harness.kubeconfig, "get", "jobs", "-A", check=False).stderr
        harness.apply(name="in-cluster")     # this operator reaches no cluster InCluster: it says so
        harness.wait_for_phase("Pending", name="in-cluster")
        wait_until(lambda: "--remote-only" in str(harness.batch("in-cluster")["status"].get("conditions")),
                   timeout=30, message="the InCluster batch to say why it waits")
        harness.apply(oscar={"access": "Remote"}, retries=6, keepJobs=False)
        batch = harness.wait_for_phase("Succeeded", "Failed", timeout=120)
        status = batch["status"]
        assert status["phase"] == "Succeeded", status
        assert status["items"]["succeeded"] == 40 and status["completedItems"] == "1-40"
        assert status["invocations"]["retried"] > 0       # the 10% failures were seen through OSCAR's listing
        # Every input processed once: one output each, written by exactly one Job.
        outputs = harness.objects(harness.config.behaviour.output_prefix)
        written = collections.Counter(json.loads(body)["input"] for body in outputs.values())
        assert sorted(written) == input_keys("input/", 40) and set(written.values()) == {1}
        [cluster] = status["clusters"]
        assert cluster["name"] == "oscar" and cluster["access"] == "Remote" and cluster["reachable"] is True
        assert cluster["succeeded"] == 40 and cluster["running"] == 0
        # Recorded Jobs were deleted through OSCAR: its listing stays short.
        assert harness.jobs() == []
        headers, rows = table_rows(kubectl(harness.kubeconfig, "get", "oscarbatchjobs", "-o", "wide").stdout)
        row = next(row for row in rows if row["NAME"] == "batch")
        assert "CLUSTERS" in headers and row["CLUSTERS"].startswith("oscar 0/0 40 done"), rows
        shown = subprocess.run([str(BIN / "oscar-batch"), "status", "batch", "--kubeconfig", str(harness.kubeconfig)],
                               capture_output=True, text=True, check=True).stdout
        assert "clusters:\n  oscar (Remote)  0/0 in flight, 40 items done" in shown, shown
        assert harness.batch("in-cluster")["status"]["reason"] == "NamespaceNotWatched"
        # It never asked the API server for Jobs, Nodes or Pods: no Jobs watch, no capacity from them.
        log = (tmp_path / "operator.log").read_text()
        assert "forbidden" not in log and "JobsNotListed" not in log


def test_one_batch_over_two_clusters_outlives_one_cut_off_for_a_minute(tmp_path):
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.01, seed=7)
    with Harness(SandboxConfig(items=150, bucket="federated", behaviour=behaviour, clusters=2), tmp_path) as harness:
        second = harness.sandbox.clusters[1]
        with TcpProxy(second.endpoint) as proxy:
            harness.sandbox.info["clusters"][1]["endpoint"] = proxy.url
            harness.apply(federated=True, maxParallelism=0)

            def running_there() -> bool:
                jobs = harness.read(lambda: second.kube.list("batch/v1/jobs", harness.config.services_namespace))
                return any(not (job.get("status") or {}).get("succeeded") for job in jobs)
            wait_until(running_there, timeout=60, message="Jobs in flight on the second cluster")
            proxy.cut()
            cut_at = time.monotonic()

            def shown_unreachable() -> dict | None:
                clusters = (harness.batch().get("status") or {}).get("clusters") or []
                return next((c for c in clusters if c["name"] == "oscar-2" and not c["reachable"]), None)
            shown = wait_until(shown_unreachable, timeout=30, message="oscar-2 shown unreachable")
            assert shown["parallelism"] == 0 and "cannot reach OSCAR" in shown["message"]
            time.sleep(max(60 - (time.monotonic() - cut_at), 0))   # the outage itself: a minute without oscar-2
            assert harness.batch()["status"]["phase"] == "Running"  # its ranges in flight there are not lost
            proxy.restore()
            batch = harness.wait_for_phase("Succeeded", "Failed", timeout=120)
        status = batch["status"]
        assert status["phase"] == "Succeeded", status
        outputs = harness.objects(harness.config.behaviour.output_prefix)
        assert sorted(json.loads(body)["input"] for body in outputs.values()) == input_keys("input/", 150)
        # Every line succeeded, on one cluster or the other; what ran twice (an invocation whose answer the cut
        # lost, run on the other cluster too) is counted in status, never hidden.
        jobs = [job for cluster in harness.sandbox.clusters for job in harness.read(
            lambda cluster=cluster: cluster.kube.list("batch/v1/jobs", harness.config.services_namespace))]
        succeeded = [lines_of(job) for job in jobs if (job.get("status") or {}).get("succeeded")]
        per_line = collections.Counter(line for lines in succeeded for line in range(*lines))
        assert sorted(per_line) == list(range(1, 151))
        assert len(succeeded) - len(set(succeeded)) == status["invocations"]["duplicates"]
        clusters = {entry["name"]: entry for entry in status["clusters"]}
        assert clusters["oscar-1"]["access"] == "InCluster" and clusters["oscar-2"]["access"] == "Remote"
        assert clusters["oscar-1"]["succeeded"] > 0 and clusters["oscar-2"]["succeeded"] > 0       # both used
        assert clusters["oscar-1"]["succeeded"] + clusters["oscar-2"]["succeeded"] == 150
        assert status["invocations"]["reassigned"] == 0   # within the reassignment timeout: nothing moved


def test_a_restarted_operator_resumes_a_remote_batch_from_oscars_listing_without_invoking_anything_twice(tmp_path):
    slow = Behaviour(item_seconds=4.0, startup_seconds=1.0, time_scale=0.01, seed=5)
    with Harness(config(items=40, behaviour=slow), tmp_path) as harness:
        harness.apply(oscar={"access": "Remote"}, itemsPerInvocation=2)
        wait_until(lambda: ((harness.batch().get("status") or {}).get("items") or {}).get("succeeded", 0) >= 6,
                   timeout=60, message="a few ranges to succeed")
        harness.operator.kill()
        harness.operator.start()
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=90)["status"]
        assert status["phase"] == "Succeeded", status
        names = [job["metadata"]["name"] for job in harness.jobs()]
        assert len(names) == len(set(names)) == 20 + status["invocations"]["retried"]   # nothing invoked twice
        assert status["clusters"][0]["succeeded"] == 40


def test_deleting_a_remote_batch_deletes_its_jobs_through_oscar(tmp_path):
    slow = Behaviour(item_seconds=4.0, startup_seconds=1.0, time_scale=0.02, seed=6)
    with Harness(config(items=40, behaviour=slow), tmp_path) as harness:
        harness.apply(oscar={"access": "Remote"}, itemsPerInvocation=2, keepJobs=False, maxParallelism=2)
        wait_until(lambda: ((harness.batch().get("status") or {}).get("items") or {}).get("succeeded", 0) >= 4,
                   timeout=60, message="a few ranges to succeed")
        kubectl(harness.kubeconfig, "delete", "obatch", "batch", "--wait=false")
        wait_until(lambda: not harness.batch(), timeout=30, message="the batch to be deleted")
        assert not harness.jobs()
        # Events are posted by the operator's own task: the last one may land just after the batch is gone.
        [event] = wait_until(lambda: harness.events("Cancelled"), timeout=10, message="the Cancelled Event")
        assert "deleted" in event["message"], event
