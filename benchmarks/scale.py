"""Controller scale: the operator process (`oscar-batch run`, production timing) against the sandbox, with many
batches and many Jobs.

Scenarios, each on a fresh sandbox and a fresh operator process (so that peak RSS is the scenario's own):
- small: N batches of a few items each, created at once; wall time until every one is Succeeded.
- big: one batch of many ranges (itemsPerInvocation 1).
- many: M batches of R ranges each, created at once.

Measured on the operator process: CPU seconds (utime + stime from /proc/<pid>/stat) per 1,000 Job changes
(watch events of Jobs: created, started, completed), peak RSS (VmHWM), and the latency from a Job getting its
Complete condition to the batch's status counting it (completedRanges, sampled every SAMPLE_SECONDS).

Two parts of the sandbox are replaced here, for scale and not for convenience:
- The sandbox's job runner reconciles every Job and Pod of the cluster (deep copies included) on every change
  and runs the simulated service, which reads the manifest and writes one output per item through S3: at
  10⁵ Jobs a pass takes seconds and the sandbox, not the operator, is what gets measured. `JobDriver` stands
  in for it: it sees Jobs appear on the emulator's watch bus and writes their status as the Job controller
  would (started, then Complete), without Pods. The operator therefore plans on empty nodes; the Pods a real
  cluster keeps for finished Jobs are not listed (see docs/benchmarks.md).
- Inputs are put straight into moto's in-process backend (~25,000/s; moto's HTTP PUT does ~500/s), and the
  big batch's manifest is written for it (as a restarted operator finds its own manifest) because moto lists a
  bucket in O(N²) — it sorts every key for each 1,000-key page: 44 s for 100,000 keys. The small and many
  batches list their inputs through S3 as usual.

Run: `.venv/bin/python -m benchmarks.scale` (`--help` for sizes); `make bench` runs it with the defaults.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime
import io
import itertools
import os
import pathlib
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from unittest import mock

import kmock

import oscar_batch_sandbox
from oscar_batch.clients.manifest import BATCH_META, ITEMS_META, UID_META
from oscar_batch.core import invocation
from oscar_batch.core.ranges import decode_indexes
from oscar_batch_sandbox import SandboxThread
from oscar_batch_sandbox.config import NodeSpec, SandboxConfig, control_plane
from oscar_batch_sandbox.handoff import batch_manifests
from oscar_batch_sandbox.kube import now_iso
from oscar_batch_sandbox.runner import JOBS, succeeded_job_status

BIN = pathlib.Path(sys.executable).parent
ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
BATCHES = "batch.oscarbatch.dev/v1alpha1/oscarbatchjobs"
NAMESPACE = "default"
FINISHED = ("Succeeded", "Failed")

# The operator runs with its production timing (tick 1 s, status at most every 3 s, plan every 15 s): the
# latency target is about what a user sees, and a shorter tick would multiply the idle cost of every daemon.
OPERATOR_ARGS: tuple[str, ...] = ()
OPERATOR_READY_SECONDS = 60.0
SAMPLE_SECONDS = 0.1
# How the stand-in Job controller paces a Job: created by OSCAR, started this long after, Complete this long
# after starting. Three Job changes per range.
JOB_START_SECONDS = 0.2
JOB_RUN_SECONDS = 1.0
CHANGES_PER_JOB = 3
DRIVER_STEP_SECONDS = 0.02
# kmock records every request, and matching a new request walks that record (`request in view`), so each
# request costs more the more came before it; the sandbox forgets them every 30 s, which at ~100 requests/s
# already makes a status patch take 70 ms on the sandbox's loop. The driver keeps only the latest ones (those
# in flight among them) every REQUEST_LOG_SECONDS.
REQUEST_LOG_SECONDS = 0.02
REQUEST_LOG_KEEP = 8
# Nodes the planner sees as empty (the driver makes no Pods): 4 × 256 one-CPU slots. Each scenario caps its
# batches with maxParallelism below that.
WORKERS = tuple(NodeSpec(name=f"worker-{n}", cpu="256", memory="1Ti", pods=1000,
                         labels={"node-role.kubernetes.io/worker": ""}) for n in range(1, 5))
BUDGET_SECONDS = 8 * 60
LOG_LEVEL = re.compile(r"\[(WARNING|ERROR|CRITICAL) *\]")

# Targets of the issue.
TARGET_P95_SECONDS = 5.0
TARGET_RSS_MB = 300.0
TARGET_RSS_RANGES = 100_000
# "Flat": the last third of the big batch costs at most this much more CPU per change than the first.
FLAT_RATIO = 1.25


# ---- the stand-in Job controller ----------------------------------------------------------------------

class JobDriver:
    """Takes the job runner's place in the sandbox (same constructor, `pod_log` and `run`): every Job OSCAR
    creates is started, then completed, on a fixed schedule. It counts the Job changes the operator's watch
    receives and remembers when each range's Job was completed, by batch UID prefix and range."""

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
        bus = self._kube._buses[kmock.resource(JOBS)]
        watching = asyncio.create_task(self._watch(bus))
        trimmed = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                await self._advance(now)
                if now - trimmed >= REQUEST_LOG_SECONDS:
                    del self._kube._requests[:-REQUEST_LOG_KEEP]
                    trimmed = now
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
            identity = invocation.identify({"metadata": {"name": name}})
            if identity is not None:
                # Taken before the patch: the latency measured includes the patch itself.
                self.completed_at[(identity.batch_uid, identity.range)] = time.monotonic()
            with contextlib.suppress(kmock.KubernetesObjectNotFoundError):
                await self._kube.patch(JOBS, namespace, name, {"status": succeeded_job_status(now_iso())})


@contextlib.contextmanager
def driven_sandbox(config: SandboxConfig) -> Iterator[tuple[SandboxThread, JobDriver]]:
    drivers: list[JobDriver] = []

    def make_driver(kube: Any, config: SandboxConfig, s3: Any) -> JobDriver:
        drivers.append(JobDriver(kube, config, s3))
        return drivers[-1]

    assert hasattr(oscar_batch_sandbox, "JobRunner"), "the sandbox no longer builds its job runner as before"
    sandbox = SandboxThread(config)
    with mock.patch.object(oscar_batch_sandbox, "JobRunner", make_driver):
        sandbox.__enter__()
    try:
        yield sandbox, drivers[0]
    finally:
        sandbox.__exit__(None, None, None)


# ---- S3 -------------------------------------------------------------------------------------------------

def seed_inputs(sandbox: SandboxThread, bucket: str, keys: Sequence[str]) -> None:
    """Create `bucket` holding `keys`, straight into moto's backend (it serves the sandbox from this process)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    s3 = s3_client(sandbox)
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key in keys:
        backend.put_object(bucket, key, b"\xff\xd8\xff\xe0scale " + key.encode(), disable_notification=True)


def s3_client(sandbox: SandboxThread) -> Any:
    config = sandbox.sandbox.config
    return sandbox.sandbox.s3.client(config.s3_access_key, config.s3_secret_key)


def input_keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}frame-{index:06d}.jpg" for index in range(1, count + 1)]


# ---- the operator process -------------------------------------------------------------------------------

class OperatorProcess:
    """`oscar-batch run` as its own process, as in a cluster; read through /proc."""

    def __init__(self, kubeconfig: pathlib.Path, log: pathlib.Path) -> None:
        self.log = log
        with log.open("wb") as output:
            self._process = subprocess.Popen([str(BIN / "oscar-batch"), "run", "--kubeconfig", str(kubeconfig),
                                              *OPERATOR_ARGS], stdout=output, stderr=subprocess.STDOUT)
        self.pid = self._process.pid

    def cpu_seconds(self) -> float:
        stat = pathlib.Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mb(self, field: str) -> float:
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        raise KeyError(field)

    @contextlib.contextmanager
    def profiled(self, output: pathlib.Path | None) -> Iterator[None]:
        """Sample the operator's stacks with py-spy (collapsed stacks into `output`) while the block runs."""
        if output is None:
            yield
            return
        spy = subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(self.pid), "--format", "raw",
                                "--rate", "100", "--nonblocking", "--output", str(output)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on interrupt
            spy.wait(timeout=30)

    def alive(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def problems(self) -> collections.Counter[str]:
        """Warnings and errors the operator logged, by level."""
        return collections.Counter(match[1] for match in LOG_LEVEL.finditer(self.log.read_text(errors="replace")))

    def tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:]


# ---- one scenario's bench ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Watched:
    """One batch under observation: what status showed so far."""
    name: str
    uid_key: str
    ranges: int
    visible: set[int] = dataclasses.field(default_factory=set)
    resource_version: str | None = None
    phase: str | None = None


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float
    cpu: float          # the operator's CPU seconds so far
    changes: int        # Job changes so far
    completed: int      # Jobs the driver has completed so far


@dataclasses.dataclass
class Observation:
    seconds: float                    # from creating the batches until the last one finished
    finished: int
    phases: collections.Counter[str]
    latencies: list[float]
    samples: list[Sample]


class Bench:
    """A sandbox with the stand-in Job controller, its Secrets, and an operator process that has handled a
    first batch (so that kopf's start-up is not measured)."""

    def __init__(self, workdir: pathlib.Path, sandbox: SandboxThread, driver: JobDriver) -> None:
        self.workdir = workdir
        self.sandbox = sandbox
        self.driver = driver
        self.kubeconfig = workdir / "kubeconfig"
        sandbox.sandbox.write_kubeconfig(self.kubeconfig)
        secrets = batch_manifests(sandbox.info)[:2]
        self.call(lambda: asyncio.gather(*(sandbox.kube.create(f"v1/secrets", secret) for secret in secrets)))
        self.operator = OperatorProcess(self.kubeconfig, workdir / "operator.log")

    def call(self, coroutine_function: Callable[[], Any], timeout: float = 120) -> Any:
        return self.sandbox.call(coroutine_function, timeout=timeout)

    def read(self, function: Callable[[], Any]) -> Any:
        """Read the emulator's objects on the sandbox's loop: they are not thread-safe."""
        async def on_loop() -> Any:
            return function()
        return self.call(on_loop)

    def manifest(self, name: str, *, bucket: str, prefix: str, max_parallelism: int) -> dict[str, Any]:
        *_, batch = batch_manifests(self.sandbox.info, name=name, itemsPerInvocation=1, capacityHeadroom=1.0,
                                    maxParallelism=max_parallelism, manifestKey=f"{prefix}index.txt")
        batch["spec"]["storage"].update(bucket=bucket, prefix=prefix, include=["*.jpg"], exclude=[])
        return batch

    def create(self, batches: Sequence[dict[str, Any]],
               manifests: dict[str, tuple[str, list[str]]] | None = None) -> dict[str, str]:
        """Create the batches at once (in-process, as one burst); name → UID. For the batches named in
        `manifests` (bucket, keys), their manifest is written as the operator would have, before any handler
        of the operator can run: this coroutine holds the sandbox's loop until it is done."""
        s3 = s3_client(self.sandbox)

        async def create_all() -> dict[str, str]:
            uids = {}
            for batch in batches:
                created = await self.sandbox.kube.create(BATCHES, batch)
                uids[batch["metadata"]["name"]] = created["metadata"]["uid"]
            for name, (bucket, keys) in (manifests or {}).items():
                spec = next(b for b in batches if b["metadata"]["name"] == name)["spec"]
                body = "".join(f"{key}\n" for key in keys).encode()
                s3.put_object(bucket, spec["manifestKey"], io.BytesIO(body), len(body), content_type="text/plain",
                              metadata={UID_META: uids[name], BATCH_META: f"{NAMESPACE}/{name}",
                                        ITEMS_META: str(len(keys))})
            return uids
        return self.call(create_all)

    def wait_ready(self) -> None:
        """A one-item batch run to its end: the operator is up, watching, and has its clients warm."""
        seed_inputs(self.sandbox, "scale-probe", input_keys("probe/", 1))
        probe = self.manifest("operator-ready-probe", bucket="scale-probe", prefix="probe/", max_parallelism=1)
        uids = self.create([probe])
        observation = self.observe(uids, {"operator-ready-probe": 1}, timeout=OPERATOR_READY_SECONDS,
                                   started=time.monotonic())
        if observation.finished != 1:
            raise TimeoutError(f"the operator did not finish a one-item batch within {OPERATOR_READY_SECONDS:.0f} s")

    def observe(self, uids: dict[str, str], ranges: dict[str, int], *, timeout: float, started: float,
                interval: float = SAMPLE_SECONDS) -> Observation:
        """Sample the batches' status until all are finished or `timeout` passes: phases, and for every range
        that newly shows in completedRanges, the time since its Job was completed."""
        watched = {name: Watched(name, uid.replace("-", "")[:invocation.UID_CHARS], ranges[name])
                   for name, uid in uids.items()}
        latencies: list[float] = []
        samples: list[Sample] = []
        deadline = started + timeout
        kube = self.sandbox.kube
        while True:
            open_batches = [w.name for w in watched.values() if w.phase not in FINISHED]
            statuses = self.read(lambda: {name: _status_and_version(kube.get(BATCHES, NAMESPACE, name))
                                          for name in open_batches})
            now = time.monotonic()
            samples.append(Sample(now, self.operator.cpu_seconds(), self.driver.changes,
                                  len(self.driver.completed_at)))
            for name, (status, version) in statuses.items():
                batch = watched[name]
                if version == batch.resource_version:
                    continue
                batch.resource_version, batch.phase = version, status.get("phase")
                if not status.get("completedRanges"):
                    continue
                shown = set(decode_indexes(status["completedRanges"])) - batch.visible
                batch.visible |= shown
                for index in shown:
                    completed = self.driver.completed_at.get((batch.uid_key, index))
                    if completed is not None:
                        latencies.append(now - completed)
            done = [w for w in watched.values() if w.phase in FINISHED]
            if len(done) == len(watched) or now > deadline or not self.operator.alive():
                return Observation(seconds=now - started, finished=len(done),
                                   phases=collections.Counter(w.phase or "none" for w in watched.values()),
                                   latencies=latencies, samples=samples)
            time.sleep(interval)


def _status_and_version(batch: dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    batch = batch or {}
    return batch.get("status") or {}, (batch.get("metadata") or {}).get("resourceVersion")


@contextlib.contextmanager
def bench(config: SandboxConfig) -> Iterator[Bench]:
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


def sandbox_config() -> SandboxConfig:
    # One input in the sandbox's own bucket (seeded over HTTP at start); the scenarios seed their own buckets.
    return SandboxConfig(nodes=(control_plane(), *WORKERS), tenant_pods=(), items=1)


# ---- scenarios ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    scenario: str
    batches: int
    ranges: int                       # per batch
    finished: int
    seconds: float
    changes: int
    cpu: float
    rss_peak_mb: float
    latencies: list[float]
    thirds: list[tuple[int, int, float]] = dataclasses.field(default_factory=list)  # (from, to Jobs, CPU/1k)
    slope: float | None = None        # CPU s per 1k changes, per 10k finished Jobs
    note: str = ""

    @property
    def jobs(self) -> int:
        return self.batches * self.ranges

    @property
    def cpu_per_1k(self) -> float:
        return 1000 * self.cpu / self.changes if self.changes else float("nan")

    def percentile(self, share: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_scenario(title: str, batches: int, ranges: int, *, max_parallelism: int, timeout: float,
                 write_manifests: bool = False, profile: pathlib.Path | None = None) -> Result:
    """`batches` batches of `ranges` one-item ranges, created at once on a fresh sandbox and operator."""
    bucket = "scale-inputs"
    with bench(sandbox_config()) as running:
        names = [f"scale-{n:04d}" for n in range(batches)]
        keys = {name: input_keys(f"{name}/", ranges) for name in names}
        seed_inputs(running.sandbox, bucket, [key for batch_keys in keys.values() for key in batch_keys])
        documents = [running.manifest(name, bucket=bucket, prefix=f"{name}/", max_parallelism=max_parallelism)
                     for name in names]
        cpu_before, changes_before = running.operator.cpu_seconds(), running.driver.changes
        with running.operator.profiled(profile):
            started = time.monotonic()
            uids = running.create(documents,
                                  {name: (bucket, keys[name]) for name in names} if write_manifests else None)
            observation = running.observe(uids, dict.fromkeys(names, ranges), timeout=timeout, started=started)
        result = Result(scenario=title, batches=batches, ranges=ranges, finished=observation.finished,
                        seconds=observation.seconds, changes=running.driver.changes - changes_before,
                        cpu=running.operator.cpu_seconds() - cpu_before,
                        rss_peak_mb=running.operator.memory_mb("VmHWM"), latencies=observation.latencies)
        if observation.finished < batches:
            result.note = f"{batches - observation.finished} not finished after {timeout:.0f} s: {dict(observation.phases)}"
        result.thirds, result.slope = per_third(observation.samples)
        return result


def per_third(samples: list[Sample]) -> tuple[list[tuple[int, int, float]], float | None]:
    """CPU per 1,000 Job changes over each third of the Jobs completed, and the least-squares slope of that
    cost over ten equal slices against the Jobs completed (CPU s per 1k changes, per 10k completed Jobs)."""
    first, last = samples[0], samples[-1]
    total = last.completed - first.completed
    if total < 300:
        return [], None

    def at(completed: float) -> tuple[float, float]:
        """(CPU, changes) when the driver had completed `completed` Jobs, linear between samples."""
        for before, after in itertools.pairwise(samples):
            if after.completed >= completed:
                span = after.completed - before.completed
                share = (completed - before.completed) / span if span else 1.0
                return (before.cpu + share * (after.cpu - before.cpu),
                        before.changes + share * (after.changes - before.changes))
        return last.cpu, last.changes

    def cost(low: float, high: float) -> float:
        (cpu_low, changes_low), (cpu_high, changes_high) = at(first.completed + low), at(first.completed + high)
        return 1000 * (cpu_high - cpu_low) / max(changes_high - changes_low, 1)

    thirds = [(round(total * k / 3), round(total * (k + 1) / 3), cost(total * k / 3, total * (k + 1) / 3))
              for k in range(3)]
    slices = [(total * (k + 0.5) / 10 / 10_000, cost(total * k / 10, total * (k + 1) / 10)) for k in range(10)]
    xs = [x for x, _ in slices]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(y for _, y in slices)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in slices) / sum((x - mean_x) ** 2 for x in xs)
    return thirds, slope


# ---- report -------------------------------------------------------------------------------------------------

def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    memory = next((int(line.split()[1]) // 1024 // 1024 for line in pathlib.Path("/proc/meminfo").read_text()
                   .splitlines() if line.startswith("MemTotal:")), 0)
    return (f"{os.cpu_count()} × {model}, {memory} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def table(results: Sequence[Result]) -> list[str]:
    def seconds(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"
    lines = ["| scenario | batches × ranges | finished | wall s | Job changes | operator CPU s | CPU s / 1k changes "
             "| peak RSS MB | latency p50 s | latency p95 s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.scenario} | {r.batches:,} × {r.ranges:,} | {r.finished:,}/{r.batches:,} | {r.seconds:.1f} "
                     f"| {r.changes:,} | {r.cpu:.1f} | {r.cpu_per_1k:.2f} | {r.rss_peak_mb:.0f} "
                     f"| {seconds(r.percentile(0.5))} | {seconds(r.percentile(0.95))} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200, help="number of small batches (default 200)")
    parser.add_argument("--small-items", type=int, default=5, help="items per small batch (default 5)")
    parser.add_argument("--big", type=int, default=20_000, help="ranges of the big batch (default 20,000)")
    parser.add_argument("--many", type=int, default=50, help="number of concurrent batches (default 50)")
    parser.add_argument("--many-ranges", type=int, default=400, help="ranges per concurrent batch (default 400)")
    parser.add_argument("--only", choices=("small", "big", "many"), action="append", help="run only these")
    parser.add_argument("--profile", type=pathlib.Path, metavar="DIR",
                        help="record the operator with py-spy into DIR/<scenario>.txt (collapsed stacks)")
    parser.add_argument("--no-docs", action="store_true", help=f"do not write {DOCS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    began = time.monotonic()
    chosen = set(args.only or ("small", "big", "many"))
    results = []
    def profile(name: str) -> pathlib.Path | None:
        if args.profile is None:
            return None
        args.profile.mkdir(parents=True, exist_ok=True)
        return args.profile / f"{name}.txt"

    if "small" in chosen:
        results.append(run_scenario(f"{args.small} small batches", args.small, args.small_items,
                                    max_parallelism=args.small_items, timeout=120, profile=profile("small")))
    if "big" in chosen:
        results.append(run_scenario("one big batch", 1, args.big, max_parallelism=1000, timeout=300,
                                    write_manifests=True, profile=profile("big")))
    if "many" in chosen:
        results.append(run_scenario(f"{args.many} concurrent batches", args.many, args.many_ranges,
                                    max_parallelism=1000, timeout=300, profile=profile("many")))
    elapsed = time.monotonic() - began
    for line in table(results):
        print(line)
    for r in results:
        if r.thirds:
            print(f"{r.scenario}: CPU s per 1k changes by thirds of its Jobs: "
                  + ", ".join(f"Jobs {low:,}–{high:,}: {cost:.2f}" for low, high, cost in r.thirds)
                  + f"; slope {r.slope:+.3f} per 10k finished Jobs")
        if r.note:
            print(f"{r.scenario}: {r.note}")
    print(f"benchmark took {elapsed:.0f} s")
    return 0


def run() -> None:
    main([])


if __name__ == "__main__":
    sys.exit(main())
