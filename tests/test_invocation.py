"""One invocation: the Job name the operator asks for, the payload, and how a Job maps back to its range."""
import json
import re

import pytest

from oscar_batch.core.invocation import Identity, identify, job_name, outcome, payload
from oscar_batch.core.ranges import Outcome

UID = "3f2a9c1b-7d4e-4b8a-9f01-23456789abcd"
OTHER_UID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def job(name, *, event=None, container="oscar-container", extra_env=()):
    env = list(extra_env)
    if event is not None:
        env.append({"name": "EVENT", "value": event if isinstance(event, str) else json.dumps(event)})
    return {"metadata": {"name": name, "namespace": "oscar-svc"},
            "spec": {"template": {"spec": {"containers": [{"name": container, "env": env}]}}}}


def an_event(uid=UID, index=7, attempt=2):
    return payload(start=71, end=81, bucket="fish", manifest_key="input/index.txt", batch_uid=uid,
                   batch="default/fish", index=index, attempt=attempt)


# --- names -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("service", "uid", "index", "attempt", "expected"), [
    ("fish-detector", UID, 0, 1, "fish-detector-3f2a9c1b7d4e-r0-a1"),
    ("fish-detector", UID, 41, 3, "fish-detector-3f2a9c1b7d4e-r41-a3"),
    ("a" * 39, UID, 99_999, 1, "a" * 20 + "-3f2a9c1b7d4e-r99999-a1"),
    ("abcdefghijklmnopqrs-tuvwxyz", UID, 5, 1, "abcdefghijklmnopqrs-3f2a9c1b7d4e-r5-a1"),   # no '--' at the cut
    ("abcdefghijklmnopqr--tuvwxyz", UID, 5, 1, "abcdefghijklmnopqr-3f2a9c1b7d4e-r5-a1"),
    ("x", "3f2a9c1b7d4e4b8a9f0123456789abcd", 2, 2, "x-3f2a9c1b7d4e-r2-a2"),               # UID without dashes
])
def test_job_name(service, uid, index, attempt, expected):
    assert job_name(service, uid, index, attempt) == expected


def test_a_redriven_attempt_names_its_round():
    name = job_name("fish-detector", UID, 41, 4, redrive=2)
    assert name == "fish-detector-3f2a9c1b7d4e-r41-a4-d2"
    assert identify(job(name)) == Identity("3f2a9c1b7d4e", 41, 4, redrive=2)
    assert identify(job("fish-detector-abc", event=an_event() | {"oscarBatch": {
        "uid": UID, "batch": "default/fish", "range": 7, "attempt": 5, "redrive": 1}})) == Identity(UID, 7, 5, 1)


@pytest.mark.parametrize("service", ["a" * 39, "a" * 19 + "-" + "b" * 19, "a-" * 19 + "a", "f", "0" * 39])
@pytest.mark.parametrize(("index", "attempt", "redrive"), [(0, 1, 0), (99_999, 3, 0), (10**9, 10, 0),
                                                        (10**12, 999, 0), (99_999, 999, 1_000_000)])
def test_job_name_is_a_valid_dns_label(service, index, attempt, redrive):
    name = job_name(service, UID, index, attempt, redrive)
    assert len(name) <= 63
    assert DNS_LABEL.fullmatch(name), name
    assert identify(job(name)) == Identity(UID.replace("-", "")[:12], index, attempt, redrive)


# --- payload ---------------------------------------------------------------------------------------------------

def test_payload_keeps_start_and_end_and_adds_identity():
    event = an_event()
    assert event == {"start": 71, "end": 81, "bucket": "fish", "manifest": "input/index.txt",
                     "oscarBatch": {"uid": UID, "batch": "default/fish", "range": 7, "attempt": 2, "redrive": 0}}
    decoded = json.loads(json.dumps(event))         # what a service's `jq .start` / `jq .end` sees
    assert (decoded["start"], decoded["end"]) == (71, 81)
    assert type(decoded["start"]) is int and type(decoded["end"]) is int


# --- identify --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("the_job", "expected"), [
    (job(job_name("fish-detector", UID, 12, 1)), Identity("3f2a9c1b7d4e", 12, 1)),
    # the name wins over the EVENT when both are there
    (job(job_name("fish-detector", UID, 12, 1), event=an_event(index=3, attempt=9)), Identity("3f2a9c1b7d4e", 12, 1)),
    # an OSCAR that names Jobs `<service>-<uuid>`: the EVENT says which range
    (job("fish-detector-5d1c0a9e-1111-2222-3333-444455556666", event=an_event()), Identity(UID, 7, 2)),
    (job("fish-detector-abc", event=an_event(), extra_env=[{"name": "OTHER", "value": "x"}]), Identity(UID, 7, 2)),
    # foreign or unreadable Jobs
    (job("fish-detector-5d1c0a9e"), None),
    (job("other-job", event={"start": 1, "end": 5}), None),                     # an invocation not ours
    (job("other-job", event="not json"), None),
    (job("other-job", event="[1, 2]"), None),
    (job("other-job", event={"oscarBatch": "x"}), None),
    (job("other-job", event={"oscarBatch": {"uid": UID, "range": 1}}), None),   # no attempt
    (job("other-job", event={"oscarBatch": {"uid": UID, "range": "one", "attempt": 1}}), None),
    (job("other-job", event=an_event(), container="sidecar"), None),            # not OSCAR's container
    (job("FISH-3f2a9c1b7d4e-r1-a1"), None),
    (job("fish-3f2a9c1b7d4-r1-a1"), None),                                      # 11 hex chars
    (job("fish-3f2a9c1b7d4e-r1-a"), None),
    ({}, None),
    ({"metadata": {}, "spec": {}}, None),
])
def test_identify(the_job, expected):
    assert identify(the_job) == expected


@pytest.mark.parametrize(("the_job", "uid", "belongs"), [
    (job(job_name("fish", UID, 1, 1)), UID, True),
    (job(job_name("fish", UID, 1, 1)), UID.replace("-", ""), True),
    (job(job_name("fish", UID, 1, 1)), OTHER_UID, False),
    (job("fish-x", event=an_event(uid=UID)), UID, True),
    (job("fish-x", event=an_event(uid=UID)), OTHER_UID, False),
])
def test_identity_belongs_to_its_batch(the_job, uid, belongs):
    assert identify(the_job).belongs_to(uid) is belongs


# --- outcome ---------------------------------------------------------------------------------------------------

def with_status(**status):
    return {"metadata": {"name": "j"}, "status": status}


def conditions(*pairs):
    return [{"type": kind, "status": value} for kind, value in pairs]


@pytest.mark.parametrize(("the_job", "expected"), [
    ({"metadata": {"name": "j"}}, Outcome.RUNNING),
    (with_status(), Outcome.RUNNING),
    (with_status(active=1), Outcome.RUNNING),
    (with_status(conditions=None), Outcome.RUNNING),
    (with_status(conditions=conditions(("Complete", "True"))), Outcome.SUCCEEDED),
    (with_status(conditions=conditions(("SuccessCriteriaMet", "True"))), Outcome.SUCCEEDED),
    (with_status(conditions=conditions(("Failed", "True"))), Outcome.FAILED),
    (with_status(conditions=conditions(("FailureTarget", "True"))), Outcome.FAILED),
    (with_status(conditions=conditions(("Complete", "False")), active=1), Outcome.RUNNING),
    (with_status(conditions=conditions(("Failed", "Unknown"))), Outcome.RUNNING),
    (with_status(conditions=conditions(("Suspended", "True"))), Outcome.RUNNING),
    (with_status(conditions=conditions(("Suspended", "False"), ("Complete", "True"))), Outcome.SUCCEEDED),
    # terminal conditions come before counters
    (with_status(conditions=conditions(("Failed", "True")), succeeded=1), Outcome.FAILED),
    (with_status(conditions=conditions(("Complete", "True")), failed=1), Outcome.SUCCEEDED),
    # counters when no condition says yet
    (with_status(succeeded=1), Outcome.SUCCEEDED),
    (with_status(failed=1), Outcome.FAILED),
    (with_status(succeeded=1, failed=1), Outcome.SUCCEEDED),
    (with_status(succeeded=0, failed=0, active=1), Outcome.RUNNING),
])
def test_outcome(the_job, expected):
    assert outcome(the_job) == expected
