"""The dispatch queue: ranges waiting to run again, the newest attempt of each, taken by start line."""
from oscar_batch.core.dispatch_queue import DispatchQueue
from oscar_batch.core.items import Lines


def test_ranges_come_out_by_start_line_with_the_newest_attempt_pushed():
    queue = DispatchQueue()
    queue.push((9, 10), 2)
    queue.push((1, 5), 1)
    queue.push((5, 9), 1)
    queue.push((1, 5), 3)
    queue.push((1, 5), 2)                      # an older attempt does not replace a newer one
    assert queue.first(2) == [((1, 5), 3), ((5, 9), 1)]
    assert queue.first(9) == [((1, 5), 3), ((5, 9), 1), ((9, 10), 2)]
    assert queue.lines == Lines([(1, 10)]) and (5, 9) in queue and (2, 3) not in queue


def test_removing_a_range_keeps_the_lines_of_those_overlapping_it():
    queue = DispatchQueue()
    queue.push((1, 9), 2)
    queue.push((1, 5), 1)                      # a half of it, queued too (after a restart)
    queue.remove((1, 9))
    queue.remove((20, 21))                     # not queued: nothing happens
    assert queue.first(9) == [((1, 5), 1)] and queue.lines == Lines([(1, 5)])


def test_settled_lines_drop_the_ranges_within_them_only():
    queue = DispatchQueue()
    for span in [(1, 3), (3, 5), (4, 8), (9, 10)]:
        queue.push(span, 1)
    queue.drop_within((1, 6))
    assert queue.first(9) == [((4, 8), 1), ((9, 10), 1)] and queue.lines == Lines([(4, 8), (9, 10)])
