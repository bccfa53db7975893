"""Remote access end to end in the sandbox: the operator reaches the OSCAR cluster through OSCAR's API alone (real
kopf as `oscar-batch run`, real HTTP to the OSCAR simulator, real S3 protocol), with the Kubernetes API denying it
the Nodes, Pods and Jobs it reads in-cluster."""
from __future__ import annotations

import collections
import json

from harness import Harness
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from oscar_batch_sandbox.s3 import input_keys
from support import kubectl, table_rows

# What an operator outside the OSCAR cluster cannot read there (the sandbox denies every API client alike).
NOT_ITS_CLUSTER = frozenset({"v1/nodes", "v1/pods", "batch/v1/jobs"})


def config(**overrides) -> SandboxConfig:
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, failure_rate=0.1, seed=5)
    return SandboxConfig(**{"items": 40, "bucket": "remote-bucket", "behaviour": behaviour,
                            "forbidden": NOT_ITS_CLUSTER, **overrides})


def test_a_remote_batch_with_failures_succeeds_through_the_oscar_api_alone(tmp_path):
    with Harness(config(), tmp_path) as harness:
        assert "forbidden" in kubectl(harness.kubeconfig, "get", "jobs", "-A", check=False).stderr
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
        assert "CLUSTERS" in headers and rows[0]["CLUSTERS"].startswith("oscar 0/0 40 done")
