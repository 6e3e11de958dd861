"""The ReceiptStore and SuppressionStore contract: every backend behaves exactly like this.

The rules are the domain's (``domain.receipts``); these tests check that each
backend applies them atomically and finds what it must by the keys the ports
name: a receipt by (tenant, provider, provider message id), a suppression by
(tenant, channel, normalised address).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from integration_hub.domain.models import Attempt, Notification, Outcome, from_epoch
from integration_hub.domain.receipts import (
    EXPIRY_PROVIDER,
    EXPIRY_STATUS,
    DeliveryState,
    Receipt,
    SuppressionReason,
)
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status
from integration_hub.ports import Match, Suppression
from support import Backend, accept, notification

S = DeliveryState


def delivered(number: int, message_id: str | None, provider: str = "twilio") -> Attempt:
    """A DELIVERED attempt at ``provider`` that the provider named ``message_id``."""
    return Attempt(
        number=number,
        provider=provider,
        started_at=from_epoch(0),
        outcome=Outcome.DELIVERED,
        latency_ms=3.0,
        provider_message_id=message_id,
    )


async def sent(
    backend: Backend,
    message_id: str | None = "SM1",
    *,
    tenant: str = "acme",
    country: str = "US",
    provider: str = "twilio",
) -> Notification:
    """A notification accepted, claimed and finished DONE at ``provider`` as ``message_id``."""
    n = notification(tenant, country, clock=backend.clock)
    await accept(backend, n)
    claimed = await backend.store.claim(n.id, "w1", lease_seconds=30, max_attempts=5)
    assert claimed is not None
    assert claimed.claimed_by == "w1"
    done = await backend.store.complete_attempt(
        n.id, "w1", delivered(1, message_id, provider), status=Status.DONE
    )
    assert done
    return n


def receipt(
    backend: Backend,
    state: DeliveryState,
    message_id: str = "SM1",
    *,
    tenant: str = "acme",
    provider: str = "twilio",
    raw: str | None = None,
    code: str | None = None,
    occurred: datetime | None = None,
) -> Receipt:
    """A receipt received now, by the backend's clock."""
    return Receipt(
        tenant=tenant,
        provider=provider,
        provider_message_id=message_id,
        state=state,
        raw_status=raw or state.value,
        error_code=code,
        occurred_at=occurred,
        received_at=from_epoch(backend.clock.now()),
    )


async def state_of(backend: Backend, n: Notification) -> DeliveryState | None:
    found = await backend.store.get_notification(n.tenant, n.id)
    assert found is not None
    return found.delivery_state


# -- sent: what complete_attempt writes ---------------------------------------------------


async def test_a_delivered_attempt_with_a_message_id_is_sent(backend: Backend) -> None:
    at = from_epoch(backend.clock.now())
    n = await sent(backend, "SM1")
    found = await backend.store.get_notification("acme", n.id)
    assert found is not None
    assert found.status is Status.DONE
    assert found.delivery_state is S.SENT
    assert found.provider_message_id == "SM1"
    assert found.delivery_updated_at == at
    assert await backend.store.delivery_events("acme", n.id) == []


async def test_done_without_a_message_id_has_no_delivery_state(backend: Backend) -> None:
    n = await sent(backend, None)
    found = await backend.store.get_notification("acme", n.id)
    assert found is not None
    assert found.status is Status.DONE
    assert found.delivery_state is None
    assert found.provider_message_id is None


async def test_a_received_notification_has_no_delivery_state(backend: Backend) -> None:
    n = notification(clock=backend.clock)
    await accept(backend, n)
    assert await state_of(backend, n) is None


# -- recording receipts ------------------------------------------------------------------


async def test_a_receipt_finds_its_notification_and_advances_the_state(backend: Backend) -> None:
    n = await sent(backend, "SM1")
    sent_at = from_epoch(backend.clock.now())
    backend.clock.advance(5)
    got = await backend.store.record_receipt(receipt(backend, S.DELIVERED))
    assert got.match is Match.RECORDED
    assert got.notification_id == n.id
    assert (got.before, got.after) == (S.SENT, S.DELIVERED)
    assert got.channel is Channel.SMS
    assert got.recipient == n.request.recipient.phone
    assert got.sent_at == sent_at
    found = await backend.store.get_notification("acme", n.id)
    assert found is not None
    assert found.delivery_state is S.DELIVERED
    assert found.delivery_updated_at == from_epoch(backend.clock.now())
    # The processing status is ours and is not touched by a receipt.
    assert found.status is Status.DONE


async def test_every_receipt_is_an_event_with_the_providers_raw_fields(backend: Backend) -> None:
    n = await sent(backend, "SM1")
    occurred = from_epoch(backend.clock.now() + 1)
    first = receipt(backend, S.SENT, raw="queued")
    await backend.store.record_receipt(first)
    backend.clock.advance(2)
    second = receipt(backend, S.UNDELIVERED, raw="undelivered", code="30003", occurred=occurred)
    await backend.store.record_receipt(second)
    events = await backend.store.delivery_events("acme", n.id)
    assert [(e.provider, e.state, e.raw_status, e.error_code) for e in events] == [
        ("twilio", S.SENT, "queued", None),
        ("twilio", S.UNDELIVERED, "undelivered", "30003"),
    ]
    assert events[0].received_at == first.received_at
    assert events[1].occurred_at == occurred
    assert events[0].occurred_at is None


async def test_the_state_never_moves_backwards(backend: Backend) -> None:
    """WhatsApp sends read before delivered sometimes; a late sent changes nothing."""
    n = await sent(backend, "wamid.1", country="MX", provider="whatsapp")
    read = await backend.store.record_receipt(
        receipt(backend, S.READ, "wamid.1", provider="whatsapp")
    )
    assert (read.before, read.after) == (S.SENT, S.READ)
    before = await backend.store.get_notification("acme", n.id)
    assert before is not None
    updated = before.delivery_updated_at
    backend.clock.advance(10)
    for late in (S.DELIVERED, S.SENT):
        got = await backend.store.record_receipt(
            receipt(backend, late, "wamid.1", provider="whatsapp")
        )
        # Recorded as an event, but the state stays where the evidence reached.
        assert got.match is Match.RECORDED
        assert (got.before, got.after) == (S.READ, S.READ)
    found = await backend.store.get_notification("acme", n.id)
    assert found is not None
    assert found.delivery_state is S.READ
    # updated_at says when the state last changed, not when a receipt last came.
    assert found.delivery_updated_at == updated
    assert len(await backend.store.delivery_events("acme", n.id)) == 3


async def test_a_final_failure_beats_sent(backend: Backend) -> None:
    n = await sent(backend, "SM1")
    await backend.store.record_receipt(receipt(backend, S.UNDELIVERED, code="30006"))
    await backend.store.record_receipt(receipt(backend, S.SENT, raw="sent"))
    assert await state_of(backend, n) is S.UNDELIVERED


async def test_a_duplicate_receipt_changes_nothing(backend: Backend) -> None:
    n = await sent(backend, "SM1")
    first = receipt(backend, S.DELIVERED)
    assert (await backend.store.record_receipt(first)).match is Match.RECORDED
    backend.clock.advance(30)
    # The provider redelivers the same callback later: the same event.
    again = replace(first, received_at=from_epoch(backend.clock.now()))
    got = await backend.store.record_receipt(again)
    assert got.match is Match.DUPLICATE
    assert got.notification_id == n.id
    assert len(await backend.store.delivery_events("acme", n.id)) == 1


async def test_an_unknown_message_id_is_unmatched_and_writes_nothing(backend: Backend) -> None:
    n = await sent(backend, "SM1")
    got = await backend.store.record_receipt(receipt(backend, S.DELIVERED, "SM-unknown"))
    assert got.match is Match.UNMATCHED
    assert got.notification_id is None
    assert await state_of(backend, n) is S.SENT
    assert await backend.store.delivery_events("acme", n.id) == []


async def test_a_receipt_for_another_tenant_or_provider_is_unmatched(backend: Backend) -> None:
    """The index is per tenant and provider: the same id elsewhere is someone else's."""
    ours = await sent(backend, "SM1", tenant="acme")
    other = await backend.store.record_receipt(receipt(backend, S.DELIVERED, tenant="globex"))
    assert other.match is Match.UNMATCHED
    wrong_provider = await backend.store.record_receipt(
        receipt(backend, S.DELIVERED, provider="vonage")
    )
    assert wrong_provider.match is Match.UNMATCHED
    assert await state_of(backend, ours) is S.SENT
    assert await backend.store.delivery_events("globex", ours.id) == []


async def test_the_same_message_id_at_two_tenants_stays_apart(backend: Backend) -> None:
    acme = await sent(backend, "SM-same", tenant="acme")
    globex = await sent(backend, "SM-same", tenant="globex")
    await backend.store.record_receipt(receipt(backend, S.DELIVERED, "SM-same", tenant="globex"))
    assert await state_of(backend, acme) is S.SENT
    assert await state_of(backend, globex) is S.DELIVERED


async def test_listing_filters_by_delivery_state(backend: Backend) -> None:
    one = await sent(backend, "SM1")
    two = await sent(backend, "SM2")
    waiting = notification(clock=backend.clock)
    await accept(backend, waiting)
    await backend.store.record_receipt(receipt(backend, S.DELIVERED, "SM2"))
    listed = await backend.store.list_notifications("acme", delivery_state=S.DELIVERED)
    assert [n.id for n in listed] == [two.id]
    assert listed[0].delivery_state is S.DELIVERED
    still = await backend.store.list_notifications("acme", delivery_state=S.SENT)
    assert [n.id for n in still] == [one.id]
    combined = await backend.store.list_notifications(
        "acme", status=Status.DONE, delivery_state=S.SENT
    )
    assert [n.id for n in combined] == [one.id]
    everything = await backend.store.list_notifications("acme")
    assert {n.id for n in everything} == {one.id, two.id, waiting.id}
    assert await backend.store.list_notifications("globex", delivery_state=S.SENT) == []


# -- expiry ------------------------------------------------------------------------------


async def test_a_notification_still_sent_after_the_timeout_expires(backend: Backend) -> None:
    old = await sent(backend, "SM-old")
    answered = await sent(backend, "SM-answered")
    await backend.store.record_receipt(receipt(backend, S.DELIVERED, "SM-answered"))
    backend.clock.advance(3600)
    young = await sent(backend, "SM-young")
    now = from_epoch(backend.clock.now())
    cutoff = now - timedelta(seconds=1800)
    assert await backend.store.expire_deliveries(sent_before=cutoff, now=now, limit=100) == 1
    assert await state_of(backend, old) is S.EXPIRED
    assert await state_of(backend, answered) is S.DELIVERED
    assert await state_of(backend, young) is S.SENT
    [event] = await backend.store.delivery_events("acme", old.id)
    assert (event.provider, event.state, event.raw_status) == (
        EXPIRY_PROVIDER,
        S.EXPIRED,
        EXPIRY_STATUS,
    )
    found = await backend.store.get_notification("acme", old.id)
    assert found is not None
    assert found.delivery_updated_at == now
    # Nothing left to expire: a second run changes nothing.
    assert await backend.store.expire_deliveries(sent_before=cutoff, now=now, limit=100) == 0


async def test_expiry_takes_at_most_limit_per_call(backend: Backend) -> None:
    made = [await sent(backend, f"SM{i}") for i in range(3)]
    backend.clock.advance(100)
    now = from_epoch(backend.clock.now())
    assert await backend.store.expire_deliveries(sent_before=now, now=now, limit=2) == 2
    assert await backend.store.expire_deliveries(sent_before=now, now=now, limit=2) == 1
    assert [await state_of(backend, n) for n in made] == [S.EXPIRED] * 3


async def test_a_receipt_after_expiry_still_wins(backend: Backend) -> None:
    n = await sent(backend, "SM1")
    backend.clock.advance(100)
    now = from_epoch(backend.clock.now())
    await backend.store.expire_deliveries(sent_before=now, now=now, limit=10)
    got = await backend.store.record_receipt(receipt(backend, S.DELIVERED))
    assert (got.before, got.after) == (S.EXPIRED, S.DELIVERED)
    assert await state_of(backend, n) is S.DELIVERED


# -- suppression lists ---------------------------------------------------------------------


def suppression(
    backend: Backend,
    address: str = "+15005550006",
    *,
    tenant: str = "acme",
    channel: Channel = Channel.SMS,
    reason: SuppressionReason = SuppressionReason.OPTED_OUT,
    source: str | None = None,
    note: str | None = None,
) -> Suppression:
    return Suppression(
        tenant=tenant,
        channel=channel,
        address=address,
        reason=reason,
        created_at=from_epoch(backend.clock.now()),
        source=source,
        note=note,
    )


async def test_a_suppression_is_stored_once_and_the_first_reason_is_kept(backend: Backend) -> None:
    first = suppression(backend, source="n-1", note="replied STOP")
    assert await backend.store.add_suppression(first) == first
    backend.clock.advance(5)
    second = suppression(backend, reason=SuppressionReason.BLOCKED)
    assert await backend.store.add_suppression(second) == first
    assert await backend.store.get_suppression("acme", Channel.SMS, "+15005550006") == first


async def test_suppressions_are_per_tenant_and_channel(backend: Backend) -> None:
    await backend.store.add_suppression(suppression(backend, tenant="acme"))
    assert await backend.store.get_suppression("globex", Channel.SMS, "+15005550006") is None
    assert await backend.store.get_suppression("acme", Channel.WHATSAPP, "+15005550006") is None
    assert await backend.store.list_suppressions("globex") == []
    assert not await backend.store.remove_suppression("globex", Channel.SMS, "+15005550006")
    assert await backend.store.get_suppression("acme", Channel.SMS, "+15005550006") is not None


async def test_suppressions_list_in_order_by_channel_and_page(backend: Backend) -> None:
    entries = [
        suppression(backend, "ana@example.com", channel=Channel.EMAIL),
        suppression(backend, "bo@example.com", channel=Channel.EMAIL),
        suppression(backend, "+34600000001"),
        suppression(backend, "+34600000002"),
        suppression(backend, "+5215512345678", channel=Channel.WHATSAPP),
    ]
    for entry in reversed(entries):
        await backend.store.add_suppression(entry)
    ordered = sorted(entries, key=lambda s: (s.channel.value, s.address))
    assert await backend.store.list_suppressions("acme") == ordered
    page = await backend.store.list_suppressions("acme", limit=2)
    assert page == ordered[:2]
    rest = await backend.store.list_suppressions(
        "acme", limit=10, after=(page[-1].channel, page[-1].address)
    )
    assert rest == ordered[2:]
    sms = await backend.store.list_suppressions("acme", channel=Channel.SMS)
    assert [s.address for s in sms] == ["+34600000001", "+34600000002"]
    after_first = await backend.store.list_suppressions(
        "acme", channel=Channel.SMS, after=(Channel.SMS, "+34600000001")
    )
    assert [s.address for s in after_first] == ["+34600000002"]


async def test_a_suppression_can_be_lifted(backend: Backend) -> None:
    await backend.store.add_suppression(suppression(backend))
    assert await backend.store.remove_suppression("acme", Channel.SMS, "+15005550006")
    assert await backend.store.get_suppression("acme", Channel.SMS, "+15005550006") is None
    assert not await backend.store.remove_suppression("acme", Channel.SMS, "+15005550006")
    # Lifted, it can be added again (a later STOP).
    again = suppression(backend, reason=SuppressionReason.OPERATOR)
    assert await backend.store.add_suppression(again) == again


# -- rules found while building the SQL store ----------------------------------------------


async def test_a_message_id_reused_by_a_later_send_never_fails_it(backend: Backend) -> None:
    """Should a provider ever reuse an id, the send still completes; receipts go to the latest."""
    first = await sent(backend, "SM-reused")
    backend.clock.advance(10)
    second = await sent(backend, "SM-reused")
    assert await state_of(backend, second) is S.SENT
    got = await backend.store.record_receipt(receipt(backend, S.DELIVERED, "SM-reused"))
    assert got.notification_id == second.id
    assert await state_of(backend, second) is S.DELIVERED
    assert await state_of(backend, first) is S.SENT


async def test_what_was_sent_exactly_at_the_cutoff_expires(backend: Backend) -> None:
    """``expiry_due`` is ``now - sent_at >= timeout``: the boundary itself is due."""
    sent_at = from_epoch(backend.clock.now())
    n = await sent(backend, "SM1")
    backend.clock.advance(60)
    now = from_epoch(backend.clock.now())
    assert await backend.store.expire_deliveries(sent_before=sent_at, now=now, limit=10) == 1
    assert await state_of(backend, n) is S.EXPIRED
