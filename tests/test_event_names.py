"""The operator's Event names: unique for 200 batches' worth of Events, across a restart too, and valid names.

kopf's `event()` leaves the name to the API server (`generateName`, five random characters of 27): by the
birthday bound, 10,000 Events in one namespace share a name with a chance of about 97%, and kopf drops the later.
"""
from __future__ import annotations

import re
import uuid

from oscar_batch.controller.events import EventPoster

BATCHES, EVENTS_EACH = 200, 50
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def names(poster: EventPoster, uids: list[str]) -> list[str]:
    return [poster.event({"uid": uid, "namespace": "default", "name": f"batch-{i}", "kind": "OscarBatchJob",
                          "apiVersion": "batch.oscarbatch.dev/v1alpha1"}, "Normal", "RangeSplit", "m")
            ["metadata"]["name"] for _ in range(EVENTS_EACH) for i, uid in enumerate(uids)]


def test_event_names_of_200_batches_never_collide_even_across_a_restart():
    uids = [str(uuid.uuid4()) for _ in range(BATCHES)]
    first = names(EventPoster(kube=None, component="c", instance="i"), uids)   # type: ignore[arg-type]
    after_restart = names(EventPoster(kube=None, component="c", instance="i"), uids)   # type: ignore[arg-type]
    every = first + after_restart
    assert len(set(every)) == len(every) == 2 * BATCHES * EVENTS_EACH
    assert all(len(name) <= 253 and DNS_SUBDOMAIN.match(name) for name in every)


def test_a_long_message_is_cut_in_the_middle_to_what_kopf_would_post():
    poster = EventPoster(kube=None, component="c", instance="i")   # type: ignore[arg-type]
    event = poster.event({"uid": str(uuid.uuid4()), "namespace": "default"}, "Warning", "R", "a" * 600 + "b" * 600)
    assert len(event["message"]) <= 1024 and event["message"].startswith("a") and event["message"].endswith("b")
