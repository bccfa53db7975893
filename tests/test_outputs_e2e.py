"""Declared outputs end to end in the sandbox (the operator as `oscar-batch run`, real kopf, moto, the OSCAR
simulator): the inputs whose outputs exist are not invoked, and their outputs are never rewritten."""
from __future__ import annotations

import io
import json

from harness import Harness
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from oscar_batch_sandbox.runner import output_key
from oscar_batch_sandbox.s3 import input_keys
from support import lines_of

FAST = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, seed=5)
OUTPUTS = {"prefix": "output/"}   # where the sandbox's service writes: output/<key relative to input/>.json


def test_inputs_with_outputs_are_skipped_and_a_second_batch_over_the_same_bucket_invokes_nothing(tmp_path):
    config = SandboxConfig(items=20, bucket="outputs-e2e", behaviour=FAST)
    with Harness(config, tmp_path) as harness:
        s3 = harness.sandbox.sandbox.s3.client(config.s3_access_key, config.s3_secret_key)
        inputs = input_keys(config.prefix, 20)
        done_before = inputs[::2]
        for key in done_before:   # as the service would have written them, by an earlier run
            body = json.dumps({"input": key, "job": "an-earlier-run"}).encode()
            s3.put_object(config.bucket, output_key(key, config.prefix, config.behaviour.output_prefix),
                          io.BytesIO(body), len(body))
        seeded = {obj.object_name: (obj.etag, obj.last_modified)
                  for obj in s3.list_objects(config.bucket, prefix="output/", recursive=True)}
        assert len(seeded) == 10

        harness.apply(outputs=OUTPUTS)
        status = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert status["phase"] == "Succeeded", status
        assert (status["items"]["total"], status["items"]["skipped"], status["items"]["succeeded"]) == (10, 10, 10)
        manifest = harness.objects("input/index.txt")
        rest = [key for key in inputs if key not in done_before]
        assert manifest["input/index.txt"].decode().splitlines() == rest
        assert json.loads(manifest["input/index.txt.skipped.json"]) == done_before
        results = json.loads(manifest["input/index.txt.results.json"])
        assert results["items"]["skipped"] == 10
        assert results["skippedItemsAt"] == f"s3://{config.bucket}/input/index.txt.skipped.json"
        # Only the other half was invoked, each line once; no pre-seeded output was written again.
        invoked = sorted(line for job in harness.jobs() for line in range(*lines_of(job)))
        assert invoked == list(range(1, 11))
        now = {obj.object_name: (obj.etag, obj.last_modified)
               for obj in s3.list_objects(config.bucket, prefix="output/", recursive=True)}
        assert {key: now[key] for key in seeded} == seeded
        written = {json.loads(body)["input"]: json.loads(body)["job"] for body in harness.objects("output/").values()}
        assert sorted(written) == inputs
        assert {written[key] for key in done_before} == {"an-earlier-run"}
        assert all(written[key] != "an-earlier-run" for key in rest)
        [listed] = harness.events("Listed")
        assert "10 input(s) skipped, their outputs exist under s3://outputs-e2e/output/" in listed["message"]

        jobs_before = len(harness.jobs())
        harness.apply("again", outputs=OUTPUTS, manifestKey="manifests/again.txt")
        again = harness.wait_for_phase("Succeeded", "Failed", name="again")["status"]
        assert (again["phase"], again["reason"]) == ("Succeeded", "AllOutputsExist"), again
        assert (again["items"]["total"], again["items"]["skipped"], again["invocations"]["total"]) == (0, 20, 0)
        assert len(harness.jobs()) == jobs_before


def job_outcomes(harness: Harness) -> dict[str, tuple[int, int, bool]]:
    """Every Job of the batch: its lines and whether it succeeded."""
    return {job["metadata"]["name"]: (*lines_of(job), bool((job.get("status") or {}).get("succeeded")))
            for job in harness.jobs()}


def test_corrupt_inputs_are_named_by_key_after_two_generations_and_every_other_input_runs_once(tmp_path):
    corrupt = {9, 23, 24, 57}
    inputs = input_keys("input/", 64)
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, seed=11,
                          corrupt_inputs=frozenset(inputs[n - 1] for n in corrupt))
    with Harness(SandboxConfig(items=64, bucket="resume-e2e", behaviour=behaviour), tmp_path) as harness:
        harness.apply(outputs=OUTPUTS, retries=0, toleratedFailures=4, itemsPerInvocation=16)
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=120)["status"]
        assert status["phase"] == "Succeeded", status
        named = [(detail["line"], detail["key"]) for detail in status["failedItemDetails"]]
        assert named == [(n, inputs[n - 1]) for n in sorted(corrupt)]
        jobs = job_outcomes(harness)
        # The Jobs each corrupt line was in: its first range, then alone (24 follows 23: it runs in the nodes
        # beside 23's path, fails at once, and is then alone).
        holding = {n: sorted(name for name, (start, end, _) in jobs.items() if start <= n < end) for n in corrupt}
        assert all(len(holding[n]) <= 3 for n in corrupt), holding
        assert all(len(holding[n]) == 2 for n in (9, 57)), holding
        # Every other input processed once: what a failed Job had written is recovered, never run again.
        assert_each_input_processed_once(harness, jobs, [key for n, key in enumerate(inputs, 1) if n not in corrupt],
                                         status)


def test_a_disrupted_range_runs_again_only_its_lines_without_outputs(tmp_path):
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.004, seed=3, disruption_rate=0.4)
    with Harness(SandboxConfig(items=48, bucket="disrupted-e2e", behaviour=behaviour), tmp_path) as harness:
        harness.apply(outputs=OUTPUTS, itemsPerInvocation=12)
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=120)["status"]
        assert status["phase"] == "Succeeded", status
        assert status["invocations"]["disrupted"] >= 1 and status["invocations"]["retried"] == 0
        assert status["items"]["recovered"] >= 1                # a disrupted range had written some outputs
        assert_each_input_processed_once(harness, job_outcomes(harness), input_keys("input/", 48), status)


def assert_each_input_processed_once(harness: Harness, jobs: dict[str, tuple[int, int, bool]], good: list[str],
                                     status: dict) -> None:
    """Every good input has its output; one a failed or disrupted Job wrote is recovered (no Job that succeeded
    holds its line), and the Jobs that succeeded hold every other good line once."""
    written = {json.loads(body)["input"]: json.loads(body)["job"] for body in harness.objects("output/").values()}
    assert sorted(written) == sorted(good)
    manifest = harness.objects("input/index.txt")["input/index.txt"].decode().splitlines()
    recovered = [manifest.index(key) + 1 for key, job in written.items() if not jobs[job][2]]
    assert len(recovered) == status["items"]["recovered"] >= 1
    for line in recovered:
        assert not any(ok and start <= line < end for start, end, ok in jobs.values()), line
    succeeded = [line for start, end, ok in jobs.values() if ok for line in range(start, end)]
    assert len(succeeded) == len(set(succeeded)) == len(good) - len(recovered)


def test_outputs_declared_without_a_prefix_are_where_the_service_definition_says(tmp_path):
    config = SandboxConfig(items=6, bucket="default-prefix", behaviour=FAST)
    with Harness(config, tmp_path) as harness:
        s3 = harness.sandbox.sandbox.s3.client(config.s3_access_key, config.s3_secret_key)
        done = input_keys(config.prefix, 6)[:2]
        for key in done:
            body = json.dumps({"input": key, "job": "an-earlier-run"}).encode()
            s3.put_object(config.bucket, output_key(key, config.prefix, config.behaviour.output_prefix),
                          io.BytesIO(body), len(body))
        harness.apply(outputs={})
        status = harness.wait_for_phase("Succeeded", "Failed")["status"]
        assert (status["phase"], status["items"]["skipped"], status["items"]["total"]) == ("Succeeded", 2, 4), status
        assert status["pinned"]["outputs"]["prefix"] == "output/"
