"""The item bookkeeping of one batch: which manifest lines succeeded, failed or run, and what to invoke next.
Pure, no I/O.

A range is lines [start, end) of the manifest, 1-based and end-exclusive: exactly the `start`/`end` the original
OSCAR-Batch coordinator sent, so existing service scripts keep working. Ranges are carved from the frontier by
the chunking policy (`chunking.CarveLog`). A range that the service fails is retried as its two halves, and
those halves as theirs, down to single lines; a single line is retried `retries` times and then recorded as a
failed item. A disrupted attempt (pod evicted, node lost) spends nothing: its lines run again, as two halves
when there are several (the work it had done is lost either way; two slots redo it in half the time).

Every range to invoke is a node of its carved range's halving tree, so that a restarted operator, knowing only
the lines settled (from status), the carve log (from status) and the Jobs it sees, proposes the very ranges —
and Job names — it proposed before: an invocation is never made twice, even one whose Job is not seen yet.
"""
from __future__ import annotations

import dataclasses
import enum
import heapq
from collections.abc import Iterator

from oscar_batch.core.chunking import CarveLog
from oscar_batch.core.items import Lines

# A range disrupted this often is treated as failing: a pod that is always evicted is the service's problem.
MAX_DISRUPTIONS = 3
# A service that fails everywhere is broken, not fed a few bad inputs: halving that down to every single line
# would invoke it twice per line. Bad inputs leave one half of a split range good; when, before any success,
# both halves of this many splits failed too, dispatch stops and the batch says so.
BROKEN_AFTER = 4

Key = tuple[int, int]   # [start, end)


class Outcome(enum.Enum):
    """What a Job says about one attempt of a range."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Change(enum.Enum):
    """What folding one observation did, for Events."""
    SUCCEEDED = "succeeded"
    SPLIT = "split"            # the service failed a range: its halves run instead
    RETRIED = "retried"        # a single line failed and runs again
    DISRUPTED = "disrupted"    # the pod was disrupted: the same lines run again
    ITEM_FAILED = "item failed"


@dataclasses.dataclass(frozen=True)
class Work:
    """One invocation to make."""
    start: int
    end: int
    attempt: int

    @property
    def key(self) -> Key:
        return self.start, self.end


@dataclasses.dataclass(slots=True)   # one per failed line: a million inputs may have hundreds of thousands
class FailedItem:
    line: int
    job: str
    reason: str
    key: str | None = None   # the input's object key, once read from the manifest


@dataclasses.dataclass
class RangeRecord:
    """What the results manifest says of a range that was ever invoked."""
    jobs: list[str] = dataclasses.field(default_factory=list)
    outcome: Outcome = Outcome.RUNNING
    finished_attempt: int = 0     # the newest attempt whose end was folded in: each end counts once
    started: str | None = None
    finished: str | None = None


@dataclasses.dataclass(frozen=True)
class Counts:
    total: int            # items
    pending: int
    running: int
    succeeded: int
    failed: int
    invocations: int      # made so far
    in_flight: int        # invocations running
    retried: int          # invocations made again after a failure (halves, single lines)
    disrupted: int        # attempts lost to disruptions, run again at no cost


class RangeBook:
    def __init__(self, items: int, retries: int, carves: CarveLog | None = None, redrive_round: int = 0) -> None:
        self.items = items
        self.retries = retries
        self.redrive_round = redrive_round
        self.carves = carves or CarveLog(items)
        self.confirmed_frontier = self.carves.frontier   # ranges below it are recorded in status: invocable
        self.succeeded = Lines()
        self.failed = Lines()
        self.failed_items: dict[int, FailedItem] = {}
        self._running: dict[Key, int] = {}        # range -> attempt in flight
        self._running_lines = Lines()
        self._running_sum = 0                     # lines of the running ranges counted one by one
        self._queue: dict[Key, int] = {}          # range -> attempt to invoke next
        self._queue_order: list[Key] = []         # heap of the queue's ranges, by start line
        self._queued_lines = Lines()
        self._attempts: dict[Key, int] = {}       # range -> newest attempt invoked or seen
        self._failures: dict[Key, set[int]] = {}  # single line -> attempts failed in this round
        self._disruptions: dict[Key, set[int]] = {}
        self._split: set[Key] = set()             # ranges whose halves run instead
        self._service_failed: set[Key] = set()    # ... of those, the ones the service failed (not a disruption)
        self._sibling: dict[Key, Key] = {}        # half -> the other half of the same split
        self._unseen: dict[Key, float] = {}       # invoked range -> when OSCAR accepted it, until its Job shows
        self._cursor = 1                          # carved ranges before this line are all accounted for
        self.records: dict[Key, RangeRecord] = {}
        self._evidence: dict[Key, list[str]] = {}  # failed Jobs kept until every line of theirs settles
        self._cleanable: dict[str, None] = {}      # an ordered set
        self.invocations = 0
        self.retried = 0
        self.disrupted = 0
        self.broken: str | None = None            # why dispatch stopped: the service fails everything
        self._successes = 0                       # invocations that succeeded this round
        self._both_halves_failed = 0              # splits of this round whose halves both failed too

    # ---- restoring ------------------------------------------------------------------------------------

    def restore(self, succeeded: Lines, failed: Lines, failed_items: list[FailedItem]) -> None:
        """Take back what a previous run of the operator recorded in status."""
        for start, end in succeeded:
            self.succeeded.add(max(start, 1), min(end, self.items + 1))
        for start, end in failed:
            self.failed.add(max(start, 1), min(end, self.items + 1))
        for start, end in self.succeeded:
            self.failed.remove(start, end)
        for item in failed_items:
            if self.failed.covers(item.line, item.line + 1):
                self.failed_items[item.line] = item

    # ---- observing Jobs ---------------------------------------------------------------------------------

    def observe(self, start: int, end: int, attempt: int, outcome: Outcome, job: str | None = None,
                started: str | None = None, finished: str | None = None, redrive_round: int | None = None,
                failure_reason: str = "", disruption: bool = False) -> Change | None:
        """Fold in what a Job says of one attempt of lines [start, end). Observations may repeat and arrive
        out of order (a restart sees every Job again): each counts once, a success of any attempt wins its
        lines, and only the newest attempt of a range decides what runs next."""
        if not 1 <= start < end <= self.items + 1 or attempt < 1:
            return None
        key = (start, end)
        record = self.records.setdefault(key, RangeRecord())
        new_job = job is not None and job not in record.jobs
        if job is not None and new_job:
            record.jobs.append(job)
        record.started = record.started or started
        newest = attempt >= self._attempts.get(key, 0)
        if attempt > self._attempts.get(key, 0):
            self._attempts[key] = attempt
            self._unqueue(key)
        if self._running.get(key) == attempt:
            self._unseen.pop(key, None)
        if outcome == Outcome.RUNNING:
            if newest and key not in self._running and not self._settled(key):
                self._run(key, attempt)
            return None
        if self._running.get(key) == attempt or (newest and key in self._running):
            self._stop(key)
        record.finished = finished or record.finished
        first_end = attempt > record.finished_attempt
        record.finished_attempt = max(record.finished_attempt, attempt)
        if outcome == Outcome.SUCCEEDED:
            record.outcome = Outcome.SUCCEEDED
            self._successes += int(first_end)
            return self._succeed(key)
        return self._fail(key, attempt, job or "", failure_reason, disruption, newest, first_end, redrive_round)

    def _succeed(self, key: Key) -> Change | None:
        fresh = not self.succeeded.covers(*key)
        self.succeeded.add(*key)
        self.failed.remove(*key)
        for line in [line for line in self.failed_items if key[0] <= line < key[1]]:
            del self.failed_items[line]
        self._drop_queued_within(key)
        self._settled_lines(key)
        return Change.SUCCEEDED if fresh else None

    def _fail(self, key: Key, attempt: int, job: str, reason: str, disruption: bool, newest: bool,
              first_end: bool, redrive_round: int | None) -> Change | None:
        record = self.records[key]
        if record.outcome != Outcome.SUCCEEDED:
            record.outcome = Outcome.FAILED
        if job:
            self._evidence.setdefault(key, [])
            if job not in self._evidence[key]:
                self._evidence[key].append(job)
        if self._settled(key):
            self._settled_lines(key)   # seen again after a restart: nothing left to do for it
            return None
        if not newest or key in self._running:
            return None                # a newer attempt of these lines decides
        this_round = redrive_round is None or redrive_round == self.redrive_round
        if disruption:
            disruptions = self._disruptions.setdefault(key, set())
            if this_round:
                disruptions.add(attempt)
            if len(disruptions) <= MAX_DISRUPTIONS:
                self.disrupted += int(first_end and this_round)
                if key[1] - key[0] > 1 and key not in self._split:
                    # Its work so far is lost either way: two slots redo it in half the time.
                    self._split_in_halves(key)
                else:
                    self._enqueue(key, attempt + 1)
                return Change.DISRUPTED
            reason = f"disrupted {len(disruptions)} times, last: {reason}"
        if key[1] - key[0] > 1:
            if key in self._split:
                return None
            self._service_failed.add(key)
            if this_round and self._sibling.get(key) in self._service_failed:
                self._both_halves_failed += 1
                if self._both_halves_failed >= BROKEN_AFTER and not self._successes:
                    self.broken = (f"before any success, both halves of {BROKEN_AFTER} failed ranges failed too, "
                                   f"the last in Job {job}: {reason}; nothing more is invoked: fix the service, "
                                   "then redrive the batch")
            self._split_in_halves(key)
            self.retried += int(first_end and this_round)
            return Change.SPLIT
        failures = self._failures.setdefault(key, set())
        counted = this_round and attempt not in failures
        if this_round:
            failures.add(attempt)
        if len(failures) > self.retries:
            self.failed.add(*key)
            self.failed_items[key[0]] = FailedItem(key[0], job, reason)
            self._drop_queued_within(key)
            self._settled_lines(key)
            return Change.ITEM_FAILED
        self._enqueue(key, attempt + 1)
        self.retried += int(counted and first_end)
        return Change.RETRIED

    def _split_in_halves(self, key: Key) -> None:
        self._split.add(key)
        middle = (key[0] + key[1]) // 2
        halves = (key[0], middle), (middle, key[1])
        self._sibling[halves[0]], self._sibling[halves[1]] = halves[1], halves[0]
        for half in halves:
            if not self._attempts.get(half) and not self._settled(half):
                self._enqueue(half, 1)

    # ---- dispatching ----------------------------------------------------------------------------------

    def next_to_dispatch(self, limit: int) -> list[Work]:
        """Up to `limit` invocations to make now: retries and halves first, then carved ranges (and the parts
        of them nothing accounts for, after a restart). Nothing is marked: call `invoked` for each one OSCAR
        accepts. `carve` makes new ranges when these run out."""
        if self.broken or limit <= 0:
            return []
        chosen: list[Work] = []
        for key in heapq.nsmallest(len(self._queue_order), self._queue_order):
            if len(chosen) >= limit:
                break
            chosen.append(Work(key[0], key[1], self._queue[key]))
        if len(chosen) < limit:
            chosen.extend(self._unaccounted(limit - len(chosen), {work.key for work in chosen}))
        return chosen

    def can_carve(self) -> bool:
        return not self.broken and self.carves.frontier <= self.items

    def carve(self, sizes: list[int]) -> None:
        """Ranges of these sizes at the frontier. They are invocable once status holds the carve log: call
        `carving_recorded` after the patch that carried `carves.encode()` was accepted."""
        self.carves.carve(sizes)

    def carving_recorded(self, frontier: int) -> None:
        self.confirmed_frontier = max(self.confirmed_frontier, frontier)

    def invoked(self, work: Work, job: str, started: str, now: float) -> None:
        """OSCAR accepted this attempt: the lines run, and their Job is expected to appear."""
        key = work.key
        if work.attempt <= self._attempts.get(key, 0) or self._settled(key):
            return
        self._attempts[key] = work.attempt
        self._unqueue(key)
        self._run(key, work.attempt)
        self._unseen[key] = now
        self.invocations += 1
        record = self.records.setdefault(key, RangeRecord())
        if job not in record.jobs:
            record.jobs.append(job)
        record.started = record.started or started

    def unseen_since(self, deadline: float) -> list[tuple[Work, str]]:
        """The invocations OSCAR accepted before `deadline` whose Job never showed, with the Job's name."""
        return [(Work(key[0], key[1], self._running[key]), self.records[key].jobs[-1])
                for key, accepted in self._unseen.items() if accepted <= deadline]

    def still_unseen(self, work: Work, now: float) -> None:
        """OSCAR still knows the invocation: give its Job more time to reach us."""
        if work.key in self._unseen:
            self._unseen[work.key] = now

    def lost_invocation(self, work: Work) -> None:
        """OSCAR accepted the attempt but has no Job for it (delegated, or lost): invoke the lines again under
        a new attempt. The service never ran them, so no retry is spent."""
        key = work.key
        if self._running.get(key) != work.attempt or key not in self._unseen:
            return
        self._stop(key)
        self._enqueue(key, work.attempt + 1)

    def redrive(self, redrive_round: int) -> int:
        """Give every failed line a fresh round of retries. Returns how many lines run again."""
        self.redrive_round = redrive_round
        self.broken = None
        self._successes = self._both_halves_failed = 0
        again = len(self.failed)
        for start, end in list(self.failed):
            self.failed.remove(start, end)
            for line in range(start, end):
                key = (line, line + 1)
                self.failed_items.pop(line, None)
                self._failures.pop(key, None)
                self._enqueue(key, self._attempts.get(key, 0) + 1)
        self._failures.clear()
        self._disruptions.clear()
        self._split.clear()
        self._service_failed.clear()
        self._cursor = 1
        return again

    # ---- reading ----------------------------------------------------------------------------------

    def counts(self) -> Counts:
        running = len(self._running_lines)
        succeeded, failed = len(self.succeeded), len(self.failed)
        return Counts(total=self.items, pending=max(self.items - running - succeeded - failed, 0), running=running,
                      succeeded=succeeded, failed=failed, invocations=self.invocations,
                      in_flight=len(self._running), retried=self.retried, disrupted=self.disrupted)

    def running(self) -> dict[Key, int]:
        return dict(self._running)

    def done(self) -> bool:
        """Nothing runs, and nothing more will: every line settled, or dispatch stopped."""
        if self._running:
            return False
        return bool(self.broken) or len(self.succeeded) + len(self.failed) >= self.items

    def take_cleanable(self) -> list[str]:
        """Jobs every line of which settled since the last call: once status records that, they can go."""
        taken, self._cleanable = list(self._cleanable), {}
        return taken

    # ---- internals ----------------------------------------------------------------------------------

    def _settled(self, key: Key) -> bool:
        return self.succeeded.first_missing(*key, self.failed) is None

    def _settled_lines(self, key: Key) -> None:
        """Lines of `key` settled: the Jobs of every range now wholly settled may be deleted."""
        done = [other for other in self._evidence if _overlap(other, key) and self._settled(other)]
        for other in done:
            self._cleanable.update(dict.fromkeys(self._evidence.pop(other)))
        record = self.records.get(key)
        if record is not None and self._settled(key):
            self._cleanable.update(dict.fromkeys(record.jobs))

    def _run(self, key: Key, attempt: int) -> None:
        if key not in self._running:
            self._running_sum += key[1] - key[0]
        self._running[key] = attempt
        self._running_lines.add(*key)

    def _stop(self, key: Key) -> None:
        overlapping = len(self._running_lines) != self._running_sum
        if self._running.pop(key, None) is not None:
            self._running_sum -= key[1] - key[0]
        self._unseen.pop(key, None)
        self._running_lines.remove(*key)
        if overlapping:   # ranges overlapping after a restart: keep the lines still running
            for other in self._running:
                if _overlap(other, key):
                    self._running_lines.add(*other)

    def _enqueue(self, key: Key, attempt: int) -> None:
        if self._queue.get(key, 0) >= attempt:
            return
        if key not in self._queue:
            heapq.heappush(self._queue_order, key)
        self._queue[key] = attempt
        self._queued_lines.add(*key)

    def _unqueue(self, key: Key) -> None:
        if self._queue.pop(key, None) is None:
            return
        self._queue_order.remove(key)
        heapq.heapify(self._queue_order)
        self._queued_lines.remove(*key)
        for other in self._queue:
            if _overlap(other, key):
                self._queued_lines.add(*other)

    def _drop_queued_within(self, key: Key) -> None:
        for other in [other for other in self._queue if key[0] <= other[0] and other[1] <= key[1]]:
            self._unqueue(other)

    def _accounted(self, start: int, end: int) -> bool:
        """Some line of [start, end) settled, running or queued."""
        return any(lines.overlaps(start, end)
                   for lines in (self.succeeded, self.failed, self._running_lines, self._queued_lines))

    def _unaccounted(self, limit: int, taken: set[Key]) -> list[Work]:
        """Carved ranges (or halving-tree nodes of them) none of whose lines is settled, running or queued."""
        found: list[Work] = []
        advancing = True
        for start, end in self.carves.ranges_from(self._cursor):
            if start >= self.confirmed_frontier or len(found) >= limit:
                break
            nodes = list(self._free_nodes(start, end))
            if advancing and not nodes:
                self._cursor = end
                continue
            advancing = False
            for node in nodes:
                if node not in taken and len(found) < limit:
                    found.append(Work(node[0], node[1], self._attempts.get(node, 0) + 1))
        return found

    def _free_nodes(self, start: int, end: int) -> Iterator[Key]:
        if not self._accounted(start, end):
            yield start, end
            return
        if end - start == 1 or self.succeeded.first_missing(start, end, self.failed, self._running_lines,
                                                             self._queued_lines) is None:
            return
        middle = (start + end) // 2
        yield from self._free_nodes(start, middle)
        yield from self._free_nodes(middle, end)


def _overlap(a: Key, b: Key) -> bool:
    return a[0] < b[1] and b[0] < a[1]
