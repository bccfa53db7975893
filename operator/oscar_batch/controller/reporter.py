"""What a batch tells people: its status subresource (conditions merged by type, observedGeneration) and its
Events (a problem once per reason change; range-level news throttled per reason)."""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from oscar_batch.clients import cluster
from oscar_batch.controller.metrics import BatchMetrics
from oscar_batch.controller.resolver import Waiting
from oscar_batch.core import status
from oscar_batch.core.pacing import EventThrottle
from oscar_batch.core.redaction import cap

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def __call__(self, kind: str, reason: str, message: str) -> None: ...


EVENT_NAME_PREFIX = "oscar-batch-"   # kopf's own Events (its warnings) have it too, with a random suffix
MESSAGE_CHARACTERS = 1024   # kopf's cut too: longer messages are shortened in the middle
CUT = " … "


class EventPoster:
    """The batches' Events, posted in the order emitted by a task of their own: emitting never waits for the API.

    Each Event is named `oscar-batch-<batch uid>.<stamp>`, the stamp being the wall clock in nanoseconds
    (hexadecimal) made strictly increasing in this process, as client-go names Events `<object>.<nanoseconds>`.
    kopf's `event()` names them by `generateName`, five random characters that the API server draws: among the
    thousands of Events of a few hundred batches in one namespace two drew the same name now and then, and kopf
    dropped the later one ("already exists"). A stamp is unique within a process, and a batch's Events from a
    later process (a restart, a takeover) bear later stamps.
    """

    def __init__(self, kube: cluster.Kube, component: str, instance: str) -> None:
        self.kube = kube
        self.component = component
        self.instance = instance
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._last_stamp = 0

    def emitter(self, body: Any) -> EventSink:
        """What a batch's controller and its cancellation call to tell people something."""
        meta = body["metadata"]
        involved = {"apiVersion": body.get("apiVersion") or f"{cluster.GROUP}/{cluster.VERSION}",
                    "kind": body.get("kind") or "OscarBatchJob", "name": meta["name"],
                    "namespace": meta["namespace"], "uid": meta["uid"]}

        def emit(kind: str, reason: str, message: str) -> None:
            self._queue.put_nowait(self.event(involved, kind, reason, message))
        return emit

    def event(self, involved: dict[str, str], kind: str, reason: str, message: str) -> dict[str, Any]:
        if len(message) > MESSAGE_CHARACTERS:
            half = (MESSAGE_CHARACTERS - len(CUT)) // 2
            message = f"{message[:half]}{CUT}{message[-half:]}"
        now = datetime.datetime.now(datetime.UTC)
        seconds = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{EVENT_NAME_PREFIX}{involved['uid']}.{self._stamp():x}",
                             "namespace": involved["namespace"]},
                "involvedObject": involved, "type": kind, "reason": reason, "action": reason, "message": message,
                "reportingComponent": self.component, "reportingInstance": self.instance,
                "source": {"component": self.component},   # `kubectl describe`'s "From"
                "firstTimestamp": seconds, "lastTimestamp": seconds,
                "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "count": 1}

    def _stamp(self) -> int:
        self._last_stamp = max(time.time_ns(), self._last_stamp + 1)
        return self._last_stamp

    async def run(self) -> None:
        """Post until cancelled; an Event the API server refuses is logged and dropped (they are auxiliary)."""
        while True:
            event = await self._queue.get()
            try:
                await asyncio.to_thread(self.kube.create, "events", event)
            except cluster.KubeError as error:
                log.warning("cannot post the Event %s (%s): %s", event["reason"], event["message"], error)
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float) -> None:
        """Wait until what is queued is posted, for `timeout` seconds at most (the operator is exiting)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._queue.join()


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


MILESTONE_PERCENT = 10   # an INFO line each time another tenth of the items has settled


class Reporter:
    def __init__(self, *, body: Any, kube: cluster.Kube, emit: EventSink, clock: Callable[[], float],
                 metrics: BatchMetrics) -> None:
        self.body = body
        self.kube = kube
        self.emit = emit
        self.clock = clock
        self.metrics = metrics
        self._started_at = clock()
        self._milestone = -1
        meta = body["metadata"]
        self.namespace, self.name = meta["namespace"], meta["name"]
        self.ref = f"{self.namespace}/{self.name}"
        self._conditions: list[dict[str, Any]] = list(self.status().get("conditions") or [])
        self._waiting_reason: str | None = None
        self._spec_problem: str | None = None
        self._throttle = EventThrottle()

    def status(self) -> dict[str, Any]:
        return self.body.get("status") or {}

    def generation(self) -> int:
        return int(self.body["metadata"].get("generation") or 1)

    def condition(self, kind: str, true: bool, reason: str, message: str) -> dict[str, Any]:
        return status.condition(kind, true, reason, cap(message), now_iso(), self.generation())

    async def patch(self, patch: dict[str, Any]) -> bool:
        """Whether the API server took the patch."""
        if "conditions" in patch:
            self._conditions = status.merge_conditions(self._conditions, patch["conditions"])
            patch["conditions"] = self._conditions
            patch["reason"] = status.explaining_reason(self._conditions)   # None: removed by the merge patch
        patch.setdefault("observedGeneration", self.generation())
        if "phase" in patch and patch["phase"] != status.PENDING and "message" not in patch:
            patch["message"] = None
        if patch.get("message"):
            patch["message"] = cap(patch["message"])   # the CRD's maxLength: a longer one fails the whole patch
        try:
            await asyncio.to_thread(self.kube.patch_batch_status, self.namespace, self.name, patch)
        except cluster.KubeError as error:
            log.warning("batch %s: cannot patch status: %s", self.ref, error)
            self.metrics.metrics.peer_error("kubernetes", f"status patch {error.code or 'unreachable'}")
            return False
        self.metrics.status_taken(patch)
        self._log_milestone(patch)
        return True

    def _log_milestone(self, patch: dict[str, Any]) -> None:
        items = patch.get("items")
        if not items or not items.get("total"):
            return
        done = items.get("succeeded", 0) + items.get("failed", 0)
        reached = done * 100 // items["total"] // MILESTONE_PERCENT * MILESTONE_PERCENT
        if reached <= self._milestone:
            return
        first = self._milestone < 0
        self._milestone = reached
        if first and not done:
            return
        rate = done / max(self.clock() - self._started_at, 1e-9)
        log.info("batch %s: %d of %d items done (%d%%; %d failed), %.1f items/s", self.ref, done, items["total"],
                 reached, items.get("failed", 0), rate,
                 extra={"batch": self.ref, "items_done": done, "items_total": items["total"],
                        "items_failed": items.get("failed", 0), "items_per_second": round(rate, 2)})

    def event(self, kind: str, reason: str, message: str) -> None:
        """Range-level news, at most one Event per reason a minute (the rest summarised)."""
        for event in self._throttle.offer(kind, reason, message, self.clock()):
            self.emit(*event)

    def events_due(self, flush: bool = False) -> None:
        now = self.clock()
        for event in (self._throttle.flush(now) if flush else self._throttle.due(now)):
            self.emit(*event)

    async def waiting(self, waiting: Waiting, progress: dict[str, Any] | None = None) -> None:
        log.warning("batch %s: %s", self.ref, waiting.message)
        self.metrics.problem(waiting.reason)
        if waiting.reason != self._waiting_reason:
            self.emit("Warning", waiting.reason, waiting.message)
            self._waiting_reason = waiting.reason
        await self.patch({"phase": self.status().get("phase") or status.PENDING, "message": waiting.message,
                          **(progress or {}),
                          "conditions": [self.condition("Progressing", False, waiting.reason, waiting.message)]})

    def resumed(self) -> None:
        """The problem last reported is gone: the next occurrence is news again."""
        self._waiting_reason = None

    async def spec_problem(self, reason: str, problem: str | None) -> None:
        """The `InvalidSpec` condition of a batch that goes on with the spec it had: True while the live spec
        cannot be obeyed, False once it can."""
        if problem == self._spec_problem:
            return
        if problem is not None:
            log.warning("batch %s: %s", self.ref, problem)
            self.emit("Warning", reason, problem)
        self._spec_problem = problem
        await self.patch({"conditions": [self.condition("InvalidSpec", problem is not None,
                                                        reason if problem else "SpecAccepted",
                                                        problem or "the live spec is in effect")]})
