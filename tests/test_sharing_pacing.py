"""The pure policies: fair shares of the cluster's slots, a batch's slots over its clusters, exponential backoff,
Event aggregation."""
import pytest

from oscar_batch.core.pacing import Backoff, EventThrottle
from oscar_batch.core.sharing import Claim, capped, fair_shares, spread


def claims(*demands, created=None):
    """Batch b0 is the oldest, then b1, …; `created` overrides the order."""
    order = created or range(len(demands))
    return [Claim(uid=f"uid-{i}", created=f"2026-01-01T00:00:{order[i]:02d}Z", name=f"default/b{i}", demand=d)
            for i, d in enumerate(demands)]


@pytest.mark.parametrize(("slots", "demands", "expected"), [
    (11, (100, 100, 100), (4, 4, 3)),            # leftovers to the oldest
    (11, (1, 100, 100), (1, 5, 5)),              # what one cannot use goes to the others
    (11, (0, 100, 100), (0, 6, 5)),              # no demand (waiting, suspended, done): no claim
    (11, (2, 3, 100), (2, 3, 6)),
    (11, (2, 3, 4), (2, 3, 4)),                  # more slots than demand: each gets what it can use
    (2, (100, 100, 100), (1, 1, 0)),             # fewer slots than batches: oldest first
    (0, (5, 5), (0, 0)),
    (-3, (5,), (0,)),
    (7, (), ()),
    (8, (100,), (8,)),
])
def test_fair_shares(slots, demands, expected):
    shares = fair_shares(slots, claims(*demands))
    assert tuple(shares[f"uid-{i}"] for i in range(len(demands))) == expected
    assert sum(shares.values()) == min(max(slots, 0), sum(demands))


def test_leftovers_follow_age_then_name_not_uid():
    older_last = claims(100, 100, created=[5, 1])   # b1 is older
    assert fair_shares(3, older_last) == {"uid-0": 1, "uid-1": 2}
    same_time = [Claim("zzz", "2026-01-01T00:00:00Z", "default/a", 9),
                 Claim("aaa", "2026-01-01T00:00:00Z", "default/b", 9)]
    assert fair_shares(3, same_time) == {"zzz": 2, "aaa": 1}


def test_many_waiting_batches_take_nothing_from_valid_ones():
    # 31 batches waiting on a Secret or a bad spec (no claim) next to 3 dispatching ones, 11 slots.
    shares = fair_shares(11, claims(*([0] * 31), 100, 100, 100))
    assert sorted(v for v in shares.values() if v) == [3, 4, 4]


@pytest.mark.parametrize(("slots", "cap", "expected"), [
    ([8, 8], 0, [8, 8]),             # no cap
    ([8, 8], 16, [8, 8]),
    ([8, 8], 10, [5, 5]),            # even as the clusters allow
    ([8, 2], 6, [4, 2]),             # from the one with most
    ([8, 2], 3, [2, 1]),
    ([3, 3, 3], 4, [2, 1, 1]),       # ties: the first clusters keep theirs
    ([0, 0], 5, [0, 0]),
])
def test_a_batchs_cap_over_its_clusters(slots, cap, expected):
    assert capped(slots, cap) == expected


@pytest.mark.parametrize(("count", "free", "expected"), [
    (4, [2, 2], [0, 1, 0, 1]),       # round robin: every cluster with room starts work at once
    (3, [0, 3], [1, 1, 1]),          # a cluster without a free slot gets nothing
    (5, [1, 3], [0, 1, 1, 1]),       # fewer than asked when slots run out
    (0, [4, 4], []),
    (2, [], []),
])
def test_invocations_spread_over_the_clusters_with_free_slots(count, free, expected):
    assert spread(count, free) == expected


@pytest.mark.parametrize(("failures", "delays"), [
    (6, [1, 2, 4, 8, 10, 10]),
])
def test_backoff_doubles_up_to_its_cap_and_resets(failures, delays):
    backoff = Backoff(base=1, cap=10)
    now = 100.0
    for expected in delays:
        assert backoff.ready(now)
        assert backoff.failed(now) == expected
        assert not backoff.ready(now + expected - 0.01)
        now += expected
    backoff.succeeded()
    assert backoff.ready(0) and backoff.failed(0) == 1


def test_event_throttle_sends_the_first_at_once_and_summarises_the_rest():
    throttle = EventThrottle(window=60)
    assert throttle.offer("Warning", "RangeRetried", "range 1", now=0) == [("Warning", "RangeRetried", "range 1")]
    assert throttle.offer("Normal", "Listed", "listed 5", now=1) == [("Normal", "Listed", "listed 5")]  # own window
    for index in range(2, 14):
        assert throttle.offer("Warning", "RangeRetried", f"range {index}", now=index) == []
    assert throttle.due(now=59) == []
    assert throttle.due(now=60) == [
        ("Warning", "RangeRetried", "12 more in the last 60s: range 2; range 3; range 4; …")]
    assert throttle.due(now=61) == []
    assert throttle.offer("Warning", "RangeRetried", "range 99", now=70) == []       # window of the summary
    assert throttle.flush(now=71) == [("Warning", "RangeRetried", "1 more in the last 60s: range 99")]
    assert throttle.offer("Warning", "RangeRetried", "range 100", now=200) == [
        ("Warning", "RangeRetried", "range 100")]
