"""Status arithmetic of an OscarBatchJob: pure functions from the range table to the `status` patch."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from oscar_batch.core.ranges import RangeBook, encode_indexes

# Phases, as in the CRD's enum.
PENDING, LISTING, RUNNING, SUSPENDED, SUCCEEDED, FAILED = (
    "Pending", "Listing", "Running", "Suspended", "Succeeded", "Failed")
FINISHED_PHASES = (SUCCEEDED, FAILED)
# How many failed ranges the status names in its message; the rest are in `failedRanges`.
NAMED_FAILURES = 10


def progress(book: RangeBook, parallelism: int) -> dict[str, Any]:
    """The part of status that moves while ranges run: small for any number of ranges."""
    counts = book.counts()
    return {
        "progress": f"{counts.succeeded}/{counts.total}",
        "parallelism": parallelism,
        "ranges": {"total": counts.total, "pending": counts.pending, "running": counts.running,
                   "succeeded": counts.succeeded, "failed": counts.failed, "retried": counts.retried},
        "completedRanges": encode_indexes(book.succeeded()),
        "failedRanges": encode_indexes(book.failed()),
    }


def verdict(book: RangeBook, tolerated_failures: int) -> tuple[str, str, str]:
    """(phase, reason, message) of a batch whose ranges have all ended."""
    failed = sorted(book.failed())
    total = book.total
    if total == 0:
        return SUCCEEDED, "NoInputs", "no input matched the prefix and filters: nothing to do"
    if len(failed) <= tolerated_failures:
        tolerated = f"; {len(failed)} failed range(s) tolerated" if failed else ""
        return SUCCEEDED, "AllRangesSucceeded" if not failed else "FailuresTolerated", (
            f"{total - len(failed)} of {total} ranges succeeded{tolerated}")
    named = ", ".join(_describe(book, index) for index in failed[:NAMED_FAILURES])
    more = f" and {len(failed) - NAMED_FAILURES} more" if len(failed) > NAMED_FAILURES else ""
    return FAILED, "RangesFailed", (
        f"{len(failed)} range(s) failed after {book.retries + 1} attempt(s) each, more than the "
        f"{tolerated_failures} tolerated: {named}{more}")


def _describe(book: RangeBook, index: int) -> str:
    start, end = book.bounds(index)
    return f"range {index} (lines {start}-{end - 1})"


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
