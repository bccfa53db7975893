"""Ranges of the manifest and their bookkeeping: pure, no I/O.

A batch of N manifest lines is cut into ranges of k lines. Range i (0-based) covers lines
[1 + i·k, min(1 + (i+1)·k, N + 1)): 1-based and end-exclusive, exactly the `start`/`end` the original
OSCAR-Batch coordinator sent, so existing service scripts keep working.

Each range moves pending → running → succeeded, or → failed and back to pending while retries last.
`RangeBook` holds that table; it is rebuilt on restart from the compact lists kept in status plus the
Jobs found in the cluster, so nothing finished is ever invoked again.
"""
from __future__ import annotations

import base64
import dataclasses
import enum
import heapq
import math
import zlib
from collections.abc import Iterable, Iterator

# Keep every slot busy this many times over: stragglers and failures then re-balance across slots
# instead of one slow range holding a whole share of the batch.
WAVES = 4
MAX_RANGES = 100_000
# Index lists longer than this are also tried as a compressed bitmap (`z:<base64>`), and the shorter is kept:
# a scattered set (every third range done, say) would otherwise grow with the number of ranges.
RUNS_BUDGET = 1024
BITMAP_PREFIX = "z:"
MAX_BITMAP_BYTES = 1 << 20   # 8,388,608 indexes: far above MAX_RANGES, and a bound on what decoding inflates


def choose_items_per_invocation(items: int, slots: int, waves: int = WAVES, max_ranges: int = MAX_RANGES) -> int:
    """Lines per range when the user left it to us: about `waves` ranges per slot, at most `max_ranges` ranges."""
    if items <= 0:
        return 1
    wanted_ranges = max(1, slots) * waves
    return max(1, math.ceil(items / wanted_ranges), math.ceil(items / max_ranges))


def range_count(items: int, per_range: int) -> int:
    return math.ceil(items / per_range) if items > 0 else 0


def range_bounds(index: int, items: int, per_range: int) -> tuple[int, int]:
    """The 1-based, end-exclusive manifest lines of range `index`."""
    start = 1 + index * per_range
    return start, min(start + per_range, items + 1)


def encode_indexes(indexes: Iterable[int]) -> str:
    """Compact run-length form, as Kubernetes Indexed Jobs write completedIndexes: `0-41,43,45-46`.

    When that passes RUNS_BUDGET characters and a zlib-compressed bitmap is shorter, the bitmap is written
    instead as `z:<base64>` (bit i, least significant bit of each byte first, is index i): at most ~17 KB
    for 100,000 ranges whatever the pattern, so status stays small.
    """
    ordered = sorted(set(indexes))
    runs: list[str] = []
    first = last = None
    for index in ordered:
        if last is not None and index == last + 1:
            last = index
            continue
        if first is not None:
            runs.append(_run(first, last))
        first = last = index
    if first is not None:
        runs.append(_run(first, last))
    text = ",".join(runs)
    if len(text) > RUNS_BUDGET and 0 <= ordered[0] and ordered[-1] < MAX_BITMAP_BYTES * 8:
        bitmap = _bitmap(ordered)
        if len(bitmap) < len(text):
            return bitmap
    return text


def _run(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def _bitmap(ordered: list[int]) -> str:
    bits = bytearray(ordered[-1] // 8 + 1)
    for index in ordered:
        bits[index >> 3] |= 1 << (index & 7)
    return BITMAP_PREFIX + base64.b64encode(zlib.compress(bytes(bits), 9)).decode("ascii")


def decode_indexes(text: str | None) -> Iterator[int]:
    """Inverse of `encode_indexes`; raises ValueError on anything else."""
    text = (text or "").strip()
    if text.startswith(BITMAP_PREFIX):
        yield from _from_bitmap(text[len(BITMAP_PREFIX):])
        return
    for run in text.split(","):
        run = run.strip()
        if not run:
            continue
        first, separator, last = run.partition("-")
        low = int(first)
        high = int(last) if separator else low
        if low < 0 or high < low:
            raise ValueError(f"bad index run {run!r}")
        yield from range(low, high + 1)


def _from_bitmap(encoded: str) -> Iterator[int]:
    try:
        inflater = zlib.decompressobj()
        bits = inflater.decompress(base64.b64decode(encoded, validate=True), MAX_BITMAP_BYTES)
    except (ValueError, zlib.error) as error:
        raise ValueError(f"bad index bitmap: {error}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError("bad index bitmap: truncated or larger than allowed")
    for position, byte in enumerate(bits):
        if byte:
            yield from (position * 8 + bit for bit in range(8) if byte >> bit & 1)


class State(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Outcome(enum.Enum):
    """What a Job says about one attempt of a range."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclasses.dataclass
class RangeRecord:
    """What the results manifest says of a range that was ever invoked."""
    attempts: int = 0
    jobs: list[str] = dataclasses.field(default_factory=list)
    started: str | None = None
    finished: str | None = None


@dataclasses.dataclass(frozen=True)
class Counts:
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    retried: int


class RangeBook:
    """The state of every range of one batch. Ranges never invoked cost no memory."""

    def __init__(self, items: int, per_range: int, retries: int) -> None:
        if per_range < 1:
            raise ValueError("per_range must be at least 1")
        self.items = items
        self.per_range = per_range
        self.retries = retries
        self.total = range_count(items, per_range)
        self._next_fresh = 0                 # ranges >= this were never invoked
        self._retry_queue: list[int] = []    # heap of ranges waiting for another attempt
        self._running: dict[int, int] = {}   # range -> attempt in flight
        self._succeeded: set[int] = set()
        self._failed: set[int] = set()
        self._attempts: dict[int, int] = {}  # range -> attempts started
        self.records: dict[int, RangeRecord] = {}
        self.retried = 0

    def bounds(self, index: int) -> tuple[int, int]:
        return range_bounds(index, self.items, self.per_range)

    def restore(self, succeeded: Iterable[int], failed: Iterable[int]) -> None:
        """Take back what a previous run of the operator recorded in status."""
        for index in succeeded:
            if 0 <= index < self.total:  # anything else would break pending + ... == total and done()
                self._settle(index, State.SUCCEEDED)
        for index in failed:
            if 0 <= index < self.total and index not in self._succeeded:
                self._settle(index, State.FAILED)

    def state(self, index: int) -> State:
        if index in self._succeeded:
            return State.SUCCEEDED
        if index in self._failed:
            return State.FAILED
        if index in self._running:
            return State.RUNNING
        return State.PENDING

    def attempts(self, index: int) -> int:
        return self._attempts.get(index, 0)

    def observe(self, index: int, attempt: int, outcome: Outcome, job: str | None = None,
                started: str | None = None, finished: str | None = None) -> State | None:
        """Fold in what a Job says of one attempt. Returns the range's new state when it changed, else None.

        Observations may repeat and arrive out of order (a restart lists every Job again): a success of
        any attempt wins; a failure counts only for the attempt in flight or, on restart, the newest one.
        """
        if not 0 <= index < self.total or attempt < 1:
            return None
        record = self.records.setdefault(index, RangeRecord())
        if job and job not in record.jobs:
            record.jobs.append(job)
        record.started = record.started or started
        before = self.state(index)
        if before in (State.SUCCEEDED, State.FAILED) and outcome != Outcome.SUCCEEDED:
            return None
        if attempt > self._attempts.get(index, 0):
            self._attempts[index] = attempt
            self._unqueue(index)
        if outcome == Outcome.SUCCEEDED:
            record.finished = finished
            self._settle(index, State.SUCCEEDED)
        elif outcome == Outcome.RUNNING:
            if attempt == self._attempts[index]:
                self._running[index] = attempt
        elif attempt == self._attempts[index]:
            record.finished = finished
            self._running.pop(index, None)
            if attempt > self.retries:
                self._settle(index, State.FAILED)
            elif index not in self._retry_queue:
                heapq.heappush(self._retry_queue, index)
                self.retried += 1
        after = self.state(index)
        return after if after != before else None

    def dispatch_failed(self, index: int) -> None:
        """The invocation never reached OSCAR: the range is pending again and the attempt is not spent."""
        if index in self._running and self._running[index] == self._attempts.get(index):
            del self._running[index]
            self._attempts[index] -= 1
            heapq.heappush(self._retry_queue, index)

    def next_to_dispatch(self, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` (range, attempt) pairs to invoke now, marked running. Retries go first."""
        chosen: list[tuple[int, int]] = []
        while len(chosen) < limit:
            if self._retry_queue:
                index = heapq.heappop(self._retry_queue)
            elif self._next_fresh < self.total:
                index = self._next_fresh
                self._next_fresh += 1
                if self.state(index) != State.PENDING or index in self._attempts:
                    continue
            else:
                break
            attempt = self._attempts.get(index, 0) + 1
            self._attempts[index] = attempt
            self._running[index] = attempt
            chosen.append((index, attempt))
        return chosen

    def running(self) -> dict[int, int]:
        return dict(self._running)

    def succeeded(self) -> set[int]:
        return set(self._succeeded)

    def failed(self) -> set[int]:
        return set(self._failed)

    def counts(self) -> Counts:
        running, succeeded, failed = len(self._running), len(self._succeeded), len(self._failed)
        return Counts(total=self.total, pending=self.total - running - succeeded - failed, running=running,
                      succeeded=succeeded, failed=failed, retried=self.retried)

    def done(self) -> bool:
        return len(self._succeeded) + len(self._failed) == self.total

    def _settle(self, index: int, state: State) -> None:
        self._running.pop(index, None)
        self._unqueue(index)
        self._failed.discard(index)
        (self._succeeded if state == State.SUCCEEDED else self._failed).add(index)

    def _unqueue(self, index: int) -> None:
        if index in self._retry_queue:
            self._retry_queue.remove(index)
            heapq.heapify(self._retry_queue)
