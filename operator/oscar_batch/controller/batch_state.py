"""What one run of a batch's loop keeps between passes, in one typed value: the live spec, what it resolved to,
the range book, how the batch is paced and sized, and what it last planned."""
from __future__ import annotations

import dataclasses
from typing import Any

from oscar_batch.controller.oscar_clusters import OscarCluster
from oscar_batch.controller.resolver import Peers
from oscar_batch.core import chunking, status
from oscar_batch.core.cadence import Cadence
from oscar_batch.core.keys import Listing
from oscar_batch.core.ranges import RangeBook
from oscar_batch.core.spec import BatchSpec


@dataclasses.dataclass(kw_only=True)
class BatchState:
    spec: BatchSpec              # the live spec, with the fields pinned at start put back
    clusters: list[OscarCluster]  # where the service is invoked, in the spec's order
    peers: Peers
    listing: Listing             # what the manifest lists and leaves out
    book: RangeBook
    cadence: Cadence
    timings: chunking.Timings = dataclasses.field(default_factory=chunking.Timings)
    planned: str = ""            # why: the Progressing message
    settled_shown: bool = False  # status shows every line settled: only the results and the verdict are left

    @property
    def parallelism(self) -> int:
        """Ranges it may have in flight, as last planned, on all its clusters."""
        return sum(cluster.parallelism for cluster in self.clusters)

    def progress(self, parallelism: int | None = None) -> dict[str, Any]:
        """The moving part of status (`status.progress`, `status.clusters`), at the planned parallelism unless
        told otherwise (0: none, on any cluster)."""
        patch = status.progress(self.book, self.parallelism if parallelism is None else parallelism,
                                status.sizing(self.timings, self.spec.items_per_invocation))
        running = self.book.in_flight.by_cluster()
        patch.update(status.clusters([status.ClusterReport(
            name=cluster.name, access=cluster.spec.access, parallelism=0 if parallelism == 0 else cluster.parallelism,
            running=running.get(cluster.name, 0), succeeded=cluster.succeeded, reachable=cluster.reachable,
            message=cluster.problem or cluster.planned) for cluster in self.clusters]))
        return patch
