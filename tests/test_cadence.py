"""When the parts of a batch's pass are due (core/cadence.py) and how soon a failure is tried again
(core/pacing.Backoff by retry kind): tables, on a clock the test holds."""
import pytest

from oscar_batch.core.cadence import Cadence, Signals, Timing
from oscar_batch.core.pacing import Backoff, Retry

TIMING = Timing(tick=1, plan_interval=15, min_replan=2, status_interval=3, retry_delay=15, max_backoff=300)


def planned_at(now: float, membership: int = 1, queueing: bool = False) -> Cadence:
    cadence = Cadence(TIMING)
    cadence.planned(Signals(now=now, spec_changed=False, membership=membership, queueing=queueing, ended=False))
    return cadence


@pytest.mark.parametrize(("since", "spec_changed", "membership", "queueing", "ended", "due"), [
    (0.5, False, 1, False, False, False),    # nothing changed
    (15, False, 1, False, False, True),      # the plan interval came round
    (0.5, True, 1, False, False, True),      # a spec edit: at once
    (0.5, False, 2, False, False, True),     # a batch started or stopped dispatching: at once
    (1.5, False, 1, False, True, False),     # a range ended, but the last plan is younger than min_replan
    (2, False, 1, False, True, True),        # ... and no longer
    (1.5, False, 1, True, False, False),     # Kueue began holding Jobs back: not before min_replan either
    (2, False, 1, True, False, True),
])
def test_a_replan_is_due_on_the_interval_at_once_on_edits_and_after_min_replan_when_capacity_moved(
        since, spec_changed, membership, queueing, ended, due):
    cadence = planned_at(100.0)
    signals = Signals(now=100.0 + since, spec_changed=spec_changed, membership=membership, queueing=queueing,
                      ended=ended)
    assert cadence.replan_due(signals) is due


def test_the_first_pass_plans():
    assert Cadence(TIMING).replan_due(Signals(now=0.0, spec_changed=False, membership=0, queueing=False,
                                              ended=False))


@pytest.mark.parametrize(("pass_began", "last_status", "now", "wait"), [
    (100.0, 99.0, 100.2, 0.8),      # a tick after the pass began
    (100.0, 97.5, 100.2, 0.3),      # status falls due first
    (100.0, 99.0, 101.5, 0.05),     # the pass ran past its tick: a twentieth of a tick, not none
])
def test_the_next_pass_comes_a_tick_after_the_last_began_or_when_status_falls_due(pass_began, last_status, now,
                                                                                   wait):
    cadence = Cadence(TIMING)
    cadence.pass_began, cadence.last_status = pass_began, last_status
    assert cadence.next_pass(now) == pytest.approx(wait)


@pytest.mark.parametrize(("retry", "delays"), [
    (Retry.NEEDS_A_PERSON, [15, 30, 60, 120, 240, 300, 300]),
    (Retry.CLEARS_BY_ITSELF, [15, 30, 60, 60, 60, 60, 60]),    # a peer down: a few retry delays at most
])
def test_a_failure_that_needs_a_person_backs_off_to_the_longest_delay_and_one_that_clears_by_itself_does_not(
        retry, delays):
    backoff = TIMING.backoff(TIMING.retry_delay)
    assert [backoff.failed(0.0, retry) for _ in delays] == delays


def test_a_backoff_without_a_soon_cap_treats_both_kinds_alike():
    backoff = Backoff(base=1, cap=4)
    assert [backoff.failed(0.0, Retry.CLEARS_BY_ITSELF) for _ in range(4)] == [1, 2, 4, 4]
