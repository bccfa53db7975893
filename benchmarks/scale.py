"""Controller scale: the operator process (`oscar-batch run`, production timing) against the sandbox, with many
batches and many Jobs.

Scenarios, each on a fresh sandbox and a fresh operator process (so that peak RSS is the scenario's own):
- small: N batches of a few one-item ranges each, created at once; wall time until every one is Succeeded.
- big: one batch of many one-item ranges.
- many: M batches of R one-item ranges each, created at once.

Measured on the operator process: CPU seconds (utime + stime of /proc/<pid>/stat) per 1,000 Job changes (the
watch events of Jobs: created, started, completed, deleted), the same over the first, middle and last third of
the Jobs completed, peak RSS (VmHWM), and the latency from a Job getting its Complete condition to the batch's
status listing its range in completedItems (sampled every SAMPLE_SECONDS).

What the benchmark replaces in the sandbox, for scale and not for convenience (each is a sandbox cost that grows
with the cluster and would otherwise be what gets measured; docs/benchmarks.md has the numbers):
- The sandbox's job runner reconciles every Job and Pod (deep copies included) on every change and runs the
  simulated service, which reads the manifest and writes one output per item through S3. `JobDriver` takes its
  place: it sees Jobs appear on the emulator's watch bus and writes their status as the Job controller would
  (started, then Complete), and makes no Pods. The operator therefore plans on empty nodes.
- kmock records every request, and the sandbox forgets them only every 30 s (at ~1,000 requests a second); the
  driver keeps the record short.
- No full garbage collections in this process while a scenario runs (`without_full_collections`): the emulator's
  objects made each one a pause of the emulated cluster of up to a second.
- OSCAR's simulator lists every object of the emulator to find a deleted Job's Pods; with no Pods, it is told.
- Inputs go straight into moto's in-process backend (~25,000/s; moto's HTTP PUT does ~500/s), and the big
  batch's manifest is written for it (as a restarted operator finds its own): moto sorts every key of a prefix
  for each 1,000-key page, so listing 100,000 inputs takes 44 s. Small and many batches list through S3.

Run: `.venv/bin/python -m benchmarks.scale` (`--help` for sizes and profiling); `make bench` runs the defaults.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime
import functools
import gc
import io
import itertools
import os
import pathlib
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from unittest import mock

import kmock
import prometheus_client.parser

import oscar_batch_sandbox
from benchmarks.report import DOCS, ROOT, machine, replace_section, revision
from oscar_batch.clients.manifest import BATCH_META, ITEMS_META, UID_META
from oscar_batch.core import invocation, items
from oscar_batch_sandbox import SandboxThread, kmock_extension
from oscar_batch_sandbox.config import NodeSpec, SandboxConfig, control_plane
from oscar_batch_sandbox.handoff import OPERATOR_ARGS, batch_manifests
from oscar_batch_sandbox.kube import now_iso
from oscar_batch_sandbox.runner import JOBS, succeeded_job_status

BIN = pathlib.Path(sys.executable).parent
DOCS_HEADING = "## Controller scale"
BATCHES = "batch.oscarbatch.dev/v1alpha1/oscarbatchjobs"
NAMESPACE = "default"
FINISHED = ("Succeeded", "Failed")

OPERATOR_READY_SECONDS = 60.0
SAMPLE_SECONDS = 0.1
# The stand-in Job controller: a Job OSCAR created is started this long after, and Complete this long after
# starting (one second of "work" per range).
JOB_START_SECONDS = 0.2
JOB_RUN_SECONDS = 1.0
DRIVER_STEP_SECONDS = 0.02
# kmock matches a request by walking its record of requests (`request in view`), so each costs more the more
# came before it: at ~100 requests/s and the sandbox's 30 s housekeeping a status patch took 70 ms of the
# sandbox's loop and 200 small batches took 63 s instead of 29 s. Only requests not yet matched must stay, and
# a request is matched right after it is recorded, without waiting on anything but the emulator's lock.
REQUEST_LOG_SECONDS = DRIVER_STEP_SECONDS
REQUEST_LOG_KEEP = 8
# Nodes the planner sees as empty (the driver makes no Pods): 4 × 256 one-CPU slots, more than any scenario's
# maxParallelism.
WORKERS = tuple(NodeSpec(name=f"worker-{n}", cpu="256", memory="1Ti", pods=1000,
                         labels={"node-role.kubernetes.io/worker": ""}) for n in range(1, 5))
BIG_PARALLELISM = 1000
# The whole benchmark must fit in this; each scenario's deadline is cut to what is left of it.
BUDGET_SECONDS = 25 * 60
SCENARIO_OVERHEAD_SECONDS = 25.0   # sandbox start, seeding, operator start-up and probe, teardown
SCENARIO_CAP_SECONDS = {"small": 120.0, "big": 700.0, "many": 700.0}
# moto keeps its buckets per process, across sandboxes: every scenario gets buckets of its own, dropped after it.
BUCKET_PREFIX = "scale-"
BUCKET_NUMBERS = itertools.count(1)
NEVER = 2**31 - 1   # as a collector threshold
LOG_LINE = re.compile(r"^\S+ \S+ (?P<logger>\S+) +\[(?P<level>WARNING|ERROR|CRITICAL) *\] (?P<message>.*)$",
                      re.MULTILINE)

# The issue's sizes, the defaults, and its targets.
ISSUE_BIG, ISSUE_MANY, ISSUE_MANY_RANGES = 100_000, 50, 2_000
TARGET_P95_SECONDS = 5.0
TARGET_RSS_MB = 300.0
# "Flat": the last third of a batch's Jobs costs at most this much more CPU per Job change than the first.
FLAT_RATIO = 1.25


# ---- the stand-in Job controller ----------------------------------------------------------------------------

class JobDriver:
    """Takes the job runner's place in the sandbox (same constructor, `pod_log` and `run`): every Job OSCAR
    creates is started, then completed, on a fixed schedule. It counts the Job changes the operator's watch
    receives and remembers when each range's Job was completed, by (batch UID prefix, range)."""

    def __init__(self, kube: Any, config: SandboxConfig, s3: Any) -> None:
        self._kube = kube
        self.changes = 0
        self.completed_at: dict[tuple[str, int], float] = {}
        self._starting: collections.deque[tuple[float, str, str]] = collections.deque()
        self._finishing: collections.deque[tuple[float, str, str]] = collections.deque()

    def pod_log(self, namespace: str, pod_name: str) -> str | None:
        return None

    async def run(self) -> None:
        # The emulator's watch bus: the very events the operator's Job watch streams, seen in-process.
        watching = asyncio.create_task(self._watch(kmock_extension.event_bus(self._kube, kmock.resource(JOBS))))
        try:
            while True:
                await self._advance(time.monotonic())
                kmock_extension.forget_requests(self._kube, keep=REQUEST_LOG_KEEP)
                await asyncio.sleep(DRIVER_STEP_SECONDS)
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching

    async def _watch(self, bus: Any) -> None:
        async for event in bus:
            self.changes += 1
            if event.get("type") == "ADDED":
                metadata = event["object"]["metadata"]
                self._starting.append((time.monotonic() + JOB_START_SECONDS, metadata["namespace"],
                                       metadata["name"]))

    async def _advance(self, now: float) -> None:
        # Constant delays keep both queues in due order.
        while self._starting and self._starting[0][0] <= now:
            _, namespace, name = self._starting.popleft()
            with contextlib.suppress(kmock.KubernetesObjectNotFoundError):
                await self._kube.patch(JOBS, namespace, name,
                                       {"status": {"active": 1, "ready": 1, "startTime": now_iso()}})
                self._finishing.append((now + JOB_RUN_SECONDS, namespace, name))
        while self._finishing and self._finishing[0][0] <= now:
            _, namespace, name = self._finishing.popleft()
            identity = invocation.name_identity(name)
            if identity is not None:
                # Taken before the patch: the latency includes the patch and the watch that carries it.
                self.completed_at[(identity.batch_uid, identity.start)] = time.monotonic()
            with contextlib.suppress(kmock.KubernetesObjectNotFoundError):
                await self._kube.patch(JOBS, namespace, name, {"status": succeeded_job_status(now_iso())})


@contextlib.contextmanager
def driven_sandbox(config: SandboxConfig) -> Iterator[tuple[SandboxThread, JobDriver]]:
    """A sandbox whose Jobs the `JobDriver` runs."""
    drivers: list[JobDriver] = []

    def make_driver(kube: Any, config: SandboxConfig, s3: Any, **options: Any) -> JobDriver:
        drivers.append(JobDriver(kube, config, s3))   # the runner's options (an in-process S3 writer) do not apply
        return drivers[-1]

    # Fail loudly, not measure something else, if the sandbox changed how it is put together.
    assert hasattr(oscar_batch_sandbox, "JobRunner"), "the sandbox no longer builds its job runner as before"
    sandbox = SandboxThread(config)
    with mock.patch.object(oscar_batch_sandbox, "JobRunner", make_driver):
        sandbox.__enter__()
    try:
        # The simulator finds a Job's Pods by listing (deep-copying) the emulator's objects, once per Job it
        # deletes: O(objects) per deletion. 50 batches of 400 ranges took 300 s (17 unfinished) with it and
        # 158 s without. There are no Pods here.
        assert hasattr(sandbox.sandbox.oscar, "_job_pods"), "the OSCAR simulator no longer looks up Pods as before"
        sandbox.sandbox.oscar._job_pods = lambda job_name: []
        yield sandbox, drivers[0]
    finally:
        sandbox.__exit__(None, None, None)


# ---- S3 ----------------------------------------------------------------------------------------------------

def moto_backend() -> Any:
    """moto's in-process S3, which serves the sandbox from this process."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def seed_inputs(sandbox: SandboxThread, bucket: str, keys: Sequence[str]) -> None:
    """Create `bucket` holding `keys`, straight into moto's backend."""
    s3 = s3_client(sandbox)
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)
    backend = moto_backend()
    for key in keys:
        backend.put_object(bucket, key, b"\xff\xd8\xff\xe0scale " + key.encode(), disable_notification=True)


def drop_buckets() -> None:
    """moto keeps its buckets for the life of the process, sandbox or not: without this, the next scenario's
    sandbox shares the process with the last one's 100,000 inputs."""
    backend = moto_backend()
    for bucket in [name for name in backend.buckets if name.startswith(BUCKET_PREFIX)]:
        del backend.buckets[bucket]
    gc.collect()


@contextlib.contextmanager
def without_full_collections() -> Iterator[None]:
    """No full collections in this process while a scenario runs; young garbage is still collected. The
    emulated cluster lives here, and a full collection stops its loop: over the sandbox's Jobs and moto's
    objects they took up to 0.6 s every 2-5 s in the 50 × 500 scenario, collected next to nothing, and the
    pauses showed as the operator's latency. A real API server's collector runs beside it, not instead."""
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], NEVER)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def s3_client(sandbox: SandboxThread) -> Any:
    config = sandbox.sandbox.config
    return sandbox.sandbox.s3.client(config.s3_access_key, config.s3_secret_key)


def input_keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}frame-{index:06d}.jpg" for index in range(1, count + 1)]


# ---- the operator process ------------------------------------------------------------------------------------

class OperatorProcess:
    """`oscar-batch run` as its own process, as in a cluster; measured through /proc."""

    def __init__(self, kubeconfig: pathlib.Path, log: pathlib.Path) -> None:
        self.log = log
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self._metrics = f"127.0.0.1:{probe.getsockname()[1]}"
        # Its production timing (tick 1 s, status at most every 2 s, plan every 15 s): the latency target is about
        # what a user sees, and a shorter tick would multiply every daemon's idle cost.
        with log.open("wb") as output:
            self._process = subprocess.Popen([str(BIN / "oscar-batch"), "run", "--kubeconfig", str(kubeconfig),
                                              "--metrics", self._metrics, *OPERATOR_ARGS],
                                             stdout=output, stderr=subprocess.STDOUT)
        self.pid = self._process.pid

    def status_latency_buckets(self) -> dict[float, float]:
        """The operator's own histogram of its part of the latency (its watch seeing a Job end → the status patch
        recording it accepted): upper bound → cumulative count."""
        with urllib.request.urlopen(f"http://{self._metrics}/metrics", timeout=10) as response:
            text = response.read().decode()
        buckets: collections.Counter[float] = collections.Counter()
        for family in prometheus_client.parser.text_string_to_metric_families(text):
            if family.name == "oscar_batch_status_latency_seconds":
                for sample in family.samples:
                    if sample.name.endswith("_bucket"):
                        buckets[float(sample.labels["le"])] += sample.value
        return dict(buckets)

    def cpu_seconds(self) -> float:
        """User + system CPU of all the operator's threads."""
        stat = pathlib.Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mb(self, field: str) -> float:
        """VmRSS (now) or VmHWM (peak) in MiB."""
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        raise KeyError(field)

    def alive(self) -> bool:
        return self._process.poll() is None

    @contextlib.contextmanager
    def profiled(self, output: pathlib.Path | None) -> Iterator[None]:
        """Sample the operator with py-spy while the block runs: collapsed stacks of the thread holding the GIL
        (where its CPU goes) into `output`."""
        if output is None:
            yield
            return
        spy = subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(self.pid), "--format", "raw",
                                "--rate", "100", "--gil", "--nonblocking", "--output", str(output)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
            spy.wait(timeout=60)

    def problems(self) -> collections.Counter[str]:
        """Warnings and errors the operator logged, by logger and message (numbers blanked)."""
        return collections.Counter(f"{line['level']} {line['logger']}: {re.sub(r'[0-9]+', 'N', line['message'])[:90]}"
                                   for line in LOG_LINE.finditer(self.log.read_text(errors="replace")))

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:]


# ---- observing batches -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Watched:
    """One batch under observation: what its status showed so far."""
    name: str
    uid_key: str                       # what the Job names carry of the batch's UID
    visible: set[int] = dataclasses.field(default_factory=set)
    resource_version: str | None = None
    phase: str | None = None
    succeeded: int = 0
    refreshed: list[float] = dataclasses.field(default_factory=list)  # when completedItems changed


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float
    cpu: float          # the operator's CPU seconds so far
    rss_mb: float
    changes: int        # Job changes so far
    completed: int      # Jobs the driver has completed so far


@dataclasses.dataclass
class Observation:
    seconds: float                     # from creating the batches until the last one finished (or the deadline)
    watched: list[Watched]
    latencies: list[float]
    samples: list[Sample]

    @property
    def finished(self) -> int:
        return sum(1 for batch in self.watched if batch.phase in FINISHED)


class Bench:
    """A sandbox with the stand-in Job controller, its Secrets, and an operator process."""

    def __init__(self, workdir: pathlib.Path, sandbox: SandboxThread, driver: JobDriver) -> None:
        self.sandbox = sandbox
        self.driver = driver
        kubeconfig = workdir / "kubeconfig"
        sandbox.sandbox.write_kubeconfig(kubeconfig)
        secrets = batch_manifests(sandbox.info)[:2]
        self.call(lambda: asyncio.gather(*(sandbox.kube.create("v1/secrets", secret) for secret in secrets)))
        self.operator = OperatorProcess(kubeconfig, workdir / "operator.log")

    def call(self, coroutine_function: Callable[[], Any], timeout: float = 120) -> Any:
        return self.sandbox.call(coroutine_function, timeout=timeout)

    def read(self, function: Callable[[], Any]) -> Any:
        """Read the emulator's objects on the sandbox's loop: they are not thread-safe."""
        async def on_loop() -> Any:
            return function()
        return self.call(on_loop)

    def batch(self, name: str, *, bucket: str, prefix: str, max_parallelism: int) -> dict[str, Any]:
        *_, batch = batch_manifests(self.sandbox.info, name=name, itemsPerInvocation=1, capacityHeadroom=1.0,
                                    maxParallelism=max_parallelism, manifestKey=f"{prefix}index.txt")
        batch["spec"]["storage"].update(bucket=bucket, prefix=prefix, include=["*.jpg"], exclude=[])
        return batch

    def create(self, batches: Sequence[dict[str, Any]],
               manifests: dict[str, tuple[str, list[str]]] | None = None) -> dict[str, str]:
        """Create the batches in one burst (in-process); name → UID. The batches named in `manifests`
        (name → bucket, keys) get their manifest written as the operator writes it, before the operator can
        look: this coroutine holds the sandbox's loop, which the operator needs to learn of the batch."""
        s3 = s3_client(self.sandbox)

        async def create_all() -> dict[str, str]:
            uids = {}
            for batch in batches:
                name = batch["metadata"]["name"]
                await self.sandbox.kube.create(BATCHES, batch)
                uids[name] = self.sandbox.kube.get(BATCHES, NAMESPACE, name)["metadata"]["uid"]
            for name, (bucket, keys) in (manifests or {}).items():
                spec = next(b for b in batches if b["metadata"]["name"] == name)["spec"]
                body = "".join(f"{key}\n" for key in keys).encode()
                s3.put_object(bucket, spec["manifestKey"], io.BytesIO(body), len(body), content_type="text/plain",
                              metadata={UID_META: uids[name], BATCH_META: f"{NAMESPACE}/{name}",
                                        ITEMS_META: str(len(keys))})
            return uids
        return self.call(create_all)

    def wait_ready(self) -> None:
        """A one-item batch run to its end: the operator is up, watching, and its clients are warm."""
        bucket = f"{BUCKET_PREFIX}probe-{next(BUCKET_NUMBERS)}"
        seed_inputs(self.sandbox, bucket, input_keys("probe/", 1))
        uids = self.create([self.batch("operator-ready-probe", bucket=bucket, prefix="probe/", max_parallelism=1)])
        if self.observe(uids, deadline=time.monotonic() + OPERATOR_READY_SECONDS).finished != 1:
            raise TimeoutError(f"the operator did not finish a one-item batch in {OPERATOR_READY_SECONDS:.0f} s")

    def observe(self, uids: dict[str, str], *, deadline: float) -> Observation:
        """Sample the batches' status until all are finished or the deadline passes. For every range that
        newly shows in completedItems, the time since its Job was completed."""
        started = time.monotonic()
        watched = {name: Watched(name, uid.replace("-", "")[:invocation.UID_CHARS]) for name, uid in uids.items()}
        latencies: list[float] = []
        samples: list[Sample] = []
        kube = self.sandbox.kube
        while True:
            unfinished = [batch.name for batch in watched.values() if batch.phase not in FINISHED]
            statuses = self.read(functools.partial(_statuses, kube, unfinished))
            now = time.monotonic()
            samples.append(Sample(now, self.operator.cpu_seconds(), self.operator.memory_mb("VmRSS"),
                                  self.driver.changes, len(self.driver.completed_at)))
            for name, body in statuses.items():
                batch, status = watched[name], body.get("status") or {}
                version = (body.get("metadata") or {}).get("resourceVersion")
                if version == batch.resource_version:
                    continue
                batch.resource_version, batch.phase = version, status.get("phase")
                batch.succeeded = (status.get("items") or {}).get("succeeded") or 0
                shown = set(items.decode(status.get("completedItems")).lines()) - batch.visible
                if shown:
                    batch.visible |= shown
                    batch.refreshed.append(now)
                for line in shown:
                    completed = self.driver.completed_at.get((batch.uid_key, line))
                    if completed is not None:
                        latencies.append(now - completed)
            if all(batch.phase in FINISHED for batch in watched.values()) or now > deadline \
                    or not self.operator.alive():
                return Observation(now - started, list(watched.values()), latencies, samples)
            time.sleep(SAMPLE_SECONDS)


def _statuses(kube: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """Of each batch, what the sampler looks at, read in place: it runs on the sandbox's loop, where deep copies
    of 50 whole bodies ten times a second were 4% of the sandbox's time."""
    resource, found = kmock.resource(BATCHES), {}
    for name in names:
        key = (resource, NAMESPACE, name)
        raw = kube.objects[key].raw if key in kube.objects and not kube.objects[key].deleted else {}
        status = raw.get("status") or {}
        found[name] = {"metadata": {"resourceVersion": (raw.get("metadata") or {}).get("resourceVersion")},
                       "status": {"phase": status.get("phase"), "items": status.get("items"),
                                  "completedItems": status.get("completedItems")}}
    return found


@contextlib.contextmanager
def bench() -> Iterator[Bench]:
    # One input in the sandbox's own bucket (seeded over HTTP at start); the scenarios seed buckets of their own.
    config = SandboxConfig(nodes=(control_plane(), *WORKERS), tenant_pods=(), items=1)
    with tempfile.TemporaryDirectory(prefix="oscar-batch-scale-") as workdir, \
            driven_sandbox(config) as (sandbox, driver):
        running = Bench(pathlib.Path(workdir), sandbox, driver)
        try:
            running.wait_ready()
            yield running
        except Exception:
            sys.stderr.write(f"operator log (last lines):\n{running.operator.tail()}\n")
            raise
        finally:
            running.operator.stop()


# ---- scenarios -------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Third:
    """One third of the Jobs a scenario completed."""
    low: int
    high: int
    cpu_per_1k: float        # operator CPU s per 1,000 Job changes
    jobs_per_second: float   # how fast Jobs completed meanwhile: fixed costs per second weigh more when slow


@dataclasses.dataclass
class Result:
    scenario: str
    batches: int
    ranges: int                        # per batch
    finished: int
    seconds: float
    changes: int
    cpu: float
    rss_peak_mb: float
    latencies: list[float]
    thirds: list[Third] = dataclasses.field(default_factory=list)
    slope: float | None = None         # CPU s per 1k changes, per 10k Jobs completed
    rss_per_10k_jobs: float | None = None
    status_every: float | None = None  # median seconds between two refreshes of a batch's completedItems
    in_operator: dict[float, float] = dataclasses.field(default_factory=dict)   # its latency histogram's buckets
    problems: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def cpu_per_1k(self) -> float:
        return 1000 * self.cpu / self.changes if self.changes else float("nan")

    @property
    def all_finished(self) -> bool:
        return self.finished == self.batches

    def percentile(self, share: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_scenario(title: str, batches: int, ranges: int, *, max_parallelism: int, deadline: float,
                 write_manifests: bool = False, profile: pathlib.Path | None = None) -> Result:
    """`batches` batches of `ranges` one-item ranges, created at once on a fresh sandbox and operator."""
    bucket = f"{BUCKET_PREFIX}inputs-{next(BUCKET_NUMBERS)}"
    with contextlib.ExitStack() as stack:
        stack.callback(drop_buckets)
        running = stack.enter_context(bench())
        names = [f"scale-{n:04d}" for n in range(batches)]
        keys = {name: input_keys(f"{name}/", ranges) for name in names}
        seed_inputs(running.sandbox, bucket, [key for batch_keys in keys.values() for key in batch_keys])
        documents = [running.batch(name, bucket=bucket, prefix=f"{name}/", max_parallelism=max_parallelism)
                     for name in names]
        stack.enter_context(without_full_collections())
        cpu_before, changes_before = running.operator.cpu_seconds(), running.driver.changes
        with running.operator.profiled(profile):
            uids = running.create(documents,
                                  {name: (bucket, keys[name]) for name in names} if write_manifests else None)
            observation = running.observe(uids, deadline=deadline)
        result = Result(scenario=title, batches=batches, ranges=ranges, finished=observation.finished,
                        seconds=observation.seconds, changes=running.driver.changes - changes_before,
                        cpu=running.operator.cpu_seconds() - cpu_before,
                        rss_peak_mb=running.operator.memory_mb("VmHWM"), latencies=observation.latencies,
                        problems=running.operator.problems(), in_operator=running.operator.status_latency_buckets())
    if batches * ranges >= 3000:
        result.thirds, result.slope = per_third(observation.samples)
        result.rss_per_10k_jobs = rss_growth(observation.samples)
    gaps = [after - before for batch in observation.watched for before, after in itertools.pairwise(batch.refreshed)]
    result.status_every = statistics.median(gaps) if gaps else None
    phases = collections.Counter(batch.phase or "none" for batch in observation.watched)
    if not result.all_finished:
        result.notes.append(f"{batches - result.finished} of {batches} batches not finished at the deadline "
                            f"({', '.join(f'{count} {phase}' for phase, count in phases.items())})")
    short = [batch for batch in observation.watched if batch.phase in FINISHED and batch.succeeded != ranges]
    if short:
        result.notes.append(f"{len(short)} batches finished with fewer than {ranges} ranges succeeded")
    return result


def per_third(samples: list[Sample]) -> tuple[list[Third], float | None]:
    """CPU per 1,000 Job changes over each third of the Jobs completed, and the least-squares slope of that
    cost over ten equal slices against the Jobs completed (CPU s per 1k changes, per 10k completed Jobs)."""
    first, last = samples[0], samples[-1]
    total = last.completed - first.completed

    def at(completed: float) -> tuple[float, float, float]:
        """(time, CPU, changes) when the driver had completed `completed` Jobs, linear between samples."""
        for before, after in itertools.pairwise(samples):
            if after.completed >= completed:
                span = after.completed - before.completed
                share = (completed - before.completed) / span if span else 1.0
                return (before.at + share * (after.at - before.at), before.cpu + share * (after.cpu - before.cpu),
                        before.changes + share * (after.changes - before.changes))
        return last.at, last.cpu, last.changes

    def slice_of(low: float, high: float) -> Third:
        (start, cpu_low, changes_low), (end, cpu_high, changes_high) = (at(first.completed + low),
                                                                       at(first.completed + high))
        return Third(round(low), round(high), 1000 * (cpu_high - cpu_low) / max(changes_high - changes_low, 1),
                     (high - low) / max(end - start, 1e-9))

    thirds = [slice_of(total * k / 3, total * (k + 1) / 3) for k in range(3)]
    return thirds, _slope([(total * (k + 0.5) / 10 / 10_000, slice_of(total * k / 10, total * (k + 1) / 10).cpu_per_1k)
                           for k in range(10)])


def rss_growth(samples: list[Sample]) -> float | None:
    """MiB of RSS per 10,000 Jobs completed, fitted over the samples taken while Jobs completed."""
    points = [(sample.completed / 10_000, sample.rss_mb) for sample in samples]
    return _slope([point for point, after in itertools.pairwise(points) if after[0] > point[0]])


def _slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    mean_x, mean_y = statistics.fmean(x for x, _ in points), statistics.fmean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else None


# ---- report ------------------------------------------------------------------------------------------------

def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def table(results: Sequence[Result]) -> list[str]:
    lines = ["| scenario | batches × ranges | finished | wall s | Job changes | operator CPU s | CPU s / 1k changes "
             "| peak RSS MiB | status refresh s | latency p50 s | latency p95 s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.scenario} | {r.batches:,} × {r.ranges:,} | {r.finished:,}/{r.batches:,} "
                     f"| {r.seconds:.1f} | {r.changes:,} | {r.cpu:.1f} | {r.cpu_per_1k:.2f} | {r.rss_peak_mb:.0f} "
                     f"| {_seconds(r.status_every)} | {_seconds(r.percentile(0.5))} | {_seconds(r.percentile(0.95))} |")
    return lines


def details(results: Sequence[Result]) -> list[str]:
    lines = []
    for r in results:
        if r.thirds:
            thirds = "; ".join(f"Jobs {t.low:,}–{t.high:,}: {t.cpu_per_1k:.2f} ({t.jobs_per_second:.0f} Jobs/s)"
                               for t in r.thirds)
            ratio = r.thirds[2].cpu_per_1k / r.thirds[0].cpu_per_1k
            lines.append(f"- {r.scenario}: CPU s per 1k Job changes by thirds of the Jobs completed: {thirds} "
                         f"(slope {r.slope:+.3f} per 10k Jobs; last/first {ratio:.2f}); "
                         f"RSS grew {r.rss_per_10k_jobs or 0:.1f} MiB per 10k Jobs.")
        if r.in_operator:
            lines.append(f"- {r.scenario}: of the latency, the operator's part (its watch seeing a Job end → the "
                         f"status patch recording it accepted, from its own histogram): p50 ≤ "
                         f"{_bucket_bound(r.in_operator, 0.5)} s, p95 ≤ {_bucket_bound(r.in_operator, 0.95)} s; the "
                         "rest is the sandbox's watch and the sampling.")
        for note in r.notes:
            lines.append(f"- {r.scenario}: {note}.")
        if r.problems:
            shown = "; ".join(f"{count} × {problem}" for problem, count in r.problems.most_common(3))
            lines.append(f"- {r.scenario}: the operator logged {sum(r.problems.values())} warnings/errors: {shown}.")
    return lines


def _bucket_bound(buckets: dict[float, float], share: float) -> str:
    """The smallest histogram bound below which `share` of the observations fall."""
    total = buckets.get(float("inf"), 0.0)
    bound = next((le for le in sorted(buckets) if total and buckets[le] >= share * total), float("inf"))
    return f"{bound:g}"


def targets(results: Sequence[Result], small: Result | None, big: Result | None) -> list[str]:
    def verdict(met: bool) -> str:
        return "met" if met else "**missed**"

    lines = []
    if small is not None:
        lines.append(f"- {small.scenario} all finish: {verdict(small.all_finished)} "
                     f"({small.finished}/{small.batches} in {small.seconds:.0f} s).")
    if big is not None and big.thirds:
        ratio = big.thirds[2].cpu_per_1k / big.thirds[0].cpu_per_1k
        lines.append(f"- Per-change cost flat as finished Jobs grow (last third ≤ {FLAT_RATIO:g}× the first, big "
                     f"batch): {verdict(ratio <= FLAT_RATIO)} ({ratio:.2f}×, slope {big.slope:+.3f} CPU s per 1k "
                     f"changes per 10k Jobs).")
    worst = max((r for r in results if r.latencies), key=lambda r: r.percentile(0.95) or 0.0, default=None)
    if worst is not None:
        p95 = worst.percentile(0.95) or 0.0
        lines.append(f"- Job finished → status p95 ≤ {TARGET_P95_SECONDS:g} s: {verdict(p95 <= TARGET_P95_SECONDS)} "
                     "(" + ", ".join(f"{r.scenario} {_seconds(r.percentile(0.95))} s" for r in results
                                     if r.latencies) + ").")
    if big is not None:
        measured = f"{big.rss_peak_mb:.0f} MiB at {big.ranges:,} ranges"
        if big.ranges >= ISSUE_BIG:
            lines.append(f"- RSS ≤ {TARGET_RSS_MB:g} MB for {ISSUE_BIG:,} ranges: "
                         f"{verdict(big.rss_peak_mb <= TARGET_RSS_MB)} ({measured}).")
        elif big.rss_per_10k_jobs is not None:
            projected = big.rss_peak_mb + big.rss_per_10k_jobs * (ISSUE_BIG - big.ranges) / 10_000
            lines.append(f"- RSS ≤ {TARGET_RSS_MB:g} MB for {ISSUE_BIG:,} ranges: not measured at that size "
                         f"({measured}); projected {projected:.0f} MiB from the measured growth, "
                         f"{verdict(projected <= TARGET_RSS_MB)} if the growth stays linear.")
    return lines


def throughput(results: Sequence[Result]) -> str:
    rates = [f"{r.batches * r.ranges / r.seconds:.0f} Jobs/s ({r.scenario})" for r in results
             if r.batches * r.ranges >= 3000 and r.seconds > 0]
    return " and ".join(rates) or "too few Jobs to say"


def scaled_down(args: argparse.Namespace, results: Sequence[Result]) -> list[str]:
    """Why a run was smaller than the issue's sizes, if it was."""
    if args.big >= ISSUE_BIG and args.many >= ISSUE_MANY and args.many_ranges >= ISSUE_MANY_RANGES:
        return []
    return [f"Scaled down: the big batch had {args.big:,} ranges (the issue's size: {ISSUE_BIG:,}) and the "
            f"concurrent batches were {args.many:,} × {args.many_ranges:,} ({ISSUE_MANY} × {ISSUE_MANY_RANGES:,}); "
            f"the operator got through {throughput(results)}.", ""]


def write_docs(command: str, took: str, args: argparse.Namespace, results: Sequence[Result],
               target_lines: list[str]) -> None:
    """Replace the "Controller scale" section of docs/benchmarks.md (or add it); the rest is left alone."""
    section = [
        DOCS_HEADING, "",
        f"`{command}` (also part of `make bench`), {datetime.date.today().isoformat()}, operator at "
        f"{revision()}; {machine()}; the whole run took {took}. The operator is its own process "
        "(`oscar-batch run`) with its production timing (tick 1 s, status at most every 2 s), against the "
        "embedded sandbox; each scenario gets a fresh sandbox and a fresh operator. Every range is one input "
        f"and one Job; the stand-in Job controller starts a Job {JOB_START_SECONDS:g} s after OSCAR created it "
        f"and completes it {JOB_RUN_SECONDS:g} s later (all succeed). \"Job changes\" are the Jobs' watch "
        "events (created, started, completed, deleted by the operator's clean-up). Latency is from the Job's "
        "Complete condition to its range showing in `status.completedItems`, sampled every "
        f"{SAMPLE_SECONDS:g} s; \"status refresh\" is the median time between two changes of a batch's "
        "completedItems.", "",
        *table(results), "",
        *details(results), "",
        "Targets of the issue:", "",
        *target_lines, "",
        *scaled_down(args, results),
        "What the sandbox leaves out, and why:", "",
        "- No Pods: the sandbox's job runner (scheduler, kubelet and simulated service through S3) does a full "
        "pass over every Job and Pod on each change, which at these sizes measures the sandbox, not the "
        "operator. The operator therefore plans on empty nodes, and never lists the Pods a real cluster keeps "
        "for finished Jobs (it lists every Pod of the cluster at most every 2 s while ranges end).",
        "- Inputs are seeded into moto's backend directly, and the big batch's manifest is written for it as "
        "the operator would (moto lists 100,000 keys in 44 s: it sorts the whole prefix for every page); the "
        "other scenarios list their inputs through S3.",
        "- The sandbox's request record is kept short and OSCAR's simulator is told there are no Pods (two "
        "costs of the sandbox that grow with every request and every object; `benchmarks/scale.py` says why).",
        "- No full garbage collections in the benchmark's process (the sandbox's) while a scenario runs: over "
        "the emulator's objects they stopped its loop for up to a second, and nothing in a real API server "
        "does that to the operator.",
    ]
    replace_section(DOCS_HEADING, section)


def main(argv: Sequence[str] | None = None) -> int:
    summary = " ".join((__doc__ or "").split("\n\n")[0].split())
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=summary)
    parser.add_argument("--small", type=int, default=200, help="number of small batches (default 200)")
    parser.add_argument("--small-items", type=int, default=5, help="one-item ranges per small batch (default 5)")
    parser.add_argument("--big", type=int, default=ISSUE_BIG, help=f"ranges of the big batch (default {ISSUE_BIG:,})")
    parser.add_argument("--many", type=int, default=ISSUE_MANY,
                        help=f"number of concurrent batches (default {ISSUE_MANY})")
    parser.add_argument("--many-ranges", type=int, default=ISSUE_MANY_RANGES,
                        help=f"ranges per concurrent batch (default {ISSUE_MANY_RANGES:,})")
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS,
                        help=f"seconds the whole run may take (default {BUDGET_SECONDS}); scenarios are cut short")
    parser.add_argument("--only", choices=("small", "big", "many"), action="append", help="run only these")
    parser.add_argument("--profile", type=pathlib.Path, metavar="DIR",
                        help="record the operator with py-spy (pip install py-spy) into DIR/<scenario>.txt")
    parser.add_argument("--no-docs", action="store_true", help=f"do not write {DOCS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    chosen = args.only or ["small", "big", "many"]
    began = time.monotonic()
    budget_end = began + args.budget
    load_before = os.getloadavg()[0]

    def profile(name: str) -> pathlib.Path | None:
        if args.profile is None:
            return None
        args.profile.mkdir(parents=True, exist_ok=True)
        return args.profile / f"{name}.txt"

    def deadline(name: str, scenarios_left: int) -> float:
        """A scenario may run up to its cap, within what the budget leaves after the others' overheads."""
        left = budget_end - time.monotonic() - scenarios_left * SCENARIO_OVERHEAD_SECONDS
        cap = SCENARIO_CAP_SECONDS[name] * args.budget / BUDGET_SECONDS
        return time.monotonic() + max(min(cap, left), 30.0)

    results: dict[str, Result] = {}
    for position, name in enumerate(chosen):
        until = deadline(name, len(chosen) - position)
        if name == "small":
            results[name] = run_scenario(f"{args.small} small batches", args.small, args.small_items,
                                         max_parallelism=args.small_items, deadline=until, profile=profile(name))
        elif name == "big":
            results[name] = run_scenario("one big batch", 1, args.big, max_parallelism=BIG_PARALLELISM,
                                         deadline=until, write_manifests=True, profile=profile(name))
        else:
            results[name] = run_scenario(f"{args.many} concurrent batches", args.many, args.many_ranges,
                                         max_parallelism=BIG_PARALLELISM, deadline=until, profile=profile(name))
        print(f"{results[name].scenario}: done in {results[name].seconds:.0f} s", file=sys.stderr)
    elapsed = time.monotonic() - began
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    ordered = list(results.values())
    target_lines = targets(ordered, results.get("small"), results.get("big"))
    print("\n".join([*table(ordered), "", *details(ordered), "", "targets:", *target_lines]))
    print(f"benchmark took {elapsed:.0f} s; {load}")
    if not args.no_docs:
        command = "python -m benchmarks.scale" + (f" {' '.join(argv)}" if argv else "")
        write_docs(command, f"{elapsed:.0f} s ({load})", args, ordered, target_lines)
        print(f"written to {DOCS.relative_to(ROOT)}")
    return 0


def run() -> None:
    """For `make bench` (benchmarks/__main__.py)."""
    main([])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
