"""A batch's one route to its status subresource: conditions merged by type, observedGeneration, messages
capped, the line sets placed (in status, or — too large for status — in the results object status points at),
and "record, then delete": the Jobs of ranges that settled may be deleted only once an accepted patch records
their lines. Problems the batch waits on are written here too, with their Event."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from oscar_batch.clients import cluster
from oscar_batch.controller import batch_storage
from oscar_batch.controller.batch_state import BatchState
from oscar_batch.controller.clock import Clock, iso
from oscar_batch.controller.events import BatchEvents
from oscar_batch.controller.metrics import BatchMetrics
from oscar_batch.controller.resolver import Waiting
from oscar_batch.core import results, status
from oscar_batch.core.cadence import Timing
from oscar_batch.core.redaction import cap

log = logging.getLogger(__name__)

MILESTONE_PERCENT = 10   # an INFO line each time another tenth of the items has settled


class StatusWriter:
    def __init__(self, *, body: Any, kube: cluster.Kube, events: BatchEvents, clock: Clock, timing: Timing,
                 metrics: BatchMetrics) -> None:
        self.body = body
        self.kube = kube
        self.events = events
        self.clock = clock
        self.metrics = metrics
        meta = body["metadata"]
        self.uid: str = meta["uid"]
        self.namespace, self.name = meta["namespace"], meta["name"]
        self.ref = f"{self.namespace}/{self.name}"
        self._conditions: list[dict[str, Any]] = list(self.status().get("conditions") or [])
        self._waiting_reason: str | None = None
        self._spec_problem: str | None = None
        self._started_at = clock.monotonic()
        self._milestone = -1
        self._unrecorded: list[str] = []  # Jobs of settled ranges, until an accepted patch records the settling
        self.deletable: list[str] = []    # Jobs whose lines' outcome status holds: the invoker deletes them
        self._results_hold: tuple[str, str] | None = None   # line sets this run last wrote to the results object
        self._writing_sets = timing.backoff(timing.tick)   # ... and when to try writing them there again

    # ---- reading -------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self.body.get("status") or {}

    def generation(self) -> int:
        return int(self.body["metadata"].get("generation") or 1)

    def timestamp(self) -> str:
        return iso(self.clock.wall())

    def condition(self, kind: str, true: bool, reason: str, message: str) -> dict[str, Any]:
        return status.condition(kind, true, reason, cap(message), self.timestamp(), self.generation())

    # ---- writing -------------------------------------------------------------------------------------

    async def write(self, patch: dict[str, Any]) -> bool:
        """Patch status with what needs no line sets (phase, conditions, the carve log). Whether the API server
        took it."""
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

    async def record(self, state: BatchState, patch: dict[str, Any]) -> bool:
        """Patch status with the book's outcomes (`state.progress()` in `patch`); the Jobs of the ranges it records
        as settled may then be deleted. False when the patch or its line sets did not get through."""
        self._unrecorded.extend(state.book.take_cleanable())
        placed = await self._place_line_sets(state, patch)
        recorded = await self.write(patch) and placed
        if recorded:
            self.deletable.extend(self._unrecorded)
            self._unrecorded.clear()
        return recorded

    def results_written(self, document: dict[str, Any]) -> None:
        """The results object now holds these line sets (the final results): status may point at them."""
        self._results_hold = (document["succeededItems"], document["failedLines"])

    async def _place_line_sets(self, state: BatchState, patch: dict[str, Any]) -> bool:
        if "completedItems" not in patch:
            return True
        if status.line_sets_fit(patch):
            status.line_sets_inline(patch)
            return True
        spec, line_sets = state.spec, (patch["completedItems"], patch["failedItems"])
        if line_sets != self._results_hold:
            now = self.clock.monotonic()
            if not self._writing_sets.ready(now):
                status.without_line_sets(patch)
                return False
            document = results.line_sets(state.book, batch=self.ref, uid=self.uid, service=spec.service,
                                         phase=patch.get("phase") or self.status().get("phase") or "",
                                         manifest=spec.uri(spec.manifest_key), succeeded=line_sets[0],
                                         failed=line_sets[1])
            try:
                await state.peers.on_s3(batch_storage.write_results, state.peers.s3, spec, self.uid, self.ref,
                                        document, self.kube)
            except Waiting as waiting:
                log.warning("batch %s: line sets too large for status, and the results object cannot take them "
                            "either: %s", self.ref, waiting.message)
                self._writing_sets.failed(now)
                status.without_line_sets(patch)
                return False
            self._writing_sets.succeeded()
            self._results_hold = line_sets
        status.line_sets_at(patch, spec.uri(spec.results_key))
        return True

    # ---- problems ------------------------------------------------------------------------------------

    async def waiting(self, waiting: Waiting, progress: dict[str, Any] | None = None) -> None:
        """What the batch waits on, as its Progressing condition; an Event when the reason is new."""
        log.warning("batch %s: %s", self.ref, waiting.message)
        self.metrics.problem(waiting.reason)
        if waiting.reason != self._waiting_reason:
            self.events.post("Warning", waiting.reason, waiting.message)
            self._waiting_reason = waiting.reason
        await self.write({"phase": self.status().get("phase") or status.PENDING, "message": waiting.message,
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
            self.events.post("Warning", reason, problem)
        self._spec_problem = problem
        await self.write({"conditions": [self.condition("InvalidSpec", problem is not None,
                                                        reason if problem else "SpecAccepted",
                                                        problem or "the live spec is in effect")]})

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
        rate = done / max(self.clock.monotonic() - self._started_at, 1e-9)
        log.info("batch %s: %d of %d items done (%d%%; %d failed), %.1f items/s", self.ref, done, items["total"],
                 reached, items.get("failed", 0), rate,
                 extra={"batch": self.ref, "items_done": done, "items_total": items["total"],
                        "items_failed": items.get("failed", 0), "items_per_second": round(rate, 2)})
