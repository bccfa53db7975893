"""Which finished Jobs of a batch may be deleted. Pure, no I/O.

A Job may go once every line of its range settled (and status records that): a succeeded range's Jobs when it
succeeds; a failed Job stays as evidence (`kubectl logs`) until every line of its range settled, through its
halves, retries or a later success.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from oscar_batch.core.items import Span, overlap


class JobsToClean:
    def __init__(self, settled: Callable[[Span], bool]) -> None:
        self._settled = settled                      # whether every line of a range settled
        self._evidence: dict[Span, list[str]] = {}   # failed Jobs kept until every line of theirs settles
        self._cleanable: dict[str, None] = {}        # an ordered set

    def failed(self, span: Span, job: str) -> None:
        """This Job of the range failed: keep it until every line of the range settled."""
        jobs = self._evidence.setdefault(span, [])
        if job not in jobs:
            jobs.append(job)

    def settled(self, span: Span, jobs: Iterable[str]) -> None:
        """Lines of `span` settled (`jobs`: every Job of that range): the Jobs of each range now wholly settled may
        go."""
        done = [other for other in self._evidence if overlap(other, span) and self._settled(other)]
        for other in done:
            self._cleanable.update(dict.fromkeys(self._evidence.pop(other)))
        if self._settled(span):
            self._cleanable.update(dict.fromkeys(jobs))

    def take(self) -> list[str]:
        """The Jobs that may go since the last call: once status records their lines, they can be deleted."""
        taken, self._cleanable = list(self._cleanable), {}
        return taken
