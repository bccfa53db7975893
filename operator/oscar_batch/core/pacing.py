"""When to try again and when to speak: exponential backoff and Event aggregation. Pure; the caller's clock.

A condition that needs a person (a missing Secret, a wrong service) must not be retried every tick, and a
batch with many retries must not flood `kubectl describe` with one Event each.
"""
from __future__ import annotations

import dataclasses
import enum


class Retry(enum.Enum):
    """How soon something that failed is tried again."""
    CLEARS_BY_ITSELF = "clears by itself"   # a peer down, a conflict: soon, whatever the failures so far
    NEEDS_A_PERSON = "needs a person"       # a missing Secret, a wrong service: up to the longest backoff


@dataclasses.dataclass
class Backoff:
    """Delays base, 2·base, 4·base … after consecutive failures, up to `cap`, or up to `soon_cap` for what
    clears by itself; a success resets them."""
    base: float
    cap: float
    soon_cap: float | None = None   # None: `cap` for both kinds
    failures: int = 0
    not_before: float = float("-inf")

    def ready(self, now: float) -> bool:
        return now >= self.not_before

    def failed(self, now: float, retry: Retry = Retry.NEEDS_A_PERSON) -> float:
        """Record a failure at `now`; returns the delay before the next try."""
        cap = self.cap if retry is Retry.NEEDS_A_PERSON or self.soon_cap is None else min(self.soon_cap, self.cap)
        delay = min(cap, self.base * 2 ** min(self.failures, 64))
        self.failures += 1
        self.not_before = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.not_before = float("-inf")


@dataclasses.dataclass
class _Pending:
    kind: str
    count: int = 0
    examples: list[str] = dataclasses.field(default_factory=list)


class EventThrottle:
    """At most one Event per reason per `window` seconds. The first of a burst goes out at once; the rest are
    counted and summarised when the window closes: "12 more in the last 60s, e.g. …"."""

    EXAMPLES = 3

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, _Pending] = {}

    def offer(self, kind: str, reason: str, message: str, now: float) -> list[tuple[str, str, str]]:
        """(kind, reason, message) Events to emit now for this one, plus any window that has closed."""
        due = self.due(now)
        if now - self._last_sent.get(reason, float("-inf")) >= self.window and reason not in self._held:
            self._last_sent[reason] = now
            return [*due, (kind, reason, message)]
        held = self._held.setdefault(reason, _Pending(kind))
        held.count += 1
        if len(held.examples) < self.EXAMPLES:
            held.examples.append(message)
        return due

    def due(self, now: float, everything: bool = False) -> list[tuple[str, str, str]]:
        """Summaries of the reasons whose window has closed (of all held ones with `everything`)."""
        out = []
        for reason in [r for r in self._held
                       if everything or now - self._last_sent.get(r, float("-inf")) >= self.window]:
            held = self._held.pop(reason)
            self._last_sent[reason] = now
            examples = "; ".join(held.examples) + ("; …" if held.count > len(held.examples) else "")
            out.append((held.kind, reason,
                        f"{held.count} more in the last {self.window:g}s: {examples}"))
        return out

    def flush(self, now: float) -> list[tuple[str, str, str]]:
        """Everything still held, e.g. when the batch ends."""
        return self.due(now, everything=True)
