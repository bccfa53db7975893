"""One invocation of the service over one range: its payload, its Job name, how a Job maps back, and what a
failed Job's pods say about why it failed. Pure."""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from oscar_batch.core.ranges import Outcome
from oscar_batch.core.redaction import quote

OSCAR_CONTAINER = "oscar-container"
# `<service[:20]>-<uid[:12]>-l<start>-<end>-a<attempt>`, and `-d<round>` after a redrive: a valid Job name (at
# most 63 characters for up to 10^8 lines), unique per batch. The lines are the invocation's `start`/`end`.
JOB_NAME = re.compile(r"^(?P<service>[-a-z0-9]+)-(?P<uid>[0-9a-f]{12})-l(?P<start>\d+)-(?P<end>\d+)"
                      r"-a(?P<attempt>\d+)(?:-d(?P<redrive>\d+))?$")
UID_CHARS = 12


@dataclasses.dataclass(frozen=True)
class Identity:
    batch_uid: str        # the batch's full UID (from the EVENT); from a name alone, its first 12 hex characters
    start: int            # the manifest lines [start, end) of the invocation
    end: int
    attempt: int          # of these very lines
    redrive: int = 0      # the redrive round the attempt belongs to


def job_name(service: str, batch_uid: str, start: int, end: int, attempt: int, redrive: int = 0) -> str:
    round_suffix = f"-d{redrive}" if redrive else ""
    return f"{service[:20].rstrip('-')}-{uid_prefix(batch_uid)}-l{start}-{end}-a{attempt}{round_suffix}"


def payload(*, start: int, end: int, bucket: str, manifest_key: str, batch_uid: str, batch: str,
            attempt: int, redrive: int = 0) -> dict[str, Any]:
    """The event a service receives. `start`/`end` keep the original tool's meaning; the rest is additive."""
    return {
        "start": start,
        "end": end,
        "bucket": bucket,
        "manifest": manifest_key,
        "oscarBatch": {"uid": batch_uid, "batch": batch, "attempt": attempt, "redrive": redrive},
    }


def name_identity(name: str) -> Identity | None:
    """What a Job name the operator chose says (OSCAR's job listing gives names only): the batch by the first 12
    hex characters of its UID, which is not enough to tell batches apart for certain."""
    match = JOB_NAME.fullmatch(name)
    if not match:
        return None
    return Identity(match["uid"], int(match["start"]), int(match["end"]), int(match["attempt"]),
                    int(match["redrive"] or 0))


def identify(job: Mapping[str, Any]) -> Identity | None:
    """Which batch, range and attempt a Job runs, from the EVENT its container received: OSCAR always sets it,
    and it carries the batch's full UID. A Job named as the operator names Jobs must agree with its EVENT in
    every part of the name; one that does not was not made from the operator's invocation, and is nobody's."""
    event = _event(job)
    marker = event.get("oscarBatch") if isinstance(event, dict) else None
    if not isinstance(marker, dict) or not isinstance(marker.get("uid"), str):
        return None
    try:
        identity = Identity(marker["uid"], int(event["start"]), int(event["end"]), int(marker["attempt"]),
                            int(marker.get("redrive") or 0))
    except (KeyError, TypeError, ValueError):
        return None
    named = JOB_NAME.fullmatch(job.get("metadata", {}).get("name", ""))
    if named and (named["uid"] != uid_prefix(identity.batch_uid) or int(named["start"]) != identity.start
                  or int(named["end"]) != identity.end or int(named["attempt"]) != identity.attempt
                  or int(named["redrive"] or 0) != identity.redrive):
        return None
    return identity


def uid_prefix(batch_uid: str) -> str:
    """What a Job name keeps of a batch's UID."""
    return batch_uid.replace("-", "")[:UID_CHARS]


def already_exists(status: int | None, body: str, job_name: str) -> bool:
    """Whether OSCAR's answer to an invocation says that its Job exists already: OSCAR passes the Kubernetes
    API's error on as a 500 with client-go's text, `jobs.batch "<name>" already exists`. Any other 500 is a
    failure, whatever its text mentions (a service may well be called `exist-…`)."""
    return status == 500 and body.strip() == f'jobs.batch "{job_name}" already exists'


def _event(job: Mapping[str, Any]) -> Any:
    containers = job.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    for container in containers:
        if container.get("name") != OSCAR_CONTAINER:
            continue
        for variable in container.get("env", []):
            if variable.get("name") == "EVENT":
                return _json(variable.get("value", ""))
    return None


def _json(value: Any) -> Any:
    """The EVENT as JSON; interLink services get it base64-encoded (OSCAR's SetInterlinkJob)."""
    if not isinstance(value, str):
        return None
    if not value.lstrip().startswith(("{", "[")):
        try:
            value = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def outcome(job: Mapping[str, Any]) -> Outcome:
    """A Job's verdict the way the Job controller states it: terminal conditions first, then counters."""
    status = job.get("status", {})
    for item in status.get("conditions") or ():
        if item.get("status") != "True":
            continue
        if item.get("type") in ("Complete", "SuccessCriteriaMet"):
            return Outcome.SUCCEEDED
        if item.get("type") in ("Failed", "FailureTarget"):
            return Outcome.FAILED
    if status.get("succeeded"):
        return Outcome.SUCCEEDED
    # OSCAR sets backoffLimit 0: one failed pod fails the Job.
    if status.get("failed"):
        return Outcome.FAILED
    return Outcome.RUNNING


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why an attempt failed. A disruption (the pod evicted, its node lost, the pod deleted) says nothing of
    the inputs: the same lines run again without spending a retry."""
    disruption: bool
    reason: str


def failure(job_reason: str, pods: Sequence[Mapping[str, Any]] | None) -> Failure:
    """What a failed Job's pods (None: not readable) say, else its own reason. The Job controller keeps a
    failed Job's pods, so a Job without any was disrupted: the Eviction API, the taint manager and the pod
    garbage collector delete the pods they stop."""
    if pods is None:
        return Failure(False, job_reason)
    if not pods:
        return Failure(True, "its pod was deleted before it finished (evicted, preempted or its node lost)")
    pod = max(pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "")
    status = pod.get("status") or {}
    for item in status.get("conditions") or ():
        if item.get("type") == "DisruptionTarget" and item.get("status") == "True":
            return Failure(True, f"pod disrupted: {quote(item.get('reason')) or 'DisruptionTarget'}"
                                 + (f": {quote(item['message'])}" if item.get("message") else ""))
    if status.get("reason") in ("Evicted", "Preempting", "NodeLost", "Shutdown", "Terminated"):
        return Failure(True, f"pod {status['reason']}: {quote(status.get('message'))}".rstrip(": "))
    for container in status.get("containerStatuses") or ():
        if container.get("name") != OSCAR_CONTAINER and len(status.get("containerStatuses") or ()) > 1:
            continue
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated:
            return Failure(False, f"{quote(terminated.get('reason')) or 'terminated'} (exit code "
                                  f"{quote(str(terminated.get('exitCode')))})")
    return Failure(False, job_reason)


def failed_reason(job: Mapping[str, Any]) -> str:
    """The reason of a failed Job's Failed condition."""
    for item in (job.get("status") or {}).get("conditions") or ():
        if item.get("type") == "Failed" and item.get("status") == "True":
            return quote(item.get("reason")) or "Failed"
    return "Failed"
