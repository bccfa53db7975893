"""Remote and federated batches at the controller's own level: fake OSCAR clusters that the controller reaches
through their API only (invocations, the job listing, /system/status, deletions), a fake clock, and a script that
finishes Jobs and cuts a cluster off. No Kubernetes Jobs are watched: each cluster's listing is all there is."""
from __future__ import annotations

import collections
import dataclasses
from typing import Any

import pytest

from oscar_batch.clients.oscar import OscarError
from oscar_batch.controller.active_batches import ActiveBatches
from oscar_batch.controller.batch_controller import BatchController
from oscar_batch.controller.cluster_view import ClusterView
from oscar_batch.controller.job_store import JobStore
from oscar_batch.controller.oscar_clusters import SharedListings
from oscar_batch.controller.peer_calls import PeerCalls
from oscar_batch.controller.resolver import Resolver
from oscar_batch.core.cadence import Timing
from oscar_batch.core.sharing import Claim
from test_batch_controller import UID, Clock, FakeKube, FakeS3, lines_of
from test_batch_controller import World as ControllerWorld

TIMING = Timing(tick=1, plan_interval=15, min_replan=2, status_interval=3, retry_delay=15, max_backoff=300,
                unseen_job_timeout=60, cancel_timeout=60, list_interval=2, reassign_after=30)
# One worker of 8 CPU: 8 slots of a 1-CPU service.
STATUS = {"cluster": {"nodes_count": 1, "metrics": {}, "nodes": [
    {"name": "w1", "cpu": {"capacity_cores": 8000, "usage_cores": 0}, "memory": {"capacity_bytes": 64 << 30},
     "gpu": 0, "is_interlink": False, "status": "Ready", "conditions": [{"type": "Ready", "status": True}]}]}}


@dataclasses.dataclass
class RemoteOscar:
    """One OSCAR cluster as its API shows it. `down`: nothing answers (its Jobs go on running all the same)."""
    name: str
    down: bool = False
    status_code: int | None = None             # /system/status answers this error
    jobs: dict[str, str] = dataclasses.field(default_factory=dict)   # Job name -> pod phase, as listed
    accepted: list[str] = dataclasses.field(default_factory=list)
    deleted: list[str] = dataclasses.field(default_factory=list)
    listings: int = 0

    def _answer(self, what: str) -> None:
        if self.down:
            raise OscarError(f"{what}: cannot reach OSCAR at http://{self.name} (connection refused)")

    def service(self, name: str) -> dict[str, Any]:
        self._answer("service")
        return {"name": name, "token": "t" * 64, "cpu": "1", "memory": "1Gi", "namespace": "oscar-svc"}

    def cluster_status(self) -> dict[str, Any]:
        self._answer("status")
        if self.status_code:
            raise OscarError("OSCAR cluster status: OSCAR rejected the credentials", self.status_code)
        busy = sum(1 for phase in self.jobs.values() if phase in ("Pending", "Running"))
        nodes = [{**STATUS["cluster"]["nodes"][0], "cpu": {"capacity_cores": 8000, "request_cores": 1000 * busy}}]
        return {"cluster": {**STATUS["cluster"], "nodes": nodes}}

    def invoke(self, service: str, token: str, payload: dict[str, Any], job_name: str) -> None:
        self._answer("invocation")
        if job_name in self.jobs:
            raise OscarError("invocation: 500", 500, body=f'jobs.batch "{job_name}" already exists')
        self.accepted.append(job_name)
        self.jobs[job_name] = "Running"

    def list_jobs(self, service: str):
        self._answer("listing")
        self.listings += 1
        return [(name, {"status": phase, "creation_time": "2026-12-01T00:00:01Z"}) for name, phase in self.jobs.items()]

    def delete_job(self, service: str, job: str, timeout: float | None = None) -> None:
        self._answer("deleting")
        self.deleted.append(job)
        self.jobs.pop(job, None)

    def finish_all(self, bad: frozenset[int] = frozenset()) -> None:
        for job, phase in self.jobs.items():
            if phase == "Running":
                start, end = lines_of(job)
                self.jobs[job] = "Failed" if any(start <= line < end for line in bad) else "Succeeded"


class Client:
    def __init__(self, oscar: RemoteOscar) -> None:
        self.service, self.invoke, self.cluster_status = oscar.service, oscar.invoke, oscar.cluster_status
        self.jobs, self.delete_job = oscar.list_jobs, oscar.delete_job

    def close(self) -> None:
        pass


class RemoteResolver(Resolver):
    def __init__(self, clusters: dict[str, RemoteOscar], s3: FakeS3) -> None:
        object.__setattr__(self, "namespace", "default")
        object.__setattr__(self, "_clusters", clusters)
        object.__setattr__(self, "_s3", s3)

    def oscar_client(self, cluster):
        return Client(self._clusters[cluster.endpoint.removeprefix("http://")])

    def service(self, oscar, spec):
        return oscar.service(spec.service)

    def s3_client(self, spec):
        return self._s3


class World(ControllerWorld):
    """test_batch_controller's scripted world (its fake clock, `stopped` and `run`), with Remote OSCAR clusters
    instead of a watched one."""

    def __init__(self, names: tuple[str, ...], items: int = 64, **spec: Any) -> None:
        self.clock = Clock()
        self.clusters = {name: RemoteOscar(name) for name in names}
        self.s3 = FakeS3([f"input/frame-{index:06d}.jpg" for index in range(1, items + 1)])
        clusters = [{"name": name, "endpoint": f"http://{name}", "credentialsSecret": name, "access": "Remote",
                     "maxParallelism": 4} for name in names]
        self.body = {"metadata": {"uid": UID, "namespace": "default", "name": "b", "generation": 1,
                                  "creationTimestamp": "2026-12-01T00:00:00Z"},
                     "spec": {"service": "fish", "clusters": clusters,
                              "storage": {"endpoint": "http://s3", "credentialsSecret": "s", "bucket": "bkt",
                                          "prefix": "input/"},
                              "itemsPerInvocation": 2, "keepJobs": False, **spec}}
        self.kube = FakeKube(self.body)
        self.events: list[tuple[str, str, str]] = []
        self.on_tick = lambda world: None
        self._stopped = False
        self.controller = BatchController(
            body=self.body, jobs=JobStore(), batches=ActiveBatches(),
            cluster_view=ClusterView(self.kube, max_age=TIMING.min_replan, clock=self.clock), stopped=self,
            kube=self.kube, emit=lambda *event: self.events.append(event), timing=TIMING, clock=self.clock,
            resolver=RemoteResolver(self.clusters, self.s3), peer_calls=PeerCalls(threads=8, per_peer=4))

    def succeeded_lines(self) -> collections.Counter[int]:
        """Line -> Jobs that succeeded with it, on every cluster (deleted ones included)."""
        ran: collections.Counter[int] = collections.Counter()
        for oscar in self.clusters.values():
            for job in oscar.accepted:
                if oscar.jobs.get(job, "Succeeded") == "Succeeded":
                    ran.update(range(*lines_of(job)))
        return ran


async def test_a_remote_batch_is_tracked_through_the_listing_alone_and_cleans_up_through_the_api():
    world = World(("upv",))
    world.on_tick = lambda world: world.clusters["upv"].finish_all()
    status = await world.run()
    upv = world.clusters["upv"]
    assert status["phase"] == "Succeeded" and status["completedItems"] == "1-64", status
    assert status["clusters"] == [{"name": "upv", "access": "Remote", "parallelism": 0, "running": 0,
                                   "succeeded": 64, "reachable": True, "message": status["clusters"][0]["message"]}]
    assert sorted(upv.deleted) == sorted(upv.accepted) and not upv.jobs   # recorded Jobs deleted: the listing is short
    assert max(status["parallelism"] for status in world.kube.patches if "parallelism" in status) == 4


async def test_without_its_status_endpoint_a_remote_cluster_runs_at_max_parallelism_and_says_why():
    world = World(("upv",), maxParallelism=3)
    world.clusters["upv"].status_code = 403
    world.body["spec"]["clusters"][0]["maxParallelism"] = 0
    running: list[int] = []
    world.on_tick = lambda world: (running.append(sum(p == "Running" for p in world.clusters["upv"].jobs.values())),
                                   world.clusters["upv"].finish_all())
    status = await world.run()
    assert status["phase"] == "Succeeded" and max(running) == 3
    messages = [patch["clusters"][0]["message"] for patch in world.kube.patches if patch.get("clusters")]
    assert any("OSCAR's capacity is not readable" in message and "maxParallelism" in message for message in messages)


async def test_a_cluster_cut_off_leaves_the_batch_to_the_others_and_its_late_jobs_are_folded_in():
    world = World(("upv", "ifca"), items=192)
    upv, ifca = world.clusters["upv"], world.clusters["ifca"]
    cut: dict[str, Any] = {}
    during_cut: list[tuple[int, int, bool, int]] = []

    def script(world: World) -> None:
        if ifca.down:
            shown = {entry["name"]: entry for entry in (world.body.get("status") or {}).get("clusters") or ()}
            during_cut.append((shown["upv"]["parallelism"], shown["ifca"]["parallelism"], shown["ifca"]["reachable"],
                               len(upv.accepted)))
        if int(world.clock.now) % 3 == 0:           # Jobs take 3 ticks
            upv.finish_all()
            if not ifca.down:
                ifca.finish_all()
        if not cut and len(ifca.accepted) >= 8:
            # ifca is cut off with ranges in flight; they finish there all the same, unseen for now.
            cut.update(at=world.clock.now, in_flight=[job for job, phase in ifca.jobs.items() if phase == "Running"],
                       accepted=len(ifca.accepted))
            ifca.down = True
        elif cut and ifca.down and world.clock.now - cut["at"] >= TIMING.reassign_after + 15:
            ifca.finish_all()
            ifca.down = False       # back, with the Jobs it finished meanwhile

    world.on_tick = script
    status = await world.run()
    assert status["phase"] == "Succeeded" and status["completedItems"] == "1-192", status
    late = cut["in_flight"]
    assert late and status["invocations"]["reassigned"] == len(late)
    # Nothing lost: every line succeeded; the lines run twice are the reassigned ones, each counted once.
    ran = world.succeeded_lines()
    assert sorted(ran) == list(range(1, 193))
    reassigned_lines = {line for job in late for line in range(*lines_of(job))}
    assert {line for line, count in ran.items() if count > 1} == reassigned_lines
    assert status["invocations"]["duplicates"] == len(late)
    # While ifca was cut off, upv carried on with all its slots and ifca was shown unreachable, with none.
    shown_unreachable = [sample for sample in during_cut if sample[2] is False]
    assert shown_unreachable and {sample[:3] for sample in shown_unreachable} == {(4, 0, False)}
    assert during_cut[-1][3] > during_cut[0][3] + len(late)      # upv took more than the reassigned ranges
    clusters = {entry["name"]: entry for entry in status["clusters"]}
    assert clusters["upv"]["succeeded"] > 0 and clusters["ifca"]["succeeded"] > 0, clusters
    assert clusters["ifca"]["reachable"] is True
    reasons = [reason for _, reason, _ in world.events]
    assert "RangesReassigned" in reasons and "DuplicateRun" in reasons


async def test_a_cluster_added_to_a_running_batch_takes_its_share():
    world = World(("upv",), items=96)
    upv = world.clusters["upv"]
    world.clusters["ifca"] = ifca = RemoteOscar("ifca")

    def script(world: World) -> None:
        if int(world.clock.now) % 3 == 0:
            upv.finish_all()
            ifca.finish_all()
        if len(upv.accepted) >= 8 and len(world.body["spec"]["clusters"]) == 1:
            world.body["spec"]["clusters"].append({**world.body["spec"]["clusters"][0], "name": "ifca",
                                                   "endpoint": "http://ifca", "credentialsSecret": "ifca"})
            world.body["metadata"]["generation"] += 1

    world.on_tick = script
    status = await world.run()
    assert status["phase"] == "Succeeded" and status["completedItems"] == "1-96", status
    clusters = {entry["name"]: entry for entry in status["clusters"]}
    assert clusters["upv"]["succeeded"] > 0 and clusters["ifca"]["succeeded"] > 0
    assert clusters["upv"]["succeeded"] + clusters["ifca"]["succeeded"] == 96     # nothing ran twice
    assert status["invocations"]["duplicates"] == 0
    assert any(reason == "ClustersChanged" for _, reason, _ in world.events)


async def test_batches_of_one_service_share_its_listing_once_an_interval_and_a_refusal_too():
    listings, fetched = SharedListings(), []

    async def fetch(answer):
        fetched.append(answer)
        if isinstance(answer, OscarError):
            raise answer
        return answer

    key, other = ("http://upv", "fish", "default/upv"), ("http://upv", "fish", "team-b/upv")
    assert await listings.read(key, lambda: fetch([("a", {})]), now=10.0, max_age=2.0) == [("a", {})]
    assert await listings.read(key, lambda: fetch([("b", {})]), now=11.9, max_age=2.0) == [("a", {})]  # another batch
    assert await listings.read(other, lambda: fetch([("c", {})]), now=11.9, max_age=2.0) == [("c", {})]  # its own
    assert await listings.read(key, lambda: fetch([("d", {})]), now=12.0, max_age=2.0) == [("d", {})]
    assert await listings.read(key, lambda: fetch([("e", {})]), now=12.0, max_age=0.0) == [("e", {})]   # fresh
    down = OscarError("jobs of 'fish': cannot reach OSCAR")
    for now in (20.0, 21.0):
        with pytest.raises(OscarError):
            await listings.read(key, lambda: fetch(down), now=now, max_age=2.0)
    assert fetched == [[("a", {})], [("c", {})], [("d", {})], [("e", {})], down]


def test_what_batches_run_on_a_cluster_is_added_back_to_what_its_oscar_says_is_free_and_shared_there():
    batches = ActiveBatches()
    batches.claim(Claim("a", "2026-01-01T00:00:00Z", "ns/a", demand=20), {"http://upv": 8, "": 2})
    batches.claim(Claim("b", "2026-01-01T00:00:01Z", "ns/b", demand=20), {"http://upv": 8})
    # OSCAR says nothing is free with their 16 pods running: the 16 slots are theirs, 8 each.
    assert batches.running("http://upv") == 16 and batches.running("") == 2
    assert batches.share("a", 0 + batches.running("http://upv"), "http://upv") == (8, 2)
    assert batches.share("a", 4, "") == (4, 1)                 # b does not dispatch on the operator's own cluster
    batches.withdraw("b")
    assert batches.running("http://upv") == 8 and batches.share("a", 16, "http://upv") == (16, 1)
