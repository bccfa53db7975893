"""One invocation of the service over one range: its payload, its Job name, and how a Job maps back. Pure."""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from oscar_batch.core.ranges import Outcome

OSCAR_CONTAINER = "oscar-container"
# `<service[:20]>-<uid[:12]>-r<range>-a<attempt>`, and `-d<round>` after a redrive: a valid Job name (at most
# 63 characters), unique per batch.
JOB_NAME = re.compile(r"^(?P<service>[-a-z0-9]+)-(?P<uid>[0-9a-f]{12})-r(?P<range>\d+)-a(?P<attempt>\d+)"
                      r"(?:-d(?P<redrive>\d+))?$")
UID_CHARS = 12


@dataclasses.dataclass(frozen=True)
class Identity:
    batch_uid: str        # the full UID when known from the payload, else its first 12 hex characters
    range: int
    attempt: int
    redrive: int = 0      # the redrive round the attempt belongs to

    def belongs_to(self, batch_uid: str) -> bool:
        return batch_uid.replace("-", "").startswith(self.batch_uid.replace("-", "")[:UID_CHARS])


def job_name(service: str, batch_uid: str, index: int, attempt: int, redrive: int = 0) -> str:
    round_suffix = f"-d{redrive}" if redrive else ""
    return f"{service[:20].rstrip('-')}-{batch_uid.replace('-', '')[:UID_CHARS]}-r{index}-a{attempt}{round_suffix}"


def payload(*, start: int, end: int, bucket: str, manifest_key: str, batch_uid: str, batch: str,
            index: int, attempt: int, redrive: int = 0) -> dict[str, Any]:
    """The event a service receives. `start`/`end` keep the original tool's meaning; the rest is additive."""
    return {
        "start": start,
        "end": end,
        "bucket": bucket,
        "manifest": manifest_key,
        "oscarBatch": {"uid": batch_uid, "batch": batch, "range": index, "attempt": attempt, "redrive": redrive},
    }


def identify(job: Mapping[str, Any]) -> Identity | None:
    """Which batch, range and attempt a Job runs: from its name, else from the EVENT its container received
    (OSCAR releases that ignore X-Delegated-Job-ID name Jobs `<service>-<uuid>`)."""
    match = JOB_NAME.match(job.get("metadata", {}).get("name", ""))
    if match:
        return Identity(match["uid"], int(match["range"]), int(match["attempt"]), int(match["redrive"] or 0))
    event = _event(job)
    marker = event.get("oscarBatch") if isinstance(event, dict) else None
    if not isinstance(marker, dict):
        return None
    try:
        return Identity(str(marker["uid"]), int(marker["range"]), int(marker["attempt"]),
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
