"""ReceiptService (service/receipts.py) over an in-memory fake of the receipt and
suppression store roles: counting, latency, suppression from receipts, keywords,
lifting rules and expiry batches. The real stores are covered by the contract suite."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from integration_hub.domain import errors
from integration_hub.domain.receipts import (
    DeliveryState,
    Lifter,
    Receipt,
    SuppressionReason,
    advance,
)
from integration_hub.domain.routing import Channel
from integration_hub.ports import DeliveryEvent, Match, NoMetrics, ReceiptRecord, Suppression
from integration_hub.service.receipts import (
    INBOUND_SOURCE,
    ReceiptPolicy,
    ReceiptService,
    Removal,
)
from support import ManualClock

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class _Sent:
    id: str
    channel: Channel
    recipient: str
    sent_at: datetime
    state: DeliveryState | None = DeliveryState.SENT
    identities: set[object] = field(default_factory=set)


class FakeStores:
    """The two store roles in dicts, following the ports' docstrings."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, str, str], _Sent] = {}
        self.suppressions: dict[tuple[str, Channel, str], Suppression] = {}
        self.expire_calls: list[int] = []
        self.expirable = 0

    def send(self, tenant: str, provider: str, pmid: str, channel: Channel, to: str) -> None:
        self.sent[(tenant, provider, pmid)] = _Sent(f"n-{pmid}", channel, to, T0)

    async def record_receipt(self, receipt: Receipt) -> ReceiptRecord:
        found = self.sent.get((receipt.tenant, receipt.provider, receipt.provider_message_id))
        if found is None:
            return ReceiptRecord(Match.UNMATCHED)
        base = ReceiptRecord(
            Match.DUPLICATE,
            found.id,
            found.channel,
            found.recipient,
            found.state,
            found.state,
            found.sent_at,
        )
        if receipt.identity in found.identities:
            return base
        found.identities.add(receipt.identity)
        before = found.state
        found.state = advance(before, receipt.state)
        return replace(base, match=Match.RECORDED, before=before, after=found.state)

    async def delivery_events(self, tenant: str, notification_id: str) -> list[DeliveryEvent]:
        return []

    async def expire_deliveries(self, *, sent_before: datetime, now: datetime, limit: int) -> int:
        self.expire_calls.append(limit)
        done = min(limit, self.expirable)
        self.expirable -= done
        return done

    async def add_suppression(self, suppression: Suppression) -> Suppression:
        key = (suppression.tenant, suppression.channel, suppression.address)
        return self.suppressions.setdefault(key, suppression)

    async def get_suppression(
        self, tenant: str, channel: Channel, address: str
    ) -> Suppression | None:
        return self.suppressions.get((tenant, channel, address))

    async def list_suppressions(
        self,
        tenant: str,
        *,
        channel: Channel | None = None,
        limit: int = 100,
        after: tuple[Channel, str] | None = None,
    ) -> list[Suppression]:
        found = sorted(
            (s for (t, c, _), s in self.suppressions.items() if t == tenant),
            key=lambda s: (str(s.channel), s.address),
        )
        found = [s for s in found if channel is None or s.channel is channel]
        if after is not None:
            found = [s for s in found if (str(s.channel), s.address) > (str(after[0]), after[1])]
        return found[:limit]

    async def remove_suppression(self, tenant: str, channel: Channel, address: str) -> bool:
        return self.suppressions.pop((tenant, channel, address), None) is not None


class Counted(NoMetrics):
    """Every receipt metric call, as tuples."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def receipt(self, provider: str, state: str) -> None:
        self.calls.append(("receipt", provider, state))

    def receipt_unmatched(self, provider: str) -> None:
        self.calls.append(("unmatched", provider))

    def receipt_duplicate(self, provider: str) -> None:
        self.calls.append(("duplicate", provider))

    def receipt_latency(self, provider: str, seconds: float) -> None:
        self.calls.append(("latency", provider, seconds))


def _receipt(
    pmid: str,
    state: DeliveryState,
    *,
    provider: str = "twilio",
    raw: str | None = None,
    code: str | None = None,
    at: datetime | None = None,
    tenant: str = "acme",
) -> Receipt:
    return Receipt(
        tenant=tenant,
        provider=provider,
        provider_message_id=pmid,
        state=state,
        raw_status=raw or str(state),
        error_code=code,
        occurred_at=at,
        received_at=T0 + timedelta(minutes=5),
    )


@pytest.fixture
def stores() -> FakeStores:
    s = FakeStores()
    s.send("acme", "twilio", "SM1", Channel.SMS, "+34 600 111 222")
    s.send("acme", "ses", "ses-1", Channel.EMAIL, "Ana@Example.com")
    return s


def _service(
    stores: FakeStores, metrics: Counted | None = None, **policy: object
) -> ReceiptService:
    clock = ManualClock(T0.timestamp())
    return ReceiptService(stores, clock, metrics, ReceiptPolicy(**policy))  # type: ignore[arg-type]


async def test_a_recorded_receipt_is_counted_by_provider_and_state(stores: FakeStores) -> None:
    metrics = Counted()
    [rec] = await _service(stores, metrics).record([_receipt("SM1", DeliveryState.SENT)])
    assert rec.match is Match.RECORDED
    assert metrics.calls == [("receipt", "twilio", "sent")]


async def test_unknown_ids_and_duplicates_change_nothing_and_are_counted(
    stores: FakeStores,
) -> None:
    metrics = Counted()
    service = _service(stores, metrics)
    delivered = _receipt("SM1", DeliveryState.DELIVERED)
    records = await service.record([delivered, delivered, _receipt("SM9", DeliveryState.BOUNCED)])
    assert [r.match for r in records] == [Match.RECORDED, Match.DUPLICATE, Match.UNMATCHED]
    assert ("duplicate", "twilio") in metrics.calls
    assert ("unmatched", "twilio") in metrics.calls
    assert stores.suppressions == {}


async def test_latency_is_observed_once_on_the_first_delivered(stores: FakeStores) -> None:
    metrics = Counted()
    service = _service(stores, metrics)
    at = T0 + timedelta(seconds=42)
    await service.record([_receipt("SM1", DeliveryState.DELIVERED, raw="delivered", at=at)])
    # Another delivered event (a different raw status) does not observe again.
    await service.record([_receipt("SM1", DeliveryState.DELIVERED, raw="delivered2")])
    latencies = [c for c in metrics.calls if c[0] == "latency"]
    assert latencies == [("latency", "twilio", 42.0)]


async def test_latency_falls_back_to_the_received_time(stores: FakeStores) -> None:
    metrics = Counted()
    await _service(stores, metrics).record([_receipt("SM1", DeliveryState.DELIVERED)])
    assert ("latency", "twilio", 300.0) in metrics.calls


async def test_read_before_delivered_observes_no_latency(stores: FakeStores) -> None:
    metrics = Counted()
    service = _service(stores, metrics)
    await service.record([_receipt("SM1", DeliveryState.READ)])
    await service.record([_receipt("SM1", DeliveryState.DELIVERED)])
    assert not [c for c in metrics.calls if c[0] == "latency"]


async def test_a_hard_bounce_suppresses_the_notifications_recipient_normalised(
    stores: FakeStores,
) -> None:
    await _service(stores).record([_receipt("ses-1", DeliveryState.BOUNCED, provider="ses")])
    found = stores.suppressions[("acme", Channel.EMAIL, "ana@example.com")]
    assert found.reason is SuppressionReason.HARD_BOUNCE
    assert found.source == "n-ses-1"


async def test_twilio_21610_suppresses_as_opted_out(stores: FakeStores) -> None:
    await _service(stores).record([_receipt("SM1", DeliveryState.UNDELIVERED, code="21610")])
    found = stores.suppressions[("acme", Channel.SMS, "+34600111222")]
    assert found.reason is SuppressionReason.OPTED_OUT


async def test_a_transient_failure_code_does_not_suppress(stores: FakeStores) -> None:
    await _service(stores).record([_receipt("SM1", DeliveryState.UNDELIVERED, code="30003")])
    assert stores.suppressions == {}


async def test_a_recipient_that_does_not_normalise_is_skipped(stores: FakeStores) -> None:
    stores.send("acme", "twilio", "SM2", Channel.SMS, "not a phone")
    await _service(stores).record([_receipt("SM2", DeliveryState.UNDELIVERED, code="21610")])
    assert stores.suppressions == {}


async def test_stop_adds_and_start_lifts_only_an_opt_out(stores: FakeStores) -> None:
    service = _service(stores)
    added = await service.opt_out("acme", Channel.SMS, "+34600111222")
    assert added is not None
    assert added.reason is SuppressionReason.OPTED_OUT
    assert added.source == INBOUND_SOURCE
    assert await service.opt_in("acme", Channel.SMS, "+34 600 111 222")
    assert stores.suppressions == {}
    await service.add("acme", Channel.SMS, "+34600111222", note="legal asked")
    assert not await service.opt_in("acme", Channel.SMS, "+34600111222")
    assert ("acme", Channel.SMS, "+34600111222") in stores.suppressions


async def test_start_without_a_suppression_lifts_nothing(stores: FakeStores) -> None:
    assert not await _service(stores).opt_in("acme", Channel.SMS, "+34600111222")


async def test_a_tenant_cannot_lift_an_operator_entry_the_operator_can(
    stores: FakeStores,
) -> None:
    service = _service(stores)
    await service.add("acme", Channel.EMAIL, "X@Example.com")
    refused = await service.remove("acme", Channel.EMAIL, "x@example.com", by=Lifter.TENANT)
    assert refused.outcome is Removal.FORBIDDEN
    assert refused.reason is SuppressionReason.OPERATOR
    with pytest.raises(errors.LiftForbidden) as caught:
        await service.lift("acme", Channel.EMAIL, "x@example.com", by=Lifter.TENANT)
    assert caught.value.reason == "operator"
    lifted = await service.remove("acme", Channel.EMAIL, "x@example.com", by=Lifter.OPERATOR)
    assert lifted.outcome is Removal.REMOVED
    gone = await service.remove("acme", Channel.EMAIL, "x@example.com", by=Lifter.OPERATOR)
    assert gone.outcome is Removal.NOT_FOUND


async def test_a_tenant_lifts_its_own_bounce(stores: FakeStores) -> None:
    service = _service(stores)
    await service.add("acme", Channel.EMAIL, "a@example.com", reason=SuppressionReason.HARD_BOUNCE)
    await service.lift("acme", Channel.EMAIL, "a@example.com", by=Lifter.TENANT)
    assert stores.suppressions == {}
    with pytest.raises(errors.NotFound):
        await service.lift("acme", Channel.EMAIL, "a@example.com", by=Lifter.TENANT)


async def test_an_invalid_address_is_a_field_error(stores: FakeStores) -> None:
    service = _service(stores)
    with pytest.raises(errors.HubError) as caught:
        await service.add("acme", Channel.SMS, "600111222")
    assert caught.value.field == "address"
    with pytest.raises(errors.HubError):
        await service.remove("acme", Channel.EMAIL, "nope", by=Lifter.TENANT)


async def test_suppressions_are_per_tenant(stores: FakeStores) -> None:
    service = _service(stores)
    await service.add("acme", Channel.SMS, "+34600111222")
    assert await service.check.find("globex", Channel.SMS, "+34600111222") is None
    assert await service.check.find("acme", Channel.SMS, "+34 600 111 222") is not None
    assert await service.check.find("acme", Channel.WHATSAPP, "+34600111222") is None
    assert [s.tenant for s in await service.list("acme")] == ["acme"]
    assert await service.list("globex") == []


async def test_expire_runs_in_batches_until_a_short_one(stores: FakeStores) -> None:
    stores.expirable = 25
    assert await _service(stores, expire_batch=10).expire() == 25
    assert stores.expire_calls == [10, 10, 10]


async def test_routed_as_finds_the_notification_under_the_routes_name(
    stores: FakeStores,
) -> None:
    stores.send("acme", "whatsapp_cloud", "wamid.1", Channel.WHATSAPP, "+5215512345678")
    metrics = Counted()
    failed = _receipt("wamid.1", DeliveryState.UNDELIVERED, provider="whatsapp", code="131050")
    [rec] = await _service(stores, metrics).record([failed], routed_as="whatsapp_cloud")
    assert rec.match is Match.RECORDED
    assert metrics.calls == [("receipt", "whatsapp", "undelivered")]
    found = stores.suppressions[("acme", Channel.WHATSAPP, "+5215512345678")]
    assert found.reason is SuppressionReason.OPTED_OUT
