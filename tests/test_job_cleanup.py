"""Which Jobs may be deleted: a range's Jobs once every line of it settled; failed Jobs kept as evidence until
then, through the halves and retries that settle their lines."""
from oscar_batch.core.items import Lines
from oscar_batch.core.job_cleanup import JobsToClean


def test_a_failed_job_stays_until_every_line_of_its_range_settled():
    settled = Lines()
    jobs = JobsToClean(lambda span: settled.first_missing(*span) is None)
    jobs.failed((1, 5), "whole-1")
    jobs.failed((1, 5), "whole-1")             # seen again: kept once
    settled.add(1, 3)
    jobs.settled((1, 3), ["half-1"])
    assert jobs.take() == ["half-1"]           # the first half's Job goes; the failed range still has lines open
    settled.add(3, 5)
    jobs.settled((3, 5), ["half-2"])
    assert jobs.take() == ["whole-1", "half-2"]
    assert jobs.take() == []                   # each Job once


def test_jobs_of_a_range_not_wholly_settled_stay():
    settled = Lines([(1, 2)])
    jobs = JobsToClean(lambda span: settled.first_missing(*span) is None)
    jobs.settled((1, 3), ["a"])
    assert jobs.take() == []
