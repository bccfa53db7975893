"""Status arithmetic: progress speaks of items and stays small, the verdict names failed items, conditions
keep their times."""
import datetime
import json
import pathlib
import random

import pytest
import yaml

from oscar_batch.core import items, status
from oscar_batch.core.chunking import CarveLog
from oscar_batch.core.items import Lines
from oscar_batch.core.ranges import FailedItem, Observation, Outcome, RangeBook, Work
from oscar_batch.core.status import (
    FAILED,
    NAMED_FAILURES,
    NAMED_IN_MESSAGE,
    SUCCEEDED,
    condition,
    explaining_reason,
    failed_items_from,
    merge_conditions,
    progress,
    verdict,
)
from support import a_million_settled


def book_with(total, succeeded=(), failed=(), running=(), retries=2, carves=""):
    book = RangeBook(total, retries, carves=CarveLog.decode(total, carves))
    book.restore(Lines(succeeded), Lines((line, line + 1) for line in failed),
                 [FailedItem(line, f"job-{line}", "Error (exit code 1)") for line in failed])
    for start, end in running:
        book.invoked(Work(start, end, 1), job=f"job-{start}", started="t", now=0.0, cluster="c")
    return book


def test_progress_shape():
    book = book_with(20, succeeded=[(1, 7), (11, 13)], failed=[15], running=[(7, 9)], carves="1:10x2")
    book.observe(Observation(start=9, end=11, attempt=1, outcome=Outcome.FAILED, job="j"))   # split: halves pending
    book.failed_items[15].key = "input/frame-15.jpg"
    assert progress(book, 6, {"mode": "Adaptive"}) == {
        "progress": "8/20",
        "parallelism": 6,
        "items": {"total": 20, "pending": 9, "running": 2, "succeeded": 8, "failed": 1, "recovered": 0},
        "invocations": {"total": 1, "running": 1, "retried": 1, "disrupted": 0, "reassigned": 0,
                        "duplicates": 0},
        "completedItems": "1-6,11-12",
        "failedItems": "15",
        "failedItemDetails": [{"line": 15, "job": "job-15", "reason": "Error (exit code 1)",
                               "key": "input/frame-15.jpg"}],
        "rangePlan": "1:10x2",
        "sizing": {"mode": "Adaptive"},
    }


def test_progress_of_an_empty_batch():
    assert progress(RangeBook(0, 2), 0) == {
        "progress": "0/0", "parallelism": 0,
        "items": {"total": 0, "pending": 0, "running": 0, "succeeded": 0, "failed": 0, "recovered": 0},
        "invocations": {"total": 0, "running": 0, "retried": 0, "disrupted": 0, "reassigned": 0, "duplicates": 0},
        "completedItems": "", "failedItems": "", "failedItemDetails": [], "rangePlan": ""}


@pytest.mark.parametrize(("succeeded", "failed"), [
    pytest.param(lambda i: i % 3 == 0, lambda i: i % 7 == 1, id="every-3rd-succeeded-every-7th-failed"),
    pytest.param(lambda i: (i * 2654435761) % 97 < 50, lambda i: (i * 2654435761) % 97 > 90, id="scrambled"),
])
def test_progress_stays_small_for_a_million_items(succeeded, failed):
    total = 1_000_000
    done = [(i, i + 1) for i in range(1, total + 1) if succeeded(i)]
    bad = [i for i in range(1, total + 1) if failed(i) and not succeeded(i)]
    book = book_with(total, succeeded=done, failed=bad)
    patch = progress(book, 500)
    assert len(json.dumps(patch)) < 100_000
    # ... and still lossless: a restarted operator gets every finished line back
    assert items.decode(patch["completedItems"]) == book.succeeded == Lines(done)
    assert items.decode(patch["failedItems"]) == book.failed
    assert len(patch["failedItemDetails"]) == NAMED_FAILURES
    assert failed_items_from(patch)[0] == FailedItem(bad[0], f"job-{bad[0]}", "Error (exit code 1)")
    counts = patch["items"]
    assert counts["succeeded"] + counts["failed"] + counts["pending"] == total


CRD_STATUS = yaml.safe_load((pathlib.Path(__file__).resolve().parent.parent / "crds" / "batchjob.yaml").read_text())[
    "spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
STATUS_LIMIT = 256 * 1024   # the bound on a batch's status


@pytest.mark.parametrize(("failing", "spilled"), [
    pytest.param(list(range(2, 1_000_001, 2)), False, id="every-other"),
    pytest.param(list(range(1000, 1_000_001, 1000)), False, id="one-in-a-thousand"),
    pytest.param(sorted(random.Random(19).sample(range(1, 1_000_001), 100_000)), True, id="10%-at-random"),
    pytest.param(sorted(random.Random(19).sample(range(1, 1_000_001), 500_000)), True, id="half-at-random"),
])
def test_the_status_of_a_million_items_fits_the_api_server_whatever_fails(failing, spilled):
    """completedItems and failedItems are up to 1 bit a line each for scattered outcomes (10% at random takes
    ~93,000 characters each, over the CRD's maxLength, which the API server enforces): past LINE_SETS_BUDGET they
    are written to the results object and status says where."""
    book = a_million_settled(failing)
    patch = progress(book, 0)
    assert status.line_sets_fit(patch) is not spilled
    placed = status.line_sets_at(patch, "s3://in/index.txt.results.json") if spilled else status.line_sets_inline(patch)
    for key in status.LINE_SETS:
        assert len(placed[key] or "") <= CRD_STATUS[key]["maxLength"]
    assert len(json.dumps(placed)) <= STATUS_LIMIT
    assert "itemsAt" in CRD_STATUS
    if not spilled:
        assert items.decode(placed["completedItems"]) == book.succeeded and placed["itemsAt"] is None


def test_a_patch_without_line_sets_leaves_status_as_it_is():
    patch = progress(book_with(4, succeeded=[(1, 4)], failed=[4]), 0)
    assert set(status.without_line_sets(dict(patch, itemsAt="s3://b/k"))) == set(patch) - {"completedItems",
                                                                                          "failedItems"}


@pytest.mark.parametrize(("failed", "tolerated", "phase", "reason", "message"), [
    ([], 0, SUCCEEDED, "AllItemsSucceeded", "30 of 30 items succeeded"),
    ([], 3, SUCCEEDED, "AllItemsSucceeded", "30 of 30 items succeeded"),
    ([4], 1, SUCCEEDED, "FailuresTolerated", "29 of 30 items succeeded; 1 failed item(s) tolerated"),
    ([1, 30], 2, SUCCEEDED, "FailuresTolerated", "28 of 30 items succeeded; 2 failed item(s) tolerated"),
    ([4], 0, FAILED, "ItemsFailed", "1 item(s) failed after 3 attempt(s) each, more than the 0 tolerated; "
                                    "29 of 30 succeeded. Failed: line 4: Error (exit code 1) in Job job-4"),
    ([30, 1], 1, FAILED, "ItemsFailed",
     "2 item(s) failed after 3 attempt(s) each, more than the 1 tolerated; 28 of 30 succeeded. Failed: "
     "line 1: Error (exit code 1) in Job job-1, line 30: Error (exit code 1) in Job job-30"),
])
def test_verdict(failed, tolerated, phase, reason, message):
    good = Lines([(1, 31)])
    for line in failed:
        good.remove(line, line + 1)
    book = book_with(30, succeeded=list(good), failed=failed)
    assert book.done()
    assert verdict(book, tolerated) == (phase, reason, message)


def test_verdict_names_the_first_failed_items_with_their_inputs():
    failed = list(range(2, 40, 2))
    good = Lines([(1, 101)])
    for line in failed:
        good.remove(line, line + 1)
    book = book_with(100, succeeded=list(good), failed=failed)
    book.failed_items[2].key = "input/frame-2.jpg"
    phase, reason, message = verdict(book, 0)
    assert (phase, reason) == (FAILED, "ItemsFailed")
    assert "line 2 (input/frame-2.jpg): Error (exit code 1) in Job job-2" in message
    assert message.count("in Job") == NAMED_IN_MESSAGE
    assert message.endswith(f" and {len(failed) - NAMED_IN_MESSAGE} more")


def test_verdict_of_a_broken_service():
    book = book_with(10)
    book.broken = "before any success, both halves ... failed"
    assert verdict(book, 0)[:2] == (FAILED, "ServiceFailing")


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
    assert verdict(RangeBook(0, retries=0), tolerated_failures=0)[:2] == (SUCCEEDED, "NoInputs")


@pytest.mark.parametrize(("total", "unlisted", "skipped", "reason", "says"), [
    (0, 0, 12, "AllOutputsExist", "every input (12) already has its outputs"),
    (0, 2, 12, "InputsUnlisted", "no input can be a manifest line"),      # left out unprocessed: not all done
    (10, 0, 12, "AllItemsSucceeded", "10 of 10 items succeeded; 12 input(s) skipped, their outputs exist"),
])
def test_inputs_skipped_because_their_outputs_exist_are_done_and_said(total, unlisted, skipped, reason, says):
    book = book_with(total, succeeded=[(1, total + 1)] if total else [], failed=[])
    found = verdict(book, tolerated_failures=0, unlisted=unlisted, skipped=skipped)
    assert found[1] == reason and says in found[2]


@pytest.mark.parametrize(("total", "failed", "unlisted", "tolerated", "phase", "reason", "says"), [
    (10, [], 2, 0, FAILED, "InputsUnlisted", "2 input(s) left out of the manifest"),
    (10, [], 2, 2, SUCCEEDED, "InputsUnlistedTolerated", "10 of 10 items succeeded; 2 input(s) left out"),
    (10, [3], 1, 1, FAILED, "InputsUnlisted", "1 failed item(s) and 1 input(s) left out"),
    (10, [3], 1, 2, SUCCEEDED, "FailuresTolerated", "1 failed item(s) tolerated; 1 input(s) left out"),
    (10, [3, 4], 1, 1, FAILED, "ItemsFailed", "1 input(s) left out of the manifest"),
    (0, [], 3, 0, FAILED, "InputsUnlisted", "no input can be a manifest line: 3 input(s) left out"),
    (0, [], 3, 5, SUCCEEDED, "InputsUnlistedTolerated", "3 input(s) left out"),
])
def test_inputs_left_out_of_the_manifest_count_against_the_tolerated_failures(
        total, failed, unlisted, tolerated, phase, reason, says):
    good = Lines([(1, total + 1)] if total else [])
    for line in failed:
        good.remove(line, line + 1)
    book = book_with(total, succeeded=list(good), failed=failed)
    found = verdict(book, tolerated, unlisted=unlisted)
    assert found[:2] == (phase, reason)
    assert says in found[2] and "status.unlistedItems" in found[2]


def _cond(kind, true, reason):
    return {"type": kind, "status": "True" if true else "False", "reason": reason, "message": "m"}


@pytest.mark.parametrize(("conditions", "expected"), [
    (None, None),                                                           # a fresh batch: no status yet
    ([], None),
    ([_cond("Progressing", True, "Listing")], None),
    ([_cond("Progressing", True, "RangesRunning")], None),                  # plainly running
    ([_cond("Progressing", False, "Suspended")], None),                     # the phase says it
    ([_cond("Progressing", True, "Redriven")], None),
    ([_cond("Progressing", True, "WaitingForKueue")], "WaitingForKueue"),
    ([_cond("Progressing", False, "SecretNotFound")], "SecretNotFound"),    # Pending, waiting for a person
    ([_cond("Progressing", False, "OscarUnavailable")], "OscarUnavailable"),
    ([_cond("Progressing", False, "StorageUnavailable"), _cond("Complete", False, "Redriven")], "StorageUnavailable"),
    ([_cond("Progressing", False, "AllItemsSucceeded"), _cond("Complete", True, "AllItemsSucceeded")], None),
    ([_cond("Progressing", False, "FailuresTolerated"), _cond("Complete", True, "FailuresTolerated")],
     "FailuresTolerated"),
    ([_cond("Progressing", False, "NoInputs")], "NoInputs"),
    ([_cond("Progressing", False, "AllOutputsExist")], "AllOutputsExist"),   # why nothing ran
    ([_cond("Progressing", False, "ItemsFailed"), _cond("Failed", True, "ItemsFailed")], "ItemsFailed"),
    ([_cond("Progressing", False, "ServiceFailing"), _cond("Failed", True, "ServiceFailing")], "ServiceFailing"),
    # An ignored live edit needs a person even while ranges run, and goes before everything else.
    ([_cond("Progressing", True, "RangesRunning"), _cond("InvalidSpec", True, "ImmutableFieldChanged")],
     "ImmutableFieldChanged"),
    ([_cond("InvalidSpec", True, "InvalidSpec"), _cond("Progressing", False, "OscarUnavailable")], "InvalidSpec"),
    ([_cond("Progressing", True, "RangesRunning"), _cond("InvalidSpec", False, "SpecAccepted")], None),
    ([{"type": "Progressing", "status": "False"}], None),                  # a condition without a reason
])
def test_explaining_reason(conditions, expected):
    assert explaining_reason(conditions) == expected


NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(("given", "settled", "rate", "eta", "elapsed"), [
    ({}, 0, None, None, None),                                                      # nothing yet
    ({"phase": "Running", "startTime": "2026-12-01T11:59:00Z", "items": {"total": 100}}, 0, None, None, 60.0),
    ({"phase": "Running", "startTime": "2026-12-01T11:59:00Z",
      "items": {"total": 100, "succeeded": 27, "failed": 3}}, 30, 0.5, 140.0, 60.0),
    ({"phase": "Succeeded", "startTime": "2026-12-01T11:00:00Z", "completionTime": "2026-12-01T11:01:40Z",
      "items": {"total": 100, "succeeded": 100}}, 100, 1.0, None, 100.0),          # finished: its own duration
    ({"phase": "Running", "startTime": "not a time", "items": {"total": 10, "succeeded": 5}}, 5, None, None, None),
])
def test_the_summary_of_a_batch_from_its_status(given, settled, rate, eta, elapsed):
    seen = status.summary(given, NOW)
    assert (seen.settled, seen.rate, seen.eta, seen.elapsed) == (settled, rate, eta, elapsed)


def test_the_summary_counts_what_is_queued_by_kueue():
    seen = status.summary({"items": {"total": 4}, "invocations": {"running": 3, "queued": 2}}, NOW)
    assert (seen.running, seen.queued, seen.fraction) == (3, 2, 0.0)


# What the release with a fixed grid of ranges wrote, and what this one writes.
PREVIOUS_STATUS = {"phase": "Running", "items": 40, "progress": "3/10", "itemsPerInvocation": 4,
                   "ranges": {"total": 10, "pending": 5, "running": 2, "succeeded": 3, "failed": 0, "retried": 0},
                   "completedRanges": "0-2", "failedRanges": "", "manifest": "s3://b/input/index.txt"}


@pytest.mark.parametrize("given, previous", [
    (PREVIOUS_STATUS, True),
    ({"phase": "Running", "items": 0}, True),                          # a count, even zero
    ({"phase": "Running", "completedRanges": "0-2"}, True),            # ranges without the count
    ({}, False),
    ({"phase": "Running", "items": {"total": 40, "succeeded": 3}}, False),
    ({"phase": "Pending", "message": "Secret default/s does not exist"}, False),
])
def test_a_batch_the_previous_release_started_is_recognised(given, previous):
    problem = status.previous_release(given)
    assert (problem is not None) == previous
    if previous:
        assert "finish it with that release, or delete it and create it again" in problem


def test_the_summary_of_a_previous_release_batch_has_no_counts_instead_of_failing():
    summary = status.summary(PREVIOUS_STATUS, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    assert (summary.total, summary.succeeded, summary.rate) == (0, 0, None)
