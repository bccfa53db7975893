"""The operator's Prometheus metrics and JSON logs, end to end: a batch on the sandbox, /metrics scraped over HTTP
and parsed with prometheus-client's own parser, the log read as JSON lines."""
from __future__ import annotations

import json

from harness import Harness
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from support import batch_series, free_port, kubectl, scrape, value, wait_until


def over_clusters(samples, name: str, **labels: str) -> float:
    """The sum of a per-cluster counter's series that carry `labels`, whatever their `cluster`."""
    return sum(sample for (each, carried), sample in samples.items()
               if each == name and set(labels.items()) <= set(carried))


def test_a_batch_shows_in_the_metrics_while_it_runs_and_its_milestones_in_json_logs(tmp_path):
    port = free_port()
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.02, seed=4, failure_rate=0.2)
    config = SandboxConfig(items=40, bucket="metrics-bucket", behaviour=behaviour)
    with Harness(config, tmp_path, operator_args=("--metrics", f"127.0.0.1:{port}", "--log-format", "json")) \
            as harness:
        harness.apply(itemsPerInvocation=2, retries=6, maxParallelism=2)
        wait_until(lambda: ((harness.batch().get("status") or {}).get("items") or {}).get("succeeded", 0) >= 6,
                   timeout=60, message="a few items to succeed")
        # Suspended with nothing in flight, the batch stands still: its metrics must say what its status says.
        kubectl(harness.kubeconfig, "patch", "obatch", "batch", "--type=merge", "-p", '{"spec": {"suspend": true}}')

        def still() -> dict | None:
            status = harness.batch().get("status") or {}
            return status if status.get("phase") == "Suspended" and not status["invocations"]["running"] else None
        status = wait_until(still, timeout=60, message="the suspended batch to have nothing in flight")
        batch = {"namespace": "default", "batch": "batch"}
        samples = wait_until(lambda: (s := scrape(port)) and value(s, "oscar_batch_items", **batch, state="succeeded")
                             == status["items"]["succeeded"] and s, timeout=15, message="the status in the metrics")
        for state in ("pending", "running", "failed"):
            assert value(samples, "oscar_batch_items", **batch, state=state) == status["items"][state]
        succeeded = over_clusters(samples, "oscar_batch_invocation_outcomes_total", **batch, outcome="succeeded")
        failed = over_clusters(samples, "oscar_batch_invocation_outcomes_total", **batch, outcome="failed")
        assert succeeded and succeeded + failed == status["invocations"]["total"], (succeeded, failed, status)
        assert over_clusters(samples, "oscar_batch_retries_total", **batch) == status["invocations"]["retried"]
        assert over_clusters(samples, "oscar_batch_invocations_total", **batch) == status["invocations"]["total"]
        assert value(samples, "oscar_batch_dispatch_seconds_count") == status["invocations"]["total"]
        assert value(samples, "oscar_batch_status_latency_seconds_count") >= succeeded
        assert value(samples, "oscar_batch_last_progress_timestamp_seconds", **batch) > 0

        kubectl(harness.kubeconfig, "patch", "obatch", "batch", "--type=merge", "-p", '{"spec": {"suspend": false}}')
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=120)["status"]
        assert status["phase"] == "Succeeded", status
        # A finished batch has no series left; the operator's own stay.
        samples = wait_until(lambda: (s := scrape(port)) and not batch_series(s) and s, timeout=15,
                             message="the finished batch's series to go")
        assert value(samples, "oscar_batch_dispatch_seconds_count") == status["invocations"]["total"]

        records = [json.loads(line) for line in harness.operator.log.read_text().splitlines()
                   if line.startswith("{")]
        milestones = [record for record in records if record.get("batch") == "default/batch"
                      and "items_done" in record]
        assert [m["items_done"] for m in milestones][-1] == 40 and milestones[-1]["items_total"] == 40
        assert all(m["severity"] == "info" and m["items_per_second"] > 0 for m in milestones)
        assert len(milestones) <= 11                           # a tenth at a time, not a line per change
