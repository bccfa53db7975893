"""The item bookkeeping of one batch: which manifest lines succeeded, failed or run, and what to invoke next.
Pure, no I/O.

A range is lines [start, end) of the manifest, 1-based and end-exclusive: exactly the `start`/`end` the original
OSCAR-Batch coordinator sent, so existing service scripts keep working. Ranges are carved from the frontier by
the chunking policy (`chunking.CarveLog`). What happens to a range that did not succeed (halves, retries, a
failed item, disruptions, a broken service) is `failure_policy.decide`; the book applies its decisions, keeps
the ranges waiting to run again in a `DispatchQueue` and the Jobs that may be deleted in `JobsToClean`.

Every range to invoke is a node of its carved range's halving tree, so that a restarted operator, knowing only
the lines settled (from status), the carve log (from status) and the Jobs it sees, proposes the very ranges —
and Job names — it proposed before: an invocation is never made twice, even one whose Job is not seen yet.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator

from oscar_batch.core import failure_policy
from oscar_batch.core.chunking import CarveLog
from oscar_batch.core.dispatch_queue import DispatchQueue
from oscar_batch.core.failure_policy import Breaker, Ending, History, Kind, Next
from oscar_batch.core.in_flight import InFlightRanges
from oscar_batch.core.items import Lines, Span
from oscar_batch.core.job_cleanup import JobsToClean


class Outcome(enum.Enum):
    """What a Job says about one attempt of a range."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Change(enum.Enum):
    """What folding one observation did, for Events."""
    SUCCEEDED = "succeeded"
    SPLIT = "split"            # the service failed a range: its quarters (or halves) run instead
    RETRIED = "retried"        # a single line failed and runs again
    DISRUPTED = "disrupted"    # the pod was disrupted: the same lines run again
    ITEM_FAILED = "item failed"
    RESUMED = "resumed"        # lines with outputs are done, the others run again
    DUPLICATE = "duplicate"    # lines another Job had already run succeeded again (a reassigned range, late)


@dataclasses.dataclass(frozen=True)
class Work:
    """One invocation to make."""
    start: int
    end: int
    attempt: int

    @property
    def key(self) -> Span:
        return self.start, self.end


@dataclasses.dataclass(frozen=True, kw_only=True)
class Observation:
    """What a Job (or OSCAR's job listing) says of one attempt of lines [start, end)."""
    start: int
    end: int
    attempt: int
    outcome: Outcome
    job: str | None = None
    started: str | None = None
    finished: str | None = None
    redrive_round: int | None = None   # the round the attempt belongs to; None: the current one
    failure_reason: str = ""
    disruption: bool = False           # the pod was disrupted (evicted, node lost): not the service's failure
    outputs: Lines | None = None       # of a failed attempt: its lines found with outputs; None: not looked up
    replayed: bool = False             # seen again by a restarted operator, not as it happened
    cluster: str = ""                  # the OSCAR cluster whose Job it is

    @property
    def key(self) -> Span:
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
    ended_on: tuple[str, ...] = ()   # the clusters whose Jobs of it ended: the same attempt may run on two
    started: str | None = None
    finished: str | None = None


@dataclasses.dataclass
class Tally:
    """The invocation counters of `Counts`: what settled before a restart left no other trace."""
    invocations: int = 0
    retried: int = 0
    disrupted: int = 0
    recovered: int = 0    # lines of failed or disrupted ranges found done by their outputs
    reassigned: int = 0   # invocations in flight on a cluster cut off too long, run elsewhere
    duplicates: int = 0   # Jobs that succeeded with lines already succeeded

    def count(self, what: Next, kind: Kind) -> None:
        """One more disruption, or one more invocation made again after a failure."""
        if what == Next.DISRUPTED or (what == Next.RESUMED and kind == Kind.DISRUPTED):
            self.disrupted += 1
        else:
            self.retried += 1


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
    recovered: int = 0    # succeeded lines of failed or disrupted ranges, found done by their outputs
    reassigned: int = 0   # invocations run elsewhere because their cluster was cut off too long
    duplicates: int = 0   # Jobs that succeeded with lines already succeeded
    in_flight_on: dict[str, int] = dataclasses.field(default_factory=dict)   # invocations running, by cluster



# What a decision changed, for Events (a lost invocation is told by the invoker).
CHANGES = {Next.SPLIT: Change.SPLIT, Next.RETRY: Change.RETRIED, Next.DISRUPTED: Change.DISRUPTED,
           Next.ITEM_FAILED: Change.ITEM_FAILED, Next.RESUMED: Change.RESUMED, Next.RECOVERED: Change.RESUMED}
# ... and a disrupted range resumed from its outputs was disrupted all the same.
DISRUPTED_CHANGES = {**CHANGES, Next.RESUMED: Change.DISRUPTED}


class RangeBook:
    """The facts of one batch's items: which lines succeeded, failed, run or wait, the attempts made and the
    records of every range invoked. It applies the failure policy's decisions and proposes what to invoke."""

    def __init__(self, items: int, retries: int, carves: CarveLog | None = None, redrive_round: int = 0) -> None:
        self.items = items
        self.retries = retries
        self.redrive_round = redrive_round
        self.carves = carves or CarveLog(items)
        self.confirmed_frontier = self.carves.frontier   # ranges below it are recorded in status: invocable
        self.succeeded = Lines()
        self.failed = Lines()
        self.failed_items: dict[int, FailedItem] = {}
        self.in_flight = InFlightRanges()
        self._queue = DispatchQueue()
        self._attempts: dict[Span, int] = {}      # range -> newest attempt invoked or seen
        self._histories: dict[Span, History] = {}  # range -> what this redrive round did to it
        self._sibling: dict[Span, Span] = {}      # half -> the other half of the same split
        self._breaker = Breaker()
        self._cursor = 1                          # carved ranges before this line are all accounted for
        self.records: dict[Span, RangeRecord] = {}
        self._jobs_to_clean = JobsToClean(self._settled)
        self._tally = Tally()
        self.broken: str | None = None            # why dispatch stopped: the service fails everything

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

    def restore_counts(self, *, invocations: int, retried: int, disrupted: int, recovered: int = 0,
                       reassigned: int = 0, duplicates: int = 0) -> None:
        """Take back the counts status held: the Jobs of what settled before a restart may be gone."""
        self._tally.invocations = max(self._tally.invocations, invocations)
        self._tally.retried = max(self._tally.retried, retried)
        self._tally.disrupted = max(self._tally.disrupted, disrupted)
        self._tally.recovered = max(self._tally.recovered, recovered)
        self._tally.reassigned = max(self._tally.reassigned, reassigned)
        self._tally.duplicates = max(self._tally.duplicates, duplicates)

    # ---- observing Jobs ---------------------------------------------------------------------------------

    def observe(self, observation: Observation) -> Change | None:
        """Fold in what a Job says of one attempt of a range. Observations may repeat and arrive out of order (a
        restart sees every Job again): each counts once, a success of any attempt wins its lines, and only the
        newest attempt of a range decides what runs next."""
        if not 1 <= observation.start < observation.end <= self.items + 1 or observation.attempt < 1:
            return None
        key = observation.key
        newest = self._note(key, observation)
        if observation.outcome == Outcome.RUNNING:
            if newest and key not in self.in_flight and not self._settled(key):
                self.in_flight.start(key, observation.attempt, cluster=observation.cluster)
            return None
        return self._end(key, observation, newest=newest)

    def _end(self, key: Span, observation: Observation, *, newest: bool) -> Change | None:
        in_flight = self.in_flight.get(key)
        if in_flight is not None and (in_flight.attempt == observation.attempt or newest):
            self.in_flight.stop(key)
        record = self.records[key]
        record.finished = observation.finished or record.finished
        # The first end of this attempt, or of its Job on another cluster (an invocation whose answer was lost
        # there runs elsewhere under the same name).
        first_end = observation.attempt > record.finished_attempt
        another_cluster = observation.cluster not in record.ended_on
        record.finished_attempt = max(record.finished_attempt, observation.attempt)
        if another_cluster:
            record.ended_on += (observation.cluster,)
        if observation.outcome == Outcome.SUCCEEDED:
            record.outcome = Outcome.SUCCEEDED
            if first_end:
                self._breaker = self._breaker.succeeded()
            change = self._succeed(key)
            # Lines that had succeeded already ran twice: a reassigned range's Job finishing late on its cluster,
            # or the Job that ran it elsewhere finishing after that. A restart's replay is no new run.
            ran_before = first_end or another_cluster or observation.attempt < record.finished_attempt
            if change is None and not observation.replayed and ran_before:
                self._tally.duplicates += 1
                return Change.DUPLICATE
            return change
        return self._fail(key, observation, newest=newest, first_end=first_end)

    def _note(self, key: Span, observation: Observation) -> bool:
        """Record the Job of this attempt; whether the attempt is the newest of its range."""
        record = self.records.setdefault(key, RangeRecord())
        if observation.job is not None and observation.job not in record.jobs:
            record.jobs.append(observation.job)
        record.started = record.started or observation.started
        newest = observation.attempt >= self._attempts.get(key, 0)
        if observation.attempt > self._attempts.get(key, 0):
            self._attempts[key] = observation.attempt
            self._queue.remove(key)
        self.in_flight.seen(key, observation.attempt)
        return newest

    def _succeed(self, key: Span) -> Change | None:
        fresh = not self.succeeded.covers(*key)
        self.succeeded.add(*key)
        self.failed.remove(*key)
        for line in [line for line in self.failed_items if key[0] <= line < key[1]]:
            del self.failed_items[line]
        self._queue.drop_within(key)
        self._jobs_to_clean.settled(key, self.records[key].jobs)
        return Change.SUCCEEDED if fresh else None

    def _fail(self, key: Span, observation: Observation, *, newest: bool, first_end: bool) -> Change | None:
        record = self.records[key]
        if record.outcome != Outcome.SUCCEEDED:
            record.outcome = Outcome.FAILED
        if observation.job:
            self._jobs_to_clean.failed(key, observation.job)
        if self._settled(key):   # seen again after a restart: nothing left to do for it
            self._jobs_to_clean.settled(key, record.jobs)
            return None
        outputs = None
        if observation.outputs is not None:
            outputs = Lines(observation.outputs)
            outputs.remove(1, key[0])
            outputs.remove(key[1], max(outputs.stop, key[1]))
        ending = Ending(kind=Kind.DISRUPTED if observation.disruption else Kind.FAILED, attempt=observation.attempt,
                        width=key[1] - key[0], reason=observation.failure_reason, job=observation.job or "",
                        this_round=observation.redrive_round in (None, self.redrive_round), first_end=first_end,
                        superseded=not newest or key in self.in_flight,
                        outputs=None if outputs is None else len(outputs))
        return self._follow_policy(key, ending, outputs, replayed=observation.replayed)

    def _follow_policy(self, key: Span, ending: Ending, outputs: Lines | None = None, *,
                       replayed: bool = False) -> Change | None:
        """Do what the failure policy says comes after this ending."""
        sibling = self._sibling.get(key)
        decision = failure_policy.decide(
            ending, self._histories.get(key, History()), retries=self.retries, breaker=self._breaker,
            sibling_failed=sibling is not None and self._histories.get(sibling, History()).service_failed)
        self._histories[key] = decision.history
        self._breaker = decision.breaker
        self.broken = decision.broken or self.broken
        if decision.recover and outputs is not None:
            self._recover(key, outputs)
            if decision.next == Next.RESUMED and not replayed and ending.kind != Kind.REASSIGNED:
                self._suspect_alone(key)
        if decision.parts:
            self._split(key, decision.parts)
        if decision.attempt is not None:
            self._queue.push(key, decision.attempt)
        if decision.next == Next.ITEM_FAILED:
            self.failed.add(*key)
            self.failed_items[key[0]] = FailedItem(key[0], ending.job, decision.reason)
            self._queue.drop_within(key)
            self._jobs_to_clean.settled(key, self.records[key].jobs)
        if decision.counted:
            self._tally.count(decision.next, ending.kind)
        return (DISRUPTED_CHANGES if ending.kind == Kind.DISRUPTED else CHANGES).get(decision.next)

    def _recover(self, key: Span, outputs: Lines) -> None:
        """These lines of the range have their outputs: they are done, whatever its Job said."""
        for start, end in outputs:
            before = len(self.succeeded)
            self.succeeded.add(start, end)
            self._tally.recovered += len(self.succeeded) - before
            self.failed.remove(start, end)
            for line in [line for line in self.failed_items if start <= line < end]:
                del self.failed_items[line]
            self._queue.drop_within((start, end))
        self._jobs_to_clean.settled(key, self.records[key].jobs)
        # Its other lines are nobody's now: the proposal looks for them again.
        self._cursor = min(self._cursor, key[0])

    def _suspect_alone(self, key: Span) -> None:
        """The service works through a range in order, so the first line of a resumed range without its output is
        the prime suspect: it runs alone, and the lines after it in its tree node run on as the nodes beside its
        path down the tree — all halving-tree nodes. Only as the failure happens: replayed after a restart, the
        outputs have grown since, and the first line without one may start a node already invoked whose Job is
        not seen yet; the maximal free nodes the book proposes then give that node its own name again."""
        node = next(self._free_nodes(*key), None)
        if node is None:
            return
        start, end = node
        beside: list[Span] = []
        while end - start > 1:
            middle = (start + end) // 2
            beside.append((middle, end))
            end = middle
        for part in [(start, end), *beside]:
            if not self._attempts.get(part) and not self._settled(part):
                self._queue.push(part, 1)

    def _split(self, key: Span, parts: int) -> None:
        """Run the range as its halves, or its quarters: nodes of its halving tree, each paired with its sibling
        for the breaker."""
        middle = (key[0] + key[1]) // 2
        pairs = [((key[0], middle), (middle, key[1]))]
        if parts == 4:
            pairs = [((start, (start + end) // 2), ((start + end) // 2, end)) for start, end in pairs[0]]
        for left, right in pairs:
            self._sibling[left], self._sibling[right] = right, left
            for part in (left, right):
                if not self._attempts.get(part) and not self._settled(part):
                    self._queue.push(part, 1)

    # ---- dispatching ----------------------------------------------------------------------------------

    def next_to_dispatch(self, limit: int) -> list[Work]:
        """Up to `limit` invocations to make now: retries and halves first, then carved ranges (and the parts
        of them nothing accounts for, after a restart). Nothing is marked: call `invoked` for each one OSCAR
        accepts. `carve` makes new ranges when these run out."""
        if self.broken or limit <= 0:
            return []
        chosen = [Work(key[0], key[1], attempt) for key, attempt in self._queue.first(limit)]
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

    def invoked(self, work: Work, *, job: str, started: str, now: float, cluster: str) -> None:
        """OSCAR on `cluster` accepted this attempt (at `now`): the lines run, and their Job is expected to appear."""
        key = work.key
        if work.attempt <= self._attempts.get(key, 0) or self._settled(key):
            return
        self._attempts[key] = work.attempt
        self._queue.remove(key)
        self.in_flight.start(key, work.attempt, accepted_at=now, cluster=cluster)
        self._tally.invocations += 1
        record = self.records.setdefault(key, RangeRecord())
        if job not in record.jobs:
            record.jobs.append(job)
        record.started = record.started or started

    def unseen_since(self, deadline: float) -> list[tuple[Work, str, str]]:
        """The invocations OSCAR accepted before `deadline` whose Job never showed, with the Job's name and the
        cluster that accepted it."""
        return [(Work(key[0], key[1], attempt), self.records[key].jobs[-1], cluster)
                for key, attempt, cluster in self.in_flight.overdue(deadline)]

    def lost_invocation(self, work: Work) -> None:
        """OSCAR accepted the attempt but has no Job for it (delegated, or lost): the policy says what runs."""
        key = work.key
        in_flight = self.in_flight.get(key)
        if in_flight is None or in_flight.attempt != work.attempt or in_flight.unseen_since() is None:
            return
        self.in_flight.stop(key)
        self._follow_policy(key, Ending(kind=Kind.LOST, attempt=work.attempt, width=key[1] - key[0]))

    def reassign(self, work: Work, outputs: Lines | None = None) -> Change | None:
        """The attempt runs on a cluster cut off for too long: it runs elsewhere, as its next attempt (with
        `outputs`, the lines found with theirs are done and only the rest runs). Its Job may still finish on its
        cluster later: folded in as any Job, a second success of the same lines counted as a duplicate."""
        key = work.key
        in_flight = self.in_flight.get(key)
        if in_flight is None or in_flight.attempt != work.attempt:
            return None
        self.in_flight.stop(key)
        self._tally.reassigned += 1
        if outputs is not None:
            outputs = Lines(outputs)
            outputs.remove(1, key[0])
            outputs.remove(key[1], max(outputs.stop, key[1]))
        ending = Ending(kind=Kind.REASSIGNED, attempt=work.attempt, width=key[1] - key[0],
                        outputs=None if outputs is None else len(outputs))
        return self._follow_policy(key, ending, outputs)

    def redrive(self, redrive_round: int) -> int:
        """Give every failed line a fresh round of retries. Returns how many lines run again."""
        self.redrive_round = redrive_round
        self.broken = None
        self._breaker = Breaker()
        again = len(self.failed)
        for start, end in list(self.failed):
            self.failed.remove(start, end)
            for line in range(start, end):
                self.failed_items.pop(line, None)
                self._queue.push((line, line + 1), self._attempts.get((line, line + 1), 0) + 1)
        self._histories.clear()
        self._cursor = 1
        return again

    # ---- reading ----------------------------------------------------------------------------------

    def counts(self) -> Counts:
        running = len(self.in_flight.lines)
        succeeded, failed = len(self.succeeded), len(self.failed)
        return Counts(total=self.items, pending=max(self.items - running - succeeded - failed, 0), running=running,
                      succeeded=succeeded, failed=failed, invocations=self._tally.invocations,
                      in_flight=len(self.in_flight), retried=self._tally.retried, disrupted=self._tally.disrupted,
                      recovered=self._tally.recovered, reassigned=self._tally.reassigned,
                      duplicates=self._tally.duplicates, in_flight_on=self.in_flight.by_cluster())

    def done(self) -> bool:
        """Nothing runs, and nothing more will: every line settled, or dispatch stopped."""
        if len(self.in_flight):
            return False
        return bool(self.broken) or len(self.succeeded) + len(self.failed) >= self.items

    def take_cleanable(self) -> list[str]:
        """Jobs every line of which settled since the last call: once status records that, they can go."""
        return self._jobs_to_clean.take()

    # ---- internals ----------------------------------------------------------------------------------

    def _settled(self, key: Span) -> bool:
        return self.succeeded.first_missing(*key, self.failed) is None

    def _accounted(self, start: int, end: int) -> bool:
        """Some line of [start, end) settled, running or queued."""
        return any(lines.overlaps(start, end)
                   for lines in (self.succeeded, self.failed, self.in_flight.lines, self._queue.lines))

    def _unaccounted(self, limit: int, taken: set[Span]) -> list[Work]:
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

    def _free_nodes(self, start: int, end: int) -> Iterator[Span]:
        if not self._accounted(start, end):
            yield start, end
            return
        if end - start == 1 or self.succeeded.first_missing(start, end, self.failed, self.in_flight.lines,
                                                             self._queue.lines) is None:
            return
        middle = (start + end) // 2
        yield from self._free_nodes(start, middle)
        yield from self._free_nodes(middle, end)
