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
