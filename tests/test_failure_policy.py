"""The failure policy on its own: for each way a range's attempt can end short of success, and each history, what
happens next — halves, a retry, a failed item, lines run again after a disruption or a lost invocation, the
broken-service breaker — and which counters move."""
import dataclasses

import pytest

from oscar_batch.core.failure_policy import (
    BROKEN_AFTER,
    MAX_DISRUPTIONS,
    Breaker,
    Decision,
    Ending,
    History,
    Kind,
    Next,
    decide,
)

FAILED, DISRUPTED, LOST = Kind.FAILED, Kind.DISRUPTED, Kind.LOST
NONE = History()
SPLIT = History(split=True)
SERVICE_SPLIT = History(split=True, service_failed=True)
FRESH = Breaker()
WORKS = Breaker(successes=1)   # the service has succeeded this round


def ending(kind=FAILED, *, attempt=1, width=8, **more):
    return Ending(kind=kind, attempt=attempt, width=width, reason="Error (exit code 1)", job="j", **more)


def disrupted(*attempts):
    return History(disrupted=frozenset(attempts))


def failed(*attempts):
    return History(failed=frozenset(attempts))


BROKEN = (f"before any success, both halves of {BROKEN_AFTER} failed ranges (or of their halves) failed too, the "
          "last in Job j: "
          "Error (exit code 1); nothing more is invoked: fix the service, then redrive the batch")
TOO_DISRUPTED = f"disrupted {MAX_DISRUPTIONS + 1} times, last: Error (exit code 1)"

# (what ended, the range's history, retries, its sibling half failed too, the breaker) -> the decision
ROWS = {
    # a newer attempt of the lines decides: an older attempt's end, or one ending while a newer one runs
    "superseded": ((ending(superseded=True), NONE, 2, False, FRESH),
                   Decision(next=Next.NOTHING, history=NONE, breaker=FRESH)),
    "superseded disruption": ((ending(DISRUPTED, superseded=True), NONE, 2, False, FRESH),
                              Decision(next=Next.NOTHING, history=NONE, breaker=FRESH)),
    # OSCAR accepted it, no Job ran it: the same lines, next attempt, nothing spent
    "lost": ((ending(LOST, attempt=3), failed(1, 2), 2, False, FRESH),
             Decision(next=Next.REINVOKE, history=failed(1, 2), breaker=FRESH, attempt=4)),
    # its cluster was cut off too long: elsewhere, as the next attempt, nothing spent, the breaker untouched
    "reassigned": ((ending(Kind.REASSIGNED, attempt=2), disrupted(1), 2, True, FRESH),
                   Decision(next=Next.REINVOKE, history=disrupted(1), breaker=FRESH, attempt=3)),
    "reassigned, outputs unknown": ((ending(Kind.REASSIGNED, outputs=0), NONE, 2, False, FRESH),
                                    Decision(next=Next.REINVOKE, history=NONE, breaker=FRESH, attempt=2)),
    # ... with outputs: what it finished there is done, the rest runs as the free nodes (no suspect: nothing failed)
    "reassigned, some outputs": ((ending(Kind.REASSIGNED, outputs=3), NONE, 2, False, FRESH),
                                 Decision(next=Next.RESUMED, history=SPLIT, breaker=FRESH, recover=True)),
    "reassigned, every output": ((ending(Kind.REASSIGNED, outputs=8), NONE, 2, False, FRESH),
                                 Decision(next=Next.RECOVERED, history=NONE, breaker=FRESH, recover=True)),
    # disrupted: its lines run again, as halves when several, at no cost
    "disrupted range": ((ending(DISRUPTED), NONE, 0, False, FRESH),
                        Decision(next=Next.DISRUPTED, history=History(disrupted=frozenset({1}), split=True),
                                 breaker=FRESH, parts=2, counted=True)),
    "disrupted range already split": ((ending(DISRUPTED, attempt=2), SPLIT, 0, False, FRESH),
                                      Decision(next=Next.DISRUPTED, history=History(disrupted=frozenset({2}),
                                                                                    split=True),
                                               breaker=FRESH, attempt=3, counted=True)),
    "disrupted line": ((ending(DISRUPTED, width=1, attempt=2), disrupted(1), 0, False, FRESH),
                       Decision(next=Next.DISRUPTED, history=disrupted(1, 2), breaker=FRESH, attempt=3,
                                counted=True)),
    "disrupted line, its end seen before": ((ending(DISRUPTED, width=1, first_end=False), disrupted(1), 0, False,
                                             FRESH),
                                            Decision(next=Next.DISRUPTED, history=disrupted(1), breaker=FRESH,
                                                     attempt=2)),
    "disrupted line of an older redrive round": ((ending(DISRUPTED, width=1, this_round=False), NONE, 0, False,
                                                  FRESH),
                                                 Decision(next=Next.DISRUPTED, history=NONE, breaker=FRESH,
                                                          attempt=2)),
    "disrupted MAX_DISRUPTIONS times": ((ending(DISRUPTED, width=1, attempt=MAX_DISRUPTIONS),
                                         disrupted(*range(1, MAX_DISRUPTIONS)), 0, False, FRESH),
                                        Decision(next=Next.DISRUPTED,
                                                 history=disrupted(*range(1, MAX_DISRUPTIONS + 1)), breaker=FRESH,
                                                 attempt=MAX_DISRUPTIONS + 1, counted=True)),
    # disrupted once too often: it counts as failing, the reason says so
    "line disrupted too often, no retries": ((ending(DISRUPTED, width=1, attempt=4), disrupted(1, 2, 3), 0, False,
                                              FRESH),
                                             Decision(next=Next.ITEM_FAILED,
                                                      history=History(disrupted=frozenset({1, 2, 3, 4}),
                                                                      failed=frozenset({4})),
                                                      breaker=FRESH, reason=TOO_DISRUPTED)),
    "line disrupted too often, a retry left": ((ending(DISRUPTED, width=1, attempt=4), disrupted(1, 2, 3), 1,
                                                False, FRESH),
                                               Decision(next=Next.RETRY,
                                                        history=History(disrupted=frozenset({1, 2, 3, 4}),
                                                                        failed=frozenset({4})),
                                                        breaker=FRESH, attempt=5, counted=True)),
    "range disrupted too often": ((ending(DISRUPTED, attempt=4), disrupted(1, 2, 3), 0, False, FRESH),
                                  Decision(next=Next.SPLIT, history=History(disrupted=frozenset({1, 2, 3, 4}),
                                                                            split=True, service_failed=True),
                                           breaker=FRESH, parts=4, counted=True)),
    # the service failed several lines: its quarters run instead (its halves under four lines), whatever succeeded
    "failed range": ((ending(), NONE, 2, False, FRESH),
                     Decision(next=Next.SPLIT, history=SERVICE_SPLIT, breaker=FRESH, parts=4, counted=True)),
    "failed range, the service has succeeded": ((ending(), NONE, 2, False, WORKS),
                                                Decision(next=Next.SPLIT, history=SERVICE_SPLIT, breaker=WORKS,
                                                         parts=4, counted=True)),
    "failed range of four lines": ((ending(width=4), NONE, 2, False, WORKS),
                                   Decision(next=Next.SPLIT, history=SERVICE_SPLIT, breaker=WORKS, parts=4,
                                            counted=True)),
    "failed range of three lines": ((ending(width=3), NONE, 2, False, WORKS),
                                    Decision(next=Next.SPLIT, history=SERVICE_SPLIT, breaker=WORKS, parts=2,
                                             counted=True)),
    "failed range already split": ((ending(), SPLIT, 2, True, FRESH),
                                   Decision(next=Next.NOTHING, history=SPLIT, breaker=FRESH)),
    "failed range, its end seen before": ((ending(first_end=False), NONE, 2, False, FRESH),
                                          Decision(next=Next.SPLIT, history=SERVICE_SPLIT, breaker=FRESH,
                                                   parts=4)),
    "failed range of an older redrive round": ((ending(this_round=False), NONE, 2, True, FRESH),
                                               Decision(next=Next.SPLIT, history=SERVICE_SPLIT, breaker=FRESH,
                                                        parts=4)),
    # both halves of a split failed: the breaker counts, and trips before any success
    "both halves failed": ((ending(), NONE, 2, True, FRESH),
                           Decision(next=Next.SPLIT, history=SERVICE_SPLIT, breaker=Breaker(both_halves_failed=1),
                                    parts=4, counted=True)),
    "both halves failed, breaker trips": ((ending(), NONE, 2, True, Breaker(both_halves_failed=BROKEN_AFTER - 1)),
                                          Decision(next=Next.SPLIT, history=SERVICE_SPLIT,
                                                   breaker=Breaker(both_halves_failed=BROKEN_AFTER), parts=4,
                                                   counted=True, broken=BROKEN)),
    "both halves failed after a success": ((ending(), NONE, 2, True,
                                            Breaker(successes=1, both_halves_failed=BROKEN_AFTER - 1)),
                                           Decision(next=Next.SPLIT, history=SERVICE_SPLIT,
                                                    breaker=Breaker(successes=1, both_halves_failed=BROKEN_AFTER),
                                                    parts=4, counted=True)),
    # a single line: retried `retries` times, then a failed item
    "failed line": ((ending(width=1), NONE, 2, True, FRESH),
                    Decision(next=Next.RETRY, history=failed(1), breaker=FRESH, attempt=2, counted=True)),
    "failed line, last retry": ((ending(width=1, attempt=2), failed(1), 2, False, FRESH),
                                Decision(next=Next.RETRY, history=failed(1, 2), breaker=FRESH, attempt=3,
                                         counted=True)),
    "failed line, retries spent": ((ending(width=1, attempt=2), failed(1), 1, False, FRESH),
                                   Decision(next=Next.ITEM_FAILED, history=failed(1, 2), breaker=FRESH,
                                            reason="Error (exit code 1)")),
    "failed line, no retries": ((ending(width=1), NONE, 0, False, FRESH),
                                Decision(next=Next.ITEM_FAILED, history=failed(1), breaker=FRESH,
                                         reason="Error (exit code 1)")),
    "failed line, the same attempt again": ((ending(width=1), failed(1), 2, False, FRESH),
                                            Decision(next=Next.RETRY, history=failed(1), breaker=FRESH, attempt=2)),
    "failed line of an older redrive round": ((ending(width=1, this_round=False), NONE, 0, False, FRESH),
                                              Decision(next=Next.RETRY, history=NONE, breaker=FRESH, attempt=2)),
    # outputs declared: the lines with outputs are done, the rest is split with nothing queued
    "failed range, some outputs": ((ending(outputs=3), NONE, 2, True, FRESH),
                                   Decision(next=Next.RESUMED, history=SERVICE_SPLIT, breaker=FRESH, recover=True,
                                            counted=True)),
    "failed range, some outputs, its end seen before": ((ending(outputs=3, first_end=False), NONE, 2, False, FRESH),
                                                        Decision(next=Next.RESUMED, history=SERVICE_SPLIT,
                                                                 breaker=FRESH, recover=True)),
    "failed range, some outputs, older round": ((ending(outputs=3, this_round=False), NONE, 2, False, FRESH),
                                                Decision(next=Next.RESUMED, history=SERVICE_SPLIT, breaker=FRESH,
                                                         recover=True)),
    "disrupted range, some outputs": ((ending(DISRUPTED, outputs=3), NONE, 0, False, FRESH),
                                      Decision(next=Next.RESUMED,
                                               history=History(disrupted=frozenset({1}), split=True),
                                               breaker=FRESH, recover=True, counted=True)),
    "disrupted too often, some outputs": ((ending(DISRUPTED, attempt=4, outputs=3), disrupted(1, 2, 3), 0, False,
                                           FRESH),
                                          Decision(next=Next.RESUMED,
                                                   history=History(disrupted=frozenset({1, 2, 3, 4}), split=True),
                                                   breaker=FRESH, recover=True, counted=True)),
    "failed range, every output": ((ending(outputs=8), NONE, 2, False, FRESH),
                                   Decision(next=Next.RECOVERED, history=NONE, breaker=FRESH, recover=True)),
    "failed line with its output": ((ending(width=1, outputs=1), NONE, 0, False, FRESH),
                                    Decision(next=Next.RECOVERED, history=NONE, breaker=FRESH, recover=True)),
    # no output at all: as without outputs (a service that fails everything writes none; the breaker sees it)
    "failed range, no output": ((ending(outputs=0), NONE, 2, True, Breaker(both_halves_failed=BROKEN_AFTER - 1)),
                                Decision(next=Next.SPLIT, history=SERVICE_SPLIT,
                                         breaker=Breaker(both_halves_failed=BROKEN_AFTER), parts=4,
                                         counted=True, broken=BROKEN)),
    "failed line, no output": ((ending(width=1, outputs=0), NONE, 2, True, FRESH),
                               Decision(next=Next.RETRY, history=failed(1), breaker=FRESH, attempt=2, counted=True)),
    "disrupted range, no output": ((ending(DISRUPTED, outputs=0), NONE, 0, False, FRESH),
                                   Decision(next=Next.DISRUPTED, history=History(disrupted=frozenset({1}), split=True),
                                            breaker=FRESH, parts=2, counted=True)),
    # a newer attempt decides, and a lost invocation wrote nothing
    "superseded, some outputs": ((ending(superseded=True, outputs=3), NONE, 2, False, FRESH),
                                 Decision(next=Next.NOTHING, history=NONE, breaker=FRESH)),
}


@pytest.mark.parametrize(("given", "expected"), ROWS.values(), ids=ROWS.keys())
def test_what_happens_next(given, expected):
    what, history, retries, sibling_failed, breaker = given
    assert decide(what, history, retries=retries, sibling_failed=sibling_failed, breaker=breaker) == expected


def test_a_success_counts_for_the_breaker_and_nothing_else():
    assert Breaker(both_halves_failed=2).succeeded() == Breaker(successes=1, both_halves_failed=2)


def test_decisions_leave_their_inputs_alone():
    history, breaker = disrupted(1), Breaker(both_halves_failed=1)
    before = dataclasses.replace(history), dataclasses.replace(breaker)
    decide(ending(DISRUPTED, attempt=2), history, retries=0, sibling_failed=True, breaker=breaker)
    decide(ending(), history, retries=0, sibling_failed=True, breaker=breaker)
    assert (history, breaker) == before
