"""The one place the controller reads time. Intervals, deadlines and backoffs use monotonic seconds; what people
read (status timestamps, Events, the last-progress metric) uses the wall clock. Tests inject a fake."""
from __future__ import annotations

import datetime
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def wall(self) -> datetime.datetime: ...   # the wall clock, timezone-aware (UTC)


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)


SYSTEM_CLOCK = SystemClock()


def iso(moment: datetime.datetime) -> str:
    """A timestamp as Kubernetes writes them (RFC 3339, whole seconds, UTC)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
