"""The results manifest written at the end of a batch: the lines that succeeded, every failed item with its
input and reason, and every range invoked with its Jobs and times. Pure."""
from __future__ import annotations

from typing import Any

from oscar_batch.core import items
from oscar_batch.core.ranges import RangeBook
from oscar_batch.core.status import failed_item_json


def results(book: RangeBook, *, batch: str, uid: str, service: str, phase: str, manifest: str) -> dict[str, Any]:
    counts = book.counts()
    ranges = [{"start": start, "end": end, "outcome": record.outcome.value, "jobs": record.jobs,
               "started": record.started, "finished": record.finished}
              for (start, end), record in sorted(book.records.items())]
    return {"batch": batch, "uid": uid, "service": service, "phase": phase, "manifest": manifest,
            "items": {"total": counts.total, "succeeded": counts.succeeded, "failed": counts.failed,
                      "pending": counts.pending},
            "redrive": book.redrive_round, "succeededItems": items.encode(book.succeeded),
            "failedItems": [failed_item_json(item) for item in sorted(book.failed_items.values(),
                                                                      key=lambda item: item.line)],
            "ranges": ranges}
