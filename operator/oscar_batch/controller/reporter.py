"""What a batch tells people: its status subresource (conditions merged by type, observedGeneration) and its
Events (a problem once per reason change; range-level news throttled per reason)."""
from __future__ import annotations

import asyncio
import datetime
import logging
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
