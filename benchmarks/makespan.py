"""Makespan: the original one-shot coordinator against the operator, on the same workload, in one run.

Each side gets a fresh sandbox built from the same config and seed. The original coordinator's algorithm
(shared/reference/original-coordinator.md) is re-implemented here against the sandbox's OSCAR API and S3; the
operator runs as its own process, as it would in a cluster. Measured on each side, from the same sampling loop
(every ~50 ms): wall time until the last Job ended (original) or the batch finished (operator), inputs with an
output, failed Jobs, retried ranges, and the most Pods Pending as Unschedulable at one instant.
"""
from __future__ import annotations

import dataclasses
import io
import math
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import requests
import yaml

from oscar_batch.core.status import FINISHED_PHASES
from oscar_batch_sandbox import SandboxThread
from oscar_batch_sandbox.config import (
    CONTROL_PLANE_LABEL,
    Behaviour,
    SandboxConfig,
    TenantPod,
    control_plane,
    workers,
)
from oscar_batch_sandbox.handoff import batch_manifests

BIN = pathlib.Path(sys.executable).parent
OPERATOR_TIMING = ("--tick", "0.05", "--plan-interval", "0.5", "--status-interval", "0.1", "--retry-delay", "0.5")
BATCHES, JOBS, PODS = "batch.oscarbatch.dev/v1alpha1/oscarbatchjobs", "batch/v1/jobs", "v1/pods"
BATCH_NAME = "makespan"
SAMPLE_SECONDS = 0.05
RUN_DEADLINE_SECONDS = 180.0
OPERATOR_READY_SECONDS = 30.0
OPERATOR_READY_LINE = "Daemon 'run_batch' succeeded"  # what kopf logs when a daemon returns
HTTP_TIMEOUT_SECONDS = 10.0
# The original keeps 80% of the free capacity it sums over the nodes.
ORIGINAL_HEADROOM = 0.8

# One config object per workload for both sides: same nodes, tenants, inputs, service and seed. Legacy
# /system/status is the format the original parsed; the operator plans from Nodes and Pods and never reads it.
QUIET = SandboxConfig(
    nodes=(control_plane(), *workers(3, cpu="4", memory="8Gi")),
    tenant_pods=(TenantPod("tenant-db", "worker-1", cpu="1", memory="2Gi"),),
    items=240,
    service_cpu="1",
    service_memory="1Gi",
    legacy_status=True,
    # The original service script (start/end only, always <prefix>index.txt) serves both sides unchanged.
    behaviour=Behaviour(item_seconds=2.0, item_jitter=0.8, failure_rate=0.1, time_scale=0.25, seed=1,
                        original_script=True),
)
# Every worker has one slot left beside another tenant: the original's summed capacity sees more than fits.
BUSY = dataclasses.replace(
    QUIET,
    nodes=(control_plane(), *workers(6, cpu="4", memory="8Gi")),
    tenant_pods=tuple(TenantPod(f"tenant-{n}", f"worker-{n}", cpu="2500m", memory="2Gi") for n in range(1, 7)),
    behaviour=dataclasses.replace(QUIET.behaviour, seed=2),
)
WORKLOADS = {"quiet cluster": QUIET, "busy cluster": BUSY}


@dataclasses.dataclass(frozen=True)
class Sample:
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    batch: dict[str, Any]           # the operator's OscarBatchJob; empty on the original's side


@dataclasses.dataclass(frozen=True)
class Watched:
    seconds: float
    last: Sample
    peak_in_flight: int
    peak_unschedulable: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    name: str
    ranges: int
    items_per_range: str
    seconds: float
    items: int
    failed_jobs: int
    retried: int
    peak_in_flight: int
    peak_unschedulable: int


# ---- the original coordinator, step by step as the reference describes it ----------------------

def original_ranges(items: int, invocations: int) -> list[tuple[int, int]]:
    """k = floor(N/n) lines each, the first N mod n one more; 1-based, end-exclusive, contiguous."""
    size, larger = divmod(items, invocations)
    ranges, start = [], 1
    for index in range(invocations):
        end = start + size + (1 if index < larger else 0)
        ranges.append((start, end))
        start = end
    return ranges


def run_original_coordinator(sandbox: SandboxThread) -> list[tuple[int, int]]:
    """List, write the manifest, size n from the summed free capacity, fire all n invocations; returns the
    ranges OSCAR accepted. Like the original, a refused invocation is forgotten."""
    s3_info, oscar = sandbox.info["s3"], sandbox.info["oscar"]
    bucket, prefix, endpoint, service_name = s3_info["bucket"], s3_info["prefix"], oscar["endpoint"], oscar["service"]
    s3 = sandbox.sandbox.s3.client(s3_info["accessKey"], s3_info["secretKey"])

    # Not recursive, as the original lists: objects in sub-folders of the prefix are not inputs.
    keys = [obj.object_name for obj in s3.list_objects(bucket, prefix=prefix) if obj.object_name.endswith(".jpg")]
    manifest = "".join(f"{key}\n" for key in keys).encode()
    s3.put_object(bucket, f"{prefix}index.txt", io.BytesIO(manifest), len(manifest), content_type="text/plain")

    auth = (oscar["username"], oscar["password"])
    nodes = _get_json(f"{endpoint}/system/status", auth)["detail"]
    cpu_free = sum(int(node["cpuCapacity"]) - int(node["cpuUsage"]) for node in nodes)
    memory_free = sum(int(node["memoryCapacity"]) - int(node["memoryUsage"]) for node in nodes)
    service = _get_json(f"{endpoint}/system/services/{service_name}", auth)
    cpu_service = 1000 * float(service["cpu"])
    memory_service = float(service["memory"].partition("Gi")[0])
    # The original turns free bytes into decimal GB (× 10⁻⁹) and divides by the Gi figure as it stands.
    invocations = min(math.floor(cpu_free * ORIGINAL_HEADROOM / cpu_service),
                      math.floor(memory_free * ORIGINAL_HEADROOM / 1e9 / memory_service))
    if invocations < 1:
        raise RuntimeError(f"the original would divide by zero here: n = {invocations} on this workload")

    accepted = []
    for index, (start, end) in enumerate(original_ranges(len(keys), invocations)):
        # The original sends no Job name, so OSCAR draws a uuid4; the sandbox seeds each Job's behaviour by its
        # name, so a fixed name is what makes this side reproducible. It changes nothing else.
        headers = {"Authorization": f"Bearer {service['token']}",
                   "X-Delegated-Job-ID": f"{service_name}-original-{index}"}
        response = requests.post(f"{endpoint}/job/{service_name}", json={"start": start, "end": end},
                                 headers=headers, timeout=HTTP_TIMEOUT_SECONDS)
        if response.status_code == 201:
            accepted.append((start, end))
    return accepted


def _get_json(url: str, auth: tuple[str, str]) -> Any:
    response = requests.get(url, auth=auth, timeout=HTTP_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.json()


def measure_original(workload: SandboxConfig) -> Outcome:
    with SandboxThread(workload) as sandbox:
        started = time.monotonic()
        ranges = run_original_coordinator(sandbox)
        watched = watch_until(sandbox, started, "the original's Jobs to finish",
                              lambda sample: len(sample.jobs) >= len(ranges) and all(map(_finished, sample.jobs)))
        sizes = sorted({end - start for start, end in ranges})
        return Outcome(name="original", ranges=len(ranges), items_per_range="–".join(map(str, sizes)),
                       seconds=watched.seconds, items=count_outputs(sandbox), failed_jobs=_failed_jobs(watched.last),
                       retried=0, peak_in_flight=watched.peak_in_flight,
                       peak_unschedulable=watched.peak_unschedulable)


# ---- the operator --------------------------------------------------------------------------------

def measure_operator(workload: SandboxConfig, headroom: float) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="oscar-batch-makespan-") as workdir, \
            SandboxThread(workload) as sandbox:
        kubeconfig, log_path = pathlib.Path(workdir) / "kubeconfig", pathlib.Path(workdir) / "operator.log"
        sandbox.sandbox.write_kubeconfig(kubeconfig)
        *secrets, batch = batch_manifests(sandbox.info, name=BATCH_NAME, retries=3, capacityHeadroom=headroom)
        batch["spec"]["storage"].update(include=["*.jpg"], exclude=["thumbs/*"])
        batch_file = pathlib.Path(workdir) / "batch.yaml"
        batch_file.write_text(yaml.safe_dump_all([*secrets, batch]))
        batch_file.chmod(0o600)  # it holds the sandbox's credentials
        with log_path.open("wb") as log:
            operator = subprocess.Popen([str(BIN / "oscar-batch"), "run", "--kubeconfig", str(kubeconfig),
                                         *OPERATOR_TIMING], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_operator(sandbox, log_path)
            started = time.monotonic()
            subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig), "apply", "--validate=false",
                            "-f", str(batch_file)], check=True, capture_output=True, timeout=60)
            watched = watch_until(sandbox, started, "the operator's batch to finish",
                                  lambda sample: _phase(sample.batch) in FINISHED_PHASES)
        except Exception:
            sys.stderr.write(f"operator log (last lines):\n{log_path.read_text()[-4000:]}\n")
            raise
        finally:
            _stop(operator)
        status = watched.last.batch["status"]
        return Outcome(name=f"operator, headroom {headroom:g}", ranges=status["invocations"]["total"],
                       items_per_range=status.get("rangePlan") or "", seconds=watched.seconds,
                       items=count_outputs(sandbox), failed_jobs=_failed_jobs(watched.last),
                       retried=status["invocations"].get("retried", 0), peak_in_flight=watched.peak_in_flight,
                       peak_unschedulable=watched.peak_unschedulable)


def wait_for_operator(sandbox: SandboxThread, log_path: pathlib.Path) -> None:
    """Wait until the operator has handled one object, so that kopf's start-up is not timed.

    The probe is a batch created already Succeeded: its daemon returns at once and kopf logs that. kopf runs
    daemons only once its Jobs index is filled, so the operator is then fully up. The log is the signal because
    the probe leaves no trace in the API: kopf adds and removes its finalizer, and the sandbox does not bump
    resourceVersion on kopf's patches.
    """
    *_, probe = batch_manifests(sandbox.info, name="operator-ready-probe")
    probe["status"] = {"phase": "Succeeded"}  # kept as given: in-process creation does not strip status
    sandbox.call(lambda: sandbox.kube.create(BATCHES, probe))
    deadline = time.monotonic() + OPERATOR_READY_SECONDS
    while OPERATOR_READY_LINE not in log_path.read_text():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the operator handled no object within {OPERATOR_READY_SECONDS:.0f} s")
        time.sleep(SAMPLE_SECONDS)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---- observing the sandbox ------------------------------------------------------------------------

def watch_until(sandbox: SandboxThread, started: float, what: str, done: Callable[[Sample], bool]) -> Watched:
    """Sample the services namespace (and the batch) until `done`; the elapsed time is taken at that sample."""
    namespace = sandbox.sandbox.config.services_namespace
    peak_in_flight = peak_unschedulable = 0
    while True:
        sample = _read(sandbox, lambda: Sample(jobs=sandbox.kube.list(JOBS, namespace),
                                               pods=sandbox.kube.list(PODS, namespace),
                                               batch=sandbox.kube.get(BATCHES, "default", BATCH_NAME) or {}))
        now = time.monotonic()
        peak_in_flight = max(peak_in_flight, sum(1 for job in sample.jobs if not _finished(job)))
        peak_unschedulable = max(peak_unschedulable, sum(1 for pod in sample.pods if _unschedulable(pod)))
        if done(sample):
            return Watched(now - started, sample, peak_in_flight, peak_unschedulable)
        if now - started > RUN_DEADLINE_SECONDS:
            raise TimeoutError(f"timed out after {RUN_DEADLINE_SECONDS:.0f} s waiting for {what}")
        time.sleep(SAMPLE_SECONDS)


def _read(sandbox: SandboxThread, read: Callable[[], Any]) -> Any:
    """Read the emulator's objects on the sandbox's own loop: they are not thread-safe."""
    async def on_loop() -> Any:
        return read()
    return sandbox.call(on_loop)


def count_outputs(sandbox: SandboxThread) -> int:
    config = sandbox.sandbox.config
    s3 = sandbox.sandbox.s3.client(config.s3_access_key, config.s3_secret_key)
    return sum(1 for _ in s3.list_objects(config.bucket, prefix=config.behaviour.output_prefix, recursive=True))


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") == kind), {})


def _holds(obj: dict[str, Any], kind: str) -> bool:
    return _condition(obj, kind).get("status") == "True"


def _finished(job: dict[str, Any]) -> bool:
    return _holds(job, "Complete") or _holds(job, "Failed")


def _failed_jobs(sample: Sample) -> int:
    return sum(1 for job in sample.jobs if _holds(job, "Failed"))


def _unschedulable(pod: dict[str, Any]) -> bool:
    return _condition(pod, "PodScheduled").get("reason") == "Unschedulable"


def _phase(batch: dict[str, Any]) -> str | None:
    return (batch.get("status") or {}).get("phase")


# ---- report -----------------------------------------------------------------------------------------

def run() -> None:
    began = time.monotonic()
    for title, workload in WORKLOADS.items():
        compare(title, workload)
    print(f"'in flight' is the most Jobs unfinished at one sample; wall time runs from the coordinator's start "
          f"(original) or kubectl apply (operator); benchmark took {time.monotonic() - began:.0f} s")


def compare(title: str, workload: SandboxConfig) -> None:
    behaviour, items = workload.behaviour, workload.items
    worker_nodes = [node for node in workload.nodes if CONTROL_PLANE_LABEL not in node.labels]
    tenants = sorted({pod.cpu for pod in workload.tenant_pods})
    print(f"makespan, {title}: {items} inputs, {len(worker_nodes)} workers of {worker_nodes[0].cpu} CPU/"
          f"{worker_nodes[0].memory}, {len(workload.tenant_pods)} other-tenant pod(s) of {'/'.join(tenants)} CPU, "
          f"service {workload.service_cpu} CPU/{workload.service_memory}; item {behaviour.item_seconds:g} s "
          f"±{behaviour.item_jitter:.0%}, start-up {behaviour.startup_seconds:g} s, {behaviour.failure_rate:.0%} "
          f"of invocations fail, 1 simulated s = {behaviour.time_scale:g} s, seed {behaviour.seed}")
    # The default headroom leaves a fifth of the slots to others; 1.0 compares like with like.
    outcomes = [measure_original(workload), measure_operator(workload, 0.8), measure_operator(workload, 1.0)]
    print(f"{'run':<22} {'ranges':>6} {'items/range':>11} {'in flight':>9} {'wall s':>7} {'items':>6} "
          f"{'share':>6} {'failed Jobs':>11} {'retried':>7} {'max Unschedulable':>17}")
    for outcome in outcomes:
        print(f"{outcome.name:<22} {outcome.ranges:>6} {outcome.items_per_range:>11} {outcome.peak_in_flight:>9} "
              f"{outcome.seconds:>7.1f} {outcome.items:>6} {outcome.items / items:>6.1%} "
              f"{outcome.failed_jobs:>11} {outcome.retried:>7} {outcome.peak_unschedulable:>17}")
    original = outcomes[0]
    for operator in outcomes[1:]:
        print(f"{operator.name} / original: wall time {operator.seconds / original.seconds:.2f}×, "
              f"items processed {_ratio(operator.items, original.items)} ({operator.items} vs {original.items} "
              f"of {items}), max Unschedulable pods {operator.peak_unschedulable} vs {original.peak_unschedulable}")
    print()


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.2f}×" if denominator else "n/a"


if __name__ == "__main__":
    run()
