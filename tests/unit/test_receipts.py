"""The delivery state merge, duplicates, expiry and suppression triggers
(domain/receipts.py), over every sequence hypothesis can think of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integration_hub.domain.receipts import (
    DeliveryState,
    InvalidAddress,
    Receipt,
    SuppressionReason,
    advance,
    expiry_due,
    fold,
    is_duplicate,
    merge,
    normalise_address,
    normalise_email,
    normalise_phone,
    suppression_for,
)
from integration_hub.domain.routing import Channel

S = DeliveryState
T0 = datetime(2026, 1, 1, tzinfo=UTC)
states = st.sampled_from(list(DeliveryState))


@st.composite
def receipts(draw: st.DrawFn) -> Receipt:
    return Receipt(
        tenant="acme",
        provider=draw(st.sampled_from(["twilio", "whatsapp", "ses"])),
        provider_message_id=draw(st.sampled_from(["m1", "m2"])),
        state=draw(states),
        raw_status=draw(st.sampled_from(["delivered", "read", "failed", "Bounce/Permanent"])),
        error_code=draw(st.none() | st.sampled_from(["30003", "21610", "131026"])),
        occurred_at=draw(st.none() | st.just(T0) | st.just(T0 + timedelta(seconds=5))),
        received_at=T0 + timedelta(seconds=draw(st.integers(0, 100))),
    )


def test_every_state_but_sent_is_final() -> None:
    assert [s for s in DeliveryState if not s.final] == [S.SENT]


@pytest.mark.parametrize(
    ("first", "then", "result"),
    [
        (S.DELIVERED, S.READ, S.READ),
        (S.READ, S.DELIVERED, S.READ),  # WhatsApp sends read before delivered sometimes
        (S.SENT, S.UNDELIVERED, S.UNDELIVERED),  # a final failure beats sent
        (S.DELIVERED, S.BOUNCED, S.BOUNCED),  # SES: accepted by the MTA, bounced later
        (S.BOUNCED, S.DELIVERED, S.BOUNCED),  # the same two, out of order
        (S.READ, S.UNDELIVERED, S.READ),  # a person read it: a stale failure is wrong
        (S.EXPIRED, S.DELIVERED, S.DELIVERED),  # a late real receipt beats our expiry
        (S.EXPIRED, S.UNDELIVERED, S.UNDELIVERED),
        (S.DELIVERED, S.EXPIRED, S.DELIVERED),
        (S.DELIVERED, S.COMPLAINED, S.COMPLAINED),
        (S.DELIVERED, S.SENT, S.DELIVERED),  # a late "sent" callback
        (None, S.SENT, S.SENT),
    ],
)
def test_the_documented_pairs(first: S | None, then: S, result: S) -> None:
    assert advance(first, then) is result


@given(st.lists(states, max_size=12), st.randoms())
def test_any_order_of_the_same_receipts_ends_in_the_same_state(
    sequence: list[S], random: Random
) -> None:
    shuffled = list(sequence)
    random.shuffle(shuffled)
    assert merge(shuffled) == merge(sequence)


@given(st.lists(states, min_size=1, max_size=12))
def test_the_state_never_moves_backwards(sequence: list[S]) -> None:
    seen: list[S] = []
    current: S | None = None
    for state in sequence:
        current = advance(current, state)
        seen.append(current)
        assert current.rank >= state.rank
    assert all(a.rank <= b.rank for a, b in pairwise(seen))
    assert seen[-1] in sequence


@given(st.lists(states, max_size=8), states)
def test_a_state_seen_again_changes_nothing(sequence: list[S], again: S) -> None:
    before = merge([*sequence, again])
    assert merge([*sequence, again, again]) == before
    assert advance(before, again) is before


@given(states, states, states)
def test_merge_is_associative(a: S, b: S, c: S) -> None:
    assert advance(advance(a, b), c) is advance(a, advance(b, c))


@given(st.lists(receipts(), max_size=10), st.randoms())
def test_receipts_in_any_order_with_duplicates_fold_to_one_state_and_one_set_of_events(
    batch: list[Receipt], random: Random
) -> None:
    replayed = batch + batch[: len(batch) // 2]  # redelivered callbacks
    random.shuffle(replayed)
    state, events = fold(batch)
    state_again, events_again = fold(replayed)
    assert state_again == state
    assert {e.identity for e in events_again} == {e.identity for e in events}
    assert len(events_again) == len({e.identity for e in batch})


def test_the_same_provider_event_received_twice_is_a_duplicate() -> None:
    first = Receipt("acme", "twilio", "SM1", S.DELIVERED, "delivered", None, None, T0)
    again = Receipt(
        "acme", "twilio", "SM1", S.DELIVERED, "delivered", None, None, T0 + timedelta(1)
    )
    other_message = Receipt("acme", "twilio", "SM2", S.DELIVERED, "delivered", None, None, T0)
    other_tenant = Receipt("beta", "twilio", "SM1", S.DELIVERED, "delivered", None, None, T0)
    assert is_duplicate([first], again)
    assert not is_duplicate([first], other_message)
    assert not is_duplicate([first], other_tenant)
    assert fold([first, again]) == (S.DELIVERED, (first,))


def test_only_a_message_still_sent_expires_and_only_after_the_timeout() -> None:
    hours = timedelta(hours=72)
    assert expiry_due(S.SENT, T0, T0 + hours, hours)
    assert not expiry_due(S.SENT, T0, T0 + hours - timedelta(seconds=1), hours)
    for state in (s for s in DeliveryState if s.final):
        assert not expiry_due(state, T0, T0 + 2 * hours, hours)
    assert not expiry_due(None, T0, T0 + 2 * hours, hours)


def _receipt(provider: str, state: S, code: str | None = None) -> Receipt:
    return Receipt("acme", provider, "m", state, "raw", code, None, T0)


@pytest.mark.parametrize(
    ("provider", "state", "code", "reason"),
    [
        ("ses", S.BOUNCED, "General", SuppressionReason.HARD_BOUNCE),
        ("ses", S.COMPLAINED, None, SuppressionReason.COMPLAINT),
        ("ses", S.UNDELIVERED, "MailboxFull", None),  # a transient bounce
        ("twilio", S.UNDELIVERED, "21610", SuppressionReason.OPTED_OUT),
        ("twilio", S.UNDELIVERED, "30004", SuppressionReason.BLOCKED),
        ("twilio", S.UNDELIVERED, "30006", SuppressionReason.LANDLINE),
        ("twilio", S.UNDELIVERED, "30003", None),  # handset off: says nothing lasting
        ("twilio", S.UNDELIVERED, "30007", None),  # carrier filtered the content
        ("twilio", S.DELIVERED, "30006", None),  # a code on a success suppresses nothing
        ("whatsapp", S.UNDELIVERED, "131050", SuppressionReason.OPTED_OUT),
        ("whatsapp", S.UNDELIVERED, "131026", SuppressionReason.NOT_ON_WHATSAPP),
        ("whatsapp", S.UNDELIVERED, "21610", None),  # codes are per provider
        ("whatsapp", S.READ, None, None),
    ],
)
def test_suppression_triggers(
    provider: str, state: S, code: str | None, reason: SuppressionReason | None
) -> None:
    assert suppression_for(_receipt(provider, state, code)) == reason


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("a@b.io", "a@b.io"),
    ],
)
def test_an_email_is_lower_cased_and_trimmed(given_: str, expected: str) -> None:
    assert normalise_email(given_) == expected
    assert normalise_address(Channel.EMAIL, given_) == expected


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("+34 600 111 222", "+34600111222"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("0044 20 7946 0958", "+442079460958"),
        ("whatsapp:+5215512345678", "+5215512345678"),
    ],
)
def test_a_phone_becomes_e164(given_: str, expected: str) -> None:
    assert normalise_phone(given_) == expected
    assert normalise_address(Channel.SMS, given_) == expected


def test_wa_id_digits_are_international_only_when_said_so() -> None:
    assert normalise_phone("5215512345678", international_digits=True) == "+5215512345678"
    with pytest.raises(InvalidAddress):
        normalise_phone("4155550100")  # a national number is not guessed


@pytest.mark.parametrize(
    "bad", ["", "+", "+0123", "415-555", "+1234567890123456", "hello", "++34600111222"]
)
def test_what_is_not_a_phone_is_refused(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        normalise_phone(bad)


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a@b", "two@@example.com", "a b@example.com"])
def test_what_is_not_an_email_is_refused(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        normalise_email(bad)
