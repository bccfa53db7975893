"""Range sizes: the first wave, the shrinking ranges after it, the floor from measured times, fixed sizes,
and the carve log a restart reads back."""
import pytest

from oscar_batch.core.chunking import CarveLog, Timings, carve_sizes, estimate, min_items


@pytest.mark.parametrize(("kwargs", "expected"), [
    # the first wave: one range per slot, together 90% of the batch
    (dict(remaining=1000, free=8, slots=8, first_wave=True, items=1000, min_items=1), [113] * 8),
    (dict(remaining=10, free=8, slots=8, first_wave=True, items=10, min_items=1), [2] * 5),
    (dict(remaining=5, free=8, slots=8, first_wave=True, items=5, min_items=1), [1] * 5),
    # ... on fewer slots, as if there were 8: capacity that comes later finds work
    (dict(remaining=1000, free=2, slots=2, first_wave=True, items=1000, min_items=1), [113, 113]),
    # the second wave: what the first left (1000 − 8 × 113 = 96), split evenly among the slots
    (dict(remaining=96, free=2, slots=8, first_wave=False, items=1000, min_items=1), [12, 12]),
    (dict(remaining=96, free=8, slots=8, first_wave=False, items=1000, min_items=1), [12] * 8),
    # ... never below the floor that keeps start-up a small share
    (dict(remaining=96, free=8, slots=8, first_wave=False, items=1000, min_items=30), [30, 30, 30, 6]),
    # fixed ranges
    (dict(remaining=25, free=3, slots=8, first_wave=True, items=25, min_items=1, fixed=10), [10, 10, 5]),
    (dict(remaining=25, free=0, slots=8, first_wave=True, items=25, min_items=1), []),
    (dict(remaining=0, free=3, slots=8, first_wave=False, items=25, min_items=1), []),
])
def test_carve_sizes(kwargs, expected):
    assert carve_sizes(**kwargs) == expected


@pytest.mark.parametrize(("startup", "per_item", "expected"), [
    (None, None, 1), (10.0, None, 1), (10.0, 1.0, 30), (3.0, 2.0, 5), (0.5, 2.0, 1), (0.0, 2.0, 1),
])
def test_min_items_keeps_start_up_at_a_quarter(startup, per_item, expected):
    assert min_items(startup, per_item) == expected


def test_timings_tell_start_up_from_per_item_time_once_range_sizes_differ():
    timings = Timings()
    assert (timings.startup, timings.per_item) == (None, None)
    # the first wave: equal sizes; the pod was ready after 2 s, but the service's own start is in the run
    for seconds in (30.0, 30.4, 29.6):
        timings.record(accepted=0.0, ready=2.0, finished=seconds, lines=10)
    assert timings.startup == 2.0 and timings.per_item == pytest.approx(2.8)
    # shrinking ranges: 10 s start-up and 2 s an item, found by least squares
    for lines in (5, 3, 1):
        timings.record(accepted=100.0, ready=102.0, finished=100.0 + 10 + 2 * lines, lines=lines)
    assert timings.startup == pytest.approx(10.0, abs=0.3) and timings.per_item == pytest.approx(2.0, abs=0.05)


def test_timings_without_a_ready_pod_or_a_usable_fit():
    timings = Timings()
    timings.record(accepted=0.0, ready=None, finished=20.0, lines=10)
    assert timings.startup == 0.0 and timings.per_item == 2.0
    timings.record(accepted=0.0, ready=None, finished=5.0, lines=20)   # a negative slope is noise, not a fit
    assert timings.per_item == pytest.approx(1.125)
    timings.record(accepted=9.0, ready=None, finished=1.0, lines=3)    # a clock that went back: ignored
    assert len(timings.samples) == 2


def test_the_carve_log_merges_equal_sizes_and_reads_back():
    log = CarveLog(1000)
    assert log.carve([100] * 8) == [(1 + 100 * i, 101 + 100 * i) for i in range(8)]
    log.carve([25, 25])
    log.carve([500])                                   # the last range ends at the last line
    assert log.encode() == "1:8x100,801:2x25,851:1x500"
    assert log.frontier == 1001
    again = CarveLog.decode(1000, log.encode())
    assert list(again.ranges_from(1)) == [*[(1 + 100 * i, 101 + 100 * i) for i in range(8)],
                                          (801, 826), (826, 851), (851, 1001)]
    assert list(again.ranges_from(830)) == [(826, 851), (851, 1001)]


@pytest.mark.parametrize("bad", ["1:8", "2:1x5", "1:1x5,7:1x5", "1:0x5", "1:1x0", "a:bxc"])
def test_a_carve_log_that_does_not_add_up_is_refused(bad):
    with pytest.raises(ValueError):
        CarveLog.decode(100, bad)


def measured(startup: float, per_item: float) -> Timings:
    timings = Timings()
    for lines in (10, 50):
        timings.record(accepted=0.0, ready=None, finished=startup + per_item * lines, lines=lines)
    return timings


@pytest.mark.parametrize(("items", "slots", "timings", "fixed", "described", "seconds"), [
    # 90% in one range per slot, the rest in ranges no smaller than 3 × start-up ÷ per-item (30)
    (1000, 10, measured(10.0, 1.0), 0, "10 × 90, 3 × 30, 1 × 10", 140.0),
    (1000, 10, Timings(), 0, "10 × 90, 10 × 10", None),        # nothing measured: no floor, no makespan
    (100, 4, measured(2.0, 1.0), 10, "10 × 10", 36.0),          # itemsPerInvocation: fixed ranges, 3 waves
    (5, 3, Timings(), 0, "5 × 1", None),                        # fewer items than the first wave's 8 ranges
    (0, 3, measured(1.0, 1.0), 0, "", 0.0),
])
def test_the_dry_run_estimate_carves_as_the_operator_would(items, slots, timings, fixed, described, seconds):
    found = estimate(items=items, slots=slots, timings=timings, fixed=fixed)
    assert found.describe() == described and sum(found.sizes) == items
    assert found.seconds == (pytest.approx(seconds) if seconds is not None else None)
