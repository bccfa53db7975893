"""Peers that vanish mid-batch, end to end: OSCAR and S3 cut off behind a real TCP proxy, the operator
SIGKILLed, invocations failing. The batch must finish with every input processed once, and its status must
never claim more than the cluster shows."""
from __future__ import annotations

import collections
import json
import time

from harness import Harness, Sample
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from oscar_batch_sandbox.s3 import input_keys
from proxy import TcpProxy
from support import lines_of, wait_until


def config(items: int, behaviour: Behaviour) -> SandboxConfig:
    return SandboxConfig(items=items, bucket="faults-bucket", behaviour=behaviour)


def succeeded_ranges(harness: Harness) -> int:
    """Succeeded items, in 2-line ranges."""
    return ((harness.batch().get("status") or {}).get("items") or {}).get("succeeded", 0) // 2


def succeeded_jobs_per_line(harness: Harness) -> collections.Counter[int]:
    return collections.Counter(line for job in harness.jobs() if (job.get("status") or {}).get("succeeded")
                               for line in range(*lines_of(job)))


def outputs_by_input(harness: Harness) -> dict[str, str]:
    results = harness.objects(harness.config.behaviour.output_prefix)
    return {json.loads(body)["input"]: json.loads(body)["job"] for body in results.values()}


def assert_status_adds_up(samples: list[Sample]) -> None:
    """At every observed instant: the item counts add up, and no invocation is called running without a Job
    behind it — the Jobs are read after the status, and none is ever deleted here."""
    assert samples, "the watcher saw the batch"
    for sample in samples:
        counts = sample.status.get("items")
        if not counts:
            continue
        assert counts["pending"] + counts["running"] + counts["succeeded"] + counts["failed"] == counts["total"]
        assert sample.status["invocations"]["running"] <= sample.all_jobs, sample


def test_an_oscar_outage_mid_batch_stalls_nothing_and_invokes_nothing_twice(tmp_path):
    # Ranges of about a second: long enough that all 11 slots are in flight at once after the outage even on a
    # loaded machine (at 0.45 s a range, invoking 11 took longer than a range under CI's load now and then).
    slow = Behaviour(item_seconds=4.0, startup_seconds=1.0, time_scale=0.1, seed=21)
    # 40 ranges: however late the test sees the first 4 succeed, more than the 11 slots are left after the outage.
    items, ranges = 80, 40
    with Harness(config(items, slow), tmp_path) as harness, \
            TcpProxy(harness.sandbox.info["oscar"]["endpoint"]) as oscar:
        harness.apply(itemsPerInvocation=2, oscar={"endpoint": oscar.url})
        harness.start_sampling()
        wait_until(lambda: succeeded_ranges(harness) >= 4, timeout=60, message="a few ranges to succeed")
        oscar.cut()
        outage_ends = time.monotonic() + 5
        # Every Job in flight ends while OSCAR is away; nothing new can start.
        wait_until(lambda: harness.samples[-1].active_jobs == 0 and time.monotonic() > outage_ends,
                   timeout=60, message="the Jobs in flight to end during a 5 s outage")
        left = ranges - succeeded_ranges(harness)
        assert left > 11, "enough work remains to see full parallelism after recovery"
        oscar.restore()
        restored_at = len(harness.samples)

        status = harness.wait_for_phase("Succeeded", "Failed", timeout=120)["status"]
        assert status["phase"] == "Succeeded", status
        assert status["items"]["succeeded"] == items
        per_line = succeeded_jobs_per_line(harness)
        assert len(per_line) == items and set(per_line.values()) == {1}    # each line succeeded exactly once
        assert sorted(outputs_by_input(harness)) == input_keys("input/", items)
        after = harness.samples[restored_at:]
        # 3 workers × 4 CPU, 1 CPU taken by another tenant, 1-CPU service: 11 slots, all in flight again.
        assert max(sample.active_jobs for sample in after) == 11
        assert_status_adds_up(harness.samples)
        assert harness.events("InvocationFailed")


def test_chaos_failures_kills_and_outages_end_with_every_input_processed_once(tmp_path):
    """10% of invocations fail, the operator is SIGKILLed 3 times, OSCAR is cut off for 20 s and S3 for 20 s."""
    behaviour = Behaviour(item_seconds=4.0, startup_seconds=1.0, time_scale=0.05, failure_rate=0.1, seed=8)
    with Harness(config(120, behaviour), tmp_path) as harness, \
            TcpProxy(harness.sandbox.info["oscar"]["endpoint"]) as oscar, \
            TcpProxy(harness.sandbox.info["s3"]["endpoint"]) as s3:
        harness.apply(itemsPerInvocation=2, retries=8, oscar={"endpoint": oscar.url},
                      storage={"endpoint": s3.url})
        harness.start_sampling()

        def restart_operator() -> None:
            harness.operator.kill()
            harness.operator.start()

        def progress_at_least(ranges: int, timeout: float = 90) -> None:
            wait_until(lambda: succeeded_ranges(harness) >= ranges, timeout=timeout,
                       message=f"{ranges} ranges to succeed")

        progress_at_least(5)
        restart_operator()                                   # kill 1: mid-dispatch

        def outage(seconds: float) -> float:
            return time.monotonic() + seconds

        progress_at_least(15)
        oscar.cut()
        oscar_back = outage(20)
        wait_until(lambda: harness.samples[-1].active_jobs == 0, timeout=60, message="Jobs to drain")
        restart_operator()                                   # kill 2: while OSCAR is away
        wait_until(lambda: time.monotonic() > oscar_back, timeout=60, message="20 s of OSCAR outage")
        oscar.restore()

        progress_at_least(40)
        s3.cut()
        s3_back = outage(20)
        restart_operator()                                   # kill 3: the restart cannot read S3
        # Without S3 the Jobs still tell the truth: progress goes on, only the results must wait.
        progress_at_least(50, timeout=120)
        wait_until(lambda: time.monotonic() > s3_back, timeout=60, message="20 s of S3 outage")
        s3.restore()

        status = harness.wait_for_phase("Succeeded", "Failed", timeout=120)["status"]
        assert status["phase"] == "Succeeded", status
        assert status["items"]["succeeded"] == 120 and status["invocations"]["retried"] > 0
        per_line = succeeded_jobs_per_line(harness)
        assert len(per_line) == 120 and set(per_line.values()) == {1}      # no line succeeded twice
        assert sorted(outputs_by_input(harness)) == input_keys("input/", 120)
        assert_status_adds_up(harness.samples)
        assert (oscar.cuts, s3.cuts) == (1, 1)
