"""Status arithmetic: progress stays small, the verdict names failed ranges, conditions keep their times."""
import json
import re

import pytest

from oscar_batch.core.ranges import Outcome, RangeBook, decode_indexes
from oscar_batch.core.status import FAILED, NAMED_FAILURES, SUCCEEDED, condition, merge_conditions, progress, verdict


def book_with(items, per_range, succeeded=(), failed=(), running=(), retries=2):
    book = RangeBook(items, per_range, retries)
    book.restore(succeeded, failed)
    dispatched = book.next_to_dispatch(len(running))
    for index, attempt in dispatched:
        book.invoked(index, attempt, f"job-{index}", started="t", now=0.0)
    assert {index for index, _ in dispatched} == set(running)
    return book


def test_progress_shape():
    book = book_with(20, 2, succeeded=[0, 1, 2, 5], failed=[7], running=[3, 4])
    book.observe(3, 1, Outcome.FAILED)                    # retried: pending again
    assert progress(book, 6) == {
        "progress": "4/10",
        "parallelism": 6,
        "ranges": {"total": 10, "pending": 4, "running": 1, "succeeded": 4, "failed": 1, "retried": 1},
        "completedRanges": "0-2,5",
        "failedRanges": "7",
    }


def test_progress_of_an_empty_batch():
    assert progress(RangeBook(0, 5, 2), 0) == {
        "progress": "0/0", "parallelism": 0,
        "ranges": {"total": 0, "pending": 0, "running": 0, "succeeded": 0, "failed": 0, "retried": 0},
        "completedRanges": "", "failedRanges": ""}


@pytest.mark.parametrize(("succeeded", "failed"), [
    pytest.param(lambda i: i % 3 == 0, lambda i: i % 7 == 0, id="every-3rd-succeeded-every-7th-failed"),
    pytest.param(lambda i: (i * 2654435761) % 97 < 50, lambda i: (i * 2654435761) % 97 > 90, id="scrambled"),
])
def test_progress_stays_small_for_100000_ranges(succeeded, failed):
    total = 100_000
    done = [i for i in range(total) if succeeded(i)]
    book = book_with(total, 1, succeeded=done, failed=[i for i in range(total) if failed(i)])
    patch = progress(book, 500)
    assert len(json.dumps(patch)) < 100_000
    # ... and still lossless: a restarted operator gets every finished range back
    assert set(decode_indexes(patch["completedRanges"])) == book.succeeded() == set(done)
    assert set(decode_indexes(patch["failedRanges"])) == book.failed()
    assert patch["ranges"]["succeeded"] + patch["ranges"]["failed"] + patch["ranges"]["pending"] == total


@pytest.mark.parametrize(("failed", "tolerated", "phase", "reason", "message"), [
    ([], 0, SUCCEEDED, "AllRangesSucceeded", "10 of 10 ranges succeeded"),
    ([], 3, SUCCEEDED, "AllRangesSucceeded", "10 of 10 ranges succeeded"),
    ([4], 1, SUCCEEDED, "FailuresTolerated", "9 of 10 ranges succeeded; 1 failed range(s) tolerated"),
    ([1, 9], 2, SUCCEEDED, "FailuresTolerated", "8 of 10 ranges succeeded; 2 failed range(s) tolerated"),
    ([4], 0, FAILED, "RangesFailed",
     "1 range(s) failed after 3 attempt(s) each, more than the 0 tolerated: range 4 (lines 13-15)"),
    ([9, 0], 1, FAILED, "RangesFailed",
     "2 range(s) failed after 3 attempt(s) each, more than the 1 tolerated: "
     "range 0 (lines 1-3), range 9 (lines 28-28)"),                 # the last range is short: line 28 only
])
def test_verdict(failed, tolerated, phase, reason, message):
    book = book_with(28, 3, succeeded=[i for i in range(10) if i not in failed], failed=failed)
    assert book.done()
    assert verdict(book, tolerated) == (phase, reason, message)


@pytest.mark.parametrize(("failures", "more"), [(NAMED_FAILURES, None), (NAMED_FAILURES + 1, 1), (25, 15)])
def test_verdict_names_at_most_ten_failed_ranges(failures, more):
    failed = list(range(0, 2 * failures, 2))
    book = book_with(100, 1, succeeded=[i for i in range(100) if i not in failed], failed=failed)
    phase, reason, message = verdict(book, 0)
    assert (phase, reason) == (FAILED, "RangesFailed")
    named = failed[:NAMED_FAILURES]
    for index in named:
        assert f"range {index} (lines {index + 1}-{index + 1})" in message
    assert len(re.findall(r"range \d+ \(lines \d+-\d+\)", message)) == NAMED_FAILURES
    if failures > NAMED_FAILURES:
        assert f"range {failed[NAMED_FAILURES]} " not in message
    assert message.endswith(f" and {more} more") if more else not message.endswith("more")


@pytest.mark.parametrize(("args", "expected"), [
    (("Progressing", True, "RangesRunning", "3 in flight", "t1"),
     {"type": "Progressing", "status": "True", "reason": "RangesRunning", "message": "3 in flight",
      "lastTransitionTime": "t1"}),
    (("Complete", False, "RangesFailed", "no", "t2", 4),
     {"type": "Complete", "status": "False", "reason": "RangesFailed", "message": "no",
      "lastTransitionTime": "t2", "observedGeneration": 4}),
])
def test_condition(args, expected):
    assert condition(*args) == expected


def cond(kind, status, reason="R", time="t0", message="m"):
    return condition(kind, status, reason, message, time)


@pytest.mark.parametrize(("current", "updates", "expected"), [
    (None, [cond("Progressing", True, time="t1")], [cond("Progressing", True, time="t1")]),
    ([], [cond("Progressing", True, time="t1")], [cond("Progressing", True, time="t1")]),
    # same status: the transition time stays, reason and message move on
    ([cond("Progressing", True, "Listing", "t0", "listing")],
     [cond("Progressing", True, "RangesRunning", "t5", "running")],
     [cond("Progressing", True, "RangesRunning", "t0", "running")]),
    # flipped: the new time
    ([cond("Progressing", True, time="t0")], [cond("Progressing", False, time="t5")],
     [cond("Progressing", False, time="t5")]),
    # other types are kept as they were; new types are added
    ([cond("Progressing", True, time="t0"), cond("Ready", True, time="t0")],
     [cond("Progressing", False, time="t9"), cond("Complete", True, time="t9")],
     [cond("Progressing", False, time="t9"), cond("Ready", True, time="t0"), cond("Complete", True, time="t9")]),
])
def test_merge_conditions(current, updates, expected):
    before = json.dumps(current)
    assert merge_conditions(current, updates) == expected
    assert json.dumps(current) == before                  # the inputs are not modified


def test_verdict_of_a_batch_without_inputs_is_success_with_a_reason():
    assert verdict(RangeBook(0, 1, retries=0), tolerated_failures=0)[:2] == (SUCCEEDED, "NoInputs")
