"""The results manifest written at the end of a batch: per range its lines, state, attempts, Jobs and times. Pure."""
from __future__ import annotations

from typing import Any

from oscar_batch.core.ranges import RangeBook


def results(book: RangeBook, *, batch: str, uid: str, service: str, phase: str, manifest: str) -> dict[str, Any]:
    ranges = []
    for index in range(book.total):
        start, end = book.bounds(index)
        record = book.records.get(index)
        ranges.append({"range": index, "start": start, "end": end, "state": book.state(index).value,
                       "attempts": book.attempts(index), "jobs": record.jobs if record else [],
                       "started": record.started if record else None,
                       "finished": record.finished if record else None})
    return {"batch": batch, "uid": uid, "service": service, "phase": phase, "manifest": manifest,
            "items": book.items, "itemsPerInvocation": book.per_range, "redrive": book.redrive_round,
            "ranges": ranges}
