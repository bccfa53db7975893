"""How often a batch's loop looks, plans and reports, and how long it waits. Tests shorten these."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Timing:
    """How often the loop looks, plans and reports. Tests shorten these; production keeps the defaults."""
    tick: float = 1.0              # fold in Job changes and dispatch
    plan_interval: float = 15.0    # re-plan even when nothing ended
    min_replan: float = 2.0        # re-plan at most this often when ranges end; also the snapshot's age
    status_interval: float = 2.0   # patch status at most this often while running (the Job controller: 1 s)
    retry_delay: float = 15.0      # first delay after a condition that may fix itself (Secret missing, OSCAR down)
    max_backoff: float = 300.0     # longest delay between two tries of something that needs a person
    unseen_job_timeout: float = 60.0  # an accepted invocation whose Job has not appeared is re-checked after this
    cancel_timeout: float = 60.0   # how long deleting a batch may spend cleaning up behind the finalizer
