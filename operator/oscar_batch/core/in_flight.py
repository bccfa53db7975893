"""The ranges of a batch running now. Pure, no I/O.

Each running range has one attempt in flight; for the ones this run invoked, when OSCAR accepted it and whether
its Job has shown yet (the only record of acceptance times: start-up is measured from it, and an invocation
whose Job never shows is looked up in OSCAR after a while). Ranges may overlap after a restart (a Job of an
older halving seen beside its halves), so the lines running are kept apart from the ranges.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from oscar_batch.core.items import Lines, Span, overlap


@dataclasses.dataclass(slots=True)
class InFlight:
    """A running attempt of a range."""
    attempt: int
    accepted_at: float | None = None    # when OSCAR accepted it, if this run invoked it
    job_seen: bool = True               # its Job has shown (to the watch, or OSCAR's listing)
    rechecked_at: float | None = None   # when OSCAR last said it knows the invocation whose Job has not shown
    cluster: str = ""                   # the OSCAR cluster it runs on

    def unseen_since(self) -> float | None:
        """Since when its Job is overdue, counting from acceptance or OSCAR's last word; None once it showed."""
        if self.job_seen or self.accepted_at is None:
            return None
        return self.rechecked_at if self.rechecked_at is not None else self.accepted_at


class InFlightRanges:
    def __init__(self) -> None:
        self._ranges: dict[Span, InFlight] = {}
        self.lines = Lines()        # the lines some running range holds
        self._widths = 0            # lines of the running ranges counted one by one: more than `lines` on overlaps

    def __len__(self) -> int:
        return len(self._ranges)

    def __contains__(self, key: Span) -> bool:
        return key in self._ranges

    def __iter__(self) -> Iterator[tuple[Span, InFlight]]:
        return iter(self._ranges.items())

    def get(self, key: Span) -> InFlight | None:
        return self._ranges.get(key)

    def start(self, key: Span, attempt: int, *, cluster: str, accepted_at: float | None = None) -> None:
        """The attempt runs on `cluster`: invoked by this run at `accepted_at`, or seen running (its Job has
        shown)."""
        if key not in self._ranges:
            self._widths += key[1] - key[0]
        self._ranges[key] = InFlight(attempt, accepted_at=accepted_at, job_seen=accepted_at is None, cluster=cluster)
        self.lines.add(*key)

    def seen(self, key: Span, attempt: int) -> None:
        """The Job of this attempt showed."""
        in_flight = self._ranges.get(key)
        if in_flight is not None and in_flight.attempt == attempt:
            in_flight.job_seen = True

    def stop(self, key: Span) -> None:
        overlapping = len(self.lines) != self._widths
        if self._ranges.pop(key, None) is not None:
            self._widths -= key[1] - key[0]
        self.lines.remove(*key)
        if overlapping:   # keep the lines that overlapping ranges still run
            for other in self._ranges:
                if overlap(other, key):
                    self.lines.add(*other)

    def accepted_at(self, key: Span) -> float | None:
        """When OSCAR accepted the running attempt of this range, if this run invoked it."""
        in_flight = self._ranges.get(key)
        return in_flight.accepted_at if in_flight is not None else None

    def overdue(self, deadline: float) -> list[tuple[Span, int, str]]:
        """(range, attempt, cluster) of the invocations accepted before `deadline` whose Job never showed."""
        return [(key, in_flight.attempt, in_flight.cluster) for key, in_flight in self._ranges.items()
                if (since := in_flight.unseen_since()) is not None and since <= deadline]

    def still_unseen(self, key: Span, now: float) -> None:
        """OSCAR still knows the invocation: its Job is overdue only a while after `now`."""
        in_flight = self._ranges.get(key)
        if in_flight is not None and in_flight.unseen_since() is not None:
            in_flight.rechecked_at = now

    def by_cluster(self) -> dict[str, int]:
        """Ranges in flight on each cluster."""
        counted: dict[str, int] = {}
        for in_flight in self._ranges.values():
            counted[in_flight.cluster] = counted.get(in_flight.cluster, 0) + 1
        return counted

    def on(self, cluster: str) -> list[tuple[Span, int]]:
        """(range, attempt) of what runs on `cluster`."""
        return [(key, in_flight.attempt) for key, in_flight in self._ranges.items() if in_flight.cluster == cluster]

    def attempts(self) -> dict[Span, int]:
        return {key: in_flight.attempt for key, in_flight in self._ranges.items()}
