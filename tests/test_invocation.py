"""One invocation: the Job name the operator asks for, the payload, how a Job maps back to its lines, and what
a failed Job's pods say about why it failed."""
import base64
import json
import re

import pytest

from oscar_batch.core.invocation import (
    Failure,
    Identity,
    already_exists,
    failed_reason,
    failure,
    identify,
    job_name,
    name_identity,
    outcome,
    payload,
)
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


def an_event(uid=UID, start=71, end=81, attempt=2, redrive=0):
    return payload(start=start, end=end, bucket="fish", manifest_key="input/index.txt", batch_uid=uid,
                   batch="default/fish", attempt=attempt, redrive=redrive)


def invoked(uid, start, end, attempt, redrive=0, service="fish-detector"):
    """A Job as OSCAR makes it from the operator's invocation: the name asked for, the EVENT sent."""
    return job(job_name(service, uid, start, end, attempt, redrive),
               event=an_event(uid, start, end, attempt, redrive))


# --- names -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("service", "uid", "lines", "attempt", "expected"), [
    ("fish-detector", UID, (1, 101), 1, "fish-detector-3f2a9c1b7d4e-l1-101-a1"),
    ("fish-detector", UID, (41, 42), 3, "fish-detector-3f2a9c1b7d4e-l41-42-a3"),
    ("a" * 39, UID, (99_999, 100_000), 1, "a" * 20 + "-3f2a9c1b7d4e-l99999-100000-a1"),
    ("abcdefghijklmnopqrs-tuvwxyz", UID, (5, 9), 1, "abcdefghijklmnopqrs-3f2a9c1b7d4e-l5-9-a1"),  # no '--' at the cut
    ("abcdefghijklmnopqr--tuvwxyz", UID, (5, 9), 1, "abcdefghijklmnopqr-3f2a9c1b7d4e-l5-9-a1"),
    ("x", "3f2a9c1b7d4e4b8a9f0123456789abcd", (2, 3), 2, "x-3f2a9c1b7d4e-l2-3-a2"),       # UID without dashes
])
def test_job_name(service, uid, lines, attempt, expected):
    assert job_name(service, uid, *lines, attempt) == expected


def test_a_redriven_attempt_names_its_round():
    name = job_name("fish-detector", UID, 41, 42, 4, redrive=2)
    assert name == "fish-detector-3f2a9c1b7d4e-l41-42-a4-d2"
    assert name_identity(name) == Identity("3f2a9c1b7d4e", 41, 42, 4, redrive=2)
    assert identify(invoked(UID, 41, 42, 4, redrive=2)) == Identity(UID, 41, 42, 4, redrive=2)
    assert identify(job("fish-detector-abc", event=an_event() | {"oscarBatch": {
        "uid": UID, "batch": "default/fish", "attempt": 5, "redrive": 1}})) == Identity(UID, 71, 81, 5, 1)


@pytest.mark.parametrize("service", ["a" * 39, "a" * 19 + "-" + "b" * 19, "a-" * 19 + "a", "f", "0" * 39])
@pytest.mark.parametrize(("start", "end", "attempt", "redrive"), [
    (1, 2, 1, 0), (99_999, 100_000, 3, 0), (1, 10**8 + 1, 10, 0), (10**8, 10**8 + 1, 999, 0),
    (5 * 10**7, 10**8 + 1, 99, 1000)])
def test_job_name_is_a_valid_dns_label_up_to_a_hundred_million_lines(service, start, end, attempt, redrive):
    name = job_name(service, UID, start, end, attempt, redrive)
    assert len(name) <= 63
    assert DNS_LABEL.fullmatch(name), name
    assert name_identity(name) == Identity(UID.replace("-", "")[:12], start, end, attempt, redrive)
    assert identify(invoked(UID, start, end, attempt, redrive, service)) == Identity(UID, start, end, attempt,
                                                                                       redrive)


# --- payload ---------------------------------------------------------------------------------------------------

def test_payload_keeps_start_and_end_and_adds_identity():
    event = an_event()
    assert event == {"start": 71, "end": 81, "bucket": "fish", "manifest": "input/index.txt",
                     "oscarBatch": {"uid": UID, "batch": "default/fish", "attempt": 2, "redrive": 0}}
    decoded = json.loads(json.dumps(event))         # what a service's `jq .start` / `jq .end` sees
    assert (decoded["start"], decoded["end"]) == (71, 81)
    assert type(decoded["start"]) is int and type(decoded["end"]) is int


# --- identify --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("the_job", "expected"), [
    # the operator's Job: the name it asked for and the EVENT it sent agree; the EVENT has the full UID
    (invoked(UID, 12, 20, 1), Identity(UID, 12, 20, 1)),
    (invoked(UID, 12, 20, 3, redrive=2), Identity(UID, 12, 20, 3, 2)),
    # an OSCAR that names Jobs `<service>-<uuid>`: the EVENT says which lines
    (job("fish-detector-5d1c0a9e-1111-2222-3333-444455556666", event=an_event()), Identity(UID, 71, 81, 2)),
    (job("fish-detector-abc", event=an_event(), extra_env=[{"name": "OTHER", "value": "x"}]),
     Identity(UID, 71, 81, 2)),
    # an interLink service's EVENT is base64 (OSCAR's SetInterlinkJob)
    (job("fish-detector-abc", event=base64.b64encode(json.dumps(an_event()).encode()).decode()),
     Identity(UID, 71, 81, 2)),
    # a name that claims an invocation of the operator, and an EVENT that disagrees or is missing: forged
    (job(job_name("fish-detector", UID, 12, 20, 1)), None),
    (job(job_name("fish-detector", UID, 12, 20, 1), event=an_event(start=3, attempt=9)), None),
    (job(job_name("fish-detector", UID, 12, 20, 1), event=an_event(OTHER_UID, 12, 20, 1)), None),
    (job(job_name("fish-detector", UID, 12, 20, 1, redrive=1), event=an_event(UID, 12, 20, 1)), None),
    (job(job_name("fish-detector", UID, 12, 20, 1), event=an_event(UID[:-1] + "e", 12, 20, 1)),
     Identity(UID[:-1] + "e", 12, 20, 1)),                       # same prefix: the EVENT's UID is the batch's
    # foreign or unreadable Jobs
    (job("fish-detector-5d1c0a9e"), None),
    (job("other-job", event={"start": 1, "end": 5}), None),                     # an invocation not ours
    (job("other-job", event="not json"), None),
    (job("other-job", event="bm90IGpzb24="), None),                             # base64, not of JSON
    (job("other-job", event="[1, 2]"), None),
    (job("other-job", event={"oscarBatch": "x"}), None),
    (job("other-job", event={"start": 1, "end": 5, "oscarBatch": {"uid": UID}}), None),   # no attempt
    (job("other-job", event={"start": 1, "end": 5, "oscarBatch": {"uid": 7, "attempt": 1}}), None),
    (job("other-job", event={"start": "one", "end": 5, "oscarBatch": {"uid": UID, "attempt": 1}}), None),
    (job("other-job", event=an_event(), container="sidecar"), None),            # not OSCAR's container
    ({}, None),
    ({"metadata": {}, "spec": {}}, None),
])
def test_identify(the_job, expected):
    assert identify(the_job) == expected


@pytest.mark.parametrize(("name", "expected"), [
    (job_name("fish", UID, 12, 20, 1), Identity("3f2a9c1b7d4e", 12, 20, 1)),
    ("fish-detector-5d1c0a9e", None),
    ("FISH-3f2a9c1b7d4e-l1-2-a1", None),
    ("fish-3f2a9c1b7d4-l1-2-a1", None),                                         # 11 hex chars
    ("fish-3f2a9c1b7d4e-l1-2-a", None),
    ("fish-3f2a9c1b7d4e-r1-a1", None),                                          # no lines
    ("fish-3f2a9c1b7d4e-l1-2-a1\n", None),
])
def test_name_identity(name, expected):
    assert name_identity(name) == expected


@pytest.mark.parametrize(("status", "body", "name", "exists"), [
    # OSCAR passes client-go's AlreadyExists text on, as a 500
    (500, 'jobs.batch "fish-3f2a9c1b7d4e-l1-2-a1" already exists', "fish-3f2a9c1b7d4e-l1-2-a1", True),
    (500, 'jobs.batch "fish-3f2a9c1b7d4e-l1-2-a1" already exists\n', "fish-3f2a9c1b7d4e-l1-2-a1", True),
    (500, 'jobs.batch "fish-3f2a9c1b7d4e-l1-2-a2" already exists', "fish-3f2a9c1b7d4e-l1-2-a1", False),
    (409, 'jobs.batch "fish-3f2a9c1b7d4e-l1-2-a1" already exists', "fish-3f2a9c1b7d4e-l1-2-a1", False),
    # any other 500, however it is worded
    (500, "", "exist-fish-3f2a9c1b7d4e-l1-2-a1", False),
    (500, "internal error invoking service exist-fish", "exist-fish-3f2a9c1b7d4e-l1-2-a1", False),
    (500, "error ensuring credentials: the secret already exists", "fish-3f2a9c1b7d4e-l1-2-a1", False),
    (500, 'Job.batch "exist-x-3f2a9c1b7d4e-l1-2-a1" is invalid', "exist-x-3f2a9c1b7d4e-l1-2-a1", False),
    (None, 'jobs.batch "x" already exists', "x", False),
])
def test_already_exists_is_oscars_exact_answer(status, body, name, exists):
    assert already_exists(status, body, name) is exists


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


# --- why an attempt failed ---------------------------------------------------------------------------------

def pod(created="2026-12-01T00:00:02Z", **status):
    return {"metadata": {"creationTimestamp": created}, "status": status}


def exited(code, reason="Error", name="oscar-container"):
    return {"name": name, "state": {"terminated": {"exitCode": code, "reason": reason}}}


@pytest.mark.parametrize(("pods", "expected"), [
    (None, Failure(False, "BackoffLimitExceeded")),                          # pods not readable: count it
    ([], Failure(True, "its pod was deleted before it finished (evicted, preempted or its node lost)")),
    ([pod(phase="Failed", containerStatuses=[exited(1)])], Failure(False, "Error (exit code 1)")),
    ([pod(phase="Failed", containerStatuses=[exited(137, "OOMKilled")])], Failure(False, "OOMKilled (exit code 137)")),
    # the kubelet's node-pressure eviction keeps the pod, says Evicted and (1.26+) DisruptionTarget
    ([pod(phase="Failed", reason="Evicted", message="The node was low on resource: memory.",
          conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}],
          containerStatuses=[exited(137)])],
     Failure(True, "pod disrupted: TerminationByKubelet")),
    ([pod(phase="Failed", reason="Evicted", message="The node was low on resource: memory.")],
     Failure(True, "pod Evicted: The node was low on resource: memory.")),
    # a drain through the Eviction API, seen before the pod is gone
    ([pod(phase="Failed", conditions=[{"type": "DisruptionTarget", "status": "True",
                                       "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}])],
     Failure(True, "pod disrupted: EvictionByEvictionAPI: Eviction API: evicting")),
    ([pod(phase="Failed", conditions=[{"type": "DisruptionTarget", "status": "False"}],
          containerStatuses=[exited(2)])], Failure(False, "Error (exit code 2)")),
    # the newest pod decides; a sidecar's exit is not the service's
    ([pod("2026-12-01T00:00:01Z", reason="Evicted"), pod("2026-12-01T00:00:09Z", containerStatuses=[exited(3)])],
     Failure(False, "Error (exit code 3)")),
    ([pod(containerStatuses=[exited(0, "Completed", "sidecar"), exited(4)])], Failure(False, "Error (exit code 4)")),
    ([pod(phase="Failed")], Failure(False, "BackoffLimitExceeded")),
    # what pods say is quoted as any peer's text: one line, credentials redacted
    ([pod(phase="Failed", reason="Evicted", message="evicted\nby admin with password=hunter2")],
     Failure(True, "pod Evicted: evicted by admin with password=[redacted]")),
])
def test_failure_tells_a_disruption_from_the_services_own_failure(pods, expected):
    assert failure("BackoffLimitExceeded", pods) == expected


def test_failed_reason_is_the_failed_conditions():
    assert failed_reason(with_status(conditions=[{"type": "Failed", "status": "True",
                                                  "reason": "DeadlineExceeded"}])) == "DeadlineExceeded"
    assert failed_reason(with_status(failed=1)) == "Failed"
