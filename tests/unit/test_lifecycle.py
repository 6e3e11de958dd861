"""The lifecycle decisions every backend persists (domain/lifecycle.py), over
every state and clock hypothesis can think of."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from integration_hub.domain import lifecycle
from integration_hub.domain.errors import InvalidTransition
from integration_hub.domain.lifecycle import (
    ClaimState,
    Fail,
    KeyState,
    PoisonDecision,
    Take,
    Unchanged,
)
from integration_hub.domain.models import Attempt, Outcome
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.status import TERMINAL, Status
from integration_hub.domain.tenants import Tenant

times = st.floats(min_value=0, max_value=1e9, allow_nan=False)
leases = st.floats(min_value=0.001, max_value=3600, allow_nan=False)
budgets = st.integers(min_value=1, max_value=20)
tokens = st.text(alphabet="abcdef0123456789", min_size=1, max_size=8)


@st.composite
def claim_states(draw: st.DrawFn) -> ClaimState:
    status = draw(st.sampled_from(list(Status)))
    claimed = status is Status.PROCESSING and draw(st.booleans())
    attempt_count = draw(st.integers(min_value=0, max_value=30))
    return ClaimState(
        status=status,
        claim_token=draw(tokens) if claimed else None,
        claim_expires_at=draw(times) if claimed else None,
        attempts_used=draw(st.integers(min_value=0, max_value=attempt_count)),
        attempt_count=attempt_count,
    )


@given(claim_states(), tokens, times, leases, budgets)
def test_a_claim_takes_exactly_the_unclaimed_notifications_within_budget(
    state: ClaimState, token: str, now: float, lease: float, budget: int
) -> None:
    decision = lifecycle.decide_claim(
        state, token=token, now=now, lease_seconds=lease, max_attempts=budget
    )
    live = state.claim_token is not None and (state.claim_expires_at or 0) > now
    if state.status in TERMINAL or live:
        assert isinstance(decision, Unchanged)
    elif state.attempts_used >= budget:
        assert isinstance(decision, Fail)
        assert f"budget of {budget} exhausted" in decision.reason
        assert decision.provider is None  # no provider was called for this
    else:
        assert decision == Take(
            token=token,
            expires_at=now + lease,
            number=state.attempt_count + 1,
            attempts_used=state.attempts_used + 1,
            now=now,
        )
        # The claim it makes is live until the lease ends, and only then.
        taken = replace(
            state,
            status=Status.PROCESSING,
            claim_token=token,
            claim_expires_at=decision.expires_at,
        )
        assert lifecycle.claim_held(taken, now)
        assert not lifecycle.claim_held(taken, decision.expires_at)


@given(claim_states(), times)
def test_a_poison_message_fails_only_an_unfinished_notification_nobody_holds(
    state: ClaimState, now: float
) -> None:
    decision = lifecycle.decide_dead_letter(state, now)
    if state.status in TERMINAL:
        assert decision is PoisonDecision.FINISHED
    elif lifecycle.claim_held(state, now):
        assert decision is PoisonDecision.HELD
        assert not decision.settled
    else:
        assert decision is PoisonDecision.FAIL
    assert lifecycle.decide_dead_letter(None, now) is PoisonDecision.FINISHED


def _attempt(failed: bool, message: str | None) -> Attempt:
    return Attempt(
        number=1,
        provider="twilio",
        started_at=datetime.fromtimestamp(0, UTC),
        outcome=Outcome.TRANSIENT if failed else Outcome.DELIVERED,
        latency_ms=1.0,
        error_class="transient" if failed else None,
        message=message,
    )


@given(
    st.sampled_from([Status.PROCESSING, Status.DONE, Status.FAILED]),
    st.booleans(),
    st.none() | st.text(min_size=1, max_size=5),
    st.none() | st.text(min_size=1, max_size=5),
    times,
)
def test_a_completion_clears_the_claim_and_fails_only_with_a_dead_letter(
    status: Status, failed: bool, message: str | None, reason: str | None, now: float
) -> None:
    attempt = _attempt(failed, message)
    finish = lifecycle.decide_completion(attempt, status=status, dead_letter_reason=reason, now=now)
    assert finish.status is status
    assert finish.provider == "twilio"
    assert finish.now == now
    if status is Status.FAILED:
        assert finish.dead_letter == (reason or message or "failed")
        assert finish.last_error == finish.dead_letter
        assert finish.finished_at == now
        return
    assert finish.dead_letter is None
    assert finish.finished_at == (now if status is Status.DONE else None)
    assert finish.last_error == (message if failed else None)


@pytest.mark.parametrize("status", [Status.RECEIVED])
def test_a_completion_cannot_move_backwards(status: Status) -> None:
    with pytest.raises(InvalidTransition):
        lifecycle.decide_completion(
            _attempt(False, None), status=status, dead_letter_reason=None, now=0
        )


@given(st.sampled_from(list(Status)), st.none() | tokens, tokens)
def test_only_the_claim_holder_completes(status: Status, held: str | None, token: str) -> None:
    assert lifecycle.may_complete(status, held, token) == (
        status is Status.PROCESSING and held == token
    )


@given(st.sampled_from(list(Status)))
def test_only_a_failed_notification_is_redriven(status: Status) -> None:
    if status is Status.FAILED:
        lifecycle.check_redrive(status)
    else:
        with pytest.raises(InvalidTransition):
            lifecycle.check_redrive(status)


key_states = st.builds(KeyState, expires_at=times, locked_until=times, completed=st.booleans())


@given(st.none() | key_states, times, times)
def test_a_key_is_free_once_its_record_expired_or_its_request_died_and_stays_free(
    state: KeyState | None, now: float, later_by: float
) -> None:
    free = lifecycle.key_free(state, now)
    if state is None:
        assert free
    elif state.completed:
        assert free == (state.expires_at <= now)
    else:
        assert free == (state.expires_at <= now or state.locked_until <= now)
    if free:
        # Nothing but a write makes a free key held again.
        assert lifecycle.key_free(state, now + later_by)


def test_key_state_reads_sql_rows_and_items() -> None:
    row = {"expires_at": 5, "locked_until": 3, "response": None}
    assert KeyState.of(row) == KeyState(5.0, 3.0, completed=False)
    assert KeyState.of(row | {"response": "{}"}).completed


def test_claim_state_reads_items_without_unset_attributes() -> None:
    item = {"status": "RECEIVED", "attempts_used": 0, "attempt_count": 0}
    assert ClaimState.of(item) == ClaimState(Status.RECEIVED, None, None, 0, 0)


@given(
    st.none() | st.integers(min_value=1, max_value=100),
    st.none() | st.floats(min_value=0.001, max_value=1e4),
    st.none() | st.floats(min_value=0.001, max_value=1e4),
)
def test_a_tenant_policy_overrides_only_what_the_tenant_set_and_stays_valid(
    attempts: int | None, base: float | None, cap: float | None
) -> None:
    default = RetryPolicy(max_attempts=5, base_seconds=1.0, cap_seconds=300.0)
    tenant = Tenant(
        id="acme",
        name="Acme",
        created_at=datetime.fromtimestamp(0, UTC),
        max_attempts=attempts,
        backoff_base_seconds=base,
        backoff_cap_seconds=cap,
    )
    policy = lifecycle.retry_policy(default, tenant)
    assert policy.max_attempts == (attempts or 5)
    assert policy.base_seconds == (base or 1.0)
    assert policy.base_seconds <= policy.cap_seconds
    assert policy.cap_seconds == max(policy.base_seconds, cap or 300.0)
    assert policy.retry_after_limit_seconds == default.retry_after_limit_seconds
    assert lifecycle.retry_policy(default, None) is default


class OneNotification(RuleBasedStateMachine):
    """Workers claim, crash, finish, dead-letter and redrive one notification,
    applying only the lifecycle's decisions, while the clock moves."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = 3
        self.now = 0.0
        self.state = ClaimState(Status.RECEIVED, None, None, 0, 0)
        self.dead_letter: str | None = None
        self.done_once = False

    def _apply_fail(self, reason: str) -> None:
        self.state = replace(
            self.state, status=Status.FAILED, claim_token=None, claim_expires_at=None
        )
        self.dead_letter = reason

    @rule(seconds=st.floats(min_value=0, max_value=20))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(token=tokens, lease=st.floats(min_value=0.5, max_value=10))
    def claim(self, token: str, lease: float) -> None:
        before = self.state
        decision = lifecycle.decide_claim(
            before, token=token, now=self.now, lease_seconds=lease, max_attempts=self.budget
        )
        if isinstance(decision, Take):
            assert not lifecycle.claim_held(before, self.now)
            self.state = ClaimState(
                Status.PROCESSING,
                decision.token,
                decision.expires_at,
                decision.attempts_used,
                decision.number,
            )
        elif isinstance(decision, Fail):
            self._apply_fail(decision.reason)

    @precondition(lambda self: self.state.claim_token is not None)
    @rule(outcome=st.sampled_from([Status.PROCESSING, Status.DONE, Status.FAILED]))
    def holder_records(self, outcome: Status) -> None:
        token = self.state.claim_token
        assert token is not None
        if not lifecycle.may_complete(self.state.status, self.state.claim_token, token):
            return
        finish = lifecycle.decide_completion(
            _attempt(outcome is not Status.DONE, "boom"),
            status=outcome,
            dead_letter_reason=None,
            now=self.now,
        )
        if finish.dead_letter is not None:
            self._apply_fail(finish.dead_letter)
            return
        self.state = replace(self.state, status=finish.status, claim_token=None)
        self.done_once = self.done_once or finish.status is Status.DONE

    @rule(token=tokens)
    def a_stranger_records(self, token: str) -> None:
        if token != self.state.claim_token:
            assert not lifecycle.may_complete(self.state.status, self.state.claim_token, token)

    @rule()
    def poison(self) -> None:
        decision = lifecycle.decide_dead_letter(self.state, self.now)
        if decision is PoisonDecision.FAIL:
            self._apply_fail("poison")

    @precondition(lambda self: self.state.status is Status.FAILED)
    @rule()
    def redrive(self) -> None:
        lifecycle.check_redrive(self.state.status)
        self.state = replace(self.state, status=Status.RECEIVED, attempts_used=0)
        self.dead_letter = None

    @invariant()
    def budget_is_never_overspent(self) -> None:
        assert 0 <= self.state.attempts_used <= self.budget

    @invariant()
    def failed_always_has_its_dead_letter_and_nothing_else_does(self) -> None:
        assert (self.state.status is Status.FAILED) == (self.dead_letter is not None)

    @invariant()
    def a_claim_exists_only_while_processing(self) -> None:
        if self.state.claim_token is not None:
            assert self.state.status is Status.PROCESSING

    @invariant()
    def done_is_final(self) -> None:
        if self.done_once:
            assert self.state.status is Status.DONE


TestOneNotification = OneNotification.TestCase
TestOneNotification.settings = settings(max_examples=200, stateful_step_count=40)
