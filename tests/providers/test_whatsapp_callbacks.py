"""The fake Cloud API sends status webhooks as Meta does, which the hub's parser and
signature check accept: one status per payload, or many in one, in any order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from integration_hub.adapters.providers import registry
from integration_hub.adapters.receipts import whatsapp as whatsapp_receipts
from integration_hub.adapters.receipts.common import BadSignature
from integration_hub.domain.delivery import Delivered
from integration_hub.domain.receipts import (
    DeliveryState,
    Receipt,
    SuppressionReason,
    suppression_for,
)
from support import LOCAL_OUTBOUND

from .fake_callbacks import CallbackReceiver, Step
from .fake_whatsapp import FakeWhatsApp
from .messages import whatsapp
from .test_whatsapp import config_for


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    async with CallbackReceiver() as hub:
        yield hub


@pytest.fixture
async def meta(receiver: CallbackReceiver) -> AsyncIterator[FakeWhatsApp]:
    async with FakeWhatsApp() as fake:
        fake.webhook_url = f"{receiver.base_url}/v1/receipts/whatsapp/acme"
        yield fake


async def send(meta: FakeWhatsApp, phone: str = "+5215512345678") -> str:
    provider = registry.build("whatsapp_cloud", config_for(meta), LOCAL_OUTBOUND)
    try:
        result = await provider.send(whatsapp(phone))
    finally:
        await provider.close()
    assert isinstance(result, Delivered), result
    return result.provider_message_id


def receipts_in(meta: FakeWhatsApp, receiver: CallbackReceiver) -> list[Receipt]:
    found = []
    for request in receiver.requests:
        assert request.path == "/v1/receipts/whatsapp/acme"
        whatsapp_receipts.verify(
            meta.app_secret, request.body, request.headers["X-Hub-Signature-256"]
        )
        found.extend(whatsapp_receipts.parse("acme", request.body, datetime.now(UTC)))
    return found


async def test_statuses_arrive_signed_in_the_scripted_order(
    meta: FakeWhatsApp, receiver: CallbackReceiver
) -> None:
    meta.script(Step("sent"), Step("read"), Step("delivered"), Step("read"))
    wamid = await send(meta)
    await meta.settle()

    receipts = receipts_in(meta, receiver)
    assert [r.state for r in receipts] == [
        DeliveryState.SENT,
        DeliveryState.READ,
        DeliveryState.DELIVERED,
        DeliveryState.READ,
    ]
    assert {r.provider_message_id for r in receipts} == {wamid}
    assert {r.recipient for r in receipts} == {"+5215512345678"}
    with pytest.raises(BadSignature):
        whatsapp_receipts.verify(
            "another-secret",
            receiver.requests[0].body,
            receiver.requests[0].headers["X-Hub-Signature-256"],
        )


async def test_held_statuses_of_many_messages_go_in_one_payload(
    meta: FakeWhatsApp, receiver: CallbackReceiver
) -> None:
    meta.hold = True
    meta.default_steps = [Step("delivered")]
    meta.script(Step("failed", error_code="131026"))
    first = await send(meta, "+5215512345678")
    second = await send(meta, "+5491123456789")
    assert receiver.requests == []

    sent = await meta.flush_batch()

    assert sent is not None
    assert sent.status == 200
    assert len(receiver.requests) == 1
    failed, delivered = receipts_in(meta, receiver)
    assert (failed.provider_message_id, failed.state) == (first, DeliveryState.UNDELIVERED)
    assert failed.error_code == "131026"
    assert suppression_for(failed) is SuppressionReason.NOT_ON_WHATSAPP
    assert (delivered.provider_message_id, delivered.state) == (second, DeliveryState.DELIVERED)
    assert delivered.recipient == "+5491123456789"


async def test_without_a_webhook_url_nothing_is_sent(receiver: CallbackReceiver) -> None:
    async with FakeWhatsApp() as meta:
        meta.default_steps = [Step("delivered")]
        await send(meta)
        await meta.settle()
    assert receiver.requests == []


async def test_a_repeated_step_is_the_same_status_again(
    meta: FakeWhatsApp, receiver: CallbackReceiver
) -> None:
    meta.script(Step("read"), Step("delivered"), Step("read"))
    await send(meta)
    await meta.settle()

    first, delivered, again = receipts_in(meta, receiver)
    assert again.identity == first.identity
    assert delivered.identity != first.identity
