"""Twilio status callbacks: the adapter asks for them at the hub's public URL, and the
fake Twilio sends them as Twilio does (form fields, X-Twilio-Signature by Twilio's
own RequestValidator), which the hub's parser and signature check accept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from integration_hub.adapters.providers.registry import Callbacks, ProviderRegistry
from integration_hub.adapters.receipts import twilio as twilio_receipts
from integration_hub.adapters.receipts.common import BadSignature
from integration_hub.domain.delivery import Delivered
from integration_hub.domain.receipts import DeliveryState, SuppressionReason, suppression_for
from integration_hub.domain.routing import Channel
from support import LOCAL_OUTBOUND, ManualClock

from .fake_callbacks import CallbackReceiver, Step
from .fake_twilio import FakeTwilio
from .messages import sms
from .test_registry import Credentials

PUBLIC_URL = "https://hub.example.com/notify"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    async with CallbackReceiver() as hub:
        yield hub


async def registry_for(
    twilio: FakeTwilio, public_url: str | None, **config: object
) -> ProviderRegistry:
    credentials = Credentials()
    await credentials.put_credentials("acme", "twilio", twilio.credentials(**config))
    return ProviderRegistry(
        credentials,
        {},
        ManualClock(),
        ttl_seconds=0,
        outbound=LOCAL_OUTBOUND,
        public_url=public_url,
    )


async def send_through(registry: ProviderRegistry) -> Delivered:
    try:
        provider = await registry.get("acme", Channel.SMS, "twilio")
        result = await provider.send(sms("+15551234567", "Your code is 123456"))
    finally:
        await registry.close()
    assert isinstance(result, Delivered), result
    return result


async def test_with_a_public_url_twilio_is_asked_to_call_the_tenants_receipt_endpoint(
    twilio: FakeTwilio,
) -> None:
    await send_through(await registry_for(twilio, PUBLIC_URL))

    form = twilio.requests[0].form
    assert form["StatusCallback"] == f"{PUBLIC_URL}/v1/receipts/twilio/acme"


async def test_the_hubs_endpoint_wins_over_a_tenants_own_status_callback(
    twilio: FakeTwilio,
) -> None:
    registry = await registry_for(
        twilio, PUBLIC_URL + "/", status_callback="https://acme.example/cb"
    )
    await send_through(registry)

    assert twilio.requests[0].form["StatusCallback"] == f"{PUBLIC_URL}/v1/receipts/twilio/acme"


async def test_without_a_public_url_only_a_tenants_own_status_callback_is_sent(
    twilio: FakeTwilio,
) -> None:
    await send_through(await registry_for(twilio, None))
    await send_through(await registry_for(twilio, None, status_callback="https://acme.example/cb"))

    assert "StatusCallback" not in twilio.requests[0].form
    assert twilio.requests[1].form["StatusCallback"] == "https://acme.example/cb"


def test_the_receipt_url_quotes_the_tenant_and_needs_both_parts() -> None:
    assert Callbacks("https://h.example/", "a b").url("twilio") == (
        "https://h.example/v1/receipts/twilio/a%20b"
    )
    assert Callbacks(None, "acme").url("twilio") is None
    assert Callbacks("https://h.example", None).url("twilio") is None


async def test_the_fake_calls_back_signed_in_the_scripted_order_with_duplicates(
    twilio: FakeTwilio, receiver: CallbackReceiver
) -> None:
    url = f"{receiver.base_url}/v1/receipts/twilio/acme"
    twilio.script(Step("sent"), Step("delivered"), Step("delivered", delay=0.05))
    registry = await registry_for(twilio, receiver.base_url)
    sid = (await send_through(registry)).provider_message_id

    await twilio.settle()

    assert [c.status for c in twilio.callbacks] == [200, 200, 200]
    states = []
    for request in receiver.requests:
        assert request.path == "/v1/receipts/twilio/acme"
        twilio_receipts.verify(
            twilio.auth_token, url, request.form, request.headers["X-Twilio-Signature"]
        )
        [receipt] = twilio_receipts.parse_status("acme", request.form, datetime.now(UTC))
        assert receipt.provider_message_id == sid
        assert receipt.recipient == "+15551234567"
        states.append(receipt.state)
    assert states == [DeliveryState.SENT, DeliveryState.DELIVERED, DeliveryState.DELIVERED]
    request = receiver.requests[0]
    with pytest.raises(BadSignature):
        twilio_receipts.verify(
            "another-token", url, request.form, request.headers["X-Twilio-Signature"]
        )


async def test_held_callbacks_wait_for_flush_and_carry_the_error_code(
    twilio: FakeTwilio, receiver: CallbackReceiver
) -> None:
    twilio.hold = True
    twilio.script(Step("undelivered", error_code="21610"))
    await send_through(await registry_for(twilio, receiver.base_url))
    assert receiver.requests == []
    assert len(twilio.pending) == 1

    sent = await twilio.flush()

    assert [c.status for c in sent] == [200]
    form = receiver.requests[0].form
    assert form["ErrorCode"] == "21610"
    [receipt] = twilio_receipts.parse_status("acme", form, datetime.now(UTC))
    assert receipt.state is DeliveryState.UNDELIVERED
    assert suppression_for(receipt) is SuppressionReason.OPTED_OUT


async def test_no_status_callback_means_no_callback_whatever_the_script(
    twilio: FakeTwilio, receiver: CallbackReceiver
) -> None:
    twilio.default_steps = [Step("delivered")]
    await send_through(await registry_for(twilio, None))
    await twilio.settle()

    assert twilio.callbacks == []
    assert receiver.requests == []
