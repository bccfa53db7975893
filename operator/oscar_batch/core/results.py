"""The results object of a batch: what its lines came to, written at the end and, while it runs, whenever its
line sets are too large for status (`status.itemsAt` then points at it). Pure.

Both forms carry the batch, its counts and the line sets, `succeededItems` and `failedLines`, in the encoding of
status (`items.encode`); the final one adds every failed item with its input and reason, every input left out of
the manifest with its reason, and every range invoked with its Jobs and times; how many inputs were skipped
because their outputs existed, and where their keys are (`skippedItemsAt`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from oscar_batch.core import items
from oscar_batch.core.items import Lines
from oscar_batch.core.keys import Unlisted
from oscar_batch.core.ranges import RangeBook
from oscar_batch.core.status import failed_item_json


def results(book: RangeBook, *, batch: str, uid: str, service: str, phase: str, manifest: str,
            unlisted: int = 0, unlisted_items: Sequence[Unlisted] = (), skipped: int = 0,
            skipped_at: str | None = None) -> dict[str, Any]:
    """The final results: the line sets, every failed item, every input left out and every range.
    `unlisted_items` are the inputs left out of the manifest as far as they are known: all `unlisted` of them,
    unless the object naming them was deleted (then those status kept). The `skipped` inputs (their outputs
    existed) are named in the object at `skipped_at`, a JSON array of keys, not here: they may be millions."""
    ranges = [{"start": start, "end": end, "outcome": record.outcome.value, "jobs": record.jobs,
               "started": record.started, "finished": record.finished}
              for (start, end), record in sorted(book.records.items())]
    document = line_sets(book, batch=batch, uid=uid, service=service, phase=phase, manifest=manifest,
                         succeeded=items.encode(book.succeeded), failed=items.encode(book.failed))
    document["items"]["unlisted"] = unlisted
    document["items"]["skipped"] = skipped
    if skipped_at is not None:
        document["skippedItemsAt"] = skipped_at
    return {**document,
            "failedItems": [failed_item_json(item) for item in sorted(book.failed_items.values(),
                                                                      key=lambda item: item.line)],
            "unlistedItems": [entry.json() for entry in unlisted_items],
            "ranges": ranges}


def line_sets(book: RangeBook, *, batch: str, uid: str, service: str, phase: str, manifest: str,
              succeeded: str, failed: str) -> dict[str, Any]:
    """The results while the batch runs: its counts and line sets (`succeeded`, `failed`: as encoded)."""
    counts = book.counts()
    return {"batch": batch, "uid": uid, "service": service, "phase": phase, "manifest": manifest,
            "items": {"total": counts.total, "succeeded": counts.succeeded, "failed": counts.failed,
                      "pending": counts.pending},
            "redrive": book.redrive_round, "succeededItems": succeeded, "failedLines": failed}


def line_sets_from(document: Mapping[str, Any], uid: str) -> tuple[Lines, Lines]:
    """(succeeded, failed) lines of a results object this batch wrote; ValueError for anything else."""
    if document.get("uid") != uid:
        raise ValueError(f"the results object was written by batch {document.get('batch', '?')!s}, not this one")
    if not isinstance(document.get("succeededItems"), str) or not isinstance(document.get("failedLines"), str):
        raise ValueError("the results object holds no line sets")
    return items.decode(document["succeededItems"]), items.decode(document["failedLines"])
