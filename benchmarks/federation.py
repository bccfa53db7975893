"""Federation: one batch over several OSCAR clusters (issue 22), and what a Remote batch costs an OSCAR.

1. Speed-up. The same batch (inputs, per-item time, seed) on one cluster capped at `SLOTS` invocations
   (`spec.clusters[].maxParallelism`) and on two such clusters, alternately (A B A B …), each run on a fresh
   sandbox of two clusters alike and a fresh operator process (`oscar-batch run`), as in a cluster. Two variants:
   `mixed`, the first cluster InCluster (the operator runs there and watches its Jobs) and the second Remote, the
   deployment issue 22 is for; `remote`, both Remote (the operator outside every OSCAR cluster, with Nodes, Pods
   and Jobs forbidden to it), whose Remote-only baseline shows what the listing's delay costs. Reported: makespan
   (creation to Succeeded), the ratio of medians and the pairwise spread, and per cluster what explains a ratio
   under 2: the slots' busy share, the gap from a container's end to the next invocation on that cluster (the
   listing's delay for a Remote one, the watch's for InCluster), the invocations, and when its last container
   ended.
2. Requests. One Remote cluster, the batch at three sizes at a fixed `itemsPerInvocation`: every request the
   OSCAR simulator received, by kind, per simulated minute of the batch; the listing's pages per minute over the
   first, middle and last third of the ranges finished; the most Jobs the cluster held (what one reading of the
   listing pages through, `JOB_LISTING_LIMIT` a page).

Time is simulated: `--time-scale` real seconds make one, and the operator runs with its production intervals
(`Timing()`: tick 1 s, status 2 s, plan 15 s, listing 2 s, …) scaled alike, so its delays relate to a pod's
start-up and an item's work as in production. One exception: `min_replan` (a plan at most every 2 s after a range
ended) has no flag, and `oscar-batch run` sets it to min(2 s, --plan-interval) in real seconds, so here a plan
(and a Remote cluster's GET /system/status) comes at most every plan interval: production reads status up to
every 2 s while ranges end.

Run: `.venv/bin/python -m benchmarks.federation` (`--help` for sizes); `make bench` runs the defaults and it
rewrites the "Federation" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import datetime
import functools
import gc
import math
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.makespan import (
    BIN,
    Clock,
    _num,
    _stop,
    batch_finished,
    median,
    operator_problems,
    read,
    spread,
    total_work,
    wait_for_operator,
)
from benchmarks.report import ROOT, machine, replace_section, revision
from oscar_batch.core.cadence import Timing
from oscar_batch_sandbox import SandboxThread
from oscar_batch_sandbox.config import Behaviour, SandboxConfig, control_plane, workers
from oscar_batch_sandbox.handoff import OPERATOR_ARGS, batch_manifests, clusters_spec
from oscar_batch_sandbox.oscar import JOB_LISTING_LIMIT
from oscar_batch_sandbox.runner import JOBS

DOCS_HEADING = "## Federation"
BATCHES = "batch.oscarbatch.dev/v1alpha1/oscarbatchjobs"
BATCH_NAME = "federated"
TIME_SCALE = 0.05
POLL_SECONDS = 0.005         # how often the batch's end is looked for (real)
SAMPLE_SECONDS = 0.25        # how often status, requests and Jobs are sampled (real)
LAG_PROBE_SECONDS = 0.02     # the sandbox loop's lateness is measured on a sleep of this (real)
# What an operator outside the OSCAR clusters cannot read there (as tests/test_remote_e2e.py).
NOT_ITS_CLUSTER = frozenset({"v1/nodes", "v1/pods", "batch/v1/jobs"})

# ---- 1. speed-up ------------------------------------------------------------------------------------------
# Each cluster: 5 workers of 5 CPU and a 2-CPU service, 10 slots, capped at 8 by maxParallelism (the cap, not the
# nodes, is what binds). 600 items of 8 s ± 50%: 600 s of work per slot on one cluster, 60 start-ups' worth, about
# 35 s real at 0.05. Listing the inputs takes its real time whatever the time scale: 2,400 items of 2 s took 1–2 s
# to list from moto (20–40 s simulated, varying with the machine's load), 600 take a third of a second.
SLOTS = 8
SPEEDUP_ITEMS = 600
STARTUP_SECONDS = 10.0
ITEM_SECONDS = 8.0
SEED = 1
REPEATS = 2
VARIANTS = ("mixed", "remote")
TARGET_SPEEDUP = 1.8
SPEEDUP_NODES = (control_plane(), *workers(5, cpu="5", memory="16Gi"))
SERVICE = {"service_cpu": "2", "service_memory": "2Gi"}

# ---- 2. requests per minute -------------------------------------------------------------------------------
# One Remote cluster of 16 slots (4 workers of 8 CPU, the same service), ranges of 50 items of 0.5 s (30 s with
# the 5 s start-up): a range ends about every 2 s, and the largest batch finishes 400 ranges. Slower than the
# speed-up's time scale: at 0.05, 1,000 ranges of 15 s on 16 slots were more than this shared machine could
# carry (both the operator and the emulated cluster lagged, and the batch ran at half its pace).
RATE_SIZES = (200, 2_000, 20_000)
RATE_SLOTS = 16
RATE_ITEMS_PER_INVOCATION = 50
RATE_ITEM_SECONDS = 0.5
RATE_STARTUP_SECONDS = 5.0
RATE_TIME_SCALE = 0.1
# One batch more at time scale 1: production's timing whole, `min_replan` included (a minute and a half).
PRODUCTION_SIZE = 2_000
RATE_NODES = (control_plane(), *workers(4, cpu="8", memory="32Gi"))
# The simulator's routes, as the operator's requests are named here.
KINDS = {("GET", "/system/logs/{service}"): "listing pages",
         ("GET", "/system/status"): "status",
         ("POST", "/job/{service}"): "invocations",
         ("DELETE", "/system/logs/{service}/{job}"): "deletions",
         ("GET", "/system/services/{service}"): "service reads"}
OTHER = "other"
KIND_ORDER = (*KINDS.values(), OTHER)

DEADLINE_FACTOR = 4.0        # a run may take this many times its lower bound (real), plus start-up
RUN_OVERHEAD_SECONDS = 30.0


def operator_args(scale: float) -> list[str]:
    """Production's intervals (`Timing()`), scaled to the simulated clock."""
    timing = Timing()
    flags = {"--tick": timing.tick, "--plan-interval": timing.plan_interval,
             "--status-interval": timing.status_interval, "--retry-delay": timing.retry_delay,
             "--max-backoff": timing.max_backoff, "--unseen-job-timeout": timing.unseen_job_timeout,
             "--list-interval": timing.list_interval, "--reassign-after": timing.reassign_after,
             "--cancel-timeout": timing.cancel_timeout}
    return [*(part for flag, value in flags.items() for part in (flag, f"{value * scale:g}")), *OPERATOR_ARGS]


def kind(method: str, route: str) -> str:
    return KINDS.get((method, route), OTHER)


def by_kind(requests: collections.Counter[tuple[str, str]]) -> dict[str, int]:
    counts = dict.fromkeys(KIND_ORDER, 0)
    for (method, route), count in requests.items():
        counts[kind(method, route)] += count
    return counts


# ---- one run ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Sample:
    at: float                                   # simulated seconds since the batch was created
    clusters: list[dict[str, Any]]              # status.clusters as the operator last wrote it
    requests: dict[str, dict[str, int]]         # cluster → kind → requests its OSCAR received so far
    jobs: dict[str, int]                        # cluster → Jobs it holds (what its listing pages through)
    ended: dict[str, int]                       # cluster → service containers ended so far


@dataclasses.dataclass
class ClusterResult:
    name: str
    access: str
    cap: int
    invocations: int = 0                        # POST /job answered 201
    items: int = 0                              # status.clusters[].succeeded at the end
    busy: float = 0.0                           # slot-seconds its service containers ran (simulated)
    first_start: float | None = None            # when its first service container started (simulated)
    last_end: float | None = None               # when its last service container ended (simulated)
    tail: float | None = None                   # mean idle of its slots at the end: the last `cap` ends' lag
    refill: list[float] = dataclasses.field(default_factory=list)  # container end → next invocation there
    requests: dict[str, int] = dataclasses.field(default_factory=dict)
    parallelism: float | None = None            # status.clusters[].parallelism, mean over the run
    running: float | None = None                # status.clusters[].running, mean over the run

    def busy_share(self, seconds: float | None) -> float | None:
        return self.busy / (self.cap * seconds) if seconds else None


@dataclasses.dataclass
class Run:
    label: str
    seconds: float | None = None                # simulated makespan; None when it did not finish
    listing: float | None = None                # simulated seconds until the inputs were listed (phase Running)
    phase: str | None = None
    clusters: list[ClusterResult] = dataclasses.field(default_factory=list)
    samples: list[Sample] = dataclasses.field(default_factory=list)
    ranges: int = 0                             # service containers that ended, every cluster
    lag_p99: float | None = None                # the sandbox loop's lateness, real seconds
    problems: dict[str, int] = dataclasses.field(default_factory=dict)
    error: str | None = None


def run_batch(label: str, config: SandboxConfig, placement: Callable[[dict[str, Any]], list[dict[str, Any]]],
              deadline_seconds: float, scale: float, **spec: Any) -> Run:
    """One batch on a fresh sandbox and operator: `placement(info)` is its spec.clusters."""
    result = Run(label)
    clock = Clock(scale)
    with tempfile.TemporaryDirectory(prefix="oscar-batch-federation-") as workdir, SandboxThread(config) as sandbox:
        kubeconfig, log_path = pathlib.Path(workdir) / "kubeconfig", pathlib.Path(workdir) / "operator.log"
        sandbox.sandbox.write_kubeconfig(kubeconfig)
        *secrets, batch = batch_manifests(sandbox.info, name=BATCH_NAME, federated=True, capacityHeadroom=1.0,
                                          **spec)
        batch["spec"]["clusters"] = placement(sandbox.info)
        used = [cluster for cluster in sandbox.clusters
                if cluster.name in {entry["name"] for entry in batch["spec"]["clusters"]}]
        sandbox.call(lambda: asyncio.gather(*(sandbox.kube.create("v1/secrets", secret) for secret in secrets)))
        lags: list[float] = []
        lag_probe = sandbox.submit(lambda: _measure_lag(lags))
        with log_path.open("wb") as log:
            operator = subprocess.Popen([str(BIN / "oscar-batch"), "run", "--kubeconfig", str(kubeconfig),
                                         *operator_args(scale)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_operator(sandbox)
            read(sandbox, lambda: [cluster.oscar.requests.clear() for cluster in used])  # the batch's alone
            clock.start()
            sandbox.call(lambda: sandbox.kube.create(BATCHES, batch))
            deadline = time.monotonic() + deadline_seconds
            next_sample = 0.0
            while True:
                now = time.monotonic()
                if now >= next_sample:
                    result.samples.append(_sample(sandbox, used, clock))
                    next_sample = now + SAMPLE_SECONDS
                if batch_finished(sandbox, result, clock, deadline, name=BATCH_NAME):
                    break
                time.sleep(POLL_SECONDS)
            result.samples.append(_sample(sandbox, used, clock))
        except Exception as error:
            result.error = f"{type(error).__name__}: {error}"
            sys.stderr.write(f"operator log (last lines):\n{log_path.read_text(errors='replace')[-3000:]}\n")
        finally:
            _stop(operator)
            lag_probe.cancel()
            result.problems = operator_problems(log_path)
        statuses = {entry.get("name"): entry for entry in
                    ((read(sandbox, lambda: sandbox.kube.get(BATCHES, "default", BATCH_NAME)) or {})
                     .get("status") or {}).get("clusters") or ()}
        for entry, cluster in zip(batch["spec"]["clusters"], used, strict=True):
            result.clusters.append(_cluster_result(entry, cluster, clock, result, statuses.get(cluster.name) or {}))
        result.ranges = sum(len([run for run in cluster.runner.runs if run.ended is not None]) for cluster in used)
        result.lag_p99 = _percentile(lags, 0.99)
    return result


async def _measure_lag(lags: list[float]) -> None:
    """How late the sandbox's loop wakes up: the emulated clusters keeping up, or not."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(LAG_PROBE_SECONDS)
        lags.append(loop.time() - before - LAG_PROBE_SECONDS)


def _sample(sandbox: SandboxThread, used: Sequence[Any], clock: Clock) -> Sample:
    async def on_loop() -> Sample:
        body = sandbox.kube.get(BATCHES, "default", BATCH_NAME) or {}
        namespace = sandbox.sandbox.config.services_namespace
        return Sample(at=clock.simulated(), clusters=list((body.get("status") or {}).get("clusters") or ()),
                      requests={cluster.name: by_kind(cluster.oscar.requests) for cluster in used},
                      jobs={cluster.name: cluster.kube.count(JOBS, namespace, lambda job: True) for cluster in used},
                      ended={cluster.name: sum(run.ended is not None for run in cluster.runner.runs)
                             for cluster in used})
    return sandbox.call(on_loop)


def _cluster_result(entry: dict[str, Any], cluster: Any, clock: Clock, run: Run,
                    status: dict[str, Any]) -> ClusterResult:
    result = ClusterResult(name=cluster.name, access=entry["access"], cap=entry["maxParallelism"],
                           invocations=cluster.oscar.accepted_invocations, items=int(status.get("succeeded") or 0),
                           requests=by_kind(cluster.oscar.requests))
    runs = cluster.runner.runs
    end = clock.zero + (run.seconds or clock.simulated()) * clock.scale
    result.busy = sum(((run_.ended or end) - run_.started) for run_ in runs) / clock.scale
    ends = sorted(run_.ended for run_ in runs if run_.ended is not None)
    result.last_end = clock.simulated(ends[-1]) if ends else None
    result.first_start = clock.simulated(min(run_.started for run_ in runs)) if runs else None
    if ends:
        last = ends[-result.cap:]
        result.tail = sum(ends[-1] - ended for ended in last) / len(last) / clock.scale
    accepted = sorted(cluster.oscar.accepted_at)
    for ended in ends:
        following = next((at for at in accepted if at >= ended), None)
        if following is not None:
            result.refill.append((following - ended) / clock.scale)
    mine = [next((c for c in sample.clusters if c.get("name") == cluster.name), None) for sample in run.samples]
    seen = [c for c in mine if c is not None]
    if seen:
        result.parallelism = statistics.fmean(int(c.get("parallelism") or 0) for c in seen)
        result.running = statistics.fmean(int(c.get("running") or 0) for c in seen)
    return result


def _percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.floor(share * len(ordered)))]


def _measured(run: Callable[[], Run]) -> Run:
    # No cyclic garbage collection in this process (the emulated clusters) while a batch runs: a collection of
    # the sandbox's heap stalls every cluster at once (docs/benchmarks.md, Makespan). Between runs.
    gc.collect()
    gc.disable()
    try:
        return run()
    finally:
        gc.enable()


# ---- 1. speed-up ------------------------------------------------------------------------------------------

def speedup_config(items: int, scale: float, variant: str) -> SandboxConfig:
    behaviour = Behaviour(item_seconds=ITEM_SECONDS, item_distribution="uniform", item_jitter=0.5,
                          startup_seconds=STARTUP_SECONDS, seed=SEED, time_scale=scale)
    return SandboxConfig(nodes=SPEEDUP_NODES, tenant_pods=(), items=items, behaviour=behaviour, clusters=2,
                         s3_in_process=True, housekeeping_seconds=1.0, bucket="federation",
                         forbidden=NOT_ITS_CLUSTER if variant == "remote" else frozenset(), **SERVICE)


def placement(clusters: int, variant: str, cap: int = SLOTS) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    """The first `clusters` of the sandbox, each capped at `cap`: `mixed` (the first InCluster, the second Remote)
    or `remote` (every one Remote)."""
    def place(info: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**entry, "maxParallelism": cap}
                for entry in clusters_spec(info, remote=variant == "remote")[:clusters]]
    return place


def lower_bound(config: SandboxConfig, slots: int) -> float:
    """One start-up, then the exact work of the items spread over the slots."""
    return config.behaviour.startup_seconds + total_work(config) / slots


@dataclasses.dataclass
class Variant:
    name: str
    one: list[Run] = dataclasses.field(default_factory=list)
    two: list[Run] = dataclasses.field(default_factory=list)

    def ratio(self, after_listing: bool = False) -> float | None:
        one, two = (median([_span(r, after_listing) for r in runs]) for runs in (self.one, self.two))
        return one / two if one and two else None

    def pair_ratios(self, after_listing: bool = False) -> list[float]:
        return [one / two for a, b in zip(self.one, self.two, strict=False)
                if (one := _span(a, after_listing)) and (two := _span(b, after_listing))]


def _span(run: Run, after_listing: bool) -> float | None:
    """The makespan, or what of it came after the inputs were listed: the listing takes its real time whatever
    the time scale (about a second here, 20 simulated seconds at 0.05; a fifth of a second in production)."""
    if run.seconds is None or (after_listing and run.listing is None):
        return None
    return run.seconds - (run.listing or 0.0) if after_listing else run.seconds


def measure_speedup(variant: str, items: int, repeats: int, scale: float) -> Variant:
    result = Variant(variant)
    config = speedup_config(items, scale, variant)
    for repeat in range(repeats):
        for clusters, runs in ((1, result.one), (2, result.two)):
            bound = lower_bound(config, SLOTS * clusters)
            label = f"{variant}, {clusters} cluster{'s' if clusters > 1 else ''}, run {repeat + 1}"
            began = time.monotonic()
            run = _measured(functools.partial(
                run_batch, label, config, placement(clusters, variant),
                DEADLINE_FACTOR * bound * scale + RUN_OVERHEAD_SECONDS, scale, retries=2))
            runs.append(run)
            print(f"  {label}: {_num(run.seconds)} s simulated ({time.monotonic() - began:.0f} s real), {run.phase}"
                  + "".join(f"; {c.name} {c.access} {c.invocations} invocations {c.items} items"
                            for c in run.clusters) + (f"; {run.error}" if run.error else ""),
                  file=sys.stderr, flush=True)
    return result


# ---- 2. requests per minute -------------------------------------------------------------------------------

@dataclasses.dataclass
class RateRun:
    items: int
    scale: float
    run: Run

    @property
    def cluster(self) -> ClusterResult:
        return self.run.clusters[0]

    def running(self) -> float | None:
        """Simulated seconds from the inputs listed to the verdict. Listing the inputs asks OSCAR nothing, and
        takes its real time whatever the time scale (20,000 keys from moto: about 10 s, 100 simulated)."""
        run = self.run
        return run.seconds - (run.listing or 0.0) if run.seconds else None

    def per_minute(self, what: str) -> float | None:
        seconds = self.running()
        return 60 * self.cluster.requests.get(what, 0) / seconds if seconds else None

    def total_per_minute(self) -> float | None:
        seconds = self.running()
        return 60 * sum(self.cluster.requests.values()) / seconds if seconds else None

    def listing_by_thirds(self) -> list[float | None]:
        """Listing pages per simulated minute while the first, middle and last third of the ranges finished."""
        listed = self.run.listing or 0.0
        return listing_by_thirds([s for s in self.run.samples if s.at >= listed], self.cluster.name)

    def most_jobs(self) -> int:
        return max((sample.jobs.get(self.cluster.name, 0) for sample in self.run.samples), default=0)


MIN_THIRD_SECONDS = 10.0     # a third shorter than this (simulated) gives no rate


def listing_by_thirds(samples: Sequence[Sample], cluster: str) -> list[float | None]:
    """Listing pages per simulated minute over the samples in which the first, middle and last third of the
    cluster's containers had ended."""
    if not samples:
        return [None, None, None]
    total = samples[-1].ended.get(cluster, 0)
    bounds = [0, total / 3, 2 * total / 3]
    rates: list[float | None] = []
    for index, low in enumerate(bounds):
        high = bounds[index + 1] if index + 1 < len(bounds) else math.inf
        inside = [s for s in samples if low <= s.ended.get(cluster, 0) < high or
                  (high == math.inf and s.ended.get(cluster, 0) >= low)]
        if len(inside) < 2 or inside[-1].at - inside[0].at < MIN_THIRD_SECONDS:
            rates.append(None)
            continue
        pages = inside[-1].requests[cluster]["listing pages"] - inside[0].requests[cluster]["listing pages"]
        rates.append(60 * pages / (inside[-1].at - inside[0].at))
    return rates


def rate_config(items: int, scale: float) -> SandboxConfig:
    behaviour = Behaviour(item_seconds=RATE_ITEM_SECONDS, item_distribution="uniform", item_jitter=0.5,
                          startup_seconds=RATE_STARTUP_SECONDS, seed=SEED, time_scale=scale)
    return SandboxConfig(nodes=RATE_NODES, tenant_pods=(), items=items, behaviour=behaviour, clusters=1,
                         s3_in_process=True, housekeeping_seconds=1.0, bucket="federation-rates",
                         forbidden=NOT_ITS_CLUSTER, **SERVICE)


def measure_rates(batches: Sequence[tuple[int, float]]) -> list[RateRun]:
    """A batch of each (items, time scale)."""
    runs = []
    for items, scale in batches:
        ranges = math.ceil(items / RATE_ITEMS_PER_INVOCATION)
        waves = math.ceil(ranges / RATE_SLOTS)
        bound = waves * (RATE_STARTUP_SECONDS + RATE_ITEMS_PER_INVOCATION * RATE_ITEM_SECONDS)
        label = f"{items:,} items at time scale {scale:g}"
        began = time.monotonic()
        run = _measured(functools.partial(
            run_batch, label, rate_config(items, scale), placement(1, "remote", RATE_SLOTS),
            DEADLINE_FACTOR * bound * scale + RUN_OVERHEAD_SECONDS, scale, retries=2,
            itemsPerInvocation=RATE_ITEMS_PER_INVOCATION))
        runs.append(RateRun(items, scale, run))
        print(f"  {label}: {_num(run.seconds)} s simulated ({time.monotonic() - began:.0f} s real), {run.phase}, "
              f"{sum(run.clusters[0].requests.values()) if run.clusters else 0} requests"
              + (f"; {run.error}" if run.error else ""), file=sys.stderr, flush=True)
    return runs


# ---- report -----------------------------------------------------------------------------------------------

def speedup_table(variants: Sequence[Variant], items: int, scale: float) -> list[str]:
    config = speedup_config(items, scale, VARIANTS[0])
    one, two = lower_bound(config, SLOTS), lower_bound(config, 2 * SLOTS)
    lines = ["| variant | clusters | makespan s, each run | median s | lower bound s | ÷ bound | speed-up "
             "(ratio of medians) | pairwise ratios | inputs listed at s | speed-up after the listing "
             "| sandbox loop lag p99 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for variant in variants:
        for label, runs, bound in (("1 × 8 slots", variant.one, one), ("2 × 8 slots", variant.two, two)):
            if not runs:
                continue
            middle = median([r.seconds for r in runs])
            two_row = runs is variant.two
            lines.append(
                f"| {variant.name} | {label} ({', '.join(c.access for c in runs[0].clusters)}) "
                f"| {', '.join(_num(r.seconds) for r in runs)} | {_num(middle)} | {bound:,.0f} "
                f"| {_num(middle / bound if middle else None, 2)} "
                f"| {_num(variant.ratio(), 2) if two_row else ''} "
                f"| {', '.join(f'{r:.2f}' for r in variant.pair_ratios()) if two_row else ''} "
                f"| {spread([r.listing for r in runs])} "
                f"| {_num(variant.ratio(after_listing=True), 2) if two_row else ''} "
                f"| {spread([1000 * r.lag_p99 if r.lag_p99 is not None else None for r in runs])} |")
    return lines


def cluster_table(variants: Sequence[Variant]) -> list[str]:
    """Per cluster, medians over the runs of a configuration: where the slots' time went."""
    lines = ["| variant | clusters | cluster | access | invocations | items | slots busy | parallelism (mean) "
             "| running (mean) | first container started s | end → next invocation, median s (p90) "
             "| slots idle at the end, mean s | last container ended s | makespan s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for variant in variants:
        for label, runs in (("1", variant.one), ("2", variant.two)):
            if not runs or not runs[0].clusters:
                continue
            for index, first in enumerate(runs[0].clusters):
                mine = [r.clusters[index] for r in runs if len(r.clusters) > index]
                gaps = [gap for c in mine for gap in c.refill]
                lines.append(
                    f"| {variant.name} | {label} | {first.name} | {first.access} "
                    f"| {spread([c.invocations for c in mine])} | {spread([c.items for c in mine])} "
                    f"| {spread([c.busy_share(r.seconds) for c, r in zip(mine, runs, strict=False)], 2)} "
                    f"| {spread([c.parallelism for c in mine], 1)} | {spread([c.running for c in mine], 1)} "
                    f"| {spread([c.first_start for c in mine], 1)} "
                    f"| {_num(median(gaps), 1)} ({_num(_percentile(gaps, 0.9), 1)}) "
                    f"| {spread([c.tail for c in mine], 1)} "
                    f"| {spread([c.last_end for c in mine])} | {spread([r.seconds for r in runs])} |")
    return lines


def rate_table(runs: Sequence[RateRun]) -> list[str]:
    lines = ["| items | time scale | ranges | inputs listed to verdict, simulated min | "
             + " | ".join(f"{what} /min" for what in KIND_ORDER)
             + " | all /min | listing pages /min over the 1st, 2nd, 3rd third of ranges finished | most Jobs listed "
               "| sandbox loop lag p99 ms |",
             "|---|---|---|---|" + "---|" * len(KIND_ORDER) + "---|---|---|---|"]
    for rate in runs:
        running = rate.running()
        minutes = running / 60 if running else None
        thirds = ", ".join(_num(value, 1) for value in rate.listing_by_thirds())
        lines.append(
            f"| {rate.items:,} | {rate.scale:g} | {rate.run.ranges:,} | {_num(minutes, 1)} | "
            + " | ".join(_num(rate.per_minute(what), 1) for what in KIND_ORDER)
            + f" | {_num(rate.total_per_minute(), 1)} | {thirds} | {rate.most_jobs()} "
              f"| {_num(1000 * rate.run.lag_p99 if rate.run.lag_p99 is not None else None)} |")
    return lines


def verdicts(variants: Sequence[Variant], rates: Sequence[RateRun]) -> list[str]:
    lines = []
    for variant in variants:
        ratio = variant.ratio()
        if ratio is not None:
            lines.append(f"- {variant.name}: two clusters ÷ one ≥ {TARGET_SPEEDUP:g}: "
                         f"{'met' if ratio >= TARGET_SPEEDUP else '**missed**'} ({ratio:.2f}, ratio of medians).")
    deleted = [rate for rate in rates if rate.run.seconds]
    if deleted:
        flat = all(rate.most_jobs() <= JOB_LISTING_LIMIT for rate in deleted)
        lines.append(f"- Recorded Jobs deleted: one page per reading of the listing at every size (at most "
                     f"{max(rate.most_jobs() for rate in deleted)} Jobs held, {JOB_LISTING_LIMIT} a page): "
                     f"{'met' if flat else '**missed**'}.")
    unfinished = [r.label for v in variants for r in (*v.one, *v.two) if r.phase != "Succeeded"] + \
        [r.run.label for r in rates if r.run.phase != "Succeeded"]
    lines.append("- Every batch Succeeded: " + ("met." if not unfinished else f"**missed** ({', '.join(unfinished)})."))
    problems = collections.Counter[str]()
    for run in [r for v in variants for r in (*v.one, *v.two)] + [r.run for r in rates]:
        # Without access to the Jobs (an operator outside every OSCAR cluster), its Jobs watch says so: expected.
        problems.update({what: count for what, count in run.problems.items() if "the sandbox denies" not in what})
    if problems:
        lines.append("- The operator's warnings and errors: "
                     + "; ".join(f"{count} × {what}" for what, count in problems.most_common(5)) + ".")
    return lines


def write_docs(command: str, meta: str, args: argparse.Namespace, variants: Sequence[Variant],
               rates: Sequence[RateRun]) -> None:
    section = [
        DOCS_HEADING, "",
        f"`{command}` ({meta}). Simulated seconds throughout: {args.time_scale:g} real seconds make one in the "
        f"speed-up runs, {args.rate_time_scale:g} in the request-rate runs, and the operator runs with production's "
        f"intervals (`Timing()`) scaled alike (at {args.time_scale:g}: "
        f"`{' '.join(operator_args(args.time_scale)[:18])}`), except `min_replan`, which has no flag "
        "(`oscar-batch run` sets it to min(2 s, --plan-interval) in real seconds): a plan, and so a Remote cluster's "
        "GET /system/status, comes at most every plan interval (15 s) here, where production plans up to every 2 s "
        "while ranges end. The sandbox loop's lag is how late a 20 ms sleep on the emulated clusters' event loop "
        "woke up (real ms): whether they kept up.", "",
        "### Speed-up: one batch over two clusters", "",
        f"{args.items:,} items of {ITEM_SECONDS:g} s ± 50% (seed {SEED}), start-up {STARTUP_SECONDS:g} s; every "
        f"cluster has 5 workers of 5 CPU, a 2-CPU service (10 slots) and `maxParallelism: {SLOTS}` in its "
        "`spec.clusters` entry; one cluster, then two, alternately, each run on a fresh sandbox of two clusters "
        "and a fresh operator. `mixed`: the first cluster InCluster, the second Remote (the deployment issue 22 is "
        "for: the operator in one OSCAR's cluster, another reached through its API); `remote`: both Remote, with "
        "Nodes, Pods and Jobs forbidden to the operator, its one-cluster baseline Remote too.", "",
        *speedup_table(variants, args.items, args.time_scale), "",
        "Per cluster (median over the runs, min–max): slots busy is the service containers' time ÷ (8 × "
        "makespan); end → next invocation is how long after a container ended the next invocation reached that "
        "cluster (the watch's delay InCluster, the listing's Remote, plus the pass), over the ends that had one.", "",
        *cluster_table(variants), "",
        "### OSCAR requests per minute of a Remote batch", "",
        f"One Remote cluster (16 slots, `maxParallelism: {RATE_SLOTS}`), `itemsPerInvocation: "
        f"{RATE_ITEMS_PER_INVOCATION}`, items of {RATE_ITEM_SECONDS:g} s ± 50% and a {RATE_STARTUP_SECONDS:g} s "
        f"start-up (a range takes about {RATE_STARTUP_SECONDS + RATE_ITEMS_PER_INVOCATION * RATE_ITEM_SECONDS:g} s), "
        "every request the cluster's OSCAR simulator received from the "
        "batch's creation to its verdict, per simulated minute from the inputs listed to the verdict (listing the "
        "inputs asks OSCAR nothing, and takes its real time whatever the time scale). Listing pages are "
        "`GET /system/logs/{service}` "
        f"(one reading pages through every Job of the service, {JOB_LISTING_LIMIT} a page); status is "
        "`GET /system/status` (the Remote plan); deletions `DELETE /system/logs/{service}/{job}` once status "
        "recorded a Job; service reads `GET /system/services/{service}` at the start. A batch at time scale 1 runs "
        "with production's timing whole, `min_replan` included.", "",
        *rate_table(rates), "",
        "Verdicts:", "",
        *verdicts(variants, rates),
    ]
    replace_section(DOCS_HEADING, section)


def main(argv: Sequence[str] | None = None) -> int:
    summary = " ".join((__doc__ or "").split("\n\n")[0].split())
    parser = argparse.ArgumentParser(prog="python -m benchmarks.federation", description=summary)
    parser.add_argument("--items", type=int, default=SPEEDUP_ITEMS,
                        help=f"items of the speed-up batch (default {SPEEDUP_ITEMS:,})")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help=f"runs of each configuration, alternating (default {REPEATS})")
    parser.add_argument("--variant", action="append", choices=VARIANTS,
                        help=f"speed-up variants to run (default: {', '.join(VARIANTS)})")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(RATE_SIZES),
                        help=f"items of the request-rate batches (default {' '.join(map(str, RATE_SIZES))})")
    parser.add_argument("--time-scale", type=float, default=TIME_SCALE,
                        help=f"real seconds per simulated second of the speed-up runs (default {TIME_SCALE:g})")
    parser.add_argument("--rate-time-scale", type=float, default=RATE_TIME_SCALE,
                        help=f"the same, of the request-rate runs (default {RATE_TIME_SCALE:g})")
    parser.add_argument("--production-size", type=int, default=PRODUCTION_SIZE,
                        help=f"items of one more request-rate batch at time scale 1, production's own timing "
                             f"(default {PRODUCTION_SIZE:,}; 0: none)")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    began, load_before = time.monotonic(), os.getloadavg()[0]
    variants = []
    for name in args.variant or VARIANTS:
        print(f"speed-up, {name}", file=sys.stderr, flush=True)
        variants.append(measure_speedup(name, args.items, args.repeats, args.time_scale))
    print("requests per minute, one Remote cluster", file=sys.stderr, flush=True)
    rates = measure_rates([*((size, args.rate_time_scale) for size in args.sizes),
                           *([(args.production_size, 1.0)] if args.production_size else [])])
    elapsed = time.monotonic() - began
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print("\n".join([*speedup_table(variants, args.items, args.time_scale), "", *cluster_table(variants), "",
                     *rate_table(rates), "", *verdicts(variants, rates)]))
    print(f"federation benchmark took {elapsed:.0f} s; {load}")
    if not args.no_docs:
        meta = (f"{datetime.date.today().isoformat()}, {revision()}, {machine()}; {elapsed:.0f} s, {load}")
        write_docs("python -m benchmarks.federation" + (f" {' '.join(argv)}" if argv else ""), meta, args, variants,
                   rates)
        print(f"written to {(ROOT / 'docs' / 'benchmarks.md').relative_to(ROOT)}")
    return 0


def run() -> None:
    """For `make bench` (benchmarks/__main__.py)."""
    main([])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
