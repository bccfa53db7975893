"""BatchController at its own level, the way job_controller_test.go drives syncJob: fake clients, a fake clock,
and a scripted cluster that turns accepted invocations into Jobs, their changes fed to the operator's JobStore
as the watch would. No sockets and no real time: each `stopped.wait` advances the clock and lets the cluster
move (blocking client calls still go through `asyncio.to_thread`, as in production)."""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import io
import itertools
import json
import pathlib
from typing import Any

import pytest
import yaml
from minio.error import S3Error

from oscar_batch.clients.cluster import KubeError
from oscar_batch.clients.oscar import OscarError
from oscar_batch.controller import cancel
from oscar_batch.controller.active_batches import ActiveBatches
from oscar_batch.controller.batch_controller import BatchController
from oscar_batch.controller.cluster_view import ClusterView
from oscar_batch.controller.job_store import BatchKey, JobSeen, JobStore
from oscar_batch.controller.peer_calls import PeerCalls
from oscar_batch.controller.resolver import Resolver
from oscar_batch.core import invocation, status
from oscar_batch.core.cadence import Timing
from oscar_batch.core.ranges import Outcome
from oscar_batch_sandbox.config import control_plane, workers
from oscar_batch_sandbox.kube import prune
from support import merge_patch, wait_until

CRD = yaml.safe_load((pathlib.Path(__file__).resolve().parents[1] / "crds" / "batchjob.yaml").read_text())
STATUS_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]

UID = "0b5a9c1e-7d4e-4b8a-9f01-23456789abcd"
OTHER_UID = "ffffffff-0000-4000-8000-000000000000"
KEY, OTHER_KEY = BatchKey(UID, "oscar-svc", "fish"), BatchKey(OTHER_UID, "oscar-svc", "fish")
TIMING = Timing(tick=1, plan_interval=15, min_replan=2, status_interval=3, retry_delay=15, max_backoff=300,
                unseen_job_timeout=60, cancel_timeout=60)


def name(start: int, end: int, attempt: int = 1, uid: str = UID) -> str:
    return invocation.job_name("fish", uid, start, end, attempt)


def seen(job: str, outcome: Outcome = Outcome.RUNNING) -> JobSeen:
    """The Job OSCAR made of the operator's invocation `job`, as the watch files it (its EVENT has the full UID)."""
    named = invocation.name_identity(job)
    uid = next(uid for uid in (UID, OTHER_UID) if invocation.uid_prefix(uid) == named.batch_uid)
    return JobSeen(job, "oscar-svc", "fish", dataclasses.replace(named, batch_uid=uid), outcome, ready=False,
                   started=None, finished=None,
                   failed_reason="BackoffLimitExceeded" if outcome == Outcome.FAILED else "")


def lines_of(job: str) -> tuple[int, int]:
    identity = invocation.name_identity(job)
    return identity.start, identity.end


FAILED_POD = {"metadata": {"creationTimestamp": "2026-12-01T00:00:02Z"}, "status": {"phase": "Failed",
              "containerStatuses": [{"name": "oscar-container", "state": {"terminated": {
                  "exitCode": 1, "reason": "Error"}}}]}}
EVICTED_POD = {"metadata": {"creationTimestamp": "2026-12-01T00:00:02Z"}, "status": {
    "phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory.",
    "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}]}}


class Clock:
    """Monotonic seconds from 1000, moved by the test; the wall clock moves with them."""
    EPOCH = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime.datetime:
        return self.EPOCH + datetime.timedelta(seconds=self.now)


@dataclasses.dataclass
class FakeObject:
    metadata: dict[str, str]


Listed = dataclasses.make_dataclass("Listed", ["object_name", "is_dir", ("last_modified", Any, None)])


class FakeS3:
    """The calls the manifest makes, over a dict (one bucket: inputs and outputs by prefix). `unlistable` prefixes
    answer their listing with an S3 error."""
    MODIFIED = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)   # every object's last-modified time

    def __init__(self, keys: list[str]) -> None:
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {key: (b"jpeg", {}) for key in keys}
        self.unlistable: set[str] = set()

    def bucket_exists(self, bucket: str) -> bool:
        return True

    def stat_object(self, bucket: str, key: str):
        from minio.error import S3Error
        if key not in self.objects:
            raise S3Error(None, "NoSuchKey", "no such key", key, "request", "host")
        return FakeObject({f"x-amz-meta-{k}": v for k, v in self.objects[key][1].items()})

    def list_objects(self, bucket: str, prefix: str, recursive: bool, start_after: str = ""):
        if prefix in self.unlistable:
            raise S3Error(None, "AccessDenied", "Access Denied.", prefix, "request", "host")
        for key in sorted(self.objects):
            if key.startswith(prefix) and key > start_after:
                yield Listed(key, False, self.MODIFIED)

    def get_object(self, bucket: str, key: str, offset: int = 0, length: int = 0):
        data = self.objects[key][0][offset:offset + length if length else None]

        class Response:
            def stream(self, size: int):
                yield data

            def read(self) -> bytes:
                return data

            def close(self) -> None:
                pass

            def release_conn(self) -> None:
                pass
        return Response()

    def remove_object(self, bucket: str, key: str) -> None:
        self.objects.pop(key, None)

    def put_object(self, bucket, key, data, size, content_type, metadata):
        self.objects[key] = (data.read() if isinstance(data, io.IOBase) or hasattr(data, "read") else data,
                             dict(metadata))


class FakeOscar:
    """OSCAR as the controller sees it. `down` refuses every call; accepted invocations become Jobs unless
    `swallow` says OSCAR loses them. Every Job change reaches the operator's store, as the watch would."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.namespace = "oscar-svc"               # the service definition's
        self.down = False
        self.invoke_status: int | None = None     # answer every POST /job with this error
        self.swallow: set[str] = set()             # Job names accepted but never created
        self.refuse_once: set[str] = set()         # Job names whose first POST fails
        self.accepted: list[str] = []
        self.kueue_queue = ""                      # OSCAR v4 with Kueue: Jobs are created suspended in this queue
        self.posts = 0
        self.listings = 0
        self.jobs: dict[str, JobSeen] = {}
        self.output: list[dict[str, str]] = []     # the service definition's outputs

    def _reachable(self, what: str) -> None:
        if self.down:
            raise OscarError(f"{what}: cannot reach OSCAR at http://oscar (connection refused)")

    def service(self, name: str) -> dict[str, Any]:
        self._reachable("service")
        return {"name": name, "token": "t" * 64, "cpu": "1", "memory": "1Gi", "namespace": self.namespace,
                "output": self.output}

    def invoke(self, service: str, token: str, payload: dict[str, Any], job_name: str) -> None:
        self.posts += 1
        self._reachable("invocation")
        if self.invoke_status:
            raise OscarError("invocation: not found", self.invoke_status)
        if job_name in self.refuse_once:
            self.refuse_once.discard(job_name)
            raise OscarError("invocation: 503 Service Unavailable", 503)
        if job_name in self.jobs or job_name in self.accepted:
            raise OscarError("invocation: OSCAR answered 500: …", 500, body=f'jobs.batch "{job_name}" already exists')
        self.accepted.append(job_name)
        if job_name not in self.swallow:
            self._set(dataclasses.replace(seen(job_name), queue=self.kueue_queue, queued=bool(self.kueue_queue)))

    def _set(self, job: JobSeen) -> None:
        self.jobs[job.name] = job
        self.store.record(job.name, job)

    def jobs_listing(self):
        self.listings += 1
        self._reachable("listing")
        return [(name, {"status": "Running"}) for name in self.jobs]

    def finish_all(self) -> None:
        for job in list(self.jobs.values()):
            if job.outcome == Outcome.RUNNING and not job.queued:
                self._set(dataclasses.replace(job, outcome=Outcome.SUCCEEDED))

    def admit(self, quota: int) -> None:
        """Kueue: the oldest queued Jobs run while fewer than `quota` admitted ones have not finished."""
        admitted = sum(1 for job in self.jobs.values() if job.outcome == Outcome.RUNNING and not job.queued)
        for job in list(self.jobs.values()):
            if job.queued and admitted < quota:
                self._set(dataclasses.replace(job, queued=False))
                admitted += 1


class FakeOscarClient:
    def __init__(self, oscar: FakeOscar) -> None:
        self._oscar = oscar
        self.service = oscar.service
        self.invoke = oscar.invoke
        self.jobs = lambda service: oscar.jobs_listing()
        self.deleted: list[str] = []

    def delete_job(self, service: str, job: str, timeout: float | None = None) -> None:
        self._oscar._reachable("deleting")
        self.deleted.append(job)
        if job in self._oscar.jobs:
            self._oscar.store.record(job, self._oscar.jobs.pop(job), deleted=True)

    def cluster_status(self):
        raise OscarError("not used")


class FakeResolver(Resolver):
    def __init__(self, oscar: FakeOscar, s3: FakeS3) -> None:
        object.__setattr__(self, "namespace", "default")
        object.__setattr__(self, "_oscar", oscar)
        object.__setattr__(self, "_s3", s3)
        object.__setattr__(self, "client", FakeOscarClient(oscar))

    def oscar_client(self, spec):
        return self.client

    def service(self, oscar, spec):
        return oscar.service(spec.service)

    def s3_client(self, spec):
        return self._s3


class FakeKube:
    """Nodes, pods and the batch's status: a merge patch lands in the live body, as kopf's view would show, with
    what the CRD's status schema does not name pruned, as the API server prunes it. `patches` are as sent."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.patches: list[dict[str, Any]] = []
        self.pods_of: dict[str, list[dict[str, Any]]] = {}   # a failed Job's pods; by default one that exited 1
        self.cluster_queue: dict[str, Any] | None = None      # what Kueue's API says of the owner's quota
        self.refuse = False                                   # answer every status patch with an error

    def cluster_queue_of(self, namespace: str, local_queue: str) -> dict[str, Any] | None:
        return self.cluster_queue

    def job_pods(self, namespace: str, job: str):
        return self.pods_of.get(job, [FAILED_POD])

    def nodes(self):
        return [node.to_object() for node in (control_plane(), *workers(2))]   # 2 × 4 CPU: 8 slots of 1 CPU

    def pods(self):
        return []

    def patch_batch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        if self.refuse:
            raise KubeError("Kubernetes answered 503: the server is currently unable to handle the request", 503)
        self.patches.append(patch)
        merge_patch(self.body.setdefault("status", {}), prune(STATUS_SCHEMA, patch))



class World:
    """The scripted cluster: `stopped.wait` advances the clock and runs `on_tick` (Jobs finishing and such)."""

    def __init__(self, items: int = 40, timing: Timing = TIMING, **spec: Any) -> None:
        self.clock = Clock()
        self.store = JobStore()
        self.store.replace(None, [])                  # the watch listed the cluster's Jobs: none yet
        self.oscar = FakeOscar(self.store)
        self.s3 = FakeS3([f"input/frame-{index:06d}.jpg" for index in range(1, items + 1)])
        self.body = {"metadata": {"uid": UID, "namespace": "default", "name": "b", "generation": 1,
                                  "creationTimestamp": "2026-12-01T00:00:00Z"},
                     "spec": {"service": "fish", "oscar": {"endpoint": "http://oscar", "credentialsSecret": "o"},
                              "storage": {"endpoint": "http://s3", "credentialsSecret": "s", "bucket": "bkt",
                                          "prefix": "input/"},
                              "itemsPerInvocation": 2, "capacityHeadroom": 1.0, **spec}}
        self.kube = FakeKube(self.body)
        self.events: list[tuple[str, str, str]] = []
        self.on_tick = lambda world: None
        self.succeeded_jobs: list[str] = []
        self.processed: collections.Counter[int] = collections.Counter()   # line -> outputs written for it
        self._stopped = False
        self.peer_calls = PeerCalls(threads=8, per_peer=4)
        self.controller = BatchController(
            body=self.body, jobs=self.store, batches=ActiveBatches(),
            cluster_view=ClusterView(self.kube, max_age=TIMING.min_replan, clock=self.clock), stopped=self,
            kube=self.kube, emit=lambda *event: self.events.append(event), timing=timing, clock=self.clock,
            resolver=FakeResolver(self.oscar, self.s3), peer_calls=self.peer_calls)

    # the `Stopped` protocol, on the fake clock
    async def wait(self, timeout: float | None = None) -> bool:
        self.clock.now += timeout or 0
        self.on_tick(self)
        if (self.body.get("status") or {}).get("phase") in ("Succeeded", "Failed") or self.clock.now > 1000 + 3600:
            self._stopped = True
        return self._stopped

    def __bool__(self) -> bool:
        return self._stopped

    async def run(self) -> dict[str, Any]:
        await self.controller.run()
        return self.body["status"]


def restarted(world: World) -> None:
    """A new operator process: a fresh watch cache that lists every Job left, the status the API server kept."""
    world._stopped = False
    world.store = world.oscar.store = JobStore()
    world.store.replace(None, list(world.oscar.jobs.values()))
    world.controller = BatchController(
        body=world.body, jobs=world.store, batches=ActiveBatches(),
        cluster_view=ClusterView(world.kube, max_age=TIMING.min_replan, clock=world.clock), stopped=world,
        kube=world.kube, emit=lambda *event: world.events.append(event), timing=world.controller.timing,
        clock=world.clock, resolver=FakeResolver(world.oscar, world.s3), peer_calls=world.peer_calls)


def running_counts(world: World) -> list[int]:
    return [patch["invocations"]["running"] for patch in world.kube.patches if "invocations" in patch]


async def test_a_batch_invokes_nothing_until_the_jobs_were_listed_and_says_why_it_waits():
    world = World(items=8)
    world.store = world.oscar.store = JobStore()       # a watch that has not listed yet
    world.controller.jobs = world.store
    world.store.problem = "reading Jobs: Kubernetes answered 403: jobs.batch is forbidden"
    seen_waiting: list[dict[str, Any]] = []

    def script(world: World) -> None:
        conditions = {c["type"]: c for c in (world.body.get("status") or {}).get("conditions") or ()}
        if "JobsNotListed" in str(conditions) and not seen_waiting:
            assert world.oscar.accepted == []
            seen_waiting.append(conditions)
            world.store.replace(None, [])               # the watch lists at last
        world.oscar.finish_all()

    world.on_tick = script
    status = await world.run()
    assert seen_waiting and "403" in str(seen_waiting[0])
    assert status["phase"] == "Succeeded" and len(world.oscar.accepted) == 4


async def test_the_last_lines_show_in_status_before_the_results_are_written():
    world = World(items=8)
    shown_at_results: list[Any] = []
    put_object = world.s3.put_object

    def put_watching_status(bucket, key, data, size, content_type, metadata):
        if key.endswith("results.json"):
            status = world.body["status"]
            shown_at_results.append((status["phase"], status["completedItems"], status["items"]["running"]))
        put_object(bucket, key, data, size, content_type, metadata)

    world.s3.put_object = put_watching_status
    world.on_tick = lambda world: world.oscar.finish_all()
    status = await world.run()
    assert status["phase"] == "Succeeded"
    assert shown_at_results == [("Running", "1-8", 0)]


async def test_a_service_in_a_namespace_the_operator_does_not_watch_is_a_condition_and_the_spec_can_override():
    world = World(items=4)
    world.oscar.namespace = "oscar-alice"          # OSCAR v4: an OIDC user's services live in their own namespace
    world.store.watching(["default", "oscar-svc"])
    world.store.replace("default", [])
    world.store.replace("oscar-svc", [])
    waited: list[str] = []
    reasons: list[str | None] = []

    def script(world: World) -> None:
        conditions = {c["type"]: c for c in (world.body.get("status") or {}).get("conditions") or ()}
        progressing = conditions.get("Progressing") or {}
        if progressing.get("reason") == "NamespaceNotWatched" and not waited:
            waited.append(progressing["message"])
            reasons.append(world.body["status"].get("reason"))   # kubectl's REASON column says it too
            world.body["spec"]["oscar"]["servicesNamespace"] = "oscar-svc"   # the user says where they are
            world.body["metadata"]["generation"] += 1
        world.oscar.finish_all()

    world.on_tick = script
    status = await world.run()
    assert waited and "'oscar-alice'" in waited[0] and "--namespace oscar-alice" in waited[0]
    assert reasons == ["NamespaceNotWatched"]
    assert status["phase"] == "Succeeded" and "reason" not in status    # plain success: nothing to explain


def kueue_cluster_queue(world: World, cpus: int) -> dict[str, Any]:
    admitted = sum(1 for job in world.oscar.jobs.values() if job.outcome == Outcome.RUNNING and not job.queued)
    return {"spec": {"resourceGroups": [{"flavors": [{"name": "default", "resources": [
                {"name": "cpu", "nominalQuota": str(cpus)}, {"name": "memory", "nominalQuota": "64Gi"}]}]}]},
            "status": {"flavorsUsage": [{"name": "default", "resources": [
                {"name": "cpu", "total": str(admitted)}, {"name": "memory", "total": f"{admitted}Gi"}]}]}}


@pytest.mark.parametrize("quota_readable", [True, False])
async def test_jobs_kueue_holds_back_are_queued_and_the_owners_quota_bounds_parallelism(quota_readable):
    world = World(items=40)                        # 20 ranges; the nodes fit 8, the owner's quota 3
    world.oscar.kueue_queue = "oscar-lq-fish"
    in_flight: list[int] = []
    reasons: list[str] = []

    def script(world: World) -> None:
        world.oscar.finish_all()
        world.oscar.admit(quota=3)
        if quota_readable:
            world.kube.cluster_queue = kueue_cluster_queue(world, cpus=3)
        in_flight.append(sum(1 for job in world.oscar.jobs.values() if job.outcome == Outcome.RUNNING))
        progressing = {c["type"]: c for c in world.body.get("status", {}).get("conditions") or ()}.get("Progressing")
        if progressing:
            reasons.append(f'{progressing["reason"]}: {progressing["message"]}')
        world.oscar.admit(quota=3)

    world.on_tick = script
    status = await world.run()
    assert status["phase"] == "Succeeded" and status["items"]["succeeded"] == 40
    waiting = [reason for reason in reasons if reason.startswith("WaitingForKueue")]
    assert waiting, reasons
    if quota_readable:
        assert "waiting for Kueue admission: quota cpu 3, memory 64Gi, in use cpu 3" in waiting[0]
        assert max(in_flight[len(in_flight) // 4:]) <= 3          # once it knows, no more than the quota asks
    else:
        assert "not readable" in waiting[0]
    assert len(world.oscar.accepted) == len(set(world.oscar.accepted))


async def test_an_oscar_outage_leaves_nothing_marked_running_and_every_range_runs_once():
    world = World(items=40)                       # 20 ranges, 8 slots

    def script(world: World) -> None:
        accepted = len(world.oscar.accepted)
        if accepted >= 8 and world.clock.now < 1000 + 120:
            world.oscar.down = True               # the first wave went out; then 2 minutes without OSCAR
            world.oscar.finish_all()
        else:
            world.oscar.down = False
            world.oscar.finish_all()

    world.on_tick = script
    status = await world.run()
    assert status["phase"] == "Succeeded", status
    per_range = collections.Counter(lines_of(name) for name in world.oscar.accepted)
    assert len(per_range) == 20 and set(per_range.values()) == {1}
    # During the outage the status never claimed more running ranges than OSCAR had Jobs running.
    assert max(running_counts(world)) <= 8
    assert any(reason == "InvocationFailed" for _, reason, _ in world.events)


async def test_invocations_in_flight_together_that_fail_leave_their_ranges_pending_with_attempts_unspent():
    world = World(items=40)                       # 20 ranges, 8 slots: the first wave goes 1 + 7 at once
    refused = {name(1 + 2 * index, 3 + 2 * index) for index in (3, 5)}
    world.oscar.refuse_once |= refused
    world.on_tick = lambda world: world.oscar.finish_all()
    status = await world.run()
    assert status["phase"] == "Succeeded" and status["invocations"]["retried"] == 0
    per_range = collections.Counter(lines_of(name) for name in world.oscar.accepted)
    assert len(per_range) == 20 and set(per_range.values()) == {1}
    assert refused <= set(world.oscar.accepted)   # the same attempt went out again: it never ran
    assert any(reason == "InvocationFailed" for _, reason, _ in world.events)


async def test_a_refusal_that_needs_a_person_backs_off_instead_of_retrying_every_tick():
    world = World(items=4)
    world.oscar.invoke_status = 404
    await world.run()                                   # an hour of fake time at a 1 s tick
    # 1, 2, 4 … 256 s, then every 300 s: about 20 tries in an hour instead of 3,600.
    assert 5 <= world.oscar.posts <= 25, world.oscar.posts
    assert [reason for _, reason, _ in world.events].count("InvocationFailed") == 1


async def test_an_accepted_invocation_whose_job_never_appears_is_invoked_again_under_a_new_attempt():
    world = World(items=4)                        # 2 ranges
    lost = name(1, 3)
    world.oscar.swallow.add(lost)

    def script(world: World) -> None:
        if world.clock.now > 1000 + 5:
            world.oscar.finish_all()

    world.on_tick = script
    status = await world.run()
    assert status["phase"] == "Succeeded"
    assert world.oscar.accepted.count(lost) == 1
    assert name(1, 3, 2) in world.oscar.accepted  # attempt 2, no retry spent
    assert status["invocations"]["retried"] == 0 and world.oscar.listings >= 1
    assert any(reason == "InvocationLost" for _, reason, _ in world.events)


async def test_a_changed_service_is_ignored_once_pinned_and_said_so():
    world = World(items=8)

    def script(world: World) -> None:
        if world.clock.now > 1000 + 3:
            world.body["spec"]["service"] = "other"
            world.body["metadata"]["generation"] = 2
        if world.clock.now > 1000 + 10:
            world.oscar.finish_all()

    world.on_tick = script
    status = await world.run()
    assert status["phase"] == "Succeeded"
    assert all(name.startswith("fish-") for name in world.oscar.accepted)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["InvalidSpec"]["status"] == "True"
    assert conditions["InvalidSpec"]["reason"] == "ImmutableFieldChanged"
    assert "spec.service" in conditions["InvalidSpec"]["message"]
    assert status["reason"] == "ImmutableFieldChanged"          # though it succeeded: a person must look
    assert status["observedGeneration"] == 2


# ---- clean-up of finished Jobs ------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [False, True])
async def test_finished_jobs_are_deleted_once_status_holds_their_outcome_and_kept_on_request(keep):
    world = World(items=8, retries=1, keepJobs=keep)    # 4 ranges of 2 lines
    failing = name(1, 3)
    client = world.controller.resolver.client
    settled: set[str] = set()

    def script(world: World) -> None:
        # A failed range whose halves still run is evidence, not garbage: deleted only once both settled.
        assert failing not in client.deleted or {name(1, 2), name(2, 3)} <= settled
        for job_name, job in list(world.oscar.jobs.items()):
            if job.outcome == Outcome.RUNNING:
                outcome = Outcome.FAILED if job_name == failing else Outcome.SUCCEEDED
                world.oscar._set(dataclasses.replace(job, outcome=outcome))
                settled.add(job_name)

    world.on_tick = script
    status = await world.run()
    assert status["phase"] == "Succeeded" and status["items"]["succeeded"] == 8
    assert {name(1, 2), name(2, 3)} <= set(world.oscar.accepted)     # the failed range ran as its halves
    if keep:
        assert client.deleted == [] and len(world.oscar.jobs) == 6
    else:
        assert sorted(client.deleted) == sorted(world.oscar.accepted) and world.oscar.jobs == {}
        assert world.store.names(KEY) == set()


# ---- cancel on delete ------------------------------------------------------------------------------------

class DeletingOscar(FakeOscarClient):
    def close(self) -> None:
        pass


def cancel_world(oscar_down: bool, ran_here: bool = True) -> tuple[World, DeletingOscar, list[float]]:
    world = World(items=8)
    for index in range(3):
        world.oscar._set(seen(name(1 + 2 * index, 3 + 2 * index)))
    world.oscar.down = oscar_down
    world.s3.objects["input/index.txt"] = (b"...", {"oscar-batch-uid": UID})
    world.body["status"] = {"phase": "Running", "startTime": "2026-12-01T00:00:01Z"}
    client = DeletingOscar(world.oscar)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        world.clock.now += seconds

    resolver = FakeResolver(world.oscar, world.s3)
    object.__setattr__(resolver, "oscar_client", lambda spec: client)
    if ran_here:
        world.store.everything(KEY)               # the batch's daemon ran in this process
    world.cancel = lambda: cancel.cancel(
        body=world.body, jobs=world.store, emit=lambda *event: world.events.append(event), batches=ActiveBatches(),
        timing=TIMING, clock=world.clock, sleep=sleep, resolver=resolver, peer_calls=world.peer_calls)
    return world, client, slept


async def test_cancel_deletes_the_jobs_in_flight_and_the_manifest_it_wrote():
    world, client, _ = cancel_world(oscar_down=False)
    world.s3.objects["input/index.txt.results.json"] = (b"{}", {})
    await world.cancel()
    assert sorted(client.deleted) == sorted(name(1 + 2 * i, 3 + 2 * i) for i in range(3))
    assert "input/index.txt" not in world.s3.objects and "input/index.txt.results.json" in world.s3.objects
    assert world.events == [("Normal", "Cancelled", "stopped dispatching; deleted 3 Job(s); "
                                                    "removed the manifest s3://bkt/input/index.txt")]


async def test_cancel_after_a_restart_finds_the_jobs_by_the_service_and_leaves_jobs_that_only_claim_the_batch():
    world, client, _ = cancel_world(oscar_down=False, ran_here=False)
    elsewhere = dataclasses.replace(seen(name(7, 9)), namespace="team-a")     # the batch's UID, another namespace
    world.store.record(elsewhere.name, elsewhere)
    await world.cancel()
    assert sorted(client.deleted) == sorted(name(1 + 2 * i, 3 + 2 * i) for i in range(3))


async def test_cancel_with_oscar_down_gives_up_in_bounded_time_and_names_what_it_left():
    world, client, slept = cancel_world(oscar_down=True)
    started = world.clock.now
    await world.cancel()
    assert world.clock.now - started <= TIMING.cancel_timeout and slept
    [(kind, reason, message)] = world.events
    assert (kind, reason) == ("Warning", "CancelIncomplete")
    assert "3 Job(s) still in OSCAR" in message and name(1, 3) in message
    assert "connection refused" in message and "removed the manifest" in message


# ---- the Job store: each batch folds only what changed ------------------------------------------------

def test_the_store_routes_each_change_to_its_batch_and_hands_it_over_once():
    store = JobStore()
    for uid, count in ((UID, 3), (OTHER_UID, 2)):
        for index in range(count):
            job = name(1 + 2 * index, 3 + 2 * index, uid=uid)
            store.record(job, seen(job))
    assert len(store.everything(KEY)) == 3 and store.changes(KEY) == []   # a (re)start takes everything
    assert len(store.changes(OTHER_KEY)) == 2 and store.changes(OTHER_KEY) == []
    done = name(3, 5)
    store.record(done, seen(done, Outcome.SUCCEEDED))
    assert [job.name for job in store.changes(KEY)] == [done]             # only what changed
    store.everything(OTHER_KEY)
    assert len(store.in_flight(KEY)) == 2 and len(store.all_names()) == 5
    store.record(done, store.everything(KEY)[1], deleted=True)
    assert done not in store.names(KEY) and store.changes(KEY) == []
    # The batches' own Jobs (their pods are not other tenants'), kept as Jobs come and go and batches are read.
    assert store.all_names() == {("oscar-svc", job) for job in store.names(KEY) | store.names(OTHER_KEY)}
    later = name(9, 11)
    store.record(later, seen(later))
    store.forget_batch(OTHER_UID)
    assert store.all_names() == {("oscar-svc", job) for job in store.names(KEY)} and len(store.all_names()) == 3


def test_the_store_counts_the_jobs_kueue_holds_back_as_they_change():
    store = JobStore()
    first, second = name(1, 3), name(3, 5)
    assert store.kueue(KEY) is None
    for job in (first, second):
        store.record(job, dataclasses.replace(seen(job), queue="oscar-lq-fish", queued=True))
    assert store.kueue(KEY) == ("oscar-lq-fish", 2)
    store.record(first, dataclasses.replace(seen(first), queue="oscar-lq-fish"))          # admitted
    store.record(second, dataclasses.replace(seen(second), queue="oscar-lq-fish", queued=True), deleted=True)
    assert store.kueue(KEY) == ("oscar-lq-fish", 0)


def test_a_fresh_listing_forgets_the_jobs_deleted_while_nobody_watched():
    store = JobStore()
    store.watching(["oscar-svc", "team-a"])
    kept, gone, elsewhere = name(1, 3), name(3, 5), name(5, 7)
    store.record(kept, seen(kept))
    store.record(gone, seen(gone))
    store.record(elsewhere, dataclasses.replace(seen(elsewhere), namespace="team-a"))
    in_team_a = KEY._replace(namespace="team-a")
    store.everything(KEY)
    store.replace("oscar-svc", [seen(kept, Outcome.SUCCEEDED)])
    assert not store.synced                                               # team-a was not listed yet
    assert store.names(KEY) == {kept} and store.names(in_team_a) == {elsewhere}   # its listing is its own
    assert [(job.name, job.outcome) for job in store.changes(KEY)] == [(kept, Outcome.SUCCEEDED)]
    store.replace("team-a", [])
    assert store.synced and store.names(KEY) == {kept} and store.names(in_team_a) == set()


async def test_a_restart_keeps_the_retry_count_of_ranges_that_settled_before_it():
    world = World(items=4)                        # 2 ranges, both done before the restart
    world.body["status"] = {"phase": "Running", "items": {"total": 4}, "rangePlan": "1:2x2",
                            "manifest": "s3://bkt/input/index.txt", "completedItems": "1-4",
                            "invocations": {"total": 4, "running": 0, "retried": 3}}
    status = await world.run()
    assert status["phase"] == "Succeeded" and status["invocations"]["retried"] == 3
    assert world.oscar.posts == 0                 # nothing invoked again


# ---- items: adaptive ranges, corrupt inputs, disruptions, restarts mid-halving --------------------------

def finish(world: World, bad: set[int], evicted: set[str] = frozenset(), outputs: str | None = None) -> None:
    """Every running Job ends: failed when it holds a corrupt line (its pod exited 1) or is evicted. With
    `outputs` (a prefix), the service writes each line's output there as it goes, up to a corrupt one."""
    for job_name, job in list(world.oscar.jobs.items()):
        if job.outcome != Outcome.RUNNING:
            continue
        start, end = lines_of(job_name)
        if job_name in evicted:
            world.kube.pods_of[job_name] = [EVICTED_POD]
            world.oscar._set(dataclasses.replace(job, outcome=Outcome.FAILED, failed_reason="BackoffLimitExceeded"))
        elif any(start <= line < end for line in bad):
            written = range(start, min(line for line in bad if start <= line < end))
            world.oscar._set(dataclasses.replace(job, outcome=Outcome.FAILED, failed_reason="BackoffLimitExceeded"))
        else:
            written = range(start, end)
            world.oscar._set(dataclasses.replace(job, outcome=Outcome.SUCCEEDED))
            world.succeeded_jobs.append(job_name)
        if outputs is not None and job_name not in evicted:
            for line in written:
                world.s3.objects[f"{outputs}frame-{line:06d}.json"] = (b"{}", {})
                world.processed[line] += 1


async def test_a_failed_range_with_outputs_runs_its_first_line_without_one_alone_and_the_nodes_after_it():
    world = World(items=400, itemsPerInvocation=0, retries=1, outputs={"prefix": "output/"})      # 8 slots
    world.on_tick = lambda world: finish(world, bad={123}, outputs="output/")
    status = await world.run()
    assert status["rangePlan"].startswith("1:8x45,")                # [91, 136) fails at 123, outputs for 91..122
    assert status["phase"] == "Failed" and status["failedItems"] == "123"
    assert status["items"]["recovered"] == 32 and status["items"]["succeeded"] == 399
    accepted = world.oscar.accepted
    assert accepted.index(name(123, 124)) > accepted.index(name(91, 136))
    assert {name(123, 124), name(124, 136), name(123, 124, 2)} <= set(accepted)   # the suspect alone, then its retry
    assert not any(lines_of(job)[0] <= 100 < lines_of(job)[1] for job in accepted if job != name(91, 136))
    [detail] = status["failedItemDetails"]
    assert detail["key"] == "input/frame-000123.jpg" and detail["job"] == name(123, 124, 2)
    assert sorted(world.processed) == [line for line in range(1, 401) if line != 123]
    assert set(world.processed.values()) == {1}                      # every other input processed once
    assert ("Warning", "RangeResumed") in {event[:2] for event in world.events}


async def test_adaptive_ranges_start_with_one_range_per_slot_and_a_corrupt_input_is_named():
    world = World(items=400, itemsPerInvocation=0, retries=1)      # 8 slots
    world.on_tick = lambda world: finish(world, bad={123})
    status = await world.run()
    assert status["rangePlan"].startswith("1:8x45,")               # the first wave: 8 × 45 = 90% of the lines
    assert status["phase"] == "Failed" and status["failedItems"] == "123"
    assert status["items"] == {"total": 400, "pending": 0, "running": 0, "succeeded": 399, "failed": 1,
                               "unlisted": 0, "skipped": 0, "recovered": 0}
    [detail] = status["failedItemDetails"]
    assert detail == {"line": 123, "key": "input/frame-000123.jpg", "job": name(123, 124, 2),
                      "reason": "Error (exit code 1)"}
    assert "line 123 (input/frame-000123.jpg)" in status["message"]
    per_line = collections.Counter(line for job_name in world.succeeded_jobs for line in range(*lines_of(job_name)))
    assert sorted(per_line) == [line for line in range(1, 401) if line != 123] and set(per_line.values()) == {1}
    assert len(world.oscar.accepted) == len(set(world.oscar.accepted))
    reasons = {reason for _, reason, _ in world.events}
    assert {"RangeSplit", "ItemRetried", "ItemFailed", "BatchFailed"} <= reasons


async def test_an_evicted_pod_runs_its_lines_again_without_spending_a_retry():
    world = World(items=8, retries=0)                             # 4 ranges of 2, no retry at all
    world.on_tick = lambda world: finish(world, bad=set(), evicted={name(3, 5), name(4, 5)})
    status = await world.run()
    assert status["phase"] == "Succeeded" and status["invocations"]["disrupted"] == 2
    assert status["invocations"]["retried"] == 0
    assert {name(3, 4), name(4, 5), name(4, 5, 2)} <= set(world.oscar.accepted)   # halves; the single line again
    assert any(reason == "RangeDisrupted" for _, reason, _ in world.events)


async def test_a_redriven_batch_is_not_redriven_again_after_a_restart():
    """The round a batch was redriven to lives in status; were it pruned, every restart would redrive again."""
    world = World(items=8, retries=0)             # 4 ranges of 2; line 3 fails once, then is fixed
    bad = {3}
    world.on_tick = lambda world: finish(world, bad=bad)
    assert (await world.run())["phase"] == "Failed"
    bad.clear()
    world.body["spec"]["redrive"] = 1
    world.body["metadata"]["generation"] += 1
    restarted(world)
    status = await world.run()
    assert status["phase"] == "Succeeded" and status["redrive"] == 1, status
    restarted(world)
    posts = world.oscar.posts
    await world.run()
    assert [reason for _, reason, _ in world.events].count("Redriven") == 1, world.events
    assert world.oscar.posts == posts and world.body["status"]["phase"] == "Succeeded"


async def test_a_restart_mid_halving_invokes_nothing_twice():
    world = World(items=64, itemsPerInvocation=0, retries=1)
    ticks = 0

    def script(world: World) -> None:
        nonlocal ticks
        ticks += 1
        if ticks % 2:                                              # every other tick, so ranges stay in flight
            finish(world, bad={5, 40})
        if ticks == 6:                                             # mid-halving: the operator goes away
            world._stopped = True

    world.on_tick = script
    await world.controller.run()
    status = world.body["status"]
    assert status["phase"] == "Running" and status["invocations"]["retried"] >= 2, status
    restarted(world)
    status = await world.run()
    assert status["failedItems"] == "5,40" and status["items"]["succeeded"] == 62
    assert len(world.oscar.accepted) == len(set(world.oscar.accepted))          # no name invoked twice
    assert world.oscar.posts == len(world.oscar.accepted)                       # and none refused as a duplicate
    per_line = collections.Counter(line for job_name in world.succeeded_jobs for line in range(*lines_of(job_name)))
    assert len(per_line) == 62 and set(per_line.values()) == {1}


# ---- listing ------------------------------------------------------------------------------------------------

# Status every 50 ms of real time: the listing runs in a thread on the real clock.
LISTING_TIMING = dataclasses.replace(TIMING, status_interval=0.05)


def listing_patches(world: World) -> list[dict[str, Any]]:
    return [patch for patch in world.kube.patches if "listed" in patch]


async def test_listing_shows_how_far_it_got_in_status_even_when_no_key_is_an_input():
    """The listing thread lists a page of 10 keys only once status showed the one before: status follows the
    listing while it runs, though the filters let nothing through."""
    world = World(items=30, timing=LISTING_TIMING)
    world.body["spec"]["storage"]["include"] = ["*.png"]                  # every key is a .jpg
    list_objects = world.s3.list_objects

    def listed_in_status() -> int:
        return (world.body.get("status") or {}).get("listed", -1)

    def paged_listing(bucket: str, prefix: str, recursive: bool):
        for count, obj in enumerate(list_objects(bucket, prefix, recursive), 1):
            yield obj
            if count % 10 == 0:
                wait_until(lambda count=count: listed_in_status() >= count, message=f"status showing {count} listed")

    world.s3.list_objects = paged_listing
    status = await world.run()
    assert (status["phase"], status["items"]["total"]) == ("Succeeded", 0), status        # NoInputs
    shown = listing_patches(world)
    assert [patch["listed"] for patch in shown][:1] == [0]
    assert {10, 20, 30} <= {patch["listed"] for patch in shown}
    assert all(patch["phase"] == "Listing" for patch in world.kube.patches[:1])
    assert shown[-1] == {"listed": 30, "observedGeneration": 1}             # the final count, once listed
    latest = shown[-2]
    assert latest["progress"] == f"listed {latest['listed']}"
    [progressing] = [c for c in latest["conditions"] if c["type"] == "Progressing"]
    assert progressing["reason"] == "Listing" and progressing["message"] == (
        f"listing s3://bkt/input/: {latest['listed']} key(s) listed, 0 input(s) so far")


async def test_a_batch_deleted_while_it_lists_stops_the_listing_and_writes_no_manifest():
    world = World(items=5, timing=LISTING_TIMING)
    endless = Listed

    def endless_listing(bucket: str, prefix: str, recursive: bool):
        for count in itertools.count(1):
            if count == 100:
                world.body["metadata"]["deletionTimestamp"] = "2026-12-01T00:01:00Z"
            yield endless(f"input/frame-{count:09d}.jpg", False)

    world.s3.list_objects = endless_listing
    await asyncio.wait_for(world.controller.run(), timeout=30)
    assert "input/index.txt" not in world.s3.objects and world.oscar.posts == 0
    assert world.body["status"]["phase"] == "Listing"


# ---- line sets too large for status ------------------------------------------------------------------------

async def test_line_sets_too_large_for_status_live_in_the_results_object_and_a_restart_reads_them_back(monkeypatch):
    """Status holds at most LINE_SETS_BUDGET characters of line sets (here 4): beyond, they are written to the
    results object and status points at it. Finished Jobs are deleted once that record exists, so after a restart
    the lines of deleted Jobs are known from the results object alone: none runs again."""
    monkeypatch.setattr(status, "LINE_SETS_BUDGET", 4)
    world = World(items=40, retries=0)                               # 20 ranges of 2 lines, 8 at a time
    results_key = "input/index.txt.results.json"
    ticks = 0

    def script(world: World) -> None:
        nonlocal ticks
        ticks += 1
        finish(world, bad={3, 17, 30})
        if ticks == 4:
            world._stopped = True

    world.on_tick = script
    await world.controller.run()
    before = world.body["status"]
    assert before["phase"] == "Running" and before["itemsAt"] == f"s3://bkt/{results_key}", before
    assert "completedItems" not in before and "failedItems" not in before
    deleted_before = list(world.controller.resolver.client.deleted)
    assert deleted_before                          # their lines are recorded in the results object only
    recorded = json.loads(world.s3.objects[results_key][0])
    assert recorded["uid"] == UID and recorded["phase"] == "Running"
    assert world.s3.objects[results_key][1]["oscar-batch-uid"] == UID
    restarted(world)
    final = await world.run()
    assert final["phase"] == "Failed" and final["items"]["succeeded"] == 37
    assert final["itemsAt"] == f"s3://bkt/{results_key}" and "completedItems" not in final
    document = json.loads(world.s3.objects[results_key][0])
    assert (document["phase"], document["succeededItems"], document["failedLines"]) == (
        "Failed", "1-2,4-16,18-29,31-40", "3,17,30")
    assert [item["line"] for item in document["failedItems"]] == [3, 17, 30]
    per_line = collections.Counter(line for job_name in world.succeeded_jobs for line in range(*lines_of(job_name)))
    assert len(per_line) == 37 and set(per_line.values()) == {1}     # no line ran again after the restart
    assert world.oscar.posts == len(set(world.oscar.accepted))


async def test_line_sets_that_fit_again_come_back_into_status(monkeypatch):
    """A redrive empties failedItems: the line sets fit the budget again and status holds them once more."""
    monkeypatch.setattr(status, "LINE_SETS_BUDGET", 12)
    world = World(items=40, retries=0)
    bad = {3, 17, 30}
    world.on_tick = lambda world: finish(world, bad=bad)
    first = await world.run()
    assert first["phase"] == "Failed" and "itemsAt" in first
    bad.clear()
    world.body["spec"]["redrive"] = 1
    world.body["metadata"]["generation"] = 2
    world._stopped = False
    second = await world.run()
    assert second["phase"] == "Succeeded" and second["completedItems"] == "1-40" and "itemsAt" not in second


async def test_line_sets_s3_will_not_take_keep_their_jobs_until_it_does(monkeypatch):
    """Record, then delete: while the results object cannot be written, status gets the counts but no line sets,
    and no finished Job is deleted; once S3 takes them, they are."""
    monkeypatch.setattr(status, "LINE_SETS_BUDGET", 4)
    world = World(items=40, retries=0)
    put_object, refused = world.s3.put_object, []
    client = world.controller.resolver.client

    def put_refusing_results(bucket, key, data, size, content_type, metadata):
        if key.endswith("results.json") and world.clock.now < 1020:
            refused.append(world.clock.now)
            raise S3Error(None, "SlowDown", "please reduce your request rate", key, "request", "host")
        put_object(bucket, key, data, size, content_type, metadata)

    def script(world: World) -> None:
        if world.clock.now < 1020:
            assert client.deleted == []
            assert "completedItems" not in (world.body.get("status") or {}) or \
                world.body["status"]["completedItems"] == "", world.body["status"]
        finish(world, bad={3, 17, 30})

    world.s3.put_object = put_refusing_results
    world.on_tick = script
    final = await world.run()
    assert refused and final["phase"] == "Failed" and final["itemsAt"].endswith("results.json")
    assert sorted(client.deleted) == sorted(world.oscar.accepted)


async def test_status_keeps_its_interval_when_dispatch_makes_passes_longer_than_a_tick():
    """Each POST /job takes 0.15 s, so a pass that dispatches outlasts the tick: what a pass folded is still
    patched before that pass dispatches, and the patch that falls due does not wait for the tick after."""
    world = World(items=200, itemsPerInvocation=1)
    invoke = world.oscar.invoke
    finished_at: dict[tuple[int, int], float] = {}
    shown_at: dict[tuple[int, int], float] = {}

    def slow_invoke(service, token, payload, job_name):
        world.clock.now += 0.15
        invoke(service, token, payload, job_name)

    def finish(world: World) -> None:
        for job in list(world.oscar.jobs.values()):
            if job.outcome == Outcome.RUNNING:
                finished_at[lines_of(job.name)] = world.clock.now
        world.oscar.finish_all()

    patch = world.kube.patch_batch_status

    def patch_noting_lines(namespace, name, status):
        patch(namespace, name, status)
        for span in (status.get("completedItems") or "").split(","):
            if span:
                first, _, last = span.partition("-")
                for line in range(int(first), int(last or first) + 1):
                    shown_at.setdefault((line, line + 1), world.clock.now)

    world.oscar.invoke = world.controller.resolver.client.invoke = slow_invoke
    world.kube.patch_batch_status = patch_noting_lines
    world.on_tick = finish
    status = await world.run()
    assert status["phase"] == "Succeeded"
    latencies = [shown_at[lines] - at for lines, at in finished_at.items()]
    assert len(latencies) == 200
    assert max(latencies) <= TIMING.status_interval + 0.05 * TIMING.tick, max(latencies)


# --- one pass at a time, as job_controller_test.go calls syncJob once per case ------------------------------

def failed(world: World, job: str) -> None:
    world.oscar._set(dataclasses.replace(world.oscar.jobs[job], outcome=Outcome.FAILED,
                                         failed_reason="BackoffLimitExceeded"))


def succeeded(world: World, job: str) -> None:
    world.oscar._set(dataclasses.replace(world.oscar.jobs[job], outcome=Outcome.SUCCEEDED))


@pytest.mark.parametrize(("end_first_range", "then_invoked", "event"), [
    (succeeded, [], None),                                            # capacity freed, nothing left to carve
    (failed, [name(1, 2), name(2, 3), name(3, 4), name(4, 5)], "RangeSplit"),   # the service failed it: quarters
])
async def test_one_pass_folds_what_a_job_said_and_invokes_what_follows(end_first_range, then_invoked, event):
    world = World(items=8, itemsPerInvocation=4)                      # 2 ranges of 4 lines, 8 slots
    state = await world.controller.start()
    assert not await world.controller.sync(state)
    assert world.oscar.accepted == [name(1, 5), name(5, 9)] and state.parallelism == 8   # a slot per line
    world.clock.now += TIMING.tick
    end_first_range(world, name(1, 5))
    patches = len(world.kube.patches)
    assert not await world.controller.sync(state)
    assert world.oscar.accepted[2:] == then_invoked
    assert [reason for _, reason, _ in world.events if reason == event] == ([event] if event else [])
    assert len(world.kube.patches) == patches   # the status interval has not come round: nothing patched


async def test_a_pass_records_the_carve_log_before_it_invokes_the_ranges_carved():
    world = World(items=8, itemsPerInvocation=4)
    state = await world.controller.start()
    await world.controller.sync(state)
    carve_patch = next(index for index, patch in enumerate(world.kube.patches) if set(patch) >= {"rangePlan"}
                       and "items" not in patch)
    assert world.kube.patches[carve_patch]["rangePlan"] == "1:2x4"   # 2 ranges of 4 lines from line 1
    assert world.oscar.posts == 2


async def test_jobs_are_deleted_and_the_verdict_given_only_once_a_patch_records_them():
    world = World(items=4, itemsPerInvocation=4)
    state = await world.controller.start()
    await world.controller.sync(state)
    succeeded(world, name(1, 5))
    world.kube.refuse = True                       # the API server takes no patch
    world.clock.now += TIMING.status_interval
    assert not await world.controller.sync(state)  # the results are written, but the verdict is not recorded
    assert world.controller.resolver.client.deleted == []
    assert "BatchSucceeded" not in [reason for _, reason, _ in world.events]
    world.kube.refuse = False
    world.clock.now += TIMING.retry_delay
    assert await world.controller.sync(state)      # the last lines recorded, the results and the verdict written
    assert world.controller.resolver.client.deleted == [name(1, 5)]
    assert world.body["status"]["phase"] == "Succeeded"


# ---- declared outputs: the inputs that have theirs are skipped at listing time ----------------------------------

def with_outputs(world: World, done: range, **outputs: Any) -> World:
    """`world` whose service already wrote the outputs of the inputs `done` (as the sandbox names them)."""
    world.body["spec"]["outputs"] = {"prefix": "output/", **outputs}
    for index in done:
        world.s3.objects[f"output/frame-{index:06d}.jpg.json"] = (b"{}", {})
    return world


def manifest_keys(world: World) -> list[str]:
    return world.s3.objects["input/index.txt"][0].decode().splitlines()


def invoked_lines(world: World) -> set[int]:
    return {line for job_name in world.oscar.accepted for line in range(*lines_of(job_name))}


async def test_inputs_whose_outputs_exist_are_skipped_and_only_the_others_invoked():
    world = with_outputs(World(items=40), done=range(1, 41, 2))           # the odd inputs are done
    world.on_tick = lambda world: world.oscar.finish_all()
    status = await world.run()
    assert manifest_keys(world) == [f"input/frame-{index:06d}.jpg" for index in range(2, 41, 2)]
    assert invoked_lines(world) == set(range(1, 21))                      # the 20 lines of the even inputs
    assert status["phase"] == "Succeeded" and "reason" not in status                # AllItemsSucceeded
    assert status["items"]["total"] == 20 and status["items"]["skipped"] == 20
    assert status["pinned"]["outputs"]["prefix"] == "output/"
    skipped = json.loads(world.s3.objects["input/index.txt.skipped.json"][0])
    assert skipped == [f"input/frame-{index:06d}.jpg" for index in range(1, 41, 2)]
    assert world.s3.objects["input/index.txt.skipped.json"][1]["oscar-batch-uid"] == UID
    assert world.s3.objects["input/index.txt"][1]["oscar-batch-skipped"] == "20"
    [listed] = [message for _, reason, message in world.events if reason == "Listed"]
    assert "20 input(s) skipped, their outputs exist under s3://bkt/output/" in listed
    document = json.loads(world.s3.objects["input/index.txt.results.json"][0])
    assert document["items"]["skipped"] == 20
    assert document["skippedItemsAt"] == "s3://bkt/input/index.txt.skipped.json"
    assert "20 input(s) skipped" in status["message"]


async def test_a_batch_whose_inputs_all_have_outputs_succeeds_at_once_invoking_nothing():
    world = with_outputs(World(items=12), done=range(1, 13))
    status = await world.run()
    assert world.oscar.accepted == [] and manifest_keys(world) == []
    assert (status["phase"], status["reason"]) == ("Succeeded", "AllOutputsExist")
    assert status["items"]["total"] == 0 and status["items"]["skipped"] == 12
    assert "every input (12) already has its outputs" in status["message"]
    assert ("Normal", "BatchSucceeded", status["message"]) in world.events


async def test_templates_and_written_after_decide_which_outputs_count():
    world = World(items=6)
    world.body["spec"]["outputs"] = {"prefix": "output/", "key": ["{stem}.csv", "{stem}.png"],
                                     "writtenAfter": "2026-12-01T00:00:00Z"}
    for index in (1, 2, 3):
        world.s3.objects[f"output/frame-{index:06d}.csv"] = (b"", {})
    for index in (1, 3):                                                   # input 2 lacks one of its outputs
        world.s3.objects[f"output/frame-{index:06d}.png"] = (b"", {})
    listed = FakeS3.list_objects

    def dated(s3, bucket, prefix, recursive):                             # input 3's outputs are older
        for obj in listed(s3, bucket, prefix, recursive):
            old = "000003" in obj.object_name
            yield Listed(obj.object_name, False, datetime.datetime(2026, 11 if old else 12, 2, tzinfo=datetime.UTC))
    world.s3.list_objects = dated.__get__(world.s3)
    world.on_tick = lambda world: world.oscar.finish_all()
    status = await world.run()
    assert manifest_keys(world) == [f"input/frame-{index:06d}.jpg" for index in (2, 3, 4, 5, 6)]
    assert status["items"]["skipped"] == 1


async def test_unreadable_outputs_make_the_batch_wait_invoking_nothing_then_it_proceeds():
    world = with_outputs(World(items=8), done=range(1, 5))
    world.s3.unlistable.add("output/")

    def script(world: World) -> None:
        if world.clock.now > 1000 + 40:
            world.s3.unlistable.clear()
        world.oscar.finish_all()

    world.on_tick = script
    status = await world.run()
    waited = [patch for patch in world.kube.patches if any(
        c.get("reason") == "StorageUnavailable" for c in patch.get("conditions") or ())]
    assert waited and "listing the outputs s3://bkt/output/" in str(waited[0])
    assert status["phase"] == "Succeeded" and status["items"]["skipped"] == 4
    assert invoked_lines(world) == set(range(1, 5))                       # the inputs without outputs, once
    assert len(world.oscar.accepted) == len(set(world.oscar.accepted))


async def test_the_outputs_prefix_defaults_to_the_services_first_output_on_the_batchs_bucket():
    world = World(items=4)
    world.body["spec"]["outputs"] = {}
    world.oscar.output = [{"storage_provider": "minio.default", "path": "bkt/fish/out"}]
    world.s3.objects["fish/out/frame-000001.json"] = (b"{}", {})          # the default rule: a/b.jpg → a/b.json
    world.on_tick = lambda world: world.oscar.finish_all()
    status = await world.run()
    assert status["pinned"]["outputs"]["prefix"] == "fish/out/"
    assert status["items"]["skipped"] == 1 and status["items"]["total"] == 3


@pytest.mark.parametrize(("output", "says"), [
    ([{"storage_provider": "minio.default", "path": "elsewhere/out"}], "'elsewhere/out' on 'minio.default'"),
    ([{"storage_provider": "s3.aws", "path": "bkt/out"}], "'bkt/out' on 's3.aws'"),
    ([], "it declares no output"),
])
async def test_outputs_without_a_prefix_or_a_default_on_the_batchs_storage_are_an_invalid_spec(output, says):
    world = World(items=4)
    world.body["spec"]["outputs"] = {}
    world.oscar.output = output
    world.on_tick = lambda world: setattr(world, "_stopped", world.clock.now > 1000 + 30)
    status = await world.run()
    [progressing] = [c for c in status["conditions"] if c["type"] == "Progressing"]
    assert progressing["reason"] == "InvalidSpec" and "spec.outputs.prefix is required" in progressing["message"]
    assert says in progressing["message"]
    assert world.oscar.accepted == [] and "input/index.txt" not in world.s3.objects


async def test_outputs_where_the_inputs_are_are_an_invalid_spec():
    world = World(items=4)
    world.body["spec"]["outputs"] = {}
    world.oscar.output = [{"storage_provider": "minio", "path": "bkt/input/out"}]
    world.on_tick = lambda world: setattr(world, "_stopped", world.clock.now > 1000 + 30)
    status = await world.run()
    [progressing] = [c for c in status["conditions"] if c["type"] == "Progressing"]
    assert progressing["reason"] == "InvalidSpec" and "must never become the next run's inputs" in \
        progressing["message"]


async def test_a_restart_reuses_the_manifest_and_its_skipped_count_and_cancel_removes_the_skipped_keys():
    world = with_outputs(World(items=10), done=range(1, 6))
    world.on_tick = lambda world: world._stopped or setattr(world, "_stopped", bool(world.oscar.accepted))
    await world.run()
    del world.body["status"]                                               # status lost: the manifest is ours
    restarted(world)
    world.on_tick = lambda world: world.oscar.finish_all()
    status = await world.run()
    assert status["items"]["skipped"] == 5 and status["items"]["total"] == 5
    assert json.loads(world.s3.objects["input/index.txt.results.json"][0])["items"]["skipped"] == 5
    world.s3.objects["input/index.txt.unlisted.json"] = (b"[]", {"oscar-batch-uid": OTHER_UID})
    await cancel.cancel(body=world.body, jobs=world.store, emit=lambda *event: world.events.append(event),
                        batches=ActiveBatches(), timing=TIMING, clock=world.clock,
                        resolver=FakeResolver(world.oscar, world.s3), peer_calls=world.peer_calls)
    assert "input/index.txt.skipped.json" not in world.s3.objects and "input/index.txt" not in world.s3.objects
    assert "input/index.txt.unlisted.json" in world.s3.objects            # not this batch's
