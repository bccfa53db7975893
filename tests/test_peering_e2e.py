"""Two replicas with kopf peering (`oscar-batch run --peering NAME`): only one acts, every range is invoked exactly
once, and the standby takes over when the one acting is killed."""
from __future__ import annotations

import collections
import json
import os
import pathlib
import subprocess

from harness import Harness, OperatorProcess
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from oscar_batch_sandbox.s3 import input_keys
from support import BIN, batch_series, free_port, lines_of, scrape, value, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[1]
PEERING = "oscar-batch"
# A replica silent for 3 s is dead: the standby's own keep-alives (every second) make it look again.
ARGS = ("--peering", PEERING, "--peering-lifetime", "3")
SLOW = Behaviour(item_seconds=4.0, startup_seconds=1.0, time_scale=0.01, seed=5)


def _peers(harness: Harness) -> dict:
    peering = harness.read(lambda: harness.sandbox.kube.get("kopf.dev/v1/clusterkopfpeerings", None, PEERING))
    return (peering or {}).get("status") or {}


def _said(operator: OperatorProcess, text: str) -> bool:
    return text in operator.log.read_text(errors="replace")


def test_two_replicas_invoke_each_range_once_and_the_standby_takes_over_when_the_leader_dies(tmp_path):
    config = SandboxConfig(items=40, bucket="peering-bucket", behaviour=SLOW)
    with Harness(config, tmp_path, ARGS, manifests=(ROOT / "crds" / "peering.yaml",)) as harness:
        leader = harness.operator
        # The operator made the ClusterKopfPeering itself; the first replica is alone in it.
        wait_until(lambda: len(_peers(harness)) == 1, timeout=30, message="the first replica's keep-alive")
        standby = harness.another_operator(ARGS)
        # A replica starts paused and resumes only once it saw no live peer older than itself.
        wait_until(lambda: len(_peers(harness)) == 2, timeout=30, message="the second replica's keep-alive")

        harness.apply(itemsPerInvocation=2)
        wait_until(lambda: ((harness.batch().get("status") or {}).get("items") or {}).get("succeeded", 0) >= 6,
                   timeout=60, message="a few ranges to succeed under the first replica")
        assert not _said(standby, "Resuming operations"), "the standby acted while the first replica was alive"
        assert not _said(standby, "default/batch"), "the standby touched the batch while the first replica acted"

        leader.kill()
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=120)["status"]
        assert status["phase"] == "Succeeded", status
        assert _said(standby, "Resuming operations")
        assert len(_peers(harness)) == 1, _peers(harness)   # the dead one cleaned out of the peering object

        jobs = harness.jobs()
        names = [job["metadata"]["name"] for job in jobs]
        ranges = collections.Counter(lines_of(job) for job in jobs)
        assert len(names) == len(set(names)) == len(ranges) == 20 and set(ranges.values()) == {1}, ranges
        assert harness.sandbox.sandbox.oscar.accepted_invocations == 20   # OSCAR was asked once per range
        results = harness.objects(harness.config.behaviour.output_prefix).values()
        assert sorted(json.loads(body)["input"] for body in results) == input_keys("input/", 40)


def test_a_replica_that_stands_down_drops_its_batches_series(tmp_path):
    """Paused by a peer of higher priority (`kopf freeze`, a real kopf peer), the acting replica stops serving its
    batches and exports none of their series: the next acting replica's would otherwise meet them in a join."""
    port = free_port()
    config = SandboxConfig(items=40, bucket="standdown-bucket", behaviour=SLOW)
    with Harness(config, tmp_path, (*ARGS, "--metrics", f"127.0.0.1:{port}"),
                 manifests=(ROOT / "crds" / "peering.yaml",)) as harness:
        wait_until(lambda: len(_peers(harness)) == 1, timeout=30, message="the replica's keep-alive")
        harness.apply(itemsPerInvocation=2)
        wait_until(lambda: batch_series(scrape(port)), timeout=60, message="the batch's series")

        subprocess.run([str(BIN / "kopf"), "freeze", "--peering", PEERING, "--all-namespaces", "--id", "freezer",
                        "--priority", "100", "--lifetime", "60"], env={**os.environ, "KUBECONFIG": str(
                            harness.kubeconfig)}, check=True, capture_output=True, timeout=60)
        wait_until(lambda: _said(harness.operator, "Pausing operations"), timeout=30, message="the replica to pause")
        samples = wait_until(lambda: (s := scrape(port)) and not batch_series(s) and s, timeout=30,
                             message="the paused replica's batch series to go")
        assert value(samples, "oscar_batch_dispatch_seconds_count")   # the operator's own series stay
