"""The ranges waiting to be invoked again (halves of a failed range, retries, disrupted lines), each with the
attempt to invoke next, taken by start line. Pure, no I/O."""
from __future__ import annotations

import heapq

from oscar_batch.core.items import Lines, Span, overlap


class DispatchQueue:
    def __init__(self) -> None:
        self._attempts: dict[Span, int] = {}   # range -> attempt to invoke next
        self._order: list[Span] = []           # heap of the queued ranges, by start line
        self.lines = Lines()                   # every line of a queued range

    def __contains__(self, span: Span) -> bool:
        return span in self._attempts

    def push(self, span: Span, attempt: int) -> None:
        """Queue this attempt of the range, unless it already waits with this attempt or a newer one."""
        if self._attempts.get(span, 0) >= attempt:
            return
        if span not in self._attempts:
            heapq.heappush(self._order, span)
        self._attempts[span] = attempt
        self.lines.add(*span)

    def remove(self, span: Span) -> None:
        if self._attempts.pop(span, None) is None:
            return
        self._order.remove(span)
        heapq.heapify(self._order)
        self.lines.remove(*span)
        for other in self._attempts:
            if overlap(other, span):
                self.lines.add(*other)

    def drop_within(self, span: Span) -> None:
        """Unqueue every range inside this one: its lines settled."""
        for other in [other for other in self._attempts if span[0] <= other[0] and other[1] <= span[1]]:
            self.remove(other)

    def first(self, count: int) -> list[tuple[Span, int]]:
        """Up to `count` queued ranges with their attempts, lowest start line first."""
        return [(span, self._attempts[span]) for span in heapq.nsmallest(count, self._order)]
