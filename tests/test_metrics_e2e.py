"""The operator's Prometheus metrics and JSON logs, end to end: a batch on the sandbox, /metrics scraped over HTTP
and parsed with prometheus-client's own parser, the log read as JSON lines."""
from __future__ import annotations

import json
import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from harness import Harness
from oscar_batch_sandbox.config import Behaviour, SandboxConfig
from support import wait_until


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_a_batch_shows_in_the_metrics_and_its_milestones_in_json_logs(tmp_path):
    port = free_port()
    behaviour = Behaviour(item_seconds=1.0, startup_seconds=1.0, time_scale=0.002, seed=4, failure_rate=0.2)
    config = SandboxConfig(items=40, bucket="metrics-bucket", behaviour=behaviour)
    with Harness(config, tmp_path, operator_args=("--metrics", f"127.0.0.1:{port}", "--log-format", "json")) \
            as harness:
        harness.apply(itemsPerInvocation=2, retries=6)
        status = harness.wait_for_phase("Succeeded", "Failed", timeout=120)["status"]
        assert status["phase"] == "Succeeded", status
        batch = {"namespace": "default", "batch": "batch"}
        samples = wait_until(lambda: (s := scrape(port)) and value(s, "oscar_batch_finished", **batch) == 1 and s,
                             timeout=15, message="the verdict in the metrics")
        assert value(samples, "oscar_batch_items", **batch, state="succeeded") == 40
        assert value(samples, "oscar_batch_items", **batch, state="pending") == 0
        succeeded = value(samples, "oscar_batch_invocation_outcomes_total", **batch, outcome="succeeded")
        failed = value(samples, "oscar_batch_invocation_outcomes_total", **batch, outcome="failed") or 0
        assert succeeded and succeeded + failed == status["invocations"]["total"], (succeeded, failed, status)
        assert value(samples, "oscar_batch_retries_total", **batch) == status["invocations"]["retried"]
        assert value(samples, "oscar_batch_invocations_total", **batch) == status["invocations"]["total"]
        assert value(samples, "oscar_batch_dispatch_seconds_count") == status["invocations"]["total"]
        assert value(samples, "oscar_batch_status_latency_seconds_count") >= succeeded
        assert value(samples, "oscar_batch_last_progress_timestamp_seconds", **batch) > 0

        records = [json.loads(line) for line in harness.operator.log.read_text().splitlines()
                   if line.startswith("{")]
        milestones = [record for record in records if record.get("batch") == "default/batch"
                      and "items_done" in record]
        assert [m["items_done"] for m in milestones][-1] == 40 and milestones[-1]["items_total"] == 40
        assert all(m["severity"] == "info" and m["items_per_second"] > 0 for m in milestones)
        assert len(milestones) <= 11                           # a tenth at a time, not a line per change
