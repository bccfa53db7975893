"""`oscar-batch-demo`: the main job end to end on the embedded sandbox, in output a person can follow.

Sandbox up → the operator as its own process (`oscar-batch run`, as it would run in a cluster) → Secrets and
an OscarBatchJob that declares its outputs (with `--clusters` above 1, over every cluster), created through the
Kubernetes API → a live progress bar from the batch's status → a summary checked against S3. Exit code 0 only
when the batch Succeeded and every input but the corrupt ones (`--corrupt`, tolerated) has its output, the ones
there before (`--existing-outputs`) included.
"""
from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, TextIO

import pykube

from oscar_batch.clients import cluster
from oscar_batch.core.status import FINISHED_PHASES, SUCCEEDED
from oscar_batch_sandbox import SandboxThread
from oscar_batch_sandbox.config import CONTROL_PLANE_LABEL, SandboxConfig
from oscar_batch_sandbox.handoff import BATCH_NAME, OPERATOR_ARGS, batch_manifests, declared_outputs

BAR_WIDTH = 30
POLL_SECONDS = 0.2


def run_demo(config: SandboxConfig, timeout: float, out: TextIO = sys.stdout) -> int:
    say = _printer(out)
    corrupt, existing = len(config.behaviour.corrupt_inputs), len(config.existing_outputs)
    with tempfile.TemporaryDirectory(prefix="oscar-batch-demo-") as workdir, SandboxThread(config) as sandbox:
        info = sandbox.info
        kubeconfig = pathlib.Path(workdir) / "kubeconfig"
        sandbox.sandbox.write_kubeconfig(kubeconfig)
        workers = [node for node in config.nodes if CONTROL_PLANE_LABEL not in node.labels]
        output_prefix = config.behaviour.output_prefix
        say("OSCAR-Batch demo: an embedded cluster on localhost")
        say(f"  Kubernetes API  {info['kubernetes']['server']}  ({len(workers)} workers + a control plane, "
            f"{len(config.tenant_pods)} pod(s) of another tenant)")
        say(f"  S3              {info['s3']['endpoint']}  bucket {config.bucket}: {config.items} inputs under "
            f"{config.prefix} (+ a few files that are not inputs); {existing} already have an output under "
            f"{output_prefix}, {corrupt} are corrupt")
        say(f"  OSCAR           {info['oscar']['endpoint']}  service {config.service} "
            f"({config.service_cpu} CPU, {config.service_memory} per invocation, "
            f"{config.behaviour.failure_rate:.0%} of invocations fail)")
        federated = config.clusters > 1
        for remote in info["clusters"][1:]:
            say(f"  OSCAR           {remote['endpoint']}  {remote['name']}: the same nodes and service, reached "
                "through its OSCAR API only")

        log_path = pathlib.Path(workdir) / "operator.log"
        operator = _start_operator(kubeconfig, log_path)
        try:
            kube = cluster.Kube(pykube.HTTPClient(pykube.KubeConfig.from_file(str(kubeconfig))))
            # The corrupt inputs fail whatever is tried: tolerating exactly them, the batch succeeds naming them.
            documents = batch_manifests(info, federated=federated, outputs=declared_outputs(info),
                                        **({"toleratedFailures": corrupt} if corrupt else {}))
            for document in documents:
                kube.create({"Secret": "secrets", "OscarBatchJob": cluster.PLURAL}[document["kind"]], document)
            say(f"Applied Secrets and OscarBatchJob default/{BATCH_NAME} (include *.jpg, exclude thumbs/*, "
                f"retries {documents[-1]['spec']['retries']}, outputs under {output_prefix}: an input with one is "
                "skipped)")
            started = time.monotonic()
            status = _follow(kube, timeout, out)
            elapsed = time.monotonic() - started
        finally:
            operator.terminate()
            operator.wait(timeout=30)
        if status.get("phase") not in FINISHED_PHASES:
            say(f"The batch did not finish within {timeout:.0f} s. Operator log (last lines):")
            say(log_path.read_text()[-3000:])
            return 1
        outputs = _outputs(sandbox, config)
        counts, invocations = status.get("items") or {}, status.get("invocations") or {}
        say(f"Batch {status['phase']} in {elapsed:.1f} s: {status.get('message', '')}")
        say(f"  items {counts.get('total')} · skipped (output there already) {counts.get('skipped', 0)} · "
            f"{invocations.get('total', 0)} invocation(s), ranges {status.get('rangePlan')} · retried "
            f"{invocations.get('retried', 0)} · failed items {counts.get('failed', 0)}")
        for detail in status.get("failedItemDetails") or ():
            say(f"  failed: line {detail.get('line')}  {detail.get('key')}  {detail.get('reason')}")
        say(f"  outputs: {outputs} under s3://{config.bucket}/{output_prefix} ({existing} there before the batch)")
        if federated:
            say("  invocations run per cluster: " + ", ".join(f"{emulated.name} {len(emulated.runner.runs)}"
                                                             for emulated in sandbox.clusters))
        say(f"  manifest {status.get('manifest')}  ·  results {status.get('results')}")
        if status["phase"] == SUCCEEDED and outputs == config.items - corrupt:
            say("Apply the batch again (under another name) and it invokes nothing: every input has its output "
                "now. `--existing-outputs 0.5` starts with half of them done, `--corrupt 0.02` with bad inputs.")
            return 0
        say("The demo failed: the batch did not succeed, or an input that is not corrupt has no output.")
        return 1


def _start_operator(kubeconfig: pathlib.Path, log_path: pathlib.Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "oscar_batch", "run", "--kubeconfig", str(kubeconfig),
             "--tick", "0.1", "--plan-interval", "1", "--status-interval", "0.2", *OPERATOR_ARGS],
            stdout=log, stderr=subprocess.STDOUT)


def _follow(kube: cluster.Kube, timeout: float, out: TextIO) -> dict[str, Any]:
    """Draw the progress bar until the batch finishes or the time is up; returns the last status."""
    deadline = time.monotonic() + timeout
    interactive = out.isatty()
    last_shown: object = None
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = (kube.batch("default", BATCH_NAME) or {}).get("status") or {}
        line = _progress_line(status)
        # A terminal redraws one line; a log gets a line per phase change and per tenth of the items.
        counts = status.get("items") or {}
        shown = line if interactive else (status.get("phase"),
                                          10 * counts.get("succeeded", 0) // (counts.get("total") or 1))
        if shown != last_shown:
            out.write(("\r" + line + "\033[K") if interactive else line + "\n")
            out.flush()
            last_shown = shown
        if status.get("phase") in FINISHED_PHASES:
            break
        time.sleep(POLL_SECONDS)
    if interactive:
        out.write("\n")
    return status


def _progress_line(status: dict[str, Any]) -> str:
    counts, invocations = status.get("items") or {}, status.get("invocations") or {}
    total, succeeded = counts.get("total") or 0, counts.get("succeeded", 0)
    filled = BAR_WIDTH * succeeded // total if total else 0
    bar = "█" * filled + "░" * (BAR_WIDTH - filled)
    return (f"[{bar}] {succeeded}/{total} items · {invocations.get('running', 0)} running · "
            f"parallelism {status.get('parallelism', 0)} · retried {invocations.get('retried', 0)} · "
            f"{status.get('phase') or 'Pending'}")


def _outputs(sandbox: SandboxThread, config: SandboxConfig) -> int:
    s3 = sandbox.sandbox.s3.client(config.s3_access_key, config.s3_secret_key)
    return sum(1 for _ in s3.list_objects(config.bucket, prefix=config.behaviour.output_prefix, recursive=True))


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()
    return say
