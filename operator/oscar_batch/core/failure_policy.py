"""What happens to a range whose attempt ended without succeeding: split, retry, item failed, run again after a
disruption, or nothing. One pure function over typed values, no I/O.

A range the service fails runs again as the four quarters of its halving tree (as its two halves under four
lines), and those as theirs, down to single lines; a single line is retried `retries` times and then recorded as a
failed item. Quarters isolate a corrupt line in half the generations halves take, for as many invocations (four a
level over log4 levels against two over log2), so they cost nothing when slots are busy either. The split is a
function of the range alone, so that a restarted operator splits it as before (whatever it has seen succeed). A
disrupted attempt (pod evicted, node lost) spends nothing: its lines run again, as two halves when there are
several (the work it had done is lost either way; two slots redo it in half the time), until a range disrupted
more than MAX_DISRUPTIONS times counts as failing. An invocation OSCAR accepted but never ran (no Job) runs again
under the next attempt, nothing spent, as does one whose cluster was cut off too long (elsewhere; with outputs
declared, only its lines without them). Only what ended in the current redrive round moves the counters: a restart
sees the old rounds' Jobs again.

When the batch declares its outputs, the lines of a failed or disrupted range that have theirs are done whatever
the Job said: they are recovered, and the range is split with nothing queued, so that the book proposes the
maximal halving-tree nodes of the lines left (the first of them the prime suspect of a failure). A range without
any output, or whose outputs could not be looked up, follows the rules above: a service that fails everything
writes nothing, and the breaker still sees it.
"""
from __future__ import annotations

import dataclasses
import enum

# A range disrupted this often is treated as failing: a pod that is always evicted is the service's problem.
MAX_DISRUPTIONS = 3
# A service that fails everywhere is broken, not fed a few bad inputs: splitting that down to every single line
# would invoke it more than once per line. Bad inputs leave one of two halves good; when, before any success,
# both halves (of a split range, or of one of its halves) failed too this many times, dispatch stops and the
# batch says so.
BROKEN_AFTER = 4
# A range the service failed with at least this many lines runs again as its quarters, else as its halves.
QUARTERS_FROM = 4


class Kind(enum.Enum):
    """How an attempt ended, short of succeeding."""
    FAILED = "failed"            # the service failed it
    DISRUPTED = "disrupted"      # its pod was evicted, its node lost
    LOST = "lost"                # OSCAR accepted it, but no Job ever ran it
    REASSIGNED = "reassigned"    # its cluster was cut off too long: it runs elsewhere


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ending:
    """One attempt of a range that ended without succeeding."""
    kind: Kind
    attempt: int
    width: int                   # lines in the range
    reason: str = ""             # why, in the words of the Job's pods
    job: str = ""
    this_round: bool = True      # ended in the current redrive round
    first_end: bool = True       # the first end of this attempt folded in: each end counts once
    superseded: bool = False     # a newer attempt of these lines was seen or runs: it decides
    outputs: int | None = None   # lines of the range found with their outputs; None: not declared, or not known


@dataclasses.dataclass(frozen=True, kw_only=True)
class History:
    """What the current redrive round did to one range."""
    disrupted: frozenset[int] = frozenset()   # attempts disrupted
    failed: frozenset[int] = frozenset()      # attempts failed (of a single line)
    split: bool = False                       # its parts run instead
    service_failed: bool = False              # the service failed it (not a disruption): its parts run


@dataclasses.dataclass(frozen=True, kw_only=True)
class Breaker:
    """The broken-service breaker of the current redrive round."""
    successes: int = 0            # invocations that succeeded
    both_halves_failed: int = 0   # splits whose halves both failed too

    def succeeded(self) -> Breaker:
        return dataclasses.replace(self, successes=self.successes + 1)


class Next(enum.Enum):
    """What happens next to the range."""
    NOTHING = "nothing"           # a newer attempt decides, or its parts run already
    SPLIT = "split"               # the service failed several lines: its quarters (or halves) run instead
    RETRY = "retry"               # the service failed one line: it runs again, a retry spent
    ITEM_FAILED = "item failed"   # ... for the last time: the line failed
    DISRUPTED = "disrupted"       # the pod was disrupted: the lines run again (as halves), no retry spent
    REINVOKE = "reinvoke"         # never ran: the same lines under the next attempt, nothing spent
    RESUMED = "resumed"           # some lines have outputs: they are done, the others run as the tree's nodes
    RECOVERED = "recovered"       # every line has its output: done, nothing runs


@dataclasses.dataclass(frozen=True, kw_only=True)
class Decision:
    next: Next
    history: History                  # what the book keeps of the range from now on
    breaker: Breaker
    parts: int = 0                    # the halving-tree nodes it splits into next: 2 (halves) or 4 (quarters)
    attempt: int | None = None        # ... or the same lines, as this attempt
    counted: bool = False             # the retried (split, retry, resumed) or disrupted counter moves by one
    recover: bool = False             # the lines with outputs are done
    reason: str = ""                  # why the item failed
    broken: str | None = None         # the service fails everything: dispatch stops, and why


def decide(ending: Ending, history: History, *, retries: int, sibling_failed: bool, breaker: Breaker) -> Decision:
    """What happens next to a range whose attempt ended so. `sibling_failed`: the service failed the other half of
    the split this range is a half of."""
    if ending.superseded:
        return Decision(next=Next.NOTHING, history=history, breaker=breaker)
    if ending.kind == Kind.REASSIGNED and ending.outputs:
        # The lines it finished before its cluster was cut off are done; the rest runs as the free nodes.
        done = Next.RECOVERED if ending.outputs >= ending.width else Next.RESUMED
        return Decision(next=done, history=dataclasses.replace(history, split=done == Next.RESUMED),
                        breaker=breaker, recover=True)
    if ending.kind in (Kind.LOST, Kind.REASSIGNED):
        return Decision(next=Next.REINVOKE, history=history, breaker=breaker, attempt=ending.attempt + 1)
    if ending.outputs:
        return _resumed(ending, history, breaker=breaker)
    if ending.kind == Kind.DISRUPTED:
        return _disrupted(ending, history, retries=retries, sibling_failed=sibling_failed, breaker=breaker)
    return _failed(ending, history, retries=retries, sibling_failed=sibling_failed, breaker=breaker)


def _resumed(ending: Ending, history: History, *, breaker: Breaker) -> Decision:
    """Some lines have outputs (the service worked on this range): they are done. The rest is split with nothing
    queued: the book proposes the maximal tree nodes nothing accounts for. No attempt or retry is spent, and the
    breaker does not count it; the disrupted or retried counter moves once, as for a split."""
    if ending.outputs is not None and ending.outputs >= ending.width:
        return Decision(next=Next.RECOVERED, history=history, breaker=breaker, recover=True)
    service_failed = ending.kind == Kind.FAILED
    history = dataclasses.replace(history, split=True, service_failed=history.service_failed or service_failed,
                                  disrupted=history.disrupted if service_failed else _noted(history.disrupted, ending))
    return Decision(next=Next.RESUMED, history=history, breaker=breaker, recover=True,
                    counted=ending.first_end and ending.this_round)


def _noted(attempts: frozenset[int], ending: Ending) -> frozenset[int]:
    """These attempts and the one that ended, if it ended in this round (an older round's changes nothing)."""
    return attempts | {ending.attempt} if ending.this_round else attempts


def _disrupted(ending: Ending, history: History, *, retries: int, sibling_failed: bool,
               breaker: Breaker) -> Decision:
    history = dataclasses.replace(history, disrupted=_noted(history.disrupted, ending))
    if len(history.disrupted) > MAX_DISRUPTIONS:
        ending = dataclasses.replace(ending, reason=f"disrupted {len(history.disrupted)} times, last: {ending.reason}")
        return _failed(ending, history, retries=retries, sibling_failed=sibling_failed, breaker=breaker)
    counted = ending.first_end and ending.this_round
    if ending.width > 1 and not history.split:
        # Its work so far is lost either way: two slots redo it in half the time.
        return Decision(next=Next.DISRUPTED, history=dataclasses.replace(history, split=True), breaker=breaker,
                        parts=2, counted=counted)
    return Decision(next=Next.DISRUPTED, history=history, breaker=breaker, attempt=ending.attempt + 1,
                    counted=counted)


def _failed(ending: Ending, history: History, *, retries: int, sibling_failed: bool, breaker: Breaker) -> Decision:
    if ending.width > 1:
        return _split(ending, history, sibling_failed=sibling_failed, breaker=breaker)
    return _retry(ending, history, retries=retries, breaker=breaker)


def _split(ending: Ending, history: History, *, sibling_failed: bool, breaker: Breaker) -> Decision:
    if history.split:
        return Decision(next=Next.NOTHING, history=history, breaker=breaker)
    broken = None
    if ending.this_round and sibling_failed:
        breaker = dataclasses.replace(breaker, both_halves_failed=breaker.both_halves_failed + 1)
        if breaker.both_halves_failed >= BROKEN_AFTER and not breaker.successes:
            broken = (f"before any success, both halves of {BROKEN_AFTER} failed ranges (or of their halves) failed "
                      f"too, the last in Job {ending.job}: {ending.reason}; nothing more is invoked: fix the service, "
                      "then redrive the batch")
    return Decision(next=Next.SPLIT, history=dataclasses.replace(history, split=True, service_failed=True),
                    breaker=breaker, parts=4 if ending.width >= QUARTERS_FROM else 2,
                    counted=ending.first_end and ending.this_round, broken=broken)


def _retry(ending: Ending, history: History, *, retries: int, breaker: Breaker) -> Decision:
    counted = ending.this_round and ending.first_end and ending.attempt not in history.failed
    history = dataclasses.replace(history, failed=_noted(history.failed, ending))
    if len(history.failed) > retries:
        return Decision(next=Next.ITEM_FAILED, history=history, breaker=breaker, reason=ending.reason)
    return Decision(next=Next.RETRY, history=history, breaker=breaker, attempt=ending.attempt + 1, counted=counted)
