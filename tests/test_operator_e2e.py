"""The operator end to end in the sandbox: real kopf (as `oscar-batch run`), real HTTP to the OSCAR simulator,
real S3 protocol to moto, real kubectl for what a user types."""
from __future__ import annotations

import collections
import io
import json
import subprocess

import pytest
import yaml

from harness import Harness
from oscar_batch.core.keys import UNLISTED_SAMPLE
from oscar_batch_sandbox.config import Behaviour, SandboxConfig, control_plane, workers
from oscar_batch_sandbox.handoff import batch_manifests
from oscar_batch_sandbox.s3 import input_key, input_keys
from support import BIN, kubectl, lines_of, table_rows, wait_until

FAST = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, seed=11)


def config(**overrides) -> SandboxConfig:
    return SandboxConfig(**{"items": 30, "bucket": "e2e-bucket", "behaviour": FAST, **overrides})


def outputs_by_input(harness: Harness) -> dict[str, str]:
    """Which Job wrote the result of each input."""
    results = harness.objects(harness.config.behaviour.output_prefix)
    return {json.loads(body)["input"]: json.loads(body)["job"] for body in results.values()}


def test_every_input_gets_exactly_one_output_and_progress_is_honest(tmp_path):
    with Harness(config(), tmp_path) as harness:
        harness.apply(maxParallelism=0)
        harness.start_sampling()
        batch = harness.wait_for_phase("Succeeded", "Failed")

        status = batch["status"]
        assert status["phase"] == "Succeeded", status
        inputs = input_keys("input/", 30)
        assert status["items"]["total"] == status["items"]["succeeded"] == 30
        assert status["completedItems"] == "1-30" and status["sizing"]["mode"] == "Adaptive"
        written = outputs_by_input(harness)
        assert sorted(written) == inputs  # decoys (README.txt, thumbs/*.png, archive/*) got none
        assert status["invocations"]["total"] == len({job["metadata"]["name"] for job in harness.jobs()})

        manifest = harness.objects("input/index.txt")
        assert manifest["input/index.txt"].decode().splitlines() == inputs
        results = json.loads(manifest["input/index.txt.results.json"])
        assert results["phase"] == "Succeeded"
        assert results["succeededItems"] == "1-30" and results["failedItems"] == []
        assert all(r["outcome"] == "succeeded" and len(r["jobs"]) == 1 for r in results["ranges"])

        assert harness.samples, "the watcher saw the batch running"
        for sample in harness.samples:
            counts = sample.status.get("items")
            if counts:
                assert counts["pending"] + counts["running"] + counts["succeeded"] + counts["failed"] == counts["total"]
            assert not sample.unschedulable_pods, "a pod was left Pending for lack of capacity"
        # 3 workers × 4 CPU, 1 CPU taken by another tenant, 1-CPU service: 11 slots, all of them by default.
        assert max(s.active_jobs for s in harness.samples) <= 11
        assert max(s.status.get("parallelism", 0) for s in harness.samples) == 11
        # the first wave: one range per slot, together 80% of the items (and the rest, carved after)
        assert status["rangePlan"].startswith("1:")

        assert harness.events("Listed") and harness.events("BatchSucceeded")
        # The operator's Events say who it is, not the framework it is built on.
        for event in harness.events("Listed") + harness.events("BatchSucceeded"):
            assert event["reportingComponent"] == event["source"]["component"] == "oscar-batch-operator", event
            assert event["metadata"]["name"].startswith("oscar-batch-") and event["reportingInstance"], event
        metadata = batch["metadata"]
        assert not [key for key in metadata.get("annotations") or {} if "kopf.zalando.org" in key]
        assert metadata.get("finalizers") in (None, [], ["batch.oscarbatch.dev/finalizer"])
        events = kubectl(harness.kubeconfig, "get", "events").stdout.splitlines()
        assert events[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        assert any("BatchSucceeded" in line and "oscarbatchjob/batch" in line for line in events)
        headers, rows = table_rows(kubectl(harness.kubeconfig, "get", "oscarbatchjobs", "-o", "wide").stdout)
        row = next(row for row in rows if row["NAME"] == "batch")
        assert [row[h] for h in ("PHASE", "PROGRESS", "RUNNING", "FAILED", "REASON", "ITEMS")] == \
            ["Succeeded", "30/30", "0", "0", "", "30"]
        assert row["STARTED"] and row["COMPLETED"] and row["SERVICE"] == harness.config.service


def test_injected_failures_are_retried_and_the_batch_succeeds(tmp_path):
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, failure_rate=0.25, seed=3)
    with Harness(config(behaviour=behaviour), tmp_path) as harness:
        harness.apply(retries=8, itemsPerInvocation=2)
        batch = harness.wait_for_phase("Succeeded", "Failed")
        assert batch["status"]["phase"] == "Succeeded", batch["status"]
        assert batch["status"]["invocations"]["retried"] > 0
        assert sorted(outputs_by_input(harness)) == input_keys("input/", 30)
        assert harness.events("RangeSplit") or harness.events("ItemRetried")
        # Every line succeeded in exactly one Job.
        per_line = collections.Counter(
            line for job in harness.jobs() if (job.get("status") or {}).get("succeeded")
            for line in range(*lines_of(job)))
        assert sorted(per_line) == list(range(1, 31)) and set(per_line.values()) == {1}


def test_an_item_failing_beyond_its_retries_fails_the_batch_and_is_named(tmp_path):
    # Line 7 alone always fails: one-line ranges, so the failing range is that item.
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, failing_ranges=frozenset({(7, 8)}))
    with Harness(config(behaviour=behaviour), tmp_path) as harness:
        harness.apply(retries=1, itemsPerInvocation=1)
        batch = harness.wait_for_phase("Succeeded", "Failed")
        status = batch["status"]
        assert status["phase"] == "Failed"
        assert status["failedItems"] == "7" and status["items"]["succeeded"] == 29
        [detail] = status["failedItemDetails"]
        assert detail["line"] == 7 and detail["key"] == input_keys("input/", 30)[6]
        assert detail["reason"] == "Error (exit code 1)" and detail["job"].endswith("-l7-8-a2")
        assert "line 7 (" in status["message"]
        failed = [c for c in status["conditions"] if c["type"] == "Failed"]
        assert failed and failed[0]["status"] == "True" and failed[0]["reason"] == "ItemsFailed"
        attempts = [job["metadata"]["name"] for job in harness.jobs() if "-l7-8-" in job["metadata"]["name"]]
        assert sorted(attempts)[-1].endswith("-l7-8-a2") and len(attempts) == 2
        assert harness.events("ItemFailed")
        results = json.loads(harness.objects("input/index.txt.results.json")["input/index.txt.results.json"])
        assert results["failedItems"] == [detail]


def test_tolerated_failures_let_the_batch_succeed(tmp_path):
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, failing_ranges=frozenset({(7, 8)}))
    with Harness(config(behaviour=behaviour), tmp_path) as harness:
        harness.apply(retries=0, itemsPerInvocation=1, toleratedFailures=1)
        status = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert status["phase"] == "Succeeded" and status["failedItems"] == "7"


def test_a_missing_secret_is_reported_and_the_batch_starts_once_it_exists(tmp_path):
    with Harness(config(items=4), tmp_path) as harness:
        harness.apply(secrets=False)

        def reported() -> dict | None:
            conditions = (harness.batch().get("status") or {}).get("conditions") or []
            return next((c for c in conditions if c.get("reason") == "SecretNotFound"), None)

        condition = wait_until(reported, timeout=30, message="the SecretNotFound condition")
        assert condition["status"] == "False" and "oscar-credentials" in condition["message"]
        # The Event is posted by a task of its own: it may land a moment after the condition.
        wait_until(lambda: harness.events("SecretNotFound"), timeout=10, message="the SecretNotFound Event")
        # kubectl says why at a glance; a describe's Events are from the operator.
        assert harness.batch()["status"]["reason"] == "SecretNotFound"
        [row] = table_rows(kubectl(harness.kubeconfig, "get", "oscarbatchjobs").stdout)[1]
        assert (row["PHASE"], row["REASON"]) == ("Pending", "SecretNotFound")
        described = kubectl(harness.kubeconfig, "describe", "oscarbatchjob", "batch").stdout
        assert any("SecretNotFound" in line and "oscar-batch-operator" in line for line in described.splitlines())
        harness.apply()  # now with the Secrets
        assert harness.wait_for_phase("Succeeded", "Failed", timeout=60)["status"]["phase"] == "Succeeded"


def test_an_unknown_service_is_reported_without_losing_the_batch(tmp_path):
    with Harness(config(items=4), tmp_path) as harness:
        harness.apply(service="no-such-service")

        def reported() -> dict | None:
            conditions = (harness.batch().get("status") or {}).get("conditions") or []
            return next((c for c in conditions if c.get("reason") == "ServiceNotFound"), None)

        condition = wait_until(reported, timeout=30, message="the ServiceNotFound condition")
        assert "no-such-service" in condition["message"]
        password = harness.config.oscar_password
        assert password not in json.dumps(harness.batch()) and password not in harness.operator.log.read_text()


def test_a_restarted_operator_resumes_without_invoking_anything_twice(tmp_path):
    slow = Behaviour(item_seconds=4.0, startup_seconds=1.0, time_scale=0.01, seed=5)
    with Harness(config(items=40, behaviour=slow), tmp_path) as harness:
        harness.apply(itemsPerInvocation=2)
        wait_until(lambda: ((harness.batch().get("status") or {}).get("items") or {}).get("succeeded", 0) >= 6,
                   timeout=60, message="a few ranges to succeed")
        harness.operator.kill()
        harness.operator.start()
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=90)["status"]
        assert status["phase"] == "Succeeded"
        names = [job["metadata"]["name"] for job in harness.jobs()]
        assert len(names) == len(set(names)) == 20  # one Job per range: nothing invoked twice
        assert sorted(outputs_by_input(harness)) == input_keys("input/", 40)


@pytest.mark.parametrize("change", ["node added", "node cordoned"])
def test_parallelism_follows_nodes_joining_and_leaving(tmp_path, change):
    # Long items keep the batch running while the cluster changes under it.
    slow = Behaviour(item_seconds=10.0, startup_seconds=1.0, time_scale=0.01, seed=2)
    nodes = (control_plane(), *workers(2, cpu="2", memory="4Gi"))
    with Harness(config(items=200, nodes=nodes, tenant_pods=(), behaviour=slow), tmp_path) as harness:
        harness.apply(itemsPerInvocation=1, capacityHeadroom=1.0)

        def parallelism() -> int:
            return (harness.batch().get("status") or {}).get("parallelism", 0)

        wait_until(lambda: parallelism() == 4, timeout=30, message="parallelism 4 on two 2-CPU workers")
        if change == "node added":
            extra = workers(3, cpu="2", memory="4Gi")[2]
            harness.sandbox.call(lambda: harness.sandbox.kube.create("v1/nodes", extra.to_object()))
            wait_until(lambda: parallelism() == 6, timeout=30, message="parallelism to rise to 6")
        else:
            harness.sandbox.call(lambda: harness.sandbox.kube.patch("v1/nodes", None, "worker-2",
                                                                    {"spec": {"unschedulable": True}}))
            wait_until(lambda: parallelism() == 2, timeout=30, message="parallelism to fall to 2")


@pytest.mark.parametrize("legacy_status", [False, True], ids=["current status", "legacy status"])
def test_without_permission_to_list_nodes_the_plan_comes_from_oscar(tmp_path, legacy_status):
    with Harness(config(forbidden=frozenset({"v1/nodes"}), legacy_status=legacy_status), tmp_path) as harness:
        assert "forbidden" in kubectl(harness.kubeconfig, "get", "nodes", check=False).stderr
        harness.apply()
        harness.start_sampling()
        status = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert status["phase"] == "Succeeded"
        assert sorted(outputs_by_input(harness)) == input_keys("input/", 30)
        assert max(s.status.get("parallelism", 0) for s in harness.samples) > 0
        assert not any(s.unschedulable_pods for s in harness.samples)


def test_two_batches_share_the_cluster_and_each_processes_its_inputs(tmp_path):
    slow = Behaviour(item_seconds=3.0, startup_seconds=1.0, time_scale=0.005, seed=4)
    with Harness(config(items=40, behaviour=slow), tmp_path) as harness:
        harness.apply("first", itemsPerInvocation=1, manifestKey="manifests/first.txt")
        harness.apply("second", itemsPerInvocation=1, manifestKey="manifests/second.txt")

        def split_evenly() -> bool:
            statuses = [harness.batch(name).get("status") or {} for name in ("first", "second")]
            return all(s.get("phase") == "Running" for s in statuses) and \
                [s.get("parallelism") for s in statuses] == [6, 5]

        # 11 slots split between the two batches once both dispatch, the leftover one to the older.
        wait_until(split_evenly, timeout=30, message="both batches to run with 6 and 5 slots")
        for name in ("first", "second"):
            assert harness.wait_for_phase("Succeeded", "Failed", name=name)["status"]["phase"] == "Succeeded"
        manifests = harness.objects("manifests/")
        for name in ("first", "second"):
            assert manifests[f"manifests/{name}.txt"].decode().splitlines() == input_keys("input/", 40)


def test_a_manifest_key_held_by_an_unfinished_batch_is_refused_until_it_finishes(tmp_path):
    slow = Behaviour(item_seconds=3.0, startup_seconds=1.0, time_scale=0.005, seed=4)
    with Harness(config(items=40, behaviour=slow), tmp_path) as harness:
        harness.apply("owner", itemsPerInvocation=1)
        harness.wait_for_phase("Running", "Succeeded", name="owner")
        harness.apply("latecomer")

        def refused() -> dict | None:
            conditions = (harness.batch("latecomer").get("status") or {}).get("conditions") or []
            return next((c for c in conditions if c.get("reason") == "ManifestKeyInUse"), None)

        condition = wait_until(refused, timeout=30, message="the ManifestKeyInUse condition")
        assert "default/owner" in condition["message"]
        assert harness.wait_for_phase("Succeeded", name="owner")
        latecomer = harness.wait_for_phase("Succeeded", "Failed", name="latecomer")["status"]
        assert latecomer["phase"] == "Succeeded" and latecomer["items"]["total"] == 40


def test_a_service_script_reading_only_start_and_end_works_unchanged(tmp_path):
    original = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, original_script=True)
    with Harness(config(behaviour=original), tmp_path) as harness:
        harness.apply(itemsPerInvocation=4)
        status = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert status["phase"] == "Succeeded" and status["manifest"] == "s3://e2e-bucket/input/index.txt"
        assert sorted(outputs_by_input(harness)) == input_keys("input/", 30)


def test_a_suspended_batch_invokes_nothing_until_resumed(tmp_path):
    with Harness(config(items=8), tmp_path) as harness:
        harness.apply(suspend=True, itemsPerInvocation=2)
        status = harness.wait_for_phase("Suspended")["status"]
        assert status["items"]["total"] == 8 and status["items"]["pending"] == 8 and not harness.jobs()
        kubectl(harness.kubeconfig, "patch", "obatch", "batch", "--type=merge", "-p", '{"spec": {"suspend": false}}')
        assert harness.wait_for_phase("Succeeded", "Failed")["status"]["phase"] == "Succeeded"


def test_a_prefix_with_no_inputs_succeeds_with_zero_items(tmp_path):
    with Harness(config(items=3), tmp_path) as harness:
        harness.apply(storage={"prefix": "nothing-here/"})
        status = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert status["phase"] == "Succeeded" and status["items"]["total"] == 0
        assert "no input" in status["message"]


def test_headroom_never_rounds_a_lone_free_slot_away(tmp_path):
    # One worker with room for exactly one invocation: floor(0.8 × 1) = 0, yet the batch must progress.
    nodes = (control_plane(), *workers(1, cpu="1", memory="2Gi"))
    with Harness(config(items=4, nodes=nodes, tenant_pods=()), tmp_path) as harness:
        harness.apply(itemsPerInvocation=2)
        status = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert status["phase"] == "Succeeded"


def test_finished_jobs_are_deleted_through_oscar_by_default(tmp_path):
    with Harness(config(items=20), tmp_path) as harness:
        harness.apply(itemsPerInvocation=2, keepJobs=False)
        status = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert status["phase"] == "Succeeded" and status["items"]["succeeded"] == 20
        wait_until(lambda: not harness.jobs() and not harness.pods(), timeout=30,
                   message="every finished Job and its pod to be deleted")
        assert sorted(outputs_by_input(harness)) == input_keys("input/", 20)
        assert not harness.events("JobsLeft")


def test_deleting_a_batch_deletes_its_finished_jobs_too(tmp_path):
    slow = Behaviour(item_seconds=4.0, startup_seconds=1.0, time_scale=0.02, seed=6)
    with Harness(config(items=40, behaviour=slow), tmp_path) as harness:
        harness.apply(itemsPerInvocation=2, keepJobs=False, maxParallelism=2)
        wait_until(lambda: ((harness.batch().get("status") or {}).get("items") or {}).get("succeeded", 0) >= 4,
                   timeout=60, message="a few ranges to succeed")
        kubectl(harness.kubeconfig, "delete", "obatch", "batch", "--wait=false")
        wait_until(lambda: not harness.batch(), timeout=30, message="the batch to be deleted")
        assert not harness.jobs()
        # Events are posted by the operator's own task: the last one may land just after the batch is gone.
        [event] = wait_until(lambda: harness.events("Cancelled"), timeout=10, message="the Cancelled Event")
        assert "deleted" in event["message"] and "in flight" not in event["message"]


def test_a_batch_with_corrupt_inputs_processes_every_other_item_and_names_the_bad_ones(tmp_path):
    # Three inputs the service can never read; automatic (adaptive) ranges, the default retries.
    corrupt = frozenset({4, 17, 18})
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, seed=8,
                          corrupt_inputs=frozenset(input_key("input/", n) for n in corrupt))
    with Harness(config(items=40, behaviour=behaviour), tmp_path) as harness:
        harness.apply(retries=1, toleratedFailures=3)
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=120)["status"]
        assert status["phase"] == "Succeeded" and status["conditions"], status      # 3 failed items tolerated
        assert status["failedItems"] == "4,17-18"
        keys = input_keys("input/", 40)
        named = [(detail["line"], detail["key"]) for detail in status["failedItemDetails"]]
        assert named == [(line, keys[line - 1]) for line in sorted(corrupt)]
        assert all(d["reason"] == "Error (exit code 1)" for d in status["failedItemDetails"])
        # every other input has its output, written by a Job that succeeded
        written = outputs_by_input(harness)
        assert sorted(written) == [key for n, key in enumerate(keys, 1) if n not in corrupt]
        succeeded = collections.Counter(line for job in harness.jobs() if (job.get("status") or {}).get("succeeded")
                                        for line in range(*lines_of(job)))
        assert sorted(succeeded) == [n for n in range(1, 41) if n not in corrupt]
        assert set(succeeded.values()) == {1}
        assert harness.events("RangeSplit") and harness.events("ItemFailed")
        # `oscar-batch status`: the batch at a glance, each failed item with its key and last Job
        shown = subprocess.run([str(BIN / "oscar-batch"), "status", "batch", "--kubeconfig", str(harness.kubeconfig)],
                               capture_output=True, text=True, timeout=30, check=True).stdout
        assert shown.splitlines()[0].startswith("default/batch  Succeeded  [") and "37/40 items succeeded" in shown
        for detail in status["failedItemDetails"]:
            assert f"line {detail['line']}  {detail['key']}  {detail['job']}  Error (exit code 1)" in shown
        missing = subprocess.run([str(BIN / "oscar-batch"), "status", "nope", "--kubeconfig",
                                  str(harness.kubeconfig)], capture_output=True, text=True, timeout=30)
        assert missing.returncode == 2 and "no OscarBatchJob 'nope' in namespace 'default'" in missing.stderr


def test_evicted_pods_run_their_lines_again_at_no_cost(tmp_path):
    # The sandbox draws one eviction chance per container in the order they start: with a fixed seed the
    # number of evictions among 60 one-line invocations is fixed, which lines they hit is not.
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, seed=12, disruption_rate=0.2)
    with Harness(config(items=60, behaviour=behaviour), tmp_path) as harness:
        harness.apply(retries=0, itemsPerInvocation=1)          # no retry to spend: a counted failure would show
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=120)["status"]
        assert status["invocations"]["disrupted"] > 0 and status["invocations"]["retried"] == 0, status
        # A line evicted 4 times in a row counts as failing (the service's problem, then); nothing else fails.
        failed = {detail["line"] for detail in status["failedItemDetails"]}
        assert all("disrupted 4 times" in detail["reason"] for detail in status["failedItemDetails"]), status
        assert status["phase"] == ("Failed" if failed else "Succeeded"), status
        keys = input_keys("input/", 60)
        assert set(outputs_by_input(harness)) >= {key for line, key in enumerate(keys, 1) if line not in failed}
        assert harness.events("RangeDisrupted")


def test_with_kueue_queued_jobs_are_not_running_and_the_owners_quota_sets_parallelism_in_the_owners_namespace(
        tmp_path):
    # OSCAR v4 with Kueue: the service's owner has 2 CPUs of quota; the nodes would fit many more 1-CPU Jobs.
    slow = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.3, seed=3)   # a re-plan during each Job
    # Its services and Jobs live in a namespace of the owner's, which only the service definition says.
    with Harness(config(items=24, kueue_cpu="2", services_namespace="oscar-alice", behaviour=slow),
                 tmp_path) as harness:
        harness.apply(itemsPerInvocation=2)
        harness.start_sampling()
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=120)["status"]
        assert status["phase"] == "Succeeded", status
        assert sorted(outputs_by_input(harness)) == input_keys("input/", 24)
        statuses = [sample.status for sample in harness.samples if sample.status]
        assert any((s.get("invocations") or {}).get("queued") for s in statuses)
        waiting = [c["message"] for s in statuses for c in s.get("conditions") or ()
                   if c["type"] == "Progressing" and c["reason"] == "WaitingForKueue"]
        assert waiting and "waiting for Kueue admission: quota cpu 2, memory 64Gi, in use cpu 2" in waiting[0]
        planned = [s["parallelism"] for s in statuses if s.get("phase") == "Running" and s.get("parallelism")]
        assert planned[-1] <= 2, planned                      # from the quota, not from the nodes
        succeeded = collections.Counter(line for job in harness.jobs() if (job.get("status") or {}).get("succeeded")
                                        for line in range(*lines_of(job)))
        assert set(succeeded.values()) == {1} and len(succeeded) == 24


def test_plan_batch_is_a_dry_run_that_learns_its_eta_from_the_services_past_jobs(tmp_path):
    with Harness(config(items=30), tmp_path) as harness:
        *secrets, batch = batch_manifests(harness.sandbox.info, name="planned", itemsPerInvocation=0)
        (tmp_path / "secrets.yaml").write_text(yaml.safe_dump_all(secrets))
        kubectl(harness.kubeconfig, "apply", "--validate=false", "-f", str(tmp_path / "secrets.yaml"))
        planned = tmp_path / "planned.yaml"
        planned.write_text(yaml.safe_dump_all([*secrets, batch]))

        def plan() -> str:
            return subprocess.run([str(BIN / "oscar-batch"), "plan", "batch", str(planned), "--kubeconfig",
                                   str(harness.kubeconfig)], capture_output=True, text=True, timeout=60,
                                  check=True).stdout

        before = plan()
        assert "inputs: 30 in s3://e2e-bucket/input/ (first: input/frame-000001.jpg," in before, before
        assert "Jobs in namespace oscar-svc" in before and "  worker-1: " in before and "ranges: " in before
        assert "ETA: unknown" in before and before.rstrip().endswith("nothing was invoked or written")
        assert harness.sandbox.sandbox.oscar.accepted_invocations == 0 and not harness.batch("planned")
        assert "input/index.txt" not in harness.objects("input/")          # no manifest written

        harness.apply(name="ran", itemsPerInvocation=3)                      # the service's past Jobs
        harness.wait_for_phase("Succeeded", name="ran", timeout=120)
        after = plan()
        assert "ETA: about " in after and "from 10 finished range(s) of this service" in after, after
        missing = subprocess.run([str(BIN / "oscar-batch"), "plan", "batch", str(tmp_path / "secrets.yaml")],
                                 capture_output=True, text=True, timeout=30)
        assert missing.returncode == 2 and "holds 0 OscarBatchJob documents" in missing.stderr


# Keys moto stores (it refuses a line feed: the real tier's MinIO test has that one), all ending in .jpg.
LISTABLE_AWKWARD = ["input/tab\there.jpg", "input/\t.jpg", "input/ leading.jpg", "input/trailing .jpg",
                    "input/caf\u00e9.jpg", "input/cafe\u0301.jpg", "input/\U0001f41f.jpg", "input/nul\x00.jpg"]
UNLISTABLE_AWKWARD = ["input/a\rb.jpg", "input/l\u2028s.jpg", "input/n\x85l.jpg"]


WHITESPACE_KEYS = [" ", "\t", " \t "]   # a whole key of blanks: the batch lists from the bucket's root for them


def test_awkward_keys_each_get_one_output_and_unlistable_ones_are_reported(tmp_path):
    # A bucket of its own: the sandbox's seeding of a used bucket deletes through S3's XML, which cannot carry
    # some of these keys (moto keeps its buckets for the whole test process).
    with Harness(config(items=12, bucket="e2e-awkward"), tmp_path) as harness:
        s3 = harness.sandbox.sandbox.s3.client(harness.config.s3_access_key, harness.config.s3_secret_key)
        for key in [*LISTABLE_AWKWARD, *UNLISTABLE_AWKWARD, "input/folder/", "input/photos.jpg/"]:
            s3.put_object(harness.config.bucket, key, io.BytesIO(b"" if key.endswith("/") else b"jpeg"),
                          0 if key.endswith("/") else 4)
        for key in WHITESPACE_KEYS:   # the minio client refuses a blank key; S3 and moto take it
            harness.sandbox.sandbox.s3.put_in_process(harness.config.bucket, key, b"jpeg")
        harness.apply(itemsPerInvocation=3, toleratedFailures=len(UNLISTABLE_AWKWARD),
                      storage={"prefix": "", "include": ["input/*.jpg", *WHITESPACE_KEYS], "exclude": []})
        batch = harness.wait_for_phase("Succeeded", "Failed")

        status = batch["status"]
        inputs = sorted(input_keys("input/", 12) + LISTABLE_AWKWARD + WHITESPACE_KEYS, key=str.encode)
        assert status["phase"] == "Succeeded", status
        assert status["items"]["total"] == status["items"]["succeeded"] == len(inputs)
        assert status["items"]["unlisted"] == len(UNLISTABLE_AWKWARD)
        unlisted = sorted(UNLISTABLE_AWKWARD, key=str.encode)
        assert [entry["key"] for entry in status["unlistedItems"]] == unlisted
        complete = next(c for c in status["conditions"] if c["type"] == "Complete")
        assert complete["reason"] == "InputsUnlistedTolerated" and "3 input(s) left out" in complete["message"]

        # Each listable input got exactly its own output, byte for byte; nothing else got one.
        assert sorted(outputs_by_input(harness), key=str.encode) == inputs
        manifest = harness.objects("index.txt")
        assert manifest["index.txt"] == b"".join(key.encode() + b"\n" for key in inputs)
        results = json.loads(manifest["index.txt.results.json"])
        assert results["items"]["unlisted"] == len(unlisted)
        assert [entry["key"] for entry in results["unlistedItems"]] == unlisted
        [event] = harness.events("InputsUnlisted")
        assert event["type"] == "Warning" and "3 input key(s) left out" in event["message"]
        assert "'input/a\\rb.jpg'" in event["message"]
        shown = subprocess.run([str(BIN / "oscar-batch"), "status", "batch", "--kubeconfig", str(harness.kubeconfig)],
                               capture_output=True, text=True, check=True).stdout
        assert "left out of the manifest, a line break in the key (3):\n  'input/a\\rb.jpg'\n" in shown
        planned = subprocess.run([str(BIN / "oscar-batch"), "plan", "batch", str(tmp_path / "batch.yaml"),
                                  "--kubeconfig", str(harness.kubeconfig)], capture_output=True, text=True, check=True)
        assert f"inputs: {len(inputs)} in s3://" in planned.stdout and "left out: 3 input key(s)" in planned.stdout

        # Deleting the batch removes what it wrote beside the inputs, the unlisted keys' object too.
        assert "index.txt.unlisted.json" in manifest
        kubectl(harness.kubeconfig, "delete", "oscarbatchjob", "batch", "--wait=false")
        wait_until(lambda: not harness.batch(), timeout=30, message="the batch to be deleted")
        assert set(harness.objects("index.txt")) == {"index.txt.results.json"}


def test_inputs_left_out_are_all_in_the_results_after_a_restart_and_fail_an_intolerant_batch(tmp_path):
    slow = Behaviour(item_seconds=4.0, startup_seconds=1.0, time_scale=0.01, seed=5)
    left_out = [f"input/bad-{number:02d}\r.jpg" for number in range(UNLISTED_SAMPLE + 2)]
    with Harness(config(items=20, behaviour=slow, bucket="e2e-left-out"), tmp_path) as harness:
        s3 = harness.sandbox.sandbox.s3.client(harness.config.s3_access_key, harness.config.s3_secret_key)
        for key in left_out:
            s3.put_object(harness.config.bucket, key, io.BytesIO(b"jpeg"), 4)
        harness.apply(itemsPerInvocation=2)
        wait_until(lambda: ((harness.batch().get("status") or {}).get("items") or {}).get("unlisted"),
                   timeout=30, message="the listing to be recorded")
        harness.operator.kill()        # status keeps 10 of them: the other 2 only the object beside the manifest
        harness.operator.start()
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=90)["status"]

        assert (status["phase"], status["reason"]) == ("Failed", "InputsUnlisted"), status
        assert status["items"]["succeeded"] == status["items"]["total"] == 20
        assert status["items"]["unlisted"] == len(left_out) and len(status["unlistedItems"]) == UNLISTED_SAMPLE
        assert f"{len(left_out)} input(s) left out of the manifest" in status["message"]
        results = json.loads(harness.objects("input/index.txt.results.json")["input/index.txt.results.json"])
        assert [entry["key"] for entry in results["unlistedItems"]] == left_out   # all 12, after the restart
        assert results["phase"] == "Failed" and results["items"]["unlisted"] == len(left_out)
