"""One invocation of the service over one range: its payload, its Job name, how a Job maps back, and what a
failed Job's pods say about why it failed. Pure."""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from oscar_batch.core.ranges import Outcome

OSCAR_CONTAINER = "oscar-container"
# `<service[:20]>-<uid[:12]>-l<start>-<end>-a<attempt>`, and `-d<round>` after a redrive: a valid Job name (at
# most 63 characters for up to 10^8 lines), unique per batch. The lines are the invocation's `start`/`end`.
JOB_NAME = re.compile(r"^(?P<service>[-a-z0-9]+)-(?P<uid>[0-9a-f]{12})-l(?P<start>\d+)-(?P<end>\d+)"
                      r"-a(?P<attempt>\d+)(?:-d(?P<redrive>\d+))?$")
UID_CHARS = 12


@dataclasses.dataclass(frozen=True)
class Identity:
    batch_uid: str        # the full UID when known from the payload, else its first 12 hex characters
    start: int            # the manifest lines [start, end) of the invocation
    end: int
    attempt: int          # of these very lines
    redrive: int = 0      # the redrive round the attempt belongs to

    def belongs_to(self, batch_uid: str) -> bool:
        return batch_uid.replace("-", "").startswith(self.batch_uid.replace("-", "")[:UID_CHARS])


def job_name(service: str, batch_uid: str, start: int, end: int, attempt: int, redrive: int = 0) -> str:
    round_suffix = f"-d{redrive}" if redrive else ""
    uid = batch_uid.replace("-", "")[:UID_CHARS]
    return f"{service[:20].rstrip('-')}-{uid}-l{start}-{end}-a{attempt}{round_suffix}"


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


def identify(job: Mapping[str, Any]) -> Identity | None:
    """Which batch, range and attempt a Job runs: from its name, else from the EVENT its container received
    (OSCAR releases that ignore X-Delegated-Job-ID name Jobs `<service>-<uuid>`)."""
    match = JOB_NAME.match(job.get("metadata", {}).get("name", ""))
    if match:
        return Identity(match["uid"], int(match["start"]), int(match["end"]), int(match["attempt"]),
                        int(match["redrive"] or 0))
    event = _event(job)
    marker = event.get("oscarBatch") if isinstance(event, dict) else None
    if not isinstance(marker, dict):
        return None
    try:
        return Identity(str(marker["uid"]), int(event["start"]), int(event["end"]), int(marker["attempt"]),
                        int(marker.get("redrive") or 0))
    except (KeyError, TypeError, ValueError):
        return None


def _event(job: Mapping[str, Any]) -> Any:
    containers = job.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    for container in containers:
        if container.get("name") != OSCAR_CONTAINER:
            continue
        for variable in container.get("env", []):
            if variable.get("name") == "EVENT":
                try:
                    return json.loads(variable.get("value", ""))
                except ValueError:
                    return None
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
            return Failure(True, f"pod disrupted: {item.get('reason') or 'DisruptionTarget'}"
                                 + (f": {item['message']}" if item.get("message") else ""))
    if status.get("reason") in ("Evicted", "Preempting", "NodeLost", "Shutdown", "Terminated"):
        return Failure(True, f"pod {status['reason']}: {status.get('message') or ''}".rstrip(": "))
    for container in status.get("containerStatuses") or ():
        if container.get("name") != OSCAR_CONTAINER and len(status.get("containerStatuses") or ()) > 1:
            continue
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated:
            return Failure(False, f"{terminated.get('reason') or 'terminated'} (exit code "
                                  f"{terminated.get('exitCode')})")
    return Failure(False, job_reason)


def failed_reason(job: Mapping[str, Any]) -> str:
    """The reason of a failed Job's Failed condition."""
    for item in (job.get("status") or {}).get("conditions") or ():
        if item.get("type") == "Failed" and item.get("status") == "True":
            return item.get("reason") or "Failed"
    return "Failed"
