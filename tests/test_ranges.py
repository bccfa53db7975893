"""The ranges core: bounds (the original tool's 1-based, end-exclusive `start`/`end`), sizing, the compact
index lists kept in status, and the RangeBook state machine."""
import itertools
import math
import random
from collections import Counter

import pytest

from oscar_batch.core.ranges import (
    MAX_RANGES,
    Outcome,
    RangeBook,
    State,
    choose_items_per_invocation,
    decode_indexes,
    encode_indexes,
    range_bounds,
    range_count,
)

S, F, R = Outcome.SUCCEEDED, Outcome.FAILED, Outcome.RUNNING


def all_bounds(items, per_range):
    return [range_bounds(index, items, per_range) for index in range(range_count(items, per_range))]


def assert_consistent(book):
    """pending + running + succeeded + failed == total, and the counts agree with the per-range states."""
    counts = book.counts()
    assert counts.pending + counts.running + counts.succeeded + counts.failed == counts.total == book.total
    assert min(counts.pending, counts.running, counts.succeeded, counts.failed) >= 0
    states = Counter(book.state(index) for index in range(book.total))
    assert (states[State.PENDING], states[State.RUNNING], states[State.SUCCEEDED], states[State.FAILED]) == (
        counts.pending, counts.running, counts.succeeded, counts.failed)
    assert not book.succeeded() & book.failed()
    assert book.done() == (counts.pending == counts.running == 0)


# --- bounds -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("items", "per_range", "expected"), [
    (0, 3, []),
    (1, 1, [(1, 2)]),
    (2, 5, [(1, 3)]),                                  # N < k: one short range, ends at N+1
    (5, 5, [(1, 6)]),
    (9, 3, [(1, 4), (4, 7), (7, 10)]),                 # divisible
    (10, 3, [(1, 4), (4, 7), (7, 10), (10, 11)]),      # not divisible: the last range is short
    (11, 3, [(1, 4), (4, 7), (7, 10), (10, 12)]),
    (4, 1, [(1, 2), (2, 3), (3, 4), (4, 5)]),
])
def test_range_bounds(items, per_range, expected):
    assert all_bounds(items, per_range) == expected


@pytest.mark.parametrize(("items", "per_range"), [
    (1, 1), (1, 7), (6, 7), (7, 7), (8, 7), (100, 1), (100, 10), (101, 10), (99, 10), (1000, 3), (12345, 250),
])
def test_ranges_cover_every_line_exactly_once(items, per_range):
    bounds = all_bounds(items, per_range)
    assert len(bounds) == range_count(items, per_range) == math.ceil(items / per_range)
    assert bounds[0][0] == 1 and bounds[-1][1] == items + 1
    lines = [line for start, end in bounds for line in range(start, end)]
    assert lines == list(range(1, items + 1))          # union is 1..N, in order, nothing twice
    for (_, end), (next_start, _) in itertools.pairwise(bounds):
        assert end == next_start                        # each range starts where the previous ended
    sizes = [end - start for start, end in bounds]
    assert all(size == per_range for size in sizes[:-1]) and 1 <= sizes[-1] <= per_range


@pytest.mark.parametrize(("items", "per_range", "expected"), [(0, 5, 0), (-3, 5, 0), (1, 5, 1), (5, 5, 1),
                                                               (6, 5, 2), (100_000, 1, 100_000)])
def test_range_count(items, per_range, expected):
    assert range_count(items, per_range) == expected


# --- choosing items per invocation -----------------------------------------------------------------------------

@pytest.mark.parametrize(("items", "slots", "kwargs", "expected"), [
    (1000, 10, {}, 25),                                # 40 ranges: 4 per slot
    (1000, 1, {}, 250),
    (1000, 0, {}, 250),                                # 0 slots counts as 1
    (1000, -2, {}, 250),
    (3, 10, {}, 1),                                    # never below one item
    (0, 10, {}, 1),                                    # no items at all
    (-1, 10, {}, 1),
    (1_000_000, 1000, {}, 250),
    (10_000_000, 100_000, {}, 100),                    # capped at MAX_RANGES ranges
    (100, 2, {"waves": 5, "max_ranges": 5}, 20),
    (100, 2, {"waves": 1}, 50),
])
def test_choose_items_per_invocation(items, slots, kwargs, expected):
    assert choose_items_per_invocation(items, slots, **kwargs) == expected


@pytest.mark.parametrize("items", [1, 7, 64, 1000, 99_999, 5_000_000, 123_456_789])
@pytest.mark.parametrize("slots", [0, 1, 3, 16, 500, 200_000])
def test_chosen_size_keeps_slots_busy_several_times_over(items, slots):
    per_range = choose_items_per_invocation(items, slots)
    ranges = range_count(items, per_range)
    wanted = 4 * max(1, slots)
    assert per_range >= 1
    assert ranges <= min(wanted, MAX_RANGES) or ranges == items <= MAX_RANGES
    if items >= wanted and wanted <= MAX_RANGES:
        assert ranges >= wanted / 2                     # about 4 ranges per slot, never a handful


# --- compact index lists ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("indexes", "text"), [
    ([], ""),
    ([5], "5"),
    ([0], "0"),
    ([0, 1, 2], "0-2"),
    ([0, 2, 4], "0,2,4"),
    ([45, 43, 46] + list(range(42)), "0-41,43,45-46"),  # unsorted input
    ([3, 1, 1, 2, 2], "1-3"),                           # duplicates do not repeat
    ({7, 8, 9, 100}, "7-9,100"),
    (iter([10, 11]), "10-11"),
])
def test_encode_indexes(indexes, text):
    materialized = list(indexes)
    assert encode_indexes(iter(materialized)) == text
    assert list(decode_indexes(text)) == sorted(set(materialized))


@pytest.mark.parametrize(("text", "indexes"), [
    (None, []),
    ("", []),
    ("  ", []),
    ("0-41,43", list(range(42)) + [43]),
    (" 1 , 3-4 ", [1, 3, 4]),
    ("7-7", [7]),
])
def test_decode_indexes(text, indexes):
    assert list(decode_indexes(text)) == indexes


@pytest.mark.parametrize("text", ["x", "1-", "-1", "3-1", "1-2-3", "1,a", "1.5", "0x10", "z:not base64!",
                                  "z:aGVsbG8=", "z:"])
def test_decode_rejects_anything_else(text):
    with pytest.raises(ValueError):
        list(decode_indexes(text))


@pytest.mark.parametrize(("indexes", "limit"), [
    (range(0, 100_000, 3), 5_000),                     # scattered: stored as a bitmap
    (random.Random(4).sample(range(100_000), 50_000), 17_000),    # half the ranges, at random
    (range(100_000), 20),                               # one run stays a run
    (list(range(0, 50_000)) + list(range(50_001, 100_000)), 20),
])
def test_large_index_sets_stay_small_and_round_trip(indexes, limit):
    expected = sorted(set(indexes))
    text = encode_indexes(indexes)
    assert len(text) < limit
    assert list(decode_indexes(text)) == expected


# --- RangeBook ---------------------------------------------------------------------------------------------------

def take(book, limit, now=0.0):
    """Invoke whatever the book offers, as the controller does once OSCAR accepts each one."""
    chosen = book.next_to_dispatch(limit)
    for index, attempt in chosen:
        book.invoked(index, attempt, f"job-{index}-{attempt}", started="t", now=now)
    return chosen


def test_book_requires_a_positive_range_size():
    with pytest.raises(ValueError):
        RangeBook(10, 0, 2)


def test_retry_path():
    book = RangeBook(items=50, per_range=10, retries=2)            # 5 ranges
    assert take(book, 3) == [(0, 1), (1, 1), (2, 1)]
    assert book.observe(2, 1, R, "job-2-1", started="t0") is None  # already running: nothing changes
    assert book.observe(2, 1, F, "job-2-1", finished="t1") == State.PENDING
    assert book.attempts(2) == 1 and book.counts().retried == 1
    assert take(book, 2) == [(2, 2), (3, 1)]            # the retry goes first
    assert book.observe(2, 2, S, "job-2-2", finished="t2") == State.SUCCEEDED
    assert book.records[2].jobs == ["job-2-1", "job-2-2"]
    assert (book.records[2].started, book.records[2].finished) == ("t", "t2")   # started when OSCAR accepted it
    assert book.counts() == type(book.counts())(total=5, pending=1, running=3, succeeded=1, failed=0, retried=1)
    assert_consistent(book)


@pytest.mark.parametrize("retries", [0, 1, 2, 3])
def test_retries_exhausted(retries):
    book = RangeBook(items=4, per_range=4, retries=retries)
    for attempt in range(1, retries + 2):
        assert take(book, 5) == [(0, attempt)]
        expected = State.FAILED if attempt == retries + 1 else State.PENDING
        assert book.observe(0, attempt, F) == expected
        assert_consistent(book)
    assert take(book, 5) == []
    assert book.failed() == {0} and book.attempts(0) == retries + 1
    assert book.counts().retried == retries and book.done()


def test_retries_one_two_failures_fail_the_range():
    book = RangeBook(items=3, per_range=1, retries=1)
    take(book, 3)
    assert book.observe(1, 1, F) == State.PENDING
    assert take(book, 3) == [(1, 2)]
    assert book.observe(1, 2, F) == State.FAILED
    assert book.state(1) == State.FAILED and not book.done()


@pytest.mark.parametrize("exhausted", [False, True])
def test_late_success_of_an_old_attempt_wins(exhausted):
    book = RangeBook(items=2, per_range=1, retries=1)
    take(book, 1)
    book.observe(0, 1, F)
    assert take(book, 1) == [(0, 2)]
    if exhausted:
        assert book.observe(0, 2, F) == State.FAILED
    assert book.observe(0, 1, S) == State.SUCCEEDED
    assert book.state(0) == State.SUCCEEDED and book.running() == {} and book.failed() == set()
    assert_consistent(book)


def test_stale_failure_of_an_older_attempt_is_ignored():
    book = RangeBook(items=2, per_range=1, retries=2)
    take(book, 1)
    book.observe(0, 1, F)
    take(book, 1)
    assert book.observe(0, 1, F) is None
    assert book.state(0) == State.RUNNING and book.running() == {0: 2} and book.counts().retried == 1


@pytest.mark.parametrize("script", [
    [(0, 1, R)],
    [(0, 1, R), (0, 1, F)],
    [(0, 1, R), (0, 1, S)],
    [(0, 1, F), (0, 2, R)],
    [(0, 1, F), (0, 2, F), (0, 3, F)],
])
def test_repeated_observations_are_idempotent(script):
    book = RangeBook(items=1, per_range=1, retries=2)
    for index, attempt, outcome in script:
        book.observe(index, attempt, outcome)
        snapshot = (book.counts(), book.running(), book.attempts(index), book.state(index))
        assert book.observe(index, attempt, outcome) is None
        assert (book.counts(), book.running(), book.attempts(index), book.state(index)) == snapshot


@pytest.mark.parametrize(("observations", "state", "attempts"), [
    # What a restarted operator lists, in every order: the newest attempt decides, a success wins.
    *[(list(order), State.RUNNING, 2) for order in itertools.permutations([(1, F), (2, R)])],
    *[(list(order), State.RUNNING, 3) for order in itertools.permutations([(1, F), (2, F), (3, R)])],
    *[(list(order), State.FAILED, 3) for order in itertools.permutations([(1, F), (2, F), (3, F)])],
    *[(list(order), State.SUCCEEDED, 3) for order in itertools.permutations([(1, F), (2, F), (3, S)])],
    *[(list(order), State.SUCCEEDED, 2) for order in itertools.permutations([(1, F), (2, S), (1, F)])],
    *[(list(order), State.PENDING, 2) for order in itertools.permutations([(1, F), (2, F)])],
])
def test_out_of_order_restart_observations(observations, state, attempts):
    book = RangeBook(items=6, per_range=2, retries=2)                # a fresh book after a restart
    for attempt, outcome in observations:
        book.observe(1, attempt, outcome)
        assert_consistent(book)
    assert book.state(1) == state and book.attempts(1) == attempts
    dispatched = take(book, 10)
    expected_retry = [(1, attempts + 1)] if state == State.PENDING else []
    assert dispatched == expected_retry + [(0, 1), (2, 1)]


@pytest.mark.parametrize(("index", "attempt"), [(-1, 1), (5, 1), (0, 0), (0, -1)])
def test_observations_outside_the_book_are_ignored(index, attempt):
    book = RangeBook(items=5, per_range=1, retries=2)
    assert book.observe(index, attempt, S) is None
    assert book.counts().succeeded == 0 and book.records == {}


def test_restore_skips_what_status_recorded():
    book = RangeBook(items=6, per_range=1, retries=2)
    book.restore(decode_indexes("0,2-3"), decode_indexes("3,5,17"))   # 3 in both: success wins; 17 unknown
    assert book.succeeded() == {0, 2, 3} and book.failed() == {5}
    assert_consistent(book)
    assert take(book, 10) == [(1, 1), (4, 1)]
    assert take(book, 10) == []
    assert book.observe(5, 1, S) == State.SUCCEEDED                 # a late success still wins over restored failure


@pytest.mark.parametrize(("succeeded", "failed"), [([0, 1, 99], []), ([-1], [7]), ([], [0, 1, 2, 3])])
def test_restore_ignores_indexes_outside_the_book(succeeded, failed):
    book = RangeBook(items=4, per_range=1, retries=0)
    book.restore(succeeded, failed)
    assert_consistent(book)
    assert book.done() == (len({i for i in succeeded + failed if 0 <= i < 4}) == 4)


@pytest.mark.parametrize("attempts_before", [0, 1, 2])
def test_a_choice_that_never_reached_oscar_leaves_no_trace(attempts_before):
    book = RangeBook(items=3, per_range=1, retries=5)
    for attempt in range(1, attempts_before + 1):
        assert take(book, 1) == [(0, attempt)]
        book.observe(0, attempt, F)
    attempt = attempts_before + 1
    offered = book.next_to_dispatch(3)
    assert offered[0] == (0, attempt)
    assert book.counts().running == 0 and book.attempts(0) == attempts_before     # nothing marked
    assert_consistent(book)
    assert book.next_to_dispatch(3) == offered                       # the same attempts, first in line


def test_invoked_marks_running_once_and_waits_for_the_job():
    book = RangeBook(items=3, per_range=1, retries=1)
    book.invoked(1, 1, "job-1-1", started="t0", now=10.0)
    book.invoked(1, 1, "job-1-1", started="t0", now=11.0)             # OSCAR said "exists": same attempt, no-op
    assert book.running() == {1: 1} and book.records[1].jobs == ["job-1-1"]
    assert book.unseen_since(9.0) == [] and book.unseen_since(10.0) == [(1, 1, "job-1-1")]
    book.observe(1, 1, R, "job-1-1")                                  # the Job showed up
    assert book.unseen_since(99.0) == []
    assert book.next_to_dispatch(5) == [(0, 1), (2, 1)]


def test_a_lost_invocation_is_invoked_again_under_a_new_attempt_without_spending_a_retry():
    book = RangeBook(items=2, per_range=1, retries=0)
    assert take(book, 2, now=5.0) == [(0, 1), (1, 1)]
    book.observe(1, 1, R)
    assert book.unseen_since(6.0) == [(0, 1, "job-0-1")]
    book.still_unseen(0, now=7.0)                                     # OSCAR still lists it: wait longer
    assert book.unseen_since(6.0) == []
    book.lost_invocation(0, 1)
    assert book.state(0) == State.PENDING and book.lost == 1
    assert_consistent(book)
    assert take(book, 2) == [(0, 2)]                                  # a new identity, retries 0 notwithstanding
    book.lost_invocation(0, 2)                                        # its Job was never overdue: ignored
    book.observe(0, 2, R)
    book.lost_invocation(0, 2)                                        # seen: never lost
    assert book.state(0) == State.RUNNING
    assert book.observe(0, 1, F) is None                              # a late Job of the lost attempt
    assert book.observe(0, 2, S) == State.SUCCEEDED and book.counts().retried == 0


def test_a_lost_attempt_failing_later_counts_once():
    book = RangeBook(items=1, per_range=1, retries=1)
    take(book, 1)
    book.lost_invocation(0, 1)
    assert take(book, 1) == [(0, 2)]
    assert book.observe(0, 1, F) is None                              # attempt 2 is in flight: it decides
    assert book.observe(0, 2, F) == State.FAILED                      # two failures > 1 retry


def test_redrive_gives_failed_ranges_a_fresh_round():
    book = RangeBook(items=4, per_range=1, retries=1)
    take(book, 4)
    for index in (0, 1):
        book.observe(index, 1, S)
    for attempt in (1, 2):
        book.observe(2, attempt, F)
        book.observe(3, attempt, F)
        take(book, 4)
    assert book.failed() == {2, 3} and book.done()
    assert book.redrive(1) == [2, 3]
    assert book.counts().failed == 0 and not book.done()
    assert_consistent(book)
    assert take(book, 4) == [(2, 3), (3, 3)]                          # attempts go on, never reused
    assert book.observe(2, 3, F, redrive_round=1) == State.PENDING     # one retry in the new round
    assert book.observe(2, 1, F, redrive_round=0) is None             # old rounds do not spend it
    assert take(book, 4) == [(2, 4)]
    assert book.observe(2, 4, F, redrive_round=1) == State.FAILED
    assert book.observe(3, 3, S, redrive_round=1) == State.SUCCEEDED


def test_after_a_restart_old_round_failures_leave_a_redriven_range_pending():
    book = RangeBook(items=2, per_range=1, retries=0, redrive_round=1)   # status: redrive 1 done, range 1 redriven
    book.restore([0], [])
    book.observe(1, 1, F, redrive_round=0)
    assert book.state(1) == State.PENDING
    assert take(book, 2) == [(1, 2)]


@pytest.mark.parametrize("limit", [0, -3])
def test_next_to_dispatch_with_no_room(limit):
    book = RangeBook(items=3, per_range=1, retries=0)
    assert take(book, limit) == []
    assert book.counts().pending == 3


@pytest.mark.parametrize(("items", "outcomes", "done"), [
    (0, {}, True),
    (3, {}, False),
    (3, {0: S, 1: S, 2: S}, True),
    (3, {0: S, 1: F, 2: F}, True),
    (3, {0: S, 1: S, 2: R}, False),
    (3, {0: S, 1: S}, False),
])
def test_done(items, outcomes, done):
    book = RangeBook(items=items, per_range=1, retries=0)
    take(book, items)
    for index, outcome in outcomes.items():
        book.observe(index, 1, outcome)
    assert book.done() is done


class Cluster:
    """The Jobs a scripted run created: (range, attempt) -> what the Job says now."""

    def __init__(self):
        self.jobs: dict[tuple[int, int], Outcome] = {}

    def running(self):
        return [key for key, outcome in self.jobs.items() if outcome == R]


def dispatch(book, cluster, rng, limit):
    for index, attempt in book.next_to_dispatch(limit):
        # never a range that succeeded, never an attempt twice, never past the retries
        assert all(cluster.jobs[(index, earlier)] == F for earlier in range(1, attempt))
        assert (index, attempt) not in cluster.jobs and attempt <= book.retries + 1
        if rng.random() < 0.1:
            break  # OSCAR unreachable: this and the rest stay pending
        cluster.jobs[(index, attempt)] = R
        book.invoked(index, attempt, f"job-{index}-{attempt}", started="t", now=0.0)
        if rng.random() < 0.5:
            book.observe(index, attempt, R)


def restart(book, cluster, rng):
    """What a new operator process does: status lists back, then every Job listed again in any order."""
    fresh = RangeBook(book.items, book.per_range, book.retries)
    fresh.restore(decode_indexes(encode_indexes(book.succeeded())), decode_indexes(encode_indexes(book.failed())))
    listed = list(cluster.jobs.items())
    rng.shuffle(listed)
    for (index, attempt), outcome in listed:
        fresh.observe(index, attempt, outcome)
    return fresh


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_invariant_through_a_scripted_random_run(seed):
    rng = random.Random(seed)
    book = RangeBook(items=97, per_range=4, retries=2)              # 25 ranges
    cluster = Cluster()
    for _ in range(400):
        roll = rng.random()
        if roll < 0.3:
            dispatch(book, cluster, rng, rng.randint(0, 4))
        elif roll < 0.55 and cluster.running():
            key = rng.choice(cluster.running())
            cluster.jobs[key] = S if rng.random() < 0.6 else F
        elif roll < 0.95 and cluster.jobs:                           # includes stale and repeated observations
            (index, attempt), outcome = rng.choice(list(cluster.jobs.items()))
            book.observe(index, attempt, outcome)
        else:
            book = restart(book, cluster, rng)
        assert_consistent(book)
    for _ in range(1000):                                           # drain: everything ends
        if book.done():
            break
        for key in cluster.running():
            cluster.jobs[key] = S if rng.random() < 0.6 else F
        for (index, attempt), outcome in list(cluster.jobs.items()):
            book.observe(index, attempt, outcome)
            assert_consistent(book)
        dispatch(book, cluster, rng, 5)
        assert_consistent(book)
    assert book.done()
    for index in range(book.total):
        outcomes = {attempt: outcome for (i, attempt), outcome in cluster.jobs.items() if i == index}
        if book.state(index) == State.SUCCEEDED:
            assert S in outcomes.values()
        else:
            assert book.state(index) == State.FAILED
            assert outcomes == {attempt: F for attempt in range(1, book.retries + 2)}


def test_the_jobs_of_a_settled_range_become_cleanable_once():
    book = RangeBook(items=3, per_range=1, retries=1)
    take(book, 3)
    book.observe(0, 1, F, "job-0-1")
    assert book.take_cleanable() == []                                # pending a retry: its Jobs are evidence
    take(book, 3)
    book.observe(0, 2, S, "job-0-2")
    book.observe(1, 1, S, "job-1-1")
    assert book.take_cleanable() == ["job-0-1", "job-0-2", "job-1-1"]
    assert book.take_cleanable() == []
    book.observe(1, 1, S, "job-1-1")                                  # seen again: already handed out
    assert book.take_cleanable() == []


def test_after_a_restart_jobs_of_ranges_settled_in_status_are_cleanable():
    book = RangeBook(items=2, per_range=1, retries=0)
    book.restore([0], [1])
    book.observe(0, 1, S, "job-0-1")
    book.observe(1, 1, F, "job-1-1")
    assert book.take_cleanable() == ["job-0-1", "job-1-1"]
