"""What one run of a batch's loop keeps between passes, in one typed value: the live spec, what it resolved to,
the range book, how the batch is paced and sized, and what it last planned."""
from __future__ import annotations

import dataclasses
from typing import Any

from oscar_batch.controller.job_store import BatchKey
from oscar_batch.controller.resolver import Peers, Service
from oscar_batch.core import chunking, status
from oscar_batch.core.cadence import Cadence
from oscar_batch.core.keys import Listing
from oscar_batch.core.ranges import RangeBook
from oscar_batch.core.spec import BatchSpec


@dataclasses.dataclass(kw_only=True)
class BatchState:
    spec: BatchSpec              # the live spec, with the fields pinned at start put back
    key: BatchKey                # whose Jobs are the batch's
    peers: Peers
    service: Service
    listing: Listing             # what the manifest lists and leaves out
    book: RangeBook
    cadence: Cadence
    timings: chunking.Timings = dataclasses.field(default_factory=chunking.Timings)
    parallelism: int = 0         # ranges it may have in flight, as last planned
    planned: str = ""            # why: the Progressing message
    settled_shown: bool = False  # status shows every line settled: only the results and the verdict are left

    def progress(self, parallelism: int | None = None) -> dict[str, Any]:
        """The moving part of status (`status.progress`), at the planned parallelism unless told otherwise."""
        return status.progress(self.book, self.parallelism if parallelism is None else parallelism,
                               status.sizing(self.timings, self.spec.items_per_invocation))
