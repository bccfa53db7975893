"""OSCAR's job listing → a batch's Jobs on a Remote cluster (`core.remote_jobs`), table by table."""
from __future__ import annotations

import pytest

from oscar_batch.core import invocation
from oscar_batch.core.ranges import Outcome
from oscar_batch.core.remote_jobs import (
    JOB_DELETED,
    POD_DELETED,
    POD_FAILED,
    UNPLACED_AFTER,
    ListingTracker,
    read_entry,
)

UID = "0b5a9c1e-7d4e-4b8a-9f01-23456789abcd"
OTHER = "ffffffff-0000-4000-8000-000000000000"
JOB = invocation.job_name("fish", UID, 1, 9, 1)
IDENTITY = invocation.Identity(UID, 1, 9, 1)
STARTED = "2026-12-01T00:00:05Z"


@pytest.mark.parametrize(("info", "had_pod", "outcome", "ready", "placed", "failure"), [
    ({"status": "Suspended"}, False, Outcome.RUNNING, False, False, None),   # Kueue, or no pod made yet
    ({"status": "Pending"}, False, Outcome.RUNNING, False, False, None),     # no kubelet took it
    ({"status": "Pending", "creation_time": STARTED}, False, Outcome.RUNNING, False, True, None),  # pulling
    ({"status": "Running", "creation_time": STARTED}, False, Outcome.RUNNING, True, True, None),
    ({"status": "Unknown", "creation_time": STARTED}, True, Outcome.RUNNING, False, True, None),
    ({"status": "Succeeded", "finish_time": STARTED}, True, Outcome.SUCCEEDED, False, True, None),
    ({"status": "Failed"}, True, Outcome.FAILED, False, True, invocation.Failure(False, POD_FAILED)),
    # Its pod was seen, and is gone: evicted, preempted or its node lost, as in-cluster.
    ({"status": "Suspended"}, True, Outcome.FAILED, False, True, invocation.Failure(True, POD_DELETED)),
])
def test_an_entry_of_the_listing(info, had_pod, outcome, ready, placed, failure):
    job = read_entry(JOB, info, IDENTITY, had_pod)
    assert (job.outcome, job.ready, job.placed, job.failure) == (outcome, ready, placed, failure)


def test_only_the_batchs_own_jobs_and_only_what_changed():
    tracker = ListingTracker(UID)
    listing = [(JOB, {"status": "Running", "creation_time": STARTED}),
               (invocation.job_name("fish", OTHER, 1, 9, 1), {"status": "Running"}),   # another batch's
               ("fish-0a1b2c3d-4e5f", {"status": "Running"}),                          # not the operator's
               (invocation.job_name("fish", UID, 9, 17, 1), "not an object")]
    [job] = tracker.update(listing, now=0.0)
    assert job.name == JOB and job.identity == IDENTITY and tracker.listed
    assert tracker.update(listing, now=2.0) == []                                     # nothing changed
    [ended] = tracker.update([(JOB, {"status": "Succeeded", "creation_time": STARTED})], now=4.0)
    assert ended.outcome == Outcome.SUCCEEDED and tracker.in_flight() == []


def test_a_job_in_flight_that_leaves_the_listing_was_disrupted_one_that_ended_was_cleaned_up():
    tracker = ListingTracker(UID)
    done = invocation.job_name("fish", UID, 9, 17, 1)
    tracker.update([(JOB, {"status": "Running", "creation_time": STARTED}), (done, {"status": "Succeeded"})], 0.0)
    [gone] = tracker.update([], now=2.0)
    assert gone.name == JOB and gone.outcome == Outcome.FAILED and gone.failure == invocation.Failure(True, JOB_DELETED)
    assert tracker.names() == set()


def test_a_pod_seen_then_gone_is_a_disruption_but_a_job_never_given_one_waits():
    tracker = ListingTracker(UID)
    waiting = invocation.job_name("fish", UID, 9, 17, 1)
    tracker.update([(JOB, {"status": "Running", "creation_time": STARTED}), (waiting, {"status": "Suspended"})], 0.0)
    changed = {job.name: job for job in tracker.update([(JOB, {"status": "Suspended"}),
                                                        (waiting, {"status": "Suspended"})], 2.0)}
    assert set(changed) == {JOB} and changed[JOB].failure == invocation.Failure(True, POD_DELETED)


@pytest.mark.parametrize(("info", "after", "unplaced"), [
    ({"status": "Suspended"}, UNPLACED_AFTER - 1, 0),        # just created: the Job controller makes its pod soon
    ({"status": "Suspended"}, UNPLACED_AFTER, 1),            # Kueue holds it back, or no pod can be made
    ({"status": "Pending"}, UNPLACED_AFTER, 1),              # no node takes it
    ({"status": "Pending", "creation_time": STARTED}, UNPLACED_AFTER * 10, 0),   # placed, pulling its image
    ({"status": "Running", "creation_time": STARTED}, UNPLACED_AFTER * 10, 0),
])
def test_jobs_the_cluster_cannot_place_are_counted_after_a_while(info, after, unplaced):
    tracker = ListingTracker(UID)
    tracker.update([(JOB, info)], now=100.0)
    tracker.update([(JOB, info)], now=100.0 + after)
    assert tracker.unplaced(100.0 + after) == unplaced
