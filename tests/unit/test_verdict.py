"""The verdict on an attempt (domain/verdict.py), over every answer, budget and policy
hypothesis can think of."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integration_hub.domain import verdict
from integration_hub.domain.delivery import (
    Delivered,
    DeliveryResult,
    PermanentFailure,
    TransientFailure,
)
from integration_hub.domain.errors import DataRejected, Unavailable
from integration_hub.domain.retry import RetryPolicy
from integration_hub.domain.status import Status
from integration_hub.domain.verdict import Verdict

texts = st.text(min_size=1, max_size=40)
retry_afters = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False)


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    base = draw(st.floats(min_value=0.001, max_value=600, allow_nan=False))
    cap = draw(st.floats(min_value=base, max_value=7200, allow_nan=False))
    return RetryPolicy(
        max_attempts=draw(st.integers(min_value=1, max_value=20)),
        base_seconds=base,
        cap_seconds=cap,
        retry_after_limit_seconds=draw(st.floats(min_value=1, max_value=86400)),
    )


delivered = st.builds(Delivered, provider_message_id=texts)
transient = st.builds(
    TransientFailure,
    error_class=texts,
    message=texts,
    code=st.none() | texts,
    retry_after=retry_afters,
)
permanent = st.builds(
    PermanentFailure,
    error_class=texts,
    message=texts,
    code=st.none() | texts,
    configuration=st.booleans(),
)
results: st.SearchStrategy[DeliveryResult] = delivered | transient | permanent
attempts = st.integers(min_value=1, max_value=40)
rngs = st.integers(min_value=0, max_value=2**32).map(random.Random)


@given(results, policies(), attempts, rngs)
def test_a_verdict_is_done_exactly_when_the_provider_delivered(
    result: DeliveryResult, policy: RetryPolicy, used: int, rng: random.Random
) -> None:
    judged = verdict.judge(result, policy, used, rng)
    assert (judged.status is Status.DONE) == isinstance(result, Delivered)
    assert judged.result is result


@given(results, policies(), attempts, rngs)
def test_a_failed_verdict_and_only_that_writes_a_dead_letter_with_a_reason(
    result: DeliveryResult, policy: RetryPolicy, used: int, rng: random.Random
) -> None:
    judged = verdict.judge(result, policy, used, rng)
    assert judged.dead_letter == (judged.status is Status.FAILED)
    assert (judged.reason is not None) == judged.dead_letter
    assert judged.terminal == (judged.status in {Status.DONE, Status.FAILED})


@given(permanent, policies(), attempts, rngs)
def test_a_permanent_failure_is_failed_at_once_whatever_budget_is_left(
    result: PermanentFailure, policy: RetryPolicy, used: int, rng: random.Random
) -> None:
    judged = verdict.judge(result, policy, used, rng)
    assert judged.status is Status.FAILED
    assert judged.reason == f"{result.outcome}: {result.error_class}: {result.message}"
    assert judged.release_delay is None


@given(transient, policies(), attempts, rngs)
def test_a_transient_failure_is_retried_until_the_budget_is_spent_then_failed(
    result: TransientFailure, policy: RetryPolicy, used: int, rng: random.Random
) -> None:
    judged = verdict.judge(result, policy, used, rng)
    if used >= policy.max_attempts:
        assert judged.status is Status.FAILED
        assert judged.reason is not None
        assert f"attempt budget of {policy.max_attempts} exhausted" in judged.reason
        assert result.message in judged.reason
        assert judged.release_delay is None
    else:
        assert judged.status is Status.PROCESSING
        assert judged.reason is None
        assert judged.release_delay is not None


@given(transient, policies(), attempts, rngs)
def test_a_retry_waits_within_the_policy_ceiling_and_never_less_than_retry_after(
    result: TransientFailure, policy: RetryPolicy, used: int, rng: random.Random
) -> None:
    judged = verdict.judge(result, policy, used, rng)
    if judged.release_delay is None:
        return
    delay = judged.release_delay
    assert delay >= 0
    if result.retry_after is None:
        assert delay <= policy.ceiling(used)
    else:
        asked = min(result.retry_after, policy.retry_after_limit_seconds)
        assert delay >= asked
        assert delay <= max(policy.ceiling(used), asked)


@given(transient, policies(), attempts, st.integers(min_value=0, max_value=2**32))
def test_the_same_seed_gives_the_same_verdict(
    result: TransientFailure, policy: RetryPolicy, used: int, seed: int
) -> None:
    first = verdict.judge(result, policy, used, random.Random(seed))
    assert verdict.judge(result, policy, used, random.Random(seed)) == first


@given(st.text(min_size=1, max_size=20), st.sampled_from(["disabled", "unknown"]))
def test_a_tenant_that_is_not_active_fails_as_configuration_without_a_call(
    tenant: str, state: str
) -> None:
    judged = verdict.tenant_not_active(tenant, state)
    assert judged.status is Status.FAILED
    assert judged.reason == f"configuration: tenant {tenant!r} is {state}"
    assert isinstance(judged.result, PermanentFailure)
    assert judged.result.configuration
    assert judged.result.error_class == f"tenant_{state}"


@given(st.integers(min_value=1, max_value=40), policies())
def test_an_outage_is_never_poison(deliveries: int, policy: RetryPolicy) -> None:
    assert verdict.poison(Unavailable("database busy"), deliveries, policy) is None


@given(st.integers(min_value=1, max_value=40), policies())
def test_other_errors_are_poison_once_the_deliveries_reach_the_budget_and_keep_only_the_type(
    deliveries: int, policy: RetryPolicy
) -> None:
    error = ValueError("the recipient +34600000000 is unreadable")
    judged = verdict.poison(error, deliveries, policy)
    if deliveries < policy.max_attempts:
        assert judged is None
        return
    assert judged is not None
    assert judged.status is Status.FAILED
    assert judged.reason == (
        f"poison message: handling raised ValueError on each of {deliveries} deliveries"
    )
    assert "+34600000000" not in judged.reason


@given(st.integers(min_value=1, max_value=40), policies())
def test_rejected_data_is_poison_at_the_first_delivery(
    deliveries: int, policy: RetryPolicy
) -> None:
    judged = verdict.poison(DataRejected("text column refused a NUL byte"), deliveries, policy)
    assert judged is not None
    assert judged.reason == "data rejected: text column refused a NUL byte"


@pytest.mark.parametrize(
    ("status", "reason", "delay"),
    [
        (Status.RECEIVED, None, None),
        (Status.FAILED, None, None),
        (Status.DONE, "why", None),
        (Status.PROCESSING, None, None),
        (Status.DONE, None, 1.0),
    ],
)
def test_a_verdict_that_contradicts_itself_cannot_be_made(
    status: Status, reason: str | None, delay: float | None
) -> None:
    with pytest.raises(ValueError, match=r"RECEIVED|reason|release delay"):
        Verdict(status, reason=reason, release_delay=delay)
