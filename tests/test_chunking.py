"""Range sizes: the first wave, the shrinking ranges after it, the floor from measured times, fixed sizes,
and the carve log a restart reads back."""
import pytest

from oscar_batch.core.chunking import CarveLog, Timings, carve_sizes, min_items


@pytest.mark.parametrize(("kwargs", "expected"), [
    # the first wave: one range per slot, together 80% of the batch
    (dict(remaining=1000, free=8, slots=8, running=0, first_wave=True, items=1000, min_items=1), [100] * 8),
    (dict(remaining=10, free=8, slots=8, running=0, first_wave=True, items=10, min_items=1), [1] * 8),
    (dict(remaining=5, free=8, slots=8, running=0, first_wave=True, items=5, min_items=1), [1] * 5),
    # ... on fewer slots, as if there were 8: capacity that comes later finds work
    (dict(remaining=1000, free=2, slots=2, running=0, first_wave=True, items=1000, min_items=1), [100, 100]),
    # while others still run: half of what is left, divided among the slots
    (dict(remaining=200, free=2, slots=8, running=6, first_wave=False, items=1000, min_items=1), [13, 13]),
    # ... never below the floor that keeps start-up a small share
    (dict(remaining=200, free=2, slots=8, running=6, first_wave=False, items=1000, min_items=30), [30, 30]),
    (dict(remaining=40, free=4, slots=8, running=6, first_wave=False, items=1000, min_items=30), [30, 10]),
    # every slot free at once (uniform items): what is left, split evenly
    (dict(remaining=200, free=8, slots=8, running=0, first_wave=False, items=1000, min_items=1), [25] * 8),
    # fixed ranges
    (dict(remaining=25, free=3, slots=8, running=0, first_wave=True, items=25, min_items=1, fixed=10), [10, 10, 5]),
    (dict(remaining=25, free=0, slots=8, running=0, first_wave=True, items=25, min_items=1), []),
    (dict(remaining=0, free=3, slots=8, running=0, first_wave=False, items=25, min_items=1), []),
])
def test_carve_sizes(kwargs, expected):
    assert carve_sizes(**kwargs) == expected


@pytest.mark.parametrize(("startup", "per_item", "expected"), [
    (None, None, 1), (10.0, None, 1), (10.0, 1.0, 90), (3.0, 2.0, 14), (0.5, 2.0, 3), (0.0, 2.0, 1),
])
def test_min_items_keeps_start_up_at_a_tenth(startup, per_item, expected):
    assert min_items(startup, per_item) == expected


def test_timings_are_medians_of_what_the_jobs_showed():
    timings = Timings()
    assert (timings.startup, timings.per_item) == (None, None)
    timings.record(accepted=0.0, ready=3.0, finished=23.0, lines=10)      # 3 s start-up, 2 s an item
    timings.record(accepted=0.0, ready=4.0, finished=44.0, lines=20)
    timings.record(accepted=0.0, ready=100.0, finished=101.0, lines=1)   # a straggler does not move medians
    assert timings.startup == 4.0 and timings.per_item == 2.0
    timings.record(accepted=10.0, ready=None, finished=34.0, lines=10)   # never seen ready: start-up as measured
    assert timings.per_item == 2.0


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
