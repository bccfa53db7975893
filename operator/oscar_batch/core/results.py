"""The results manifest written at the end of a batch: the lines that succeeded, every failed item with its
input and reason, every input left out of the manifest with its reason, and every range invoked with its Jobs
and times. Pure."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oscar_batch.core import items
from oscar_batch.core.keys import Unlisted
from oscar_batch.core.ranges import RangeBook
from oscar_batch.core.status import failed_item_json


def results(book: RangeBook, *, batch: str, uid: str, service: str, phase: str, manifest: str,
            unlisted: int = 0, unlisted_items: Sequence[Unlisted] = ()) -> dict[str, Any]:
    """`unlisted_items` are the inputs left out of the manifest as far as they are known: all `unlisted` of them,
    unless the object naming them was deleted (then those status kept)."""
    counts = book.counts()
    ranges = [{"start": start, "end": end, "outcome": record.outcome.value, "jobs": record.jobs,
               "started": record.started, "finished": record.finished}
              for (start, end), record in sorted(book.records.items())]
    return {"batch": batch, "uid": uid, "service": service, "phase": phase, "manifest": manifest,
            "items": {"total": counts.total, "succeeded": counts.succeeded, "failed": counts.failed,
                      "pending": counts.pending, "unlisted": unlisted},
            "redrive": book.redrive_round, "succeededItems": items.encode(book.succeeded),
            "failedItems": [failed_item_json(item) for item in sorted(book.failed_items.values(),
                                                                      key=lambda item: item.line)],
            "unlistedItems": [entry.json() for entry in unlisted_items],
            "ranges": ranges}
