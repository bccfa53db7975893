"""A batch's life beyond the happy path, end to end: keys it must not overwrite, a bucket that is not there,
cancellation on delete (with OSCAR up and down), redrive, live edits of a finished batch, immutable fields
where no CEL runs, fair sharing with batches that cannot dispatch, backoff and Event aggregation.

The operator runs as a subprocess (`oscar-batch run`, real kopf) against the sandbox; users act with kubectl.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any

from harness import FAST_TIMING, Harness
from oscar_batch.clients import manifest
from oscar_batch.clients.oscar import OscarClient
from oscar_batch.core.spec import parse_spec
from oscar_batch.core.tokens import Basic
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from oscar_batch_sandbox.handoff import OSCAR_SECRET, S3_SECRET
from oscar_batch_sandbox.s3 import decoy_keys, input_keys
from proxy import TcpProxy
from support import kubectl, wait_until

FAST = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, seed=11)
# About half a second per item: a batch stays running long enough to be edited or deleted under way.
SLOW = Behaviour(item_seconds=50.0, item_jitter=0.2, startup_seconds=1.0, time_scale=0.01, seed=5)
CANCEL_TIMEOUT = float(FAST_TIMING[FAST_TIMING.index("--cancel-timeout") + 1])
BUCKET = "e2e-bucket"


def config(**overrides: Any) -> SandboxConfig:
    return SandboxConfig(**{"items": 30, "bucket": BUCKET, "behaviour": FAST, **overrides})


# ---- reading a batch ------------------------------------------------------------------------------

def status_of(harness: Harness, name: str = "batch") -> dict[str, Any]:
    return harness.batch(name).get("status") or {}


def condition(batch: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions = (batch.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), None)


def wait_for_reason(harness: Harness, reason: str, name: str = "batch", kind: str = "Progressing",
                    timeout: float = 30) -> dict[str, Any]:
    """The batch once its `kind` condition has `reason`."""
    def reported() -> dict[str, Any] | None:
        batch = harness.batch(name)
        found = condition(batch, kind)
        return batch if found and found.get("reason") == reason else None
    return wait_until(reported, timeout=timeout, message=f"batch {name}: {kind} condition with reason {reason}")


def events_of(harness: Harness, reason: str, name: str = "batch") -> list[dict[str, Any]]:
    return [e for e in harness.events(reason) if (e.get("involvedObject") or {}).get("name") == name]


def wait_for_event(harness: Harness, reason: str, name: str = "batch", timeout: float = 15) -> dict[str, Any]:
    """The operator posts Events from a queue of its own: they may land a moment after what caused them."""
    return wait_until(lambda: (events_of(harness, reason, name) or [None])[-1], timeout=timeout,
                      message=f"an Event {reason} for batch {name}")


def warnings_about(harness: Harness, text: str, name: str = "batch") -> list[str]:
    """The operator's log lines reporting `text` for one batch."""
    return [line for line in harness.operator.log.read_text().splitlines()
            if f"batch default/{name}: " in line and text in line]


def active_jobs(harness: Harness) -> list[str]:
    return sorted(job["metadata"]["name"] for job in harness.jobs() if not _finished(job))


def _finished(job: dict[str, Any]) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or ())


def outputs_by_input(harness: Harness) -> dict[str, str]:
    """Which Job wrote the result of each input."""
    results = harness.objects(harness.config.behaviour.output_prefix)
    return {json.loads(body)["input"]: json.loads(body)["job"] for body in results.values()}


def patch_spec(harness: Harness, spec: dict[str, Any], name: str = "batch") -> None:
    kubectl(harness.kubeconfig, "patch", "oscarbatchjob", name, "--type=merge", "-p", json.dumps({"spec": spec}))


def wait_until_gone(harness: Harness, name: str = "batch", timeout: float = 30) -> None:
    wait_until(lambda: not harness.batch(name), timeout=timeout, message=f"batch {name} to be deleted")


# ---- keys the batch must not overwrite ----------------------------------------------------------

def assert_refused(harness: Harness, key: str, field: str, original: bytes) -> None:
    """KeyConflict naming the key and the field, tried again (with backoff) and refused again: still nothing
    invoked, nothing written."""
    batch = wait_for_reason(harness, "KeyConflict")
    message = condition(batch, "Progressing")["message"]
    assert f"s3://{BUCKET}/{key}" in message and field in message
    wait_until(lambda: len(warnings_about(harness, "already exists")) >= 2, timeout=15,
               message="the key conflict to be retried")
    assert status_of(harness)["phase"] == "Pending"
    assert not harness.jobs()
    assert harness.objects(key)[key] == original


def test_a_manifest_key_naming_an_input_is_refused_until_it_names_a_free_key(tmp_path):
    image = input_keys("input/", 1)[0]
    with Harness(config(), tmp_path) as harness:
        original = harness.objects(image)[image]
        harness.apply(manifestKey=image, itemsPerInvocation=5)
        harness.start_sampling()

        assert_refused(harness, image, "spec.manifestKey", original)
        assert len(events_of(harness, "KeyConflict")) == 1
        refused = len(harness.samples)

        patch_spec(harness, {"manifestKey": "manifests/free.txt"})
        status = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert status["phase"] == "Succeeded", status
        assert status["manifest"] == f"s3://{BUCKET}/manifests/free.txt" and status["items"]["total"] == 30
        assert {s.status.get("phase", "Pending") for s in harness.samples[:refused]} == {"Pending"}
        assert sorted(outputs_by_input(harness)) == input_keys("input/", 30)
        assert harness.objects(image)[image] == original


def test_a_results_key_naming_a_foreign_object_is_refused_and_the_object_left_alone(tmp_path):
    readme = decoy_keys("input/")[0]
    assert readme == "input/README.txt"
    with Harness(config(), tmp_path) as harness:
        original = harness.objects(readme)[readme]
        harness.apply(resultsKey=readme)

        assert_refused(harness, readme, "spec.resultsKey", original)


# ---- storage --------------------------------------------------------------------------------------

def test_an_absent_bucket_is_reported_and_nothing_is_listed(tmp_path):
    with Harness(config(items=4), tmp_path) as harness:
        harness.apply(storage={"bucket": "no-such-bucket"})
        harness.start_sampling()

        batch = wait_for_reason(harness, "BucketNotFound")
        message = condition(batch, "Progressing")["message"]
        assert "'no-such-bucket'" in message and harness.sandbox.info["s3"]["endpoint"] in message
        wait_until(lambda: len(warnings_about(harness, "does not exist")) >= 2, timeout=15,
                   message="the missing bucket to be looked for again")
        assert status_of(harness)["phase"] == "Pending"
        assert {s.status.get("phase", "Pending") for s in harness.samples} == {"Pending"}  # never Listing
        assert harness.events("BucketNotFound")
        assert not harness.jobs()


# ---- cancellation on delete ---------------------------------------------------------------------

def _delete_while_running(harness: Harness, least_active: int) -> None:
    """Wait until `least_active` Jobs run, then delete the batch as a user would, without waiting."""
    wait_until(lambda: len(active_jobs(harness)) >= least_active, timeout=30, message=f"{least_active} Jobs in flight")
    kubectl(harness.kubeconfig, "delete", "oscarbatchjob", "batch", "--wait=false")


def test_deleting_a_running_batch_cancels_its_jobs_and_removes_its_manifest(tmp_path):
    with Harness(config(items=40, behaviour=SLOW), tmp_path) as harness:
        harness.apply(itemsPerInvocation=4)
        _delete_while_running(harness, least_active=4)
        wait_until_gone(harness)

        assert active_jobs(harness) == []
        assert "input/index.txt" not in harness.objects("input/index.txt")
        message = wait_for_event(harness, "Cancelled")["message"]
        assert len(events_of(harness, "Cancelled")) == 1
        assert "deleted" in message and "Job(s) in flight" in message
        assert "removed the manifest s3://e2e-bucket/input/index.txt" in message
        assert not harness.events("CancelIncomplete")


def test_a_batch_whose_secrets_went_first_is_cancelled_with_the_credentials_last_read(tmp_path):
    # As when its namespace is deleted: the Secrets may be gone before the batch's finalizer runs.
    with Harness(config(items=40, behaviour=SLOW), tmp_path) as harness:
        harness.apply(itemsPerInvocation=4)
        wait_until(lambda: len(active_jobs(harness)) >= 4, timeout=30, message="4 Jobs in flight")
        kubectl(harness.kubeconfig, "delete", "secret", OSCAR_SECRET, S3_SECRET)
        kubectl(harness.kubeconfig, "delete", "oscarbatchjob", "batch", "--wait=false")
        wait_until_gone(harness)

        assert active_jobs(harness) == []
        assert "input/index.txt" not in harness.objects("input/index.txt")
        event = wait_for_event(harness, "Cancelled")
        message = event["message"]
        assert "deleted" in message and "removed the manifest s3://e2e-bucket/input/index.txt" in message
        assert not harness.events("CancelIncomplete")
        # The operator's own Event names: the batch's UID and a stamp, never drawn at random.
        assert re.fullmatch(rf"oscar-batch-{event['involvedObject']['uid']}\.[0-9a-f]+", event["metadata"]["name"])
        assert event["source"]["component"] == event["reportingComponent"] == "oscar-batch-operator"


def test_deleting_a_batch_that_keeps_its_manifest_leaves_the_manifest(tmp_path):
    with Harness(config(items=40, behaviour=SLOW), tmp_path) as harness:
        harness.apply(itemsPerInvocation=4, keepManifest=True)
        _delete_while_running(harness, least_active=4)
        wait_until_gone(harness)

        assert active_jobs(harness) == []
        manifest = harness.objects("input/index.txt")["input/index.txt"]
        assert manifest.decode().splitlines() == input_keys("input/", 40)
        message = wait_for_event(harness, "Cancelled")["message"]
        assert len(events_of(harness, "Cancelled")) == 1
        assert "kept the manifest s3://e2e-bucket/input/index.txt (spec.keepManifest)" in message


def test_deleting_a_batch_while_oscar_is_unreachable_ends_in_time_and_names_the_jobs_left(tmp_path):
    # Five seconds per item: the Jobs outlive the cancellation's whole time budget.
    crawling = Behaviour(item_seconds=100.0, item_jitter=0.0, startup_seconds=1.0, time_scale=0.05, seed=5)
    with Harness(config(items=40, behaviour=crawling), tmp_path) as harness, \
            TcpProxy(harness.sandbox.info["oscar"]["endpoint"]) as proxy:
        harness.apply(itemsPerInvocation=4, maxParallelism=3, oscar={"endpoint": proxy.url})
        wait_until(lambda: len(active_jobs(harness)) == 3 and
                   (status_of(harness).get("invocations") or {}).get("running") == 3,
                   timeout=30, message="3 Jobs in flight, known to the operator")
        proxy.cut()
        kubectl(harness.kubeconfig, "delete", "oscarbatchjob", "batch", "--wait=false")
        wait_until_gone(harness, timeout=CANCEL_TIMEOUT + 10)

        left = active_jobs(harness)
        assert len(left) == 3  # OSCAR could not be asked to delete them
        event = wait_for_event(harness, "CancelIncomplete")
        assert event["type"] == "Warning"
        message = event["message"]
        assert "3 Job(s) still in OSCAR" in message and all(name in message for name in left)
        assert "removed the manifest" in message  # S3 was reachable: that part of the clean-up happened
        assert not harness.events("Cancelled")


# ---- a batch the previous release started ---------------------------------------------------------

def test_a_batch_the_previous_release_started_is_stopped_with_a_condition_and_still_cancels(tmp_path):
    crawling = Behaviour(item_seconds=100.0, item_jitter=0.0, startup_seconds=1.0, time_scale=0.05, seed=5)
    with Harness(config(items=40, behaviour=crawling), tmp_path) as harness:
        harness.operator.stop()
        # As the previous release left it: status.items a count, fixed ranges, a Job named -r<range> in flight,
        # invoked through OSCAR as that release invoked it.
        harness.apply(itemsPerInvocation=4)
        uid = harness.batch()["metadata"]["uid"]
        previous = {"phase": "Running", "items": 40, "progress": "0/10", "parallelism": 1, "itemsPerInvocation": 4,
                    "ranges": {"total": 10, "pending": 9, "running": 1, "succeeded": 0, "failed": 0, "retried": 0},
                    "completedRanges": "", "failedRanges": "", "manifest": f"s3://{BUCKET}/input/index.txt",
                    "startTime": "2026-01-01T00:00:00Z"}
        kubectl(harness.kubeconfig, "patch", "obatch", "batch", "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": previous}))
        s3 = harness.sandbox.info["s3"]
        spec = parse_spec(harness.batch()["spec"])
        manifest.write(manifest.client(spec, s3["accessKey"], s3["secretKey"]), spec, uid, "default/batch")
        info = harness.sandbox.info["oscar"]
        oscar = OscarClient(info["endpoint"], Basic(info["username"], info["password"]))
        old_job = f"{info['service']}-{uid.replace('-', '')[:12]}-r3-a1"
        oscar.invoke(info["service"], oscar.service(info["service"])["token"], {
            "start": 12, "end": 16, "bucket": BUCKET, "manifest": "input/index.txt",
            "oscarBatch": {"uid": uid, "batch": "default/batch", "range": 3, "attempt": 1, "redrive": 0}}, old_job)
        harness.operator.start()

        def condition() -> dict | None:
            return next((c for c in status_of(harness).get("conditions") or ()
                         if c.get("reason") == "UnsupportedPreviousRelease"), None)
        stopped = wait_until(condition, timeout=30, message="the UnsupportedPreviousRelease condition")
        assert stopped["type"] == "Progressing" and stopped["status"] == "False"
        assert "finish it with that release, or delete it and create it again" in stopped["message"]
        assert wait_for_event(harness, "UnsupportedPreviousRelease")["type"] == "Warning"
        assert status_of(harness)["items"] == 40                      # left as that release needs it
        assert harness.sandbox.sandbox.oscar.accepted_invocations == 1    # only the previous release's
        assert [job["metadata"]["name"] for job in harness.jobs()] == [old_job]

        kubectl(harness.kubeconfig, "delete", "oscarbatchjob", "batch", "--wait=false")
        wait_until_gone(harness)
        message = wait_for_event(harness, "Cancelled")["message"]
        assert "deleted 1 Job(s) in flight" in message and "removed the manifest" in message
        assert harness.jobs() == [] and "Traceback" not in harness.operator.log.read_text()


# ---- redrive and live edits of a finished batch -------------------------------------------------

def test_a_redriven_batch_runs_its_failed_items_again_and_succeeds(tmp_path):
    # Line 7, a range of its own, fails its first invocation only.
    flaky = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, seed=11,
                      failing_ranges=frozenset({(7, 8)}), failing_attempts=1)
    with Harness(config(behaviour=flaky), tmp_path) as harness:
        harness.apply(retries=0, itemsPerInvocation=1)
        failed = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert failed["phase"] == "Failed" and failed["failedItems"] == "7"

        patch_spec(harness, {"redrive": 1})
        batch = wait_until(lambda: (b := harness.batch()).get("status", {}).get("redrive") == 1 and
                           b["status"].get("phase") in ("Succeeded", "Failed") and b, timeout=60,
                           message="the redriven batch to end")
        status = batch["status"]
        assert status["phase"] == "Succeeded", status
        assert not status.get("failedItems") and not status["failedItemDetails"]
        assert status["items"]["succeeded"] == status["items"]["total"] == 30
        assert status["observedGeneration"] == batch["metadata"]["generation"]
        redriven = [job for job in harness.jobs() if "-l7-8-" in job["metadata"]["name"]]
        assert len(redriven) == 2
        again = next(job["metadata"]["name"] for job in redriven if job["metadata"]["name"].endswith("-d1"))
        assert "1 failed item(s) run again" in wait_for_event(harness, "Redriven")["message"]
        written = outputs_by_input(harness)
        assert sorted(written) == input_keys("input/", 30)  # each input has one output, none left out
        assert written["input/frame-000007.jpg"] == again
        # Only the failed item ran again.
        assert sum(1 for job in harness.jobs() if job["metadata"]["name"].endswith("-d1")) == 1


def test_tolerating_a_failure_after_the_end_turns_a_failed_batch_into_a_success(tmp_path):
    doomed = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, seed=11,
                       failing_ranges=frozenset({(7, 8)}))
    with Harness(config(behaviour=doomed), tmp_path) as harness:
        harness.apply(retries=0, itemsPerInvocation=1)
        assert harness.wait_for_phase("Succeeded", "Failed")["status"]["phase"] == "Failed"
        jobs = sorted(job["metadata"]["name"] for job in harness.jobs())

        patch_spec(harness, {"toleratedFailures": 1})
        batch = harness.wait_for_phase("Succeeded")
        complete = condition(batch, "Complete")
        assert complete["status"] == "True" and complete["reason"] == "FailuresTolerated"
        assert batch["status"]["failedItems"] == "7"
        assert batch["status"]["observedGeneration"] == batch["metadata"]["generation"] == 2
        assert sorted(job["metadata"]["name"] for job in harness.jobs()) == jobs  # a new verdict, no new run


# ---- immutable fields where the API server runs no CEL ------------------------------------------

def test_changing_the_service_of_a_running_batch_is_reported_and_ignored(tmp_path):
    with Harness(config(items=24, behaviour=SLOW), tmp_path) as harness:
        harness.apply(itemsPerInvocation=2)
        wait_until(lambda: active_jobs(harness) and status_of(harness).get("phase") == "Running", timeout=30,
                   message="the batch to run")
        patch_spec(harness, {"service": "other-service"})

        batch = wait_for_reason(harness, "ImmutableFieldChanged", kind="InvalidSpec")
        invalid = condition(batch, "InvalidSpec")
        assert invalid["status"] == "True" and "spec.service" in invalid["message"]
        assert batch["status"]["phase"] == "Running"  # noticed by the running batch, which goes on
        event = wait_for_event(harness, "ImmutableFieldChanged")
        assert event["type"] == "Warning" and "spec.service" in event["message"]

        status = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert status["phase"] == "Succeeded", status
        assert sorted(outputs_by_input(harness)) == input_keys("input/", 24)
        names = [job["metadata"]["name"] for job in harness.jobs()]
        assert len(names) == 12 and all(name.startswith("fish-detector-") for name in names)


# ---- sharing the cluster -------------------------------------------------------------------------

def test_batches_that_cannot_dispatch_take_no_share_of_the_cluster(tmp_path):
    broken = [f"broken-{index}" for index in range(4)]
    with Harness(config(items=40, behaviour=SLOW), tmp_path) as harness:
        for name in broken:
            harness.apply(name, oscar={"credentialsSecret": "missing-credentials"},
                          manifestKey=f"manifests/{name}.txt")
        for name in broken:
            wait_for_reason(harness, "SecretNotFound", name=name)
        harness.apply("valid", itemsPerInvocation=1, manifestKey="manifests/valid.txt")

        # 3 workers × 4 CPU, 1 CPU taken by another tenant, 1-CPU service: 11 slots, 80% headroom → 8, as alone.
        status = wait_until(lambda: (s := status_of(harness, "valid")).get("parallelism") == 11 and s,
                            timeout=30, message="the valid batch to get the whole cluster's 11 slots")
        progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
        assert "shared by" not in progressing["message"]
        assert harness.wait_for_phase("Succeeded", "Failed", name="valid")["status"]["phase"] == "Succeeded"
        for name in broken:
            batch = harness.batch(name)
            assert batch["status"]["phase"] == "Pending"
            assert condition(batch, "Progressing")["reason"] == "SecretNotFound"


# ---- pacing: backoff and Event aggregation ------------------------------------------------------

def test_a_permanent_error_is_retried_with_backoff_and_reported_once(tmp_path):
    with Harness(config(items=4), tmp_path) as harness:
        harness.apply(service="no-such-service")
        wait_for_reason(harness, "ServiceNotFound")
        # A rate, so it is measured over a window: ~6 s in which a retry every 0.05 s tick would log ~100 times,
        # and the backoff (0.5, 1, 2, 4 s…) about 4. The batch keeps waiting all along.
        window = time.monotonic() + 6
        while time.monotonic() < window:
            assert condition(harness.batch(), "Progressing")["reason"] == "ServiceNotFound"
            time.sleep(0.2)
        tries = warnings_about(harness, "not found")
        assert 2 <= len(tries) <= 6, tries
        assert len(events_of(harness, "ServiceNotFound")) == 1
        assert status_of(harness)["phase"] == "Pending"


def test_range_failures_are_summarised_instead_of_one_event_each(tmp_path):
    # 25% injected failures, and the first three ranges fail their first run whatever the draw: at least 3 splits.
    flaky = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, failure_rate=0.25, seed=3,
                      failing_ranges=frozenset({(1, 3), (3, 5), (5, 7)}), failing_attempts=1)
    with Harness(config(behaviour=flaky), tmp_path) as harness:
        harness.apply(retries=8, itemsPerInvocation=2)
        status = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert status["phase"] == "Succeeded", status
        retried = status["invocations"]["retried"]
        assert retried >= 3

        summary = wait_until(lambda: next((e for e in events_of(harness, "RangeSplit")
                                           if "more in the last" in e["message"]), None),
                             timeout=15, message="the summary of the held RangeSplit Events")
        events = events_of(harness, "RangeSplit")
        assert len(events) <= 2 < retried
        assert summary["message"].split()[1:5] == ["more", "in", "the", "last"]
        assert sorted(outputs_by_input(harness)) == input_keys("input/", 30)
