"""The sandbox reports receipts like a real provider: later, never blocking the send,
again while the outcome is not recorded yet, and nothing left running after close."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from integration_hub.adapters.providers.sandbox import ReceiptTiming, SandboxProvider
from integration_hub.domain.delivery import Delivered
from integration_hub.domain.receipts import DeliveryState, Receipt
from integration_hub.domain.routing import Channel
from integration_hub.ports import Match, ReceiptRecord
from providers.messages import mail, sms, whatsapp

QUICK = ReceiptTiming(delay=0.0, retry=0.0, attempts=3)


class Sink:
    """ReceiptService.record as the sandbox sees it: unmatched ``unmatched`` times first."""

    def __init__(self, unmatched: int = 0, *, fail: bool = False) -> None:
        self.unmatched = unmatched
        self.fail = fail
        self.calls: list[Receipt] = []
        self.recorded: list[Receipt] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, receipts: Sequence[Receipt]) -> list[ReceiptRecord]:
        await self.gate.wait()
        self.calls.extend(receipts)
        if self.fail:
            raise ConnectionError("store down")
        if self.unmatched > 0:
            self.unmatched -= 1
            return [ReceiptRecord(Match.UNMATCHED) for _ in receipts]
        self.recorded.extend(receipts)
        return [ReceiptRecord(Match.RECORDED, notification_id="n") for _ in receipts]


async def drain(provider: SandboxProvider) -> None:
    while provider._tasks:
        await asyncio.gather(*list(provider._tasks))


async def test_whatsapp_is_reported_delivered_then_read_under_the_sandbox_message_id() -> None:
    sink = Sink()
    provider = SandboxProvider(Channel.WHATSAPP, receipts=sink, timing=QUICK)
    message = whatsapp("+5215512345678")
    result = await provider.send(message)
    await drain(provider)

    assert isinstance(result, Delivered)
    assert [r.state for r in sink.recorded] == [DeliveryState.DELIVERED, DeliveryState.READ]
    for receipt in sink.recorded:
        assert receipt.provider == "sandbox"
        assert receipt.provider_message_id == result.provider_message_id
        assert receipt.tenant == message.tenant
        assert receipt.channel is Channel.WHATSAPP
        assert receipt.recipient == "+5215512345678"


async def test_sms_and_email_are_reported_delivered() -> None:
    for channel, message in ((Channel.SMS, sms()), (Channel.EMAIL, mail("Ana@Example.org"))):
        sink = Sink()
        provider = SandboxProvider(channel, receipts=sink, timing=QUICK)
        await provider.send(message)
        await drain(provider)
        assert [r.state for r in sink.recorded] == [DeliveryState.DELIVERED]
    assert sink.recorded[0].recipient == "ana@example.org"


async def test_the_request_scripts_the_states_and_unknown_ones_are_dropped() -> None:
    sink = Sink()
    provider = SandboxProvider(Channel.EMAIL, receipts=sink, timing=QUICK)
    spec = {"sandbox": {"receipts": ["bounced", "nonsense", "sent", "complained"]}}
    await provider.send(mail(metadata=spec))
    await provider.send(mail(metadata={"sandbox": {"receipts": []}}))
    await drain(provider)

    assert [r.state for r in sink.recorded] == [DeliveryState.BOUNCED, DeliveryState.COMPLAINED]


async def test_an_unmatched_receipt_is_tried_again_until_the_outcome_is_recorded() -> None:
    sink = Sink(unmatched=2)
    provider = SandboxProvider(Channel.SMS, receipts=sink, timing=QUICK)
    await provider.send(sms())
    await drain(provider)

    assert len(sink.calls) == 3
    assert [r.state for r in sink.recorded] == [DeliveryState.DELIVERED]


async def test_it_gives_up_after_its_attempts_and_on_a_store_error() -> None:
    never = Sink(unmatched=100)
    provider = SandboxProvider(Channel.WHATSAPP, receipts=never, timing=QUICK)
    await provider.send(whatsapp())
    await drain(provider)
    assert len(never.calls) == QUICK.attempts
    assert never.recorded == []

    broken = Sink(fail=True)
    provider = SandboxProvider(Channel.WHATSAPP, receipts=broken, timing=QUICK)
    result = await provider.send(whatsapp())
    await drain(provider)
    assert isinstance(result, Delivered)
    assert len(broken.calls) == 1  # "read" is not tried after "delivered" failed


async def test_the_send_does_not_wait_for_its_receipts_and_close_cancels_them() -> None:
    sink = Sink()
    sink.gate.clear()  # the store never answers
    provider = SandboxProvider(Channel.SMS, receipts=sink, timing=QUICK)
    result = await asyncio.wait_for(provider.send(sms()), timeout=5)
    assert isinstance(result, Delivered)
    await asyncio.sleep(0)
    [task] = provider._tasks

    await provider.close()

    assert task.cancelled()
    assert provider._tasks == set()
    await provider.send(sms())  # closed: nothing more is scheduled
    assert provider._tasks == set()


async def test_without_an_emitter_or_after_detaching_nothing_is_reported() -> None:
    sink = Sink()
    provider = SandboxProvider(Channel.SMS, timing=QUICK)
    await provider.send(sms())
    assert provider._tasks == set()
    provider.emit_to(sink)
    await provider.send(sms())
    await drain(provider)
    provider.emit_to(None)
    await provider.send(sms())
    assert provider._tasks == set()
    assert len(sink.recorded) == 1
