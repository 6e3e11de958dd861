"""Retry policy: capped exponential backoff with full jitter and an attempt budget."""

from __future__ import annotations

import math
import random

import pytest

from integration_hub.domain.retry import RetryPolicy

SAMPLES = 1000


def _samples(policy: RetryPolicy, attempt: int, *, seed: int = 7, **kwargs: float) -> list[float]:
    rng = random.Random(seed)
    return [policy.delay(attempt, rng=rng, **kwargs) for _ in range(SAMPLES)]


# --- ceiling ---------------------------------------------------------------


def test_the_default_policy_allows_five_attempts_from_one_second_up_to_five_minutes() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 5
    assert policy.ceiling(1) == 1.0
    assert policy.ceiling(100) == 300.0


def test_ceiling_doubles_from_base_after_each_attempt() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0)
    assert [policy.ceiling(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 64, 128, 256]


def test_ceiling_is_capped() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0)
    assert policy.ceiling(10) == 300.0  # 512 without the cap
    assert policy.ceiling(11) == 300.0


def test_ceiling_starts_from_a_fractional_base() -> None:
    policy = RetryPolicy(base_seconds=0.5, cap_seconds=10.0)
    assert [policy.ceiling(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]


def test_ceiling_never_decreases_as_attempts_grow() -> None:
    policy = RetryPolicy(base_seconds=0.25, cap_seconds=60.0)
    ceilings = [policy.ceiling(n) for n in range(1, 40)]
    assert ceilings == sorted(ceilings)
    assert ceilings[-1] == 60.0


def test_ceiling_is_a_float() -> None:
    assert isinstance(RetryPolicy(base_seconds=2, cap_seconds=8).ceiling(2), float)


@pytest.mark.timeout(10)  # an unbounded 2**attempt would hang, not fail
@pytest.mark.parametrize("attempt", [63, 64, 1_000, 10**6, 10**100])
def test_huge_attempt_numbers_do_not_overflow(attempt: int) -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0)
    assert policy.ceiling(attempt) == 300.0
    delay = policy.delay(attempt, rng=random.Random(1))
    assert math.isfinite(delay)
    assert 0.0 <= delay <= 300.0


def test_a_huge_base_times_a_huge_attempt_still_gives_the_cap() -> None:
    policy = RetryPolicy(base_seconds=1e300, cap_seconds=1e301)
    assert policy.ceiling(10**9) == 1e301


# --- delay -----------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 9, 10, 20])
def test_delay_is_always_between_zero_and_the_ceiling(attempt: int) -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0)
    ceiling = policy.ceiling(attempt)
    for delay in _samples(policy, attempt):
        assert 0.0 <= delay <= ceiling


@pytest.mark.parametrize("attempt", [1, 5, 12])
def test_delay_uses_full_jitter_over_the_whole_range(attempt: int) -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0)
    ceiling = policy.ceiling(attempt)
    delays = _samples(policy, attempt)
    assert min(delays) < 0.25 * ceiling
    assert max(delays) > 0.75 * ceiling
    assert len(set(delays)) > SAMPLES * 0.9


def test_delay_draws_from_the_rng_it_is_given() -> None:
    policy = RetryPolicy()
    assert _samples(policy, 6, seed=123) == _samples(policy, 6, seed=123)
    assert _samples(policy, 6, seed=123) != _samples(policy, 6, seed=124)


def test_delay_without_an_rng_stays_within_the_ceiling() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0)
    delays = [policy.delay(4) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 1


# --- Retry-After -----------------------------------------------------------


def test_retry_after_is_a_lower_bound_on_the_delay() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0)
    # Jitter for attempt 1 is at most 1 s, so Retry-After wins every time.
    assert set(_samples(policy, 1, retry_after=30.0)) == {30.0}


def test_retry_after_may_exceed_the_attempts_ceiling() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0)
    assert policy.delay(2, retry_after=120.0, rng=random.Random(0)) == 120.0


def test_retry_after_is_honoured_above_the_backoff_cap() -> None:
    policy = RetryPolicy(base_seconds=0.2, cap_seconds=0.4)
    assert set(_samples(policy, 1, retry_after=1.0)) == {1.0}


def test_retry_after_is_never_honoured_above_its_limit() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0, retry_after_limit_seconds=3600.0)
    assert set(_samples(policy, 1, retry_after=86_400.0)) == {3600.0}
    assert set(_samples(policy, 50, retry_after=86_400.0)) == {3600.0}


def test_a_short_retry_after_keeps_the_jitter_above_it() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=300.0)
    ceiling = policy.ceiling(9)  # 256 s
    delays = _samples(policy, 9, retry_after=2.0)
    assert all(2.0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.75 * ceiling
    assert len(set(delays)) > SAMPLES * 0.9


def test_a_zero_retry_after_changes_nothing() -> None:
    policy = RetryPolicy()
    assert _samples(policy, 4, retry_after=0.0) == _samples(policy, 4)


# --- attempt budget --------------------------------------------------------


@pytest.mark.parametrize(("used", "exhausted"), [(0, False), (1, False), (2, False), (3, True)])
def test_the_budget_is_exhausted_at_max_attempts(used: int, exhausted: bool) -> None:
    assert RetryPolicy(max_attempts=3).exhausted(used) is exhausted


def test_the_budget_stays_exhausted_beyond_max_attempts() -> None:
    assert RetryPolicy(max_attempts=3).exhausted(4)
    assert RetryPolicy(max_attempts=3).exhausted(100)


def test_a_single_attempt_budget_is_exhausted_after_the_first_attempt() -> None:
    policy = RetryPolicy(max_attempts=1)
    assert not policy.exhausted(0)
    assert policy.exhausted(1)


# --- validation ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"max_attempts": 0}, id="max_attempts=0"),
        pytest.param({"max_attempts": -1}, id="max_attempts<0"),
        pytest.param({"base_seconds": 0.0}, id="base=0"),
        pytest.param({"base_seconds": -1.0}, id="base<0"),
        pytest.param({"base_seconds": 2.0, "cap_seconds": 1.0}, id="cap<base"),
        pytest.param({"base_seconds": 1.0, "cap_seconds": 0.0}, id="cap=0"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the type is the contract
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_smallest_valid_policy_is_accepted() -> None:
    policy = RetryPolicy(max_attempts=1, base_seconds=5.0, cap_seconds=5.0)
    assert policy.ceiling(1) == policy.ceiling(10) == 5.0


@pytest.mark.parametrize("field", ["base_seconds", "cap_seconds"])
def test_a_nan_duration_is_refused(field: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        RetryPolicy(**{field: math.nan})  # type: ignore[arg-type]
