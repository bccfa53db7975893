"""The item bookkeeping: ranges carved and invoked, halving down to a single corrupt item, disruptions that
cost nothing, restarts (even mid-halving) that invoke nothing twice, and redrive."""
import collections
import random

import pytest

from oscar_batch.core.chunking import CarveLog, carve_sizes
from oscar_batch.core.failure_policy import BROKEN_AFTER, MAX_DISRUPTIONS
from oscar_batch.core.items import Lines
from oscar_batch.core.ranges import Change, Observation, Outcome, RangeBook, Work

S, F, R = Outcome.SUCCEEDED, Outcome.FAILED, Outcome.RUNNING


def job(work_or_key, attempt=None):
    start, end = (work_or_key.start, work_or_key.end) if isinstance(work_or_key, Work) else work_or_key
    return f"j-l{start}-{end}-a{attempt or work_or_key.attempt}"


def assert_consistent(book):
    counts = book.counts()
    assert counts.pending + counts.running + counts.succeeded + counts.failed == counts.total
    assert min(counts.pending, counts.running, counts.succeeded, counts.failed) >= 0
    assert not any(book.failed.overlaps(start, end) for start, end in book.succeeded)


class Cluster:
    """Drives a book the way the controller does: carve when the retries run out, invoke, and end ranges."""

    def __init__(self, book, slots, bad=(), disrupted=(), invoked=None, outputs=None):
        self.book, self.slots = book, slots
        self.bad = set(bad)                       # corrupt lines: any range holding one fails
        self.disrupted = set(disrupted)           # (start, end, attempt) whose pod is evicted
        self.invoked = invoked if invoked is not None else collections.Counter()   # Job name -> invocations
        self.succeeded_jobs: list[tuple[int, int]] = []
        # Declared outputs (None: not declared): the service writes each line's output as it goes, in line order;
        # a corrupt line ends its run, a disruption ends it halfway through
        self.outputs = outputs
        self.processed = collections.Counter()    # line -> runs that wrote its output

    def dispatch(self):
        book, counts = self.book, self.book.counts()
        free = self.slots - counts.in_flight
        work = book.next_to_dispatch(free)
        if len(work) < free and book.can_carve():
            carved = book.carves.frontier - 1
            book.carve(carve_sizes(remaining=book.items - carved, free=free - len(work), slots=self.slots,
                                   first_wave=carved < 0.9 * book.items, items=book.items, min_items=1))
            book.carving_recorded(book.carves.frontier)
            work = book.next_to_dispatch(free)
        for item in work:
            self.invoked[job(item)] += 1
            book.invoked(item, job=job(item), started="t", now=0.0, cluster="c")
        return work

    def end_oldest(self):
        (start, end), attempt = min(self.book.in_flight.attempts().items())
        key = (start, end)
        if (start, end, attempt) in self.disrupted:
            self.write_outputs(start, (start + end) // 2)
            return self.book.observe(Observation(start=start, end=end, attempt=attempt, outcome=F,
                                                 job=job(key, attempt), disruption=True,
                                                 failure_reason="pod Evicted", outputs=self.found()))
        if any(start <= line < end for line in self.bad):
            self.write_outputs(start, min(line for line in self.bad if start <= line < end))
            return self.book.observe(Observation(start=start, end=end, attempt=attempt, outcome=F,
                                                 job=job(key, attempt), failure_reason="Error (exit code 1)",
                                                 outputs=self.found()))
        self.write_outputs(start, end)
        self.succeeded_jobs.append(key)
        return self.book.observe(Observation(start=start, end=end, attempt=attempt, outcome=S, job=job(key, attempt)))

    def write_outputs(self, start, end):
        self.processed.update(range(start, end))
        if self.outputs is not None:
            self.outputs.add(start, end)

    def found(self):
        """What the operator's lookup finds: the outputs in the bucket, or None when none are declared."""
        return None if self.outputs is None else Lines(self.outputs)

    def run(self, steps=10_000):
        for _ in range(steps):
            if self.book.done():
                return
            self.dispatch()
            assert_consistent(self.book)
            if self.book.in_flight.attempts():
                self.end_oldest()
        raise AssertionError("the batch did not end")


def each_line_succeeded_once(cluster):
    per_line = collections.Counter(line for start, end in cluster.succeeded_jobs for line in range(start, end))
    return set(per_line.values()) <= {1}


# --- whole batches ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("items", "slots", "bad", "retries"), [
    (100, 4, (), 2),
    (1, 4, (), 2),
    (7, 16, (), 0),                       # more slots than lines
    (1000, 8, (10,), 2),                  # one corrupt input
    (1000, 8, (1, 2, 3, 500, 1000), 1),   # neighbours, and the first and last lines
    (257, 3, (128, 129), 0),
])
def test_a_batch_ends_with_every_good_line_done_once_and_the_bad_ones_named(items, slots, bad, retries):
    book = RangeBook(items, retries)
    cluster = Cluster(book, slots, bad=bad)
    cluster.run()
    assert book.failed == Lines((line, line + 1) for line in bad)
    assert sorted(book.failed_items) == sorted(bad)
    assert all(cluster.invoked[book.failed_items[line].job] == 1 for line in bad)
    assert len(book.succeeded) == items - len(bad) and each_line_succeeded_once(cluster)
    assert set(cluster.invoked.values()) == {1}                          # no Job name invoked twice
    for line in bad:                                                      # a bad item is tried 1 + retries times
        assert sum(1 for name in cluster.invoked if name.startswith(f"j-l{line}-{line + 1}-")) == retries + 1


def test_splitting_costs_a_logarithm_of_the_range_per_corrupt_item():
    book = RangeBook(1024, retries=0)
    cluster = Cluster(book, slots=1, bad=(700,))
    cluster.run()
    # the first wave (8 ranges of 103 lines, even on one slot) and the rest; the bad range splits into quarters
    # ~3 times (4 invocations a level over log4(103) levels: as many as 2 over log2(103) halvings, in half the
    # generations)
    assert book.counts().invocations <= 8 + 4 + 2 * 7 + 2
    assert book.counts().retried >= 3
    assert jobs_holding(cluster, 700) <= 5


def test_a_disruption_runs_the_lines_again_as_halves_and_spends_no_retry():
    book = RangeBook(100, retries=0)
    cluster = Cluster(book, slots=4, disrupted={(1, 13, 1), (1, 7, 1)})    # first-wave ranges of 12 lines
    cluster.run()
    assert len(book.succeeded) == 100 and len(book.failed) == 0 and book.counts().disrupted == 2
    assert cluster.invoked[job((1, 7), 1)] == cluster.invoked[job((7, 13), 1)] == 1     # halves, not again
    assert cluster.invoked[job((1, 4), 1)] == cluster.invoked[job((4, 7), 1)] == 1
    assert job((1, 13), 2) not in cluster.invoked
    assert book.counts().retried == 0


def test_a_line_disrupted_again_and_again_counts_as_failing():
    book = RangeBook(20, retries=0)
    cluster = Cluster(book, slots=1, disrupted={(1, 2, attempt) for attempt in range(1, 10)} | {(1, 4, 1)})
    cluster.run()
    assert cluster.invoked[job((1, 2), MAX_DISRUPTIONS + 1)] == 1
    assert job((1, 2), MAX_DISRUPTIONS + 2) not in cluster.invoked   # failed for good (retries 0)
    assert len(book.succeeded) == 19 and sorted(book.failed_items) == [1]
    assert "disrupted 4 times" in book.failed_items[1].reason


def test_a_service_that_fails_everything_stops_after_a_few_invocations():
    book = RangeBook(10_000, retries=2)
    cluster = Cluster(book, slots=4, bad=range(1, 10_001))
    cluster.run()
    assert book.done() and book.broken and "fix the service" in book.broken
    # a few dozen, not one per line (quarters: 78 here; halves made 64 at most)
    assert sum(cluster.invoked.values()) <= 20 * BROKEN_AFTER
    assert book.next_to_dispatch(4) == []


# --- declared outputs: resuming from the first missing output ---------------------------------------------------

def failed_with_outputs(outputs, *, disruption=False):
    """A book of one carved range [1, 101) whose first attempt failed (or was disrupted) with these outputs."""
    book = RangeBook(100, retries=0, carves=CarveLog.decode(100, "1:1x100"))
    book.invoked(Work(1, 101, 1), job="j-l1-101-a1", started="t", now=0.0, cluster="c")
    change = book.observe(Observation(start=1, end=101, attempt=1, outcome=F, job="j-l1-101-a1",
                                      disruption=disruption, outputs=outputs))
    return book, change


# the outputs found for the failed range [1, 101) -> what runs next (the first line without output alone, the rest of
# its tree node as the nodes beside its path, then the halving tree's maximal nodes nothing accounts for), and the
# lines recovered
RESUMPTIONS = {
    "outputs for 1..36": (Lines([(1, 37)]), [(37, 38), (38, 51), (51, 101)], 36),
    "outputs for 1..25": (Lines([(1, 26)]), [(26, 27), (27, 29), (29, 32), (32, 38), (38, 51), (51, 101)], 25),
    "outputs for 1..98": (Lines([(1, 99)]), [(99, 100), (100, 101)], 98),
    "outputs for 1..99": (Lines([(1, 100)]), [(100, 101)], 99),
    "scattered outputs": (Lines([(1, 11), (60, 71)]),
                          [(11, 12), (12, 13), (13, 26), (26, 51), (51, 57), (57, 60), (71, 72), (72, 76), (76, 101)],
                          21),
    "outputs beyond the range count not": (Lines([(1, 37), (101, 200)]), [(37, 38), (38, 51), (51, 101)], 36),
    "every output": (Lines([(1, 101)]), [], 100),
    "no output: quarters": (Lines(), [(1, 26), (26, 51), (51, 76), (76, 101)], 0),
    "not looked up: quarters": (None, [(1, 26), (26, 51), (51, 76), (76, 101)], 0),
}


@pytest.mark.parametrize(("outputs", "proposed", "recovered"), RESUMPTIONS.values(), ids=RESUMPTIONS.keys())
def test_outputs_decide_what_a_failed_range_still_needs(outputs, proposed, recovered):
    book, change = failed_with_outputs(outputs)
    assert [work.key for work in book.next_to_dispatch(20)] == proposed
    assert all(work.attempt == 1 for work in book.next_to_dispatch(20))
    counts = book.counts()
    assert counts.recovered == recovered and counts.succeeded == recovered
    assert change == (Change.SPLIT if not outputs else Change.RESUMED)
    assert counts.retried == (0 if recovered == 100 else 1) and counts.disrupted == 0
    assert book.done() == (recovered == 100)


def test_a_disrupted_range_with_outputs_runs_only_the_lines_without_and_spends_nothing():
    book, change = failed_with_outputs(Lines([(1, 37)]), disruption=True)
    assert change == Change.DISRUPTED
    assert [work.key for work in book.next_to_dispatch(20)] == [(37, 38), (38, 51), (51, 101)]
    counts = book.counts()
    assert (counts.recovered, counts.disrupted, counts.retried) == (36, 1, 0)


def test_the_failed_jobs_end_seen_again_recovers_and_counts_nothing_more():
    book, _ = failed_with_outputs(Lines([(1, 37)]))
    book.observe(Observation(start=1, end=101, attempt=1, outcome=F, job="j-l1-101-a1", outputs=Lines([(1, 40)])))
    counts = book.counts()
    assert (counts.recovered, counts.retried) == (39, 1)


def jobs_holding(cluster, line):
    return sum(1 for name in cluster.invoked
               if int(name.split("-l")[1].split("-")[0]) <= line < int(name.split("-l")[1].split("-")[1]))


@pytest.mark.parametrize("bad", [700, 104, 500, 103])
def test_with_outputs_a_corrupt_item_is_isolated_in_about_two_generations(bad):
    generations = {}
    for declared in (False, True):
        book = RangeBook(1024, retries=0)
        cluster = Cluster(book, slots=8, bad=(bad,), outputs=Lines() if declared else None)
        cluster.run()
        assert sorted(book.failed_items) == [bad] and len(book.succeeded) == 1023
        generations[declared] = jobs_holding(cluster, bad)     # the Jobs the corrupt line was in, one per generation
        if declared:
            assert set(cluster.processed.values()) == {1}         # every good line processed once
    assert generations[False] >= 4 and generations[True] <= 2   # quarters without outputs, halves took ~8


def test_with_outputs_a_disruption_reruns_only_the_lines_without_outputs():
    book = RangeBook(100, retries=0)
    cluster = Cluster(book, slots=4, disrupted={(1, 13, 1), (37, 49, 1)}, outputs=Lines())
    cluster.run()
    counts = book.counts()
    assert len(book.succeeded) == 100 and counts.disrupted == 2 and counts.retried == 0
    assert counts.recovered == 12                               # half of each disrupted range had its outputs
    assert set(cluster.processed.values()) == {1}               # no line processed twice


def test_with_outputs_a_single_line_without_output_follows_the_retry_rule():
    book = RangeBook(200, retries=2)
    cluster = Cluster(book, slots=4, bad=(10, 150), outputs=Lines())
    cluster.run()
    assert sorted(book.failed_items) == [10, 150]
    for line in (10, 150):
        assert sum(1 for name in cluster.invoked if name.startswith(f"j-l{line}-{line + 1}-")) == 3


def test_with_outputs_a_service_that_fails_everything_still_stops():
    book = RangeBook(10_000, retries=2)
    cluster = Cluster(book, slots=4, bad=range(1, 10_001), outputs=Lines())
    cluster.run()
    assert book.done() and book.broken and sum(cluster.invoked.values()) <= 20 * BROKEN_AFTER
    assert book.counts().recovered == 0


# --- observations in any order, and restarts ---------------------------------------------------------

def test_observations_repeat_and_come_out_of_order_and_count_once():
    book = RangeBook(4, retries=1, carves=CarveLog(4))
    book.carve([2, 2])
    book.carving_recorded(5)
    assert book.observe(Observation(start=1, end=3, attempt=2, outcome=S, job="a2")) == Change.SUCCEEDED
    # an older failure changes nothing
    assert book.observe(Observation(start=1, end=3, attempt=1, outcome=F, job="a1")) is None
    assert book.observe(Observation(start=1, end=3, attempt=2, outcome=S, job="a2")) is None
    assert book.observe(Observation(start=3, end=5, attempt=1, outcome=F, job="b1")) == Change.SPLIT
    assert book.observe(Observation(start=3, end=5, attempt=1, outcome=F, job="b1")) is None
    assert [work.key for work in book.next_to_dispatch(9)] == [(3, 4), (4, 5)]
    assert book.counts().retried == 1


def test_a_success_of_any_attempt_wins_over_a_failed_item():
    book = RangeBook(2, retries=0)
    book.observe(Observation(start=1, end=2, attempt=1, outcome=F, job="a1"))
    assert 1 in book.failed_items
    book.observe(Observation(start=1, end=2, attempt=2, outcome=S, job="a2"))
    assert len(book.failed) == 0 and not book.failed_items and len(book.succeeded) == 1


def restart(book, jobs, seen, outputs=None):
    """A new book from what status held (lines, carve log) and the Jobs the watch shows (`seen` of them), each
    failed one with the outputs its lookup finds now (they only grow)."""
    again = RangeBook(book.items, book.retries, carves=CarveLog.decode(book.items, book.carves.encode()))
    again.restore(Lines(book.succeeded), Lines(book.failed), list(book.failed_items.values()))
    again.restore_counts(invocations=0, retried=0, disrupted=0, recovered=book.counts().recovered)
    for (start, end, attempt), outcome in list(jobs.items())[:seen]:
        again.observe(Observation(start=start, end=end, attempt=attempt, outcome=outcome,
                                  job=job((start, end), attempt), replayed=True,
                                  outputs=Lines(outputs) if outputs is not None and outcome == F else None))
    return again


@pytest.mark.parametrize("outputs", [False, True], ids=["no outputs", "outputs"])
@pytest.mark.parametrize("seed", range(12))
def test_a_restart_anywhere_even_mid_halving_invokes_no_job_name_twice(seed, outputs):
    rng = random.Random(seed)
    items, slots, bad = 300, 6, {rng.randint(1, 300) for _ in range(3)}
    invoked = collections.Counter()
    book = RangeBook(items, retries=1)
    cluster = Cluster(book, slots, bad=bad, invoked=invoked, outputs=Lines() if outputs else None,
                      disrupted={(start, start + size, 1) for start in range(1, 300, 7) for size in (3, 5, 9)
                                 if rng.random() < 0.1})
    jobs: dict[tuple[int, int, int], Outcome] = {}    # every Job that exists, and its state
    for _ in range(rng.randint(5, 60)):
        for work in cluster.dispatch():
            jobs[(work.start, work.end, work.attempt)] = R
        if book.in_flight.attempts():
            (start, end), attempt = min(book.in_flight.attempts().items())
            cluster.end_oldest()
            jobs[(start, end, attempt)] = S if book.succeeded.covers(start, end) else F
    # status may be behind: what it holds is what the book held at some earlier patch; here: all of it,
    # but the watch has not shown the newest Jobs yet (the race a restart has with the watch)
    unseen = rng.randint(0, 3)
    again = restart(book, jobs, seen=max(len(jobs) - unseen, 0), outputs=cluster.outputs)
    names = set(invoked)
    proposed = again.next_to_dispatch(slots)
    for work in proposed:
        # a proposal either repeats the name of an existing Job (OSCAR answers "already exists") or is new
        # work for lines no existing Job holds
        if job(work) not in names:
            assert not any(s <= line < e for (s, e, a) in jobs for line in range(work.start, work.end)
                           if jobs[(s, e, a)] in (R, S) and a >= 1 and (s, e) != work.key), (work, jobs)
    # and the batch still ends with every good line done once
    cluster2 = Cluster(again, slots, bad=bad, invoked=invoked, outputs=cluster.outputs)
    cluster2.succeeded_jobs = list(cluster.succeeded_jobs)
    cluster2.processed = cluster.processed
    for work in proposed:
        if job(work) in names:        # "already exists": the Job runs, and its end is seen
            again.invoked(work, job=job(work), started="t", now=0.0, cluster="c")
    cluster2.run()
    assert len(again.succeeded) == items - len(bad)
    assert each_line_succeeded_once(cluster2)
    if outputs:   # what a run wrote is never run again: every good line processed once
        assert {count for line, count in cluster.processed.items() if line not in bad} == {1}
        assert again.counts().recovered >= book.counts().recovered


def test_the_cursor_skips_what_is_settled_and_finds_what_nothing_accounts_for():
    book = RangeBook(40, retries=0, carves=CarveLog.decode(40, "1:4x10"))
    book.restore(Lines([(1, 11), (21, 26)]), Lines(), [])
    book.observe(Observation(start=11, end=21, attempt=1, outcome=R, job="r"))
    assert [work.key for work in book.next_to_dispatch(10)] == [(26, 31), (31, 41)]   # halving-tree nodes


# --- redrive --------------------------------------------------------------------------------------------

def test_redrive_runs_only_the_failed_items_again_with_fresh_retries():
    book = RangeBook(100, retries=0)
    cluster = Cluster(book, slots=4, bad=(10, 57))
    cluster.run()
    assert sorted(book.failed_items) == [10, 57]
    assert book.redrive(1) == 2
    assert [work.key for work in book.next_to_dispatch(9)] == [(10, 11), (57, 58)]
    cluster.bad = set()
    cluster.run()
    assert len(book.succeeded) == 100 and not book.failed_items


# --- invocations whose Job has not shown -------------------------------------------------------------------

def test_an_accepted_invocation_is_overdue_until_its_job_shows_and_lost_ones_run_again_at_no_cost():
    book = RangeBook(4, retries=0, carves=CarveLog.decode(4, "1:2x2"))
    first, second = book.next_to_dispatch(2)
    book.invoked(first, job="a1", started="t", now=10.0, cluster="c")
    book.invoked(second, job="b1", started="t", now=20.0, cluster="c")
    assert book.in_flight.accepted_at(first.key) == 10.0 and book.in_flight.accepted_at((9, 10)) is None
    assert book.unseen_since(15.0) == [(first, "a1", "c")]
    book.in_flight.still_unseen(first.key, 30.0)                         # OSCAR still knows it: its Job gets more time
    assert book.unseen_since(25.0) == [(second, "b1", "c")]
    book.observe(Observation(start=3, end=5, attempt=1, outcome=R, job="b1"))
    assert book.unseen_since(99.0) == [(first, "a1", "c")] and book.in_flight.accepted_at(second.key) == 20.0
    book.lost_invocation(second)                           # its Job showed: not lost
    book.lost_invocation(first)
    assert book.in_flight.attempts() == {second.key: 1} and book.in_flight.accepted_at(first.key) is None
    assert book.next_to_dispatch(9) == [Work(1, 3, 2)]
    assert book.counts().retried == 0 and book.counts().invocations == 2


def test_counts_restored_after_a_restart_never_go_back():
    book = RangeBook(4, retries=0)
    book.restore_counts(invocations=7, retried=2, disrupted=1)
    book.restore_counts(invocations=3, retried=5, disrupted=0)
    counts = book.counts()
    assert (counts.invocations, counts.retried, counts.disrupted) == (7, 5, 1)


def test_a_restart_proposes_a_resumed_ranges_node_whose_job_is_not_seen_under_its_own_name():
    book, _ = failed_with_outputs(Lines([(1, 26)]))
    spine = [work.key for work in book.next_to_dispatch(10)]
    assert spine == [(26, 27), (27, 29), (29, 32), (32, 38), (38, 51), (51, 101)]
    jobs = {(1, 101, 1): F, **{(*key, 1): R for key in spine}}
    jobs[(26, 27, 1)] = jobs[(27, 29, 1)] = S                      # the suspect was not corrupt after all
    del jobs[(29, 32, 1)]                                          # invoked; its Job not seen by the restart yet
    again = RangeBook(100, retries=0, carves=CarveLog.decode(100, book.carves.encode()))
    for (start, end, attempt), outcome in jobs.items():
        outputs = Lines([(1, 29)]) if (start, end) == (1, 101) else None   # outputs only grow
        again.observe(Observation(start=start, end=end, attempt=attempt, outcome=outcome,
                                  job=job((start, end), attempt), outputs=outputs, replayed=True))
    assert [work.key for work in again.next_to_dispatch(10)] == [(29, 32)]   # "already exists", not [29, 30)


def test_a_range_of_a_cluster_cut_off_too_long_runs_elsewhere_as_its_next_attempt():
    book = RangeBook(8, retries=0, carves=CarveLog.decode(8, "1:2x4"))
    first, second = book.next_to_dispatch(2)
    book.invoked(first, job="a1", started="t", now=0.0, cluster="upv")
    book.invoked(second, job="b1", started="t", now=0.0, cluster="ifca")
    assert book.counts().in_flight_on == {"upv": 1, "ifca": 1} and book.in_flight.on("ifca") == [(second.key, 1)]
    assert book.reassign(Work(5, 9, 2)) is None                       # not the attempt in flight: nothing
    book.reassign(second)
    assert book.in_flight.on("ifca") == [] and book.next_to_dispatch(9) == [Work(5, 9, 2)]
    counts = book.counts()
    assert (counts.reassigned, counts.retried, counts.disrupted, counts.in_flight_on) == (1, 0, 0, {"upv": 1})


def test_a_reassigned_range_with_outputs_runs_only_its_lines_without_them():
    book = RangeBook(8, retries=0, carves=CarveLog.decode(8, "1:1x8"))
    [whole] = book.next_to_dispatch(1)
    book.invoked(whole, job="a1", started="t", now=0.0, cluster="ifca")
    book.reassign(whole, outputs=Lines([(1, 4)]))                      # it had done lines 1-3 before the cut
    assert book.succeeded == Lines([(1, 4)]) and book.counts().recovered == 3
    # the maximal halving-tree nodes of what is left; no line alone as a suspect: nothing failed
    assert book.next_to_dispatch(9) == [Work(4, 5, 1), Work(5, 9, 1)]


@pytest.mark.parametrize(("ends", "duplicates"), [
    # (cluster, attempt, replayed) of each success of lines 1-4, in the order they are folded
    ([("upv", 1, False)], 0),
    ([("upv", 1, False), ("upv", 1, False)], 0),               # the same end seen again
    ([("upv", 1, False), ("ifca", 1, False)], 1),              # the same attempt on two clusters (a lost answer)
    ([("upv", 2, False), ("ifca", 1, False)], 1),              # the reassigned attempt first, the late one after
    ([("ifca", 1, False), ("upv", 2, False)], 1),              # the late one first
    ([("upv", 1, True), ("upv", 2, True)], 0),                 # a restart's replay is no new run
])
def test_lines_that_succeed_again_are_counted_as_duplicates_once_per_job(ends, duplicates):
    book = RangeBook(4, retries=0, carves=CarveLog.decode(4, "1:1x4"))
    changes = [book.observe(Observation(start=1, end=5, attempt=attempt, outcome=S, job=f"j-a{attempt}",
                                        cluster=cluster, replayed=replayed)) for cluster, attempt, replayed in ends]
    assert book.counts().duplicates == duplicates and changes.count(Change.DUPLICATE) == duplicates
    assert book.succeeded == Lines([(1, 5)])
