"""Provider chains' rules (domain/failover.py): order, picking past open breakers, and
where the attempt after a failure goes."""

from __future__ import annotations

from collections import Counter

import pytest

from integration_hub.domain.delivery import Delivered, PermanentFailure, TransientFailure
from integration_hub.domain.failover import Next, Pick, ProviderChain, after_failure, pick

CHAIN = ProviderChain(("twilio", "vonage", "sns"))
UNAVAILABLE = TransientFailure("provider_unavailable", "twilio: HTTP 503", code="20503")
TIMEOUT = TransientFailure("timeout", "twilio: no answer within 20 s")
BAD_CREDENTIALS = PermanentFailure("authentication", "HTTP 401", configuration=True)
INVALID_NUMBER = PermanentFailure("invalid_to", "21211: not a valid phone number", code="21211")


def test_without_weights_every_notification_walks_the_configured_order() -> None:
    assert {CHAIN.order_for(f"n{i}") for i in range(50)} == {("twilio", "vonage", "sns")}


def test_weights_split_the_primary_and_each_notification_keeps_its_order() -> None:
    chain = ProviderChain(("twilio", "vonage"), weights=(70, 30))
    firsts = Counter(chain.order_for(f"notification-{i}")[0] for i in range(10_000))
    assert 0.67 < firsts["twilio"] / 10_000 < 0.73
    assert chain.order_for("n-1") == chain.order_for("n-1")
    assert {chain.order_for(f"n{i}") for i in range(100)} == {
        ("twilio", "vonage"),
        ("vonage", "twilio"),
    }
    only_second = ProviderChain(("twilio", "vonage"), weights=(0, 1))
    assert {only_second.order_for(f"n{i}")[0] for i in range(100)} == {"vonage"}


@pytest.mark.parametrize(
    ("providers", "weights", "error"),
    [
        ((), None, "at least one"),
        (("twilio", "twilio"), None, "each provider once"),
        (("twilio", "vonage"), (1,), "one weight per provider"),
        (("twilio", "vonage"), (0, 0), "not all zero"),
        (("twilio", "vonage"), (-1, 2), "non-negative"),
    ],
)
def test_a_bad_chain_is_refused(
    providers: tuple[str, ...], weights: tuple[int, ...] | None, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        ProviderChain(providers, weights)


def test_pick_skips_open_breakers_and_waits_for_the_earliest_half_open_when_all_are() -> None:
    order = CHAIN.providers
    half_open = {"twilio": 130.0, "vonage": 100.0, "sns": None}
    assert pick(order, lambda p: p != "twilio", half_open.get) == Pick("vonage")
    assert pick(order, lambda p: True, half_open.get, skip=["twilio"]) == Pick("vonage")
    assert pick(order, lambda p: False, half_open.get) == Pick(None, 100.0)
    assert pick(order, lambda p: False, lambda p: None) == Pick(None, None)


def test_a_transient_failure_fails_over_to_the_next_provider_at_once() -> None:
    got = after_failure(CHAIN, CHAIN.providers, "twilio", UNAVAILABLE, ["twilio"])
    assert (got.next, got.provider, got.reason) == (
        Next.FAILOVER,
        "vonage",
        "provider_unavailable",
    )
    last = after_failure(CHAIN, CHAIN.providers, "vonage", UNAVAILABLE, ["twilio", "vonage"])
    assert (last.next, last.provider) == (Next.FAILOVER, "sns")


def test_once_the_whole_chain_failed_this_round_it_backs_off_and_starts_again() -> None:
    got = after_failure(CHAIN, CHAIN.providers, "sns", UNAVAILABLE, ["twilio", "vonage", "sns"])
    assert got.next is Next.RETRY


def test_a_permanent_error_for_the_recipient_never_fails_over() -> None:
    got = after_failure(CHAIN, CHAIN.providers, "twilio", INVALID_NUMBER, ["twilio"])
    assert got.next is Next.END


def test_refused_credentials_fail_over_and_end_only_when_every_provider_refused_them() -> None:
    first = after_failure(CHAIN, CHAIN.providers, "twilio", BAD_CREDENTIALS, ["twilio"])
    assert (first.next, first.provider, first.reason) == (Next.FAILOVER, "vonage", "authentication")
    tried = ["twilio", "vonage", "sns"]
    mixed = after_failure(CHAIN, CHAIN.providers, "sns", BAD_CREDENTIALS, tried, ["twilio"])
    assert mixed.next is Next.RETRY  # vonage failed transiently: it may come back
    every = after_failure(
        CHAIN, CHAIN.providers, "sns", BAD_CREDENTIALS, tried, ["twilio", "vonage"]
    )
    assert every.next is Next.END


def test_a_timeout_fails_over_only_when_the_tenant_allows_it() -> None:
    got = after_failure(CHAIN, CHAIN.providers, "twilio", TIMEOUT, ["twilio"])
    assert (got.next, got.provider, got.reason) == (Next.FAILOVER, "vonage", "timeout")
    careful = ProviderChain(CHAIN.providers, failover_on_timeout=False)
    assert after_failure(careful, careful.providers, "twilio", TIMEOUT, ["twilio"]).next is (
        Next.RETRY
    )
    # Only timeouts stay: another transient error still fails over.
    assert after_failure(careful, careful.providers, "twilio", UNAVAILABLE, ["twilio"]).next is (
        Next.FAILOVER
    )


def test_after_failure_is_only_for_failures() -> None:
    with pytest.raises(ValueError, match="failed attempts"):
        after_failure(CHAIN, CHAIN.providers, "twilio", Delivered("SM1"), ["twilio"])
