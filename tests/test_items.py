"""Sets of manifest lines: interval arithmetic and the compact text form kept in status."""
import random

import pytest

from oscar_batch.core.items import BITMAP_PREFIX, RUNS_BUDGET, Lines, decode, encode


def as_set(lines):
    return {line for start, end in lines for line in range(start, end)}


@pytest.mark.parametrize(("added", "removed", "expected"), [
    ([], [], []),
    ([(1, 5)], [], [(1, 5)]),
    ([(1, 5), (5, 9)], [], [(1, 9)]),                 # adjacent runs merge
    ([(1, 3), (7, 9), (2, 8)], [], [(1, 9)]),         # one run bridges two
    ([(5, 9), (1, 3)], [], [(1, 3), (5, 9)]),
    ([(1, 9)], [(3, 5)], [(1, 3), (5, 9)]),           # a hole
    ([(1, 9)], [(1, 9)], []),
    ([(1, 3), (5, 9)], [(2, 6)], [(1, 2), (6, 9)]),   # across a gap
    ([(1, 3)], [(3, 9)], [(1, 3)]),                   # nothing to remove
    ([(4, 4)], [], []),                               # empty interval
])
def test_add_and_remove(added, removed, expected):
    lines = Lines(added)
    for start, end in removed:
        lines.remove(start, end)
    assert list(lines) == expected
    assert len(lines) == sum(end - start for start, end in expected)


def test_random_operations_agree_with_a_plain_set():
    rng = random.Random(7)
    lines, plain = Lines(), set()
    for _ in range(2000):
        start = rng.randint(1, 300)
        end = start + rng.randint(0, 20)
        if rng.random() < 0.6:
            lines.add(start, end)
            plain |= set(range(start, end))
        else:
            lines.remove(start, end)
            plain -= set(range(start, end))
        assert as_set(lines) == plain and len(lines) == len(plain)
        probe = rng.randint(1, 300)
        probe_end = probe + rng.randint(1, 10)
        assert lines.covers(probe, probe_end) == (set(range(probe, probe_end)) <= plain)
        assert lines.overlaps(probe, probe_end) == bool(set(range(probe, probe_end)) & plain)


@pytest.mark.parametrize(("sets", "span", "expected"), [
    ([[(1, 5)]], (1, 9), 5),
    ([[(1, 5)], [(5, 7)]], (1, 9), 7),                # one set ends where the next goes on
    ([[(1, 5)], [(5, 9)]], (1, 9), None),
    ([[(3, 5)]], (1, 9), 1),
    ([[], [(1, 2)]], (1, 2), None),
])
def test_first_missing_across_sets(sets, span, expected):
    first, *others = [Lines(intervals) for intervals in sets]
    assert first.first_missing(*span, *others) == expected


@pytest.mark.parametrize(("intervals", "text"), [
    ([], ""),
    ([(1, 2)], "1"),
    ([(1, 40001), (40101, 52001)], "1-40000,40101-52000"),
    ([(3, 4), (5, 7), (9, 10)], "3,5-6,9"),
])
def test_runs(intervals, text):
    assert encode(Lines(intervals)) == text
    assert decode(text) == Lines(intervals)


def test_a_scattered_set_is_written_as_a_bitmap_and_read_back():
    scattered = Lines((line, line + 1) for line in range(1, 1_000_000, 3))
    text = encode(scattered)
    assert text.startswith(BITMAP_PREFIX) and len(text) < 20_000
    assert decode(text) == scattered


def test_a_long_but_compressible_run_list_stays_runs_when_shorter():
    lines = Lines((line, line + 1) for line in range(1, 2 * RUNS_BUDGET, 2))
    text = encode(lines)
    assert decode(text) == lines


@pytest.mark.parametrize("bad", ["x", "5-3", "0", "-1", "1-", "z:not base64!", "z:" + "eJzLSM3JyVcozy/KSQEAGgQEXQ=="])
def test_garbage_is_refused(bad):
    with pytest.raises(ValueError):
        decode(bad)
