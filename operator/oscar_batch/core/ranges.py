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
    spans: list[list[int]] = []   # [first, last] of each run
    for index in ordered:
        if spans and index == spans[-1][1] + 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    runs = [_run(first, last) for first, last in spans]
    text = ",".join(runs)
    if len(text) > RUNS_BUDGET and ordered[0] >= 0 and ordered[-1] < MAX_BITMAP_BYTES * 8:
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
    """The state of every range of one batch. Ranges never invoked cost no memory.

    A range is running only once OSCAR accepted its invocation (`invoked`) or its Job was seen (`observe`):
    choosing what to dispatch (`next_to_dispatch`) changes nothing, so an invocation that never reached OSCAR
    leaves no trace. Failures count per redrive round: `redrive` gives the failed ranges a fresh set of retries,
    and the Jobs of earlier rounds, seen again after a restart, do not spend them.
    """

    def __init__(self, items: int, per_range: int, retries: int, redrive_round: int = 0) -> None:
        if per_range < 1:
            raise ValueError("per_range must be at least 1")
        self.items = items
        self.per_range = per_range
        self.retries = retries
        self.redrive_round = redrive_round
        self.total = range_count(items, per_range)
        self._next_fresh = 0                 # ranges >= this were never invoked
        self._retry_queue: list[int] = []    # heap of ranges waiting for another attempt
        self._running: dict[int, int] = {}   # range -> attempt in flight
        self._succeeded: set[int] = set()
        self._failed: set[int] = set()
        self._attempts: dict[int, int] = {}  # range -> newest attempt invoked or seen
        self._failures: dict[int, set[int]] = {}   # range -> attempts that failed in this round
        self._unseen: dict[int, float] = {}  # range -> when OSCAR accepted it, until its Job is seen
        self.records: dict[int, RangeRecord] = {}
        self.retried = 0
        self.lost = 0
        self._cleanable: list[str] = []      # Jobs of settled ranges, not yet handed out for deletion

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
                started: str | None = None, finished: str | None = None,
                redrive_round: int | None = None) -> State | None:
        """Fold in what a Job says of one attempt. Returns the range's new state when it changed, else None.

        Observations may repeat and arrive out of order (a restart lists every Job again): a success of
        any attempt wins; every failed attempt of this round counts once, and the range fails for good when
        they exceed `retries` and no newer attempt is in flight.
        """
        if not 0 <= index < self.total or attempt < 1:
            return None
        record = self.records.setdefault(index, RangeRecord())
        new_job = job is not None and job not in record.jobs
        if job is not None and new_job:
            record.jobs.append(job)
        record.started = record.started or started
        if self._running.get(index) == attempt:
            self._unseen.pop(index, None)
        before = self.state(index)
        if before in (State.SUCCEEDED, State.FAILED):
            if job is not None and new_job:
                self._cleanable.append(job)  # e.g. seen again after a restart: its range is settled already
            if outcome != Outcome.SUCCEEDED:
                return None
        if attempt > self._attempts.get(index, 0):
            self._attempts[index] = attempt
            self._unqueue(index)
            self._unseen.pop(index, None)
            if outcome != Outcome.RUNNING:
                self._running.pop(index, None)
        if outcome == Outcome.SUCCEEDED:
            record.finished = finished
            self._settle(index, State.SUCCEEDED)
        elif outcome == Outcome.RUNNING:
            if attempt == self._attempts[index]:
                self._running[index] = attempt
        else:
            counted = redrive_round is None or redrive_round == self.redrive_round
            failures = self._failures.setdefault(index, set())
            newly_counted = counted and attempt not in failures
            if counted:
                failures.add(attempt)
            if attempt == self._attempts[index]:
                record.finished = finished
                self._running.pop(index, None)
            if index in self._running:
                pass  # a newer attempt is in flight: it decides
            elif len(failures) > self.retries:
                self._settle(index, State.FAILED)
            elif index not in self._retry_queue:
                heapq.heappush(self._retry_queue, index)
                self.retried += int(newly_counted)
        after = self.state(index)
        if after != before and after in (State.SUCCEEDED, State.FAILED):
            self._cleanable.extend(record.jobs)
        return after if after != before else None

    def take_cleanable(self) -> list[str]:
        """Jobs whose range has settled since the last call: once status records that, they can go."""
        taken, self._cleanable = self._cleanable, []
        return taken

    def next_to_dispatch(self, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` (range, attempt) pairs to invoke now, retries first. Nothing is marked: call
        `invoked` for each one OSCAR accepts."""
        chosen = [(index, self._attempts.get(index, 0) + 1) for index in heapq.nsmallest(limit, self._retry_queue)]
        index = self._next_fresh
        while len(chosen) < limit and index < self.total:
            if self.state(index) == State.PENDING and index not in self._attempts:
                chosen.append((index, 1))
            elif index == self._next_fresh:
                self._next_fresh += 1  # settled or taken: never a fresh candidate again
            index += 1
        return chosen

    def invoked(self, index: int, attempt: int, job: str, started: str, now: float) -> None:
        """OSCAR accepted this attempt: the range runs, and its Job is expected to appear."""
        if self.state(index) != State.PENDING or attempt <= self._attempts.get(index, 0):
            return
        self._attempts[index] = attempt
        self._unqueue(index)
        self._running[index] = attempt
        self._unseen[index] = now
        record = self.records.setdefault(index, RangeRecord())
        if job not in record.jobs:
            record.jobs.append(job)
        record.started = record.started or started

    def unseen_since(self, deadline: float) -> list[tuple[int, int, str]]:
        """(range, attempt, Job name) of the invocations OSCAR accepted before `deadline` whose Job never showed."""
        return [(index, self._running[index], self.records[index].jobs[-1])
                for index, accepted in self._unseen.items() if accepted <= deadline]

    def still_unseen(self, index: int, now: float) -> None:
        """OSCAR still knows the invocation: give its Job more time to reach us."""
        if index in self._unseen:
            self._unseen[index] = now

    def lost_invocation(self, index: int, attempt: int) -> None:
        """OSCAR accepted the attempt but has no Job for it (delegated, or lost): invoke the range again under
        a new attempt. The service never ran it, so no retry is spent."""
        if self._running.get(index) != attempt or index not in self._unseen:
            return
        del self._running[index]
        del self._unseen[index]
        heapq.heappush(self._retry_queue, index)
        self.lost += 1

    def redrive(self, redrive_round: int) -> list[int]:
        """Give every failed range a fresh round of retries. Returns the ranges that go back to pending."""
        self.redrive_round = redrive_round
        again = sorted(self._failed)
        for index in again:
            self._failed.discard(index)
            self._failures.pop(index, None)
            heapq.heappush(self._retry_queue, index)
        return again

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
        self._unseen.pop(index, None)
        self._unqueue(index)
        self._failed.discard(index)
        (self._succeeded if state == State.SUCCEEDED else self._failed).add(index)

    def _unqueue(self, index: int) -> None:
        if index in self._retry_queue:
            self._retry_queue.remove(index)
            heapq.heapify(self._retry_queue)
