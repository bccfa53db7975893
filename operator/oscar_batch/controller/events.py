"""What the operator tells people through Kubernetes Events: the operator-wide `EventPoster` and each batch's
`BatchEvents` (a problem at once, range-level news throttled per reason)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from oscar_batch.clients import cluster
from oscar_batch.controller.clock import SYSTEM_CLOCK, Clock, iso
from oscar_batch.core.pacing import EventThrottle

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

    def __init__(self, kube: cluster.Kube, component: str, instance: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self.kube = kube
        self.clock = clock
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
        now = self.clock.wall()
        seconds = iso(now)
        return {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{EVENT_NAME_PREFIX}{involved['uid']}.{self._stamp():x}",
                             "namespace": involved["namespace"]},
                "involvedObject": involved, "type": kind, "reason": reason, "action": reason, "message": message,
                "reportingComponent": self.component, "reportingInstance": self.instance,
                "source": {"component": self.component},   # `kubectl describe`'s "From"
                "firstTimestamp": seconds, "lastTimestamp": seconds,
                "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "count": 1}

    def _stamp(self) -> int:
        wall_ns = int(self.clock.wall().timestamp() * 1_000_000) * 1000
        self._last_stamp = max(wall_ns, self._last_stamp + 1)
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


class BatchEvents:
    """One batch's Events: `post` sends at once; `post_throttled` sends at most one per reason a minute and
    summarises the rest when the minute is over (`post_due`)."""

    def __init__(self, emit: EventSink, clock: Clock) -> None:
        self._emit = emit
        self._clock = clock
        self._throttle = EventThrottle()

    def post(self, kind: str, reason: str, message: str) -> None:
        self._emit(kind, reason, message)

    def post_throttled(self, kind: str, reason: str, message: str) -> None:
        for event in self._throttle.offer(kind, reason, message, self._clock.monotonic()):
            self._emit(*event)

    def post_due(self, flush: bool = False) -> None:
        """The summaries whose minute is over (all of them with `flush`, e.g. when the batch ends)."""
        now = self._clock.monotonic()
        for event in (self._throttle.flush(now) if flush else self._throttle.due(now)):
            self._emit(*event)
