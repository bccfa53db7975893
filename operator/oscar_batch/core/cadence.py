"""When each part of a batch's pass is due: folding and dispatch every tick, planning on an interval or when
something changed, status at a bounded rate, and the backoffs of what failed. Pure; the caller's clock.

The Job controller's `syncJob` runs whole on every change; a batch's pass instead runs every tick, and this
says which of its parts run in it, so that a pass can be reasoned about (and tested) one at a time.
"""
from __future__ import annotations

import dataclasses

from oscar_batch.core.pacing import Backoff


@dataclasses.dataclass(frozen=True)
class Timing:
    """How often the loop looks, plans and reports. Tests shorten these; production keeps the defaults."""
    tick: float = 1.0              # fold in Job changes and dispatch
    plan_interval: float = 15.0    # re-plan even when nothing ended
    min_replan: float = 2.0        # re-plan at most this often when ranges end; also the snapshot's age
    status_interval: float = 2.0   # patch progress at most this often while running (the Job controller: 1 s)
    retry_delay: float = 15.0      # first delay after a condition that may fix itself (Secret missing, OSCAR down)
    max_backoff: float = 300.0     # longest delay between two tries of something that needs a person
    unseen_job_timeout: float = 60.0  # an accepted invocation whose Job has not appeared is re-checked after this
    cancel_timeout: float = 60.0   # how long deleting a batch may spend cleaning up behind the finalizer
    list_interval: float = 2.0     # a Remote cluster's job listing is read at most this often (and the status's pace)
    reassign_after: float = 300.0  # a Remote cluster cut off this long: its ranges in flight run on the others

    def backoff(self, base: float) -> Backoff:
        """Backoff from `base`: up to `max_backoff` for what needs a person, a few retry delays for the rest."""
        return Backoff(base, self.max_backoff, soon_cap=4 * self.retry_delay)


# Shares of a tick a pass may spend invoking and deleting finished Jobs: it folds and reports about every tick,
# and clean-up keeps pace with the Jobs that finish without crowding out dispatch.
DISPATCH_SHARE, CLEAN_UP_SHARE = 0.5, 0.25


@dataclasses.dataclass(frozen=True, kw_only=True)
class Signals:
    """What changed since the last pass, as far as planning cares."""
    now: float
    spec_changed: bool     # the live spec differs from the last pass's
    membership: int        # `ActiveBatches.membership`: batches started or stopped dispatching
    queueing: bool         # Kueue holds back some of the batch's Jobs
    ended: bool            # some range ended: capacity came free


@dataclasses.dataclass
class Cadence:
    """When the parts of a batch's pass last ran, and the backoffs of those that failed."""
    timing: Timing
    last_plan: float = float("-inf")
    last_status: float = float("-inf")
    planned_membership: int = -1
    planned_queueing: bool = False
    pass_began: float = float("-inf")
    cleaning: Backoff = dataclasses.field(init=False)
    rechecking: Backoff = dataclasses.field(init=False)
    finishing: Backoff = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        timing = self.timing
        self.cleaning = timing.backoff(timing.tick)
        self.rechecking = timing.backoff(timing.unseen_job_timeout)
        self.finishing = timing.backoff(timing.retry_delay)

    def replan_due(self, signals: Signals) -> bool:
        """On the plan interval; at once when the spec or the set of dispatching batches changed; after a range
        ended or Kueue began or stopped holding Jobs back, no sooner than `min_replan` after the last plan."""
        since = signals.now - self.last_plan
        return (since >= self.timing.plan_interval or signals.spec_changed
                or signals.membership != self.planned_membership
                or ((signals.ended or signals.queueing != self.planned_queueing) and since >= self.timing.min_replan))

    def planned(self, signals: Signals) -> None:
        self.last_plan = signals.now
        self.planned_membership, self.planned_queueing = signals.membership, signals.queueing

    def status_due(self, now: float) -> bool:
        return now - self.last_status >= self.timing.status_interval

    def reported(self, now: float) -> None:
        self.last_status = now

    def next_pass(self, now: float) -> float:
        """Seconds to wait: a tick after the last pass began (work does not stretch the tick), or sooner when
        status falls due — a pass that ran long would otherwise push the patch to the tick after, and status
        would come every interval plus up to a tick."""
        wake = min(self.pass_began + self.timing.tick, self.last_status + self.timing.status_interval)
        return max(wake - now, 0.05 * self.timing.tick)
