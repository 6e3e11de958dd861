"""The circuit breaker's state machine (domain/breaker.py) on a manual clock."""

from __future__ import annotations

import pytest

from integration_hub.domain.breaker import (
    Breaker,
    BreakerPolicy,
    Bucket,
    CallOutcome,
    Circuit,
    Window,
    call_outcome,
)
from integration_hub.domain.models import Outcome

POLICY = BreakerPolicy()  # 60 s window, 20 calls, 50 %, 30 s cool-down up to 600 s, 3 probes
T0 = 1_800_000_000.0
OK, FAIL, ANSWERED = CallOutcome.SUCCESS, CallOutcome.FAILURE, CallOutcome.ANSWERED


def calls(breaker: Breaker, outcomes: list[CallOutcome], at: float, step: float = 0.1) -> Breaker:
    """``outcomes`` recorded one after the other from ``at``, ``step`` apart."""
    for i, outcome in enumerate(outcomes):
        breaker = breaker.record(at + i * step, outcome, POLICY)
    return breaker


def opened(at: float = T0) -> Breaker:
    breaker = calls(Breaker(), [FAIL] * 20, at)
    assert breaker.circuit is Circuit.OPEN
    return breaker


def test_it_stays_closed_until_the_window_holds_enough_calls() -> None:
    breaker = calls(Breaker(), [FAIL] * 19, T0)
    assert breaker.circuit is Circuit.CLOSED
    assert breaker.admit(T0 + 2, POLICY)[0]
    assert breaker.failure_rate(T0 + 2, POLICY) == 1.0


def test_it_opens_at_the_threshold_and_refuses_calls_for_the_cool_down() -> None:
    # 10 of 20 failed: exactly 50 %.
    breaker = calls(Breaker(), [OK, FAIL] * 10, T0)
    assert breaker.circuit is Circuit.OPEN
    opened_at = T0 + 1.9
    assert (breaker.changed_at, breaker.retry_at) == (opened_at, opened_at + 30)
    assert breaker.admit(opened_at + 29.9, POLICY) == (False, breaker)
    assert breaker.circuit_at(opened_at + 29.9) is Circuit.OPEN
    assert breaker.circuit_at(opened_at + 30) is Circuit.HALF_OPEN


def test_a_failure_rate_below_the_ratio_keeps_it_closed() -> None:
    breaker = calls(Breaker(), [OK, OK, FAIL] * 20, T0)
    assert breaker.circuit is Circuit.CLOSED
    rate = breaker.failure_rate(T0 + 6, POLICY)
    assert rate is not None
    assert rate == pytest.approx(1 / 3)


def test_answers_about_the_message_or_account_count_as_calls_not_failures() -> None:
    breaker = calls(Breaker(), [ANSWERED] * 15 + [FAIL] * 14, T0)
    assert breaker.circuit is Circuit.CLOSED  # 14 of 29
    assert calls(breaker, [FAIL], T0 + 3).circuit is Circuit.OPEN  # 15 of 30


def test_the_window_slides_old_failures_out() -> None:
    breaker = calls(Breaker(), [FAIL] * 15, T0)
    # A minute later those are gone: 15 more failures are 15 of 15, under 20 calls.
    breaker = calls(breaker, [FAIL] * 15, T0 + 61)
    assert breaker.circuit is Circuit.CLOSED
    assert breaker.window.totals(T0 + 63, POLICY.window_seconds) == (15, 15)
    assert all(b.second > T0 for b in breaker.window.buckets)


def test_half_open_lets_only_the_probes_through_and_their_successes_close_it() -> None:
    breaker = opened()
    due = breaker.retry_at
    assert due is not None
    admitted = []
    for i in range(5):
        ok, breaker = breaker.admit(due + i * 0.01, POLICY)
        admitted.append(ok)
    assert admitted == [True, True, True, False, False]
    assert breaker.circuit is Circuit.HALF_OPEN
    breaker = breaker.record(due + 0.1, OK, POLICY)
    breaker = breaker.record(due + 0.2, OK, POLICY)
    assert breaker.circuit is Circuit.HALF_OPEN
    breaker = breaker.record(due + 0.3, OK, POLICY)
    assert breaker.circuit is Circuit.CLOSED
    assert breaker.window == Window()  # a fresh start
    assert breaker.changed_at == due + 0.3
    # The next run of failures opens it with the first cool-down again.
    again = calls(breaker, [FAIL] * 20, due + 1)
    assert again.cooldown_seconds == 30


def test_a_failed_probe_opens_it_again_with_the_cool_down_doubled_up_to_the_cap() -> None:
    breaker = opened()
    cooldowns = []
    for _ in range(8):
        due = breaker.retry_at
        assert due is not None
        ok, breaker = breaker.admit(due, POLICY)
        assert ok
        breaker = breaker.record(due + 0.5, FAIL, POLICY)
        assert breaker.circuit is Circuit.OPEN
        assert breaker.retry_at == due + 0.5 + (breaker.cooldown_seconds or 0)
        cooldowns.append(breaker.cooldown_seconds)
    assert cooldowns == [60, 120, 240, 480, 600, 600, 600, 600]


def test_results_of_calls_started_before_it_opened_change_nothing() -> None:
    breaker = opened()
    assert breaker.record(T0 + 5, OK, POLICY) is breaker
    assert breaker.record(T0 + 5, FAIL, POLICY) is breaker


def test_an_answered_probe_neither_closes_nor_opens_it() -> None:
    breaker = opened()
    due = breaker.retry_at
    assert due is not None
    _, breaker = breaker.admit(due, POLICY)
    breaker = breaker.record(due + 1, ANSWERED, POLICY)
    assert (breaker.circuit, breaker.probes_started, breaker.probes_succeeded) == (
        Circuit.HALF_OPEN,
        1,
        0,
    )


def test_probes_that_never_report_free_their_slots_after_the_probe_timeout() -> None:
    breaker = opened()
    due = breaker.retry_at
    assert due is not None
    for _ in range(3):
        _, breaker = breaker.admit(due, POLICY)  # three workers die mid-call
    assert not breaker.admit(due + 29, POLICY)[0]
    ok, breaker = breaker.admit(due + 30, POLICY)
    assert ok
    assert breaker.probes_started == 1


def test_windows_of_several_processes_add_up_by_the_second() -> None:
    a = Window((Bucket(10, 3, 1), Bucket(11, 2, 2)))
    b = Window((Bucket(11, 5, 0), Bucket(12, 1, 1)))
    assert Window.merge(a, b) == Window((Bucket(10, 3, 1), Bucket(11, 7, 2), Bucket(12, 1, 1)))
    assert Window.merge(a, b).totals(12.5, 2) == (8, 3)


def test_attempt_outcomes_map_to_call_outcomes() -> None:
    assert call_outcome(Outcome.DELIVERED) is OK
    assert call_outcome(Outcome.TRANSIENT) is FAIL
    assert call_outcome(Outcome.PERMANENT) is ANSWERED
    assert call_outcome(Outcome.CONFIGURATION) is ANSWERED
    assert call_outcome(Outcome.ABANDONED) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"window_seconds": 0},
        {"min_calls": 0},
        {"probe_calls": 0},
        {"failure_ratio": 0},
        {"failure_ratio": 1.5},
        {"cooldown_seconds": 0},
        {"cooldown_seconds": 700},
    ],
)
def test_a_policy_out_of_range_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        BreakerPolicy(**bad)  # type: ignore[arg-type]
