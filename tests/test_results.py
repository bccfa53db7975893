"""The results object: the final form and the one written while the batch runs carry the same line sets, and a
restarted batch takes them back only from its own."""
import pytest

from oscar_batch.core import results
from oscar_batch.core.chunking import CarveLog
from oscar_batch.core.items import Lines
from oscar_batch.core.ranges import FailedItem, Observation, Outcome, RangeBook

UID = "0b5a9c1e-7d4e-4b8a-9f01-23456789abcd"


def a_book() -> RangeBook:
    book = RangeBook(10, 0, carves=CarveLog.decode(10, "1:2x5"))
    book.restore(Lines([(1, 4), (5, 9)]), Lines([(4, 5)]), [FailedItem(4, "job-4", "Error (exit code 1)", "in/4.jpg")])
    book.observe(Observation(start=9, end=11, attempt=1, outcome=Outcome.SUCCEEDED, job="job-9", started="t0",
                             finished="t1"))
    return book


def test_the_final_results_and_those_of_a_running_batch_hold_the_same_line_sets():
    book = a_book()
    final = results.results(book, batch="ns/b", uid=UID, service="fish", phase="Failed", manifest="s3://in/i.txt")
    running = results.line_sets(book, batch="ns/b", uid=UID, service="fish", phase="Running",
                                manifest="s3://in/i.txt", succeeded="1-3,5-10", failed="4")
    assert (final["succeededItems"], final["failedLines"]) == (running["succeededItems"], running["failedLines"])
    assert running["items"] == {"total": 10, "succeeded": 9, "failed": 1, "pending": 0}
    # the final results count the inputs left out, and those skipped because their outputs exist
    assert final["items"] == {**running["items"], "unlisted": 0, "skipped": 0}
    assert "skippedItemsAt" not in final

    assert final["failedItems"] == [{"line": 4, "job": "job-4", "reason": "Error (exit code 1)", "key": "in/4.jpg"}]
    assert final["ranges"] == [{"start": 9, "end": 11, "outcome": "succeeded", "jobs": ["job-9"], "started": "t0",
                                "finished": "t1"}]
    assert "ranges" not in running and "failedItems" not in running
    assert results.line_sets_from(running, UID) == (Lines([(1, 4), (5, 11)]), Lines([(4, 5)]))

def test_the_final_results_say_how_many_inputs_were_skipped_and_where_they_are_named():
    final = results.results(a_book(), batch="ns/b", uid=UID, service="fish", phase="Succeeded",
                            manifest="s3://in/i.txt", skipped=7, skipped_at="s3://in/i.txt.skipped.json")
    assert (final["items"]["skipped"], final["skippedItemsAt"]) == (7, "s3://in/i.txt.skipped.json")


@pytest.mark.parametrize(("document", "problem"), [
    ({"uid": "another", "batch": "ns/other", "succeededItems": "1", "failedLines": ""}, "batch ns/other"),
    ({"uid": UID, "succeededItems": "1-3"}, "no line sets"),                 # written before failedLines existed
    ({"uid": UID, "succeededItems": "1-3", "failedLines": 4}, "no line sets"),
    ({"uid": UID, "succeededItems": "z:AAAA", "failedLines": ""}, "bad line bitmap"),
])
def test_line_sets_come_back_only_from_this_batchs_readable_results(document, problem):
    with pytest.raises(ValueError, match=problem):
        results.line_sets_from(document, UID)
