"""Status arithmetic of an OscarBatchJob: pure functions from the item bookkeeping to the `status` patch."""
from __future__ import annotations

import dataclasses
import datetime
import heapq
from collections.abc import Mapping, Sequence
from typing import Any

from oscar_batch.core import chunking, items
from oscar_batch.core.ranges import FailedItem, RangeBook

# Phases, as in the CRD's enum.
PENDING, LISTING, RUNNING, SUSPENDED, SUCCEEDED, FAILED = (
    "Pending", "Listing", "Running", "Suspended", "Succeeded", "Failed")
FINISHED_PHASES = (SUCCEEDED, FAILED)
# Failed items status names one by one (the rest are in `failedItems`, and all in the results manifest).
NAMED_FAILURES = 50
# ... of which the verdict's message names the first few.
NAMED_IN_MESSAGE = 5
# Progressing reasons that say no more than the phase: `status.reason` is absent with them.
PLAIN_REASONS = frozenset({"RangesRunning", "Listing", "Suspended", "Redriven", "AllItemsSucceeded"})
# Characters `completedItems` and `failedItems` may take together in status (each also has the CRD's maxLength of
# 65536). Sets that need more — scattered outcomes over many lines: 10% of 1,000,000 lines failing at random
# takes ~93,000 characters each — are written to the results object, and `itemsAt` says where. With them inline
# the rest of status (rangePlan ≤ 64 KiB, 50 failed items named with keys of ≤ 1 KiB) stays under 256 KiB.
LINE_SETS_BUDGET = 65536
LINE_SETS = ("completedItems", "failedItems")
# The CRD's bounds on status.clusters[].message and status.clusterSummary.
CLUSTER_MESSAGE_LENGTH, CLUSTER_SUMMARY_LENGTH = 1024, 2048


# A batch started by the release that ran a fixed grid of ranges: `status.items` was the item count, the ranges
# were in `ranges`, `completedRanges` and `failedRanges`, and its Jobs were named `<service>-<uid>-r<range>-a<n>`.
PREVIOUS_RELEASE = "UnsupportedPreviousRelease"
PREVIOUS_RELEASE_FIELDS = ("ranges", "completedRanges", "failedRanges")


def previous_release(status: Mapping[str, Any]) -> str | None:
    """What to do about a batch the previous release started, or None for any other. Taking it over would mean
    turning its grid of ranges, attempts and redrive rounds into line sets and halving trees with nothing invoked
    twice; this release does not try."""
    if not isinstance(status.get("items"), int) and not any(field in status for field in PREVIOUS_RELEASE_FIELDS):
        return None
    return ("this batch was started by an earlier release of the operator (fixed ranges: status.items is a count, "
            "Jobs are named -r<range>), which this release cannot take over: finish it with that release, or delete "
            "it and create it again (its inputs are listed anew and run from the start)")


def progress(book: RangeBook, parallelism: int, sizing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The part of status that moves while the batch runs: small for any number of items."""
    counts = book.counts()
    patch: dict[str, Any] = {
        "progress": f"{counts.succeeded}/{counts.total}",
        "parallelism": parallelism,
        "items": {"total": counts.total, "pending": counts.pending, "running": counts.running,
                  "succeeded": counts.succeeded, "failed": counts.failed, "recovered": counts.recovered},
        "invocations": {"total": counts.invocations, "running": counts.in_flight, "retried": counts.retried,
                        "disrupted": counts.disrupted, "reassigned": counts.reassigned,
                        "duplicates": counts.duplicates},
        "completedItems": items.encode(book.succeeded),
        "failedItems": items.encode(book.failed),
        # The first few of what may be hundreds of thousands: not a sort of them all every status interval.
        "failedItemDetails": [failed_item_json(item) for item in heapq.nsmallest(
            NAMED_FAILURES, book.failed_items.values(), key=lambda item: item.line)],
        "rangePlan": book.carves.encode(),
    }
    if sizing is not None:
        patch["sizing"] = dict(sizing)
    return patch


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterReport:
    """One OSCAR cluster of a batch as status shows it (`status.clusters[]`)."""
    name: str
    access: str
    parallelism: int      # invocations it may have in flight, as last planned
    running: int          # invocations in flight on it
    succeeded: int        # items its Jobs succeeded with
    reachable: bool
    message: str = ""

    def json(self) -> dict[str, Any]:
        return {"name": self.name, "access": self.access, "parallelism": self.parallelism, "running": self.running,
                "succeeded": self.succeeded, "reachable": self.reachable,
                "message": self.message[:CLUSTER_MESSAGE_LENGTH]}


def clusters(reports: Sequence[ClusterReport]) -> dict[str, Any]:
    """`status.clusters` and its one line for `kubectl get -o wide` (`status.clusterSummary`)."""
    summary = ", ".join(f"{report.name} {report.running}/{report.parallelism} {report.succeeded} done"
                        + ("" if report.reachable else " unreachable") for report in reports)
    return {"clusters": [report.json() for report in reports], "clusterSummary": summary[:CLUSTER_SUMMARY_LENGTH]}


def sizing(timings: chunking.Timings, fixed: int) -> dict[str, Any]:
    """`status.sizing`: how ranges are sized, and what the batch's own Jobs measured so far."""
    described: dict[str, Any] = {"mode": "Fixed" if fixed else "Adaptive"}
    if timings.startup is not None:
        described["startupSeconds"] = round(timings.startup, 3)
    if timings.per_item is not None:
        described["secondsPerItem"] = round(timings.per_item, 4)
    if not fixed:
        described["minItems"] = chunking.min_items(timings.startup, timings.per_item)
    return described


def line_sets_fit(patch: Mapping[str, Any]) -> bool:
    """Whether the patch's `completedItems` and `failedItems` may go into status as they are."""
    return sum(len(patch.get(key) or "") for key in LINE_SETS) <= LINE_SETS_BUDGET


def line_sets_inline(patch: dict[str, Any]) -> dict[str, Any]:
    """The patch with its line sets in status (and no reference to an older copy elsewhere)."""
    patch["itemsAt"] = None
    return patch


def line_sets_at(patch: dict[str, Any], where: str) -> dict[str, Any]:
    """The patch with its line sets replaced by where they were written (removed from status by the merge)."""
    patch.update({key: None for key in LINE_SETS}, itemsAt=where)
    return patch


def without_line_sets(patch: dict[str, Any]) -> dict[str, Any]:
    """The patch leaving the line sets status holds (or points at) as they are: these could not be recorded."""
    for key in (*LINE_SETS, "itemsAt"):
        patch.pop(key, None)
    return patch


def failed_item_json(item: FailedItem) -> dict[str, Any]:
    described: dict[str, Any] = {"line": item.line, "job": item.job, "reason": item.reason}
    if item.key is not None:
        described["key"] = item.key
    return described


def failed_items_from(status: Mapping[str, Any]) -> list[FailedItem]:
    found = []
    for entry in status.get("failedItemDetails") or ():
        try:
            found.append(FailedItem(int(entry["line"]), str(entry.get("job") or ""), str(entry.get("reason") or ""),
                                    entry.get("key")))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def verdict(book: RangeBook, tolerated_failures: int, unlisted: int = 0, skipped: int = 0) -> tuple[str, str, str]:
    """(phase, reason, message) of a batch that has ended. Inputs left out of the manifest (`unlisted`) were
    never processed: they count against the tolerated failures as failed items do. Inputs left out because their
    outputs exist (`skipped`) are done: they are only mentioned."""
    counts = book.counts()
    left_out = f"{unlisted} input(s) left out of the manifest (a line break in the key; status.unlistedItems)"
    if counts.total == 0 and skipped and not unlisted:
        return SUCCEEDED, "AllOutputsExist", (f"every input ({skipped}) already has its outputs (spec.outputs): "
                                              "nothing to invoke; the results say where their keys are")
    if counts.total == 0:
        if not unlisted:
            return SUCCEEDED, "NoInputs", "no input matched the prefix and filters: nothing to do"
        if unlisted <= tolerated_failures:
            return SUCCEEDED, "InputsUnlistedTolerated", f"nothing to do: {left_out}, tolerated"
        return FAILED, "InputsUnlisted", f"no input can be a manifest line: {left_out}"
    also = f"; {left_out}" if unlisted else ""
    if book.broken:
        return FAILED, "ServiceFailing", f"{counts.succeeded} of {counts.total} items succeeded; {book.broken}{also}"
    if counts.failed + unlisted <= tolerated_failures:
        tolerated = f"; {counts.failed} failed item(s) tolerated" if counts.failed else ""
        reason = ("FailuresTolerated" if counts.failed else "InputsUnlistedTolerated" if unlisted
                  else "AllItemsSucceeded")
        done_before = f"; {skipped} input(s) skipped, their outputs exist" if skipped else ""
        return SUCCEEDED, reason, f"{counts.succeeded} of {counts.total} items succeeded{tolerated}{also}{done_before}"
    if counts.failed <= tolerated_failures:
        failed = f"{counts.failed} failed item(s) and " if counts.failed else ""
        return FAILED, "InputsUnlisted", (
            f"{counts.succeeded} of {counts.total} items succeeded, but {failed}{left_out} are more than the "
            f"{tolerated_failures} tolerated")
    failed_items = sorted(book.failed_items.values(), key=lambda item: item.line)
    named = ", ".join(_describe(item) for item in failed_items[:NAMED_IN_MESSAGE])
    more = f" and {counts.failed - NAMED_IN_MESSAGE} more" if counts.failed > NAMED_IN_MESSAGE else ""
    return FAILED, "ItemsFailed", (
        f"{counts.failed} item(s) failed after {book.retries + 1} attempt(s) each, more than the "
        f"{tolerated_failures} tolerated; {counts.succeeded} of {counts.total} succeeded{also}. "
        f"Failed: {named}{more}")


def _describe(item: FailedItem) -> str:
    what = f"line {item.line}" + (f" ({item.key})" if item.key else "")
    return f"{what}: {item.reason} in Job {item.job}"


def needs_controller(spec: Mapping[str, Any], status: Mapping[str, Any], generation: int) -> bool:
    """Whether a batch has work for the operator: it is not finished, or it was redriven or edited since it
    finished (a new `toleratedFailures` may change its verdict)."""
    if status.get("phase") not in FINISHED_PHASES:
        return True
    redrive = spec.get("redrive") or 0
    if isinstance(redrive, int) and not isinstance(redrive, bool) and redrive > (status.get("redrive") or 0):
        return True
    return status.get("observedGeneration") != generation


def condition(kind: str, status: bool, reason: str, message: str, now: str,
              generation: int | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"type": kind, "status": "True" if status else "False", "reason": reason,
                              "message": message, "lastTransitionTime": now}
    if generation is not None:
        result["observedGeneration"] = generation
    return result


def merge_conditions(current: Sequence[Mapping[str, Any]] | None,
                     updates: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Replace conditions by type, keeping lastTransitionTime when the status did not flip."""
    merged = {c["type"]: dict(c) for c in current or ()}
    for update in updates:
        previous = merged.get(update["type"])
        new = dict(update)
        if previous is not None and previous.get("status") == new["status"]:
            new["lastTransitionTime"] = previous.get("lastTransitionTime", new["lastTransitionTime"])
        merged[update["type"]] = new
    return list(merged.values())


def explaining_reason(conditions: Sequence[Mapping[str, Any]] | None) -> str | None:
    """`status.reason`, kubectl's REASON column: what explains the phase. A live spec edit the batch ignores
    comes first (it needs a person even while ranges run), then the `Progressing` reason (what the batch waits
    for, or its verdict) unless it says no more than the phase; None while the batch plainly runs."""
    by_type = {c.get("type"): c for c in conditions or ()}
    invalid = by_type.get("InvalidSpec") or {}
    if invalid.get("status") == "True":
        return str(invalid.get("reason") or "InvalidSpec")
    reason = (by_type.get("Progressing") or {}).get("reason")
    return None if not reason or reason in PLAIN_REASONS else str(reason)


@dataclasses.dataclass(frozen=True)
class Summary:
    """A batch at a glance, from its status alone (for `oscar-batch status`)."""
    total: int
    succeeded: int
    failed: int
    running: int
    queued: int
    elapsed: float | None        # seconds since startTime (until completionTime once finished)
    rate: float | None           # items settled per second so far
    eta: float | None            # seconds left at that rate, None when unknown or finished

    @property
    def settled(self) -> int:
        return self.succeeded + self.failed

    @property
    def fraction(self) -> float:
        return self.settled / self.total if self.total else 0.0


def summary(status: Mapping[str, Any], now: datetime.datetime) -> Summary:
    items = status.get("items")
    items = items if isinstance(items, Mapping) else {}   # a count: see previous_release
    invocations = status.get("invocations") or {}
    total, succeeded, failed = (int(items.get(key) or 0) for key in ("total", "succeeded", "failed"))
    started, completed = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    elapsed = ((completed or now) - started).total_seconds() if started else None
    settled = succeeded + failed
    rate = settled / elapsed if elapsed and elapsed > 0 and settled else None
    eta = (total - settled) / rate if rate and not completed and status.get("phase") not in FINISHED_PHASES else None
    return Summary(total, succeeded, failed, int(invocations.get("running") or 0), int(invocations.get("queued") or 0),
                   elapsed, rate, eta)


def parse_time(value: Any) -> datetime.datetime | None:
    """A Kubernetes or OSCAR timestamp ("…Z" or with an offset); None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
