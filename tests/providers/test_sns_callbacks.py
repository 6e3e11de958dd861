"""The fake SNS topic publishes SES events as AWS does: the hub's SNS verifier (the
production code path, trusting only the fake's test CA) and its SES parser accept them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer

from integration_hub.adapters.receipts import ses, sns
from integration_hub.adapters.receipts.common import BadSignature
from integration_hub.domain.receipts import (
    DeliveryState,
    Receipt,
    SuppressionReason,
    suppression_for,
)

from .fake_callbacks import CallbackReceiver, Step
from .fake_http import unused_port
from .fake_sns import FakeSns


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    async with CallbackReceiver() as hub:
        yield hub


@pytest.fixture(params=["1", "2"])
async def topic(
    request: pytest.FixtureRequest, tmp_path: Path, receiver: CallbackReceiver
) -> AsyncIterator[FakeSns]:
    async with FakeSns(tmp_path, signature_version=request.param) as fake:
        fake.endpoint = f"{receiver.base_url}/v1/receipts/ses/acme"
        yield fake


@pytest.fixture
async def verifier(topic: FakeSns) -> AsyncIterator[sns.SnsVerifier]:
    made = sns.SnsVerifier(
        sns.CertFetch(ca_file=str(topic.ca_file), connect_to=("127.0.0.1", topic.port))
    )
    try:
        yield made
    finally:
        await made.close()


async def receipts_in(
    receiver: CallbackReceiver, verifier: sns.SnsVerifier, topic: FakeSns
) -> list[Receipt]:
    found: list[Receipt] = []
    for request in receiver.requests:
        message = await verifier.verify(request.body, {topic.topic_arn})
        found.extend(ses.parse_notification("acme", message, datetime.now(UTC)))
    return found


async def test_scripted_events_arrive_signed_and_parse(
    topic: FakeSns, receiver: CallbackReceiver, verifier: sns.SnsVerifier
) -> None:
    topic.script(Step("Delivery"), Step("Bounce"), Step("Delivery"))
    topic.accepted("0100-ses-message-id", "Ana@Example.com")
    await topic.settle()

    assert [c.status for c in topic.callbacks] == [200, 200, 200]
    receipts = await receipts_in(receiver, verifier, topic)
    assert [r.state for r in receipts] == [
        DeliveryState.DELIVERED,
        DeliveryState.BOUNCED,
        DeliveryState.DELIVERED,
    ]
    assert {r.provider_message_id for r in receipts} == {"0100-ses-message-id"}
    assert {r.recipient for r in receipts} == {"ana@example.com"}
    assert suppression_for(receipts[1]) is SuppressionReason.HARD_BOUNCE
    # Fetched once, then cached by the verifier.
    assert topic.certificate_fetches == 1


async def test_a_transient_bounce_and_a_complaint(
    topic: FakeSns, receiver: CallbackReceiver, verifier: sns.SnsVerifier
) -> None:
    topic.hold = True
    topic.script(Step("Bounce", error_code="Transient"), Step("Complaint"))
    topic.accepted("m-2", "ana@example.com")
    assert receiver.requests == []

    await topic.flush()

    transient, complaint = await receipts_in(receiver, verifier, topic)
    assert transient.state is DeliveryState.UNDELIVERED
    assert suppression_for(transient) is None
    assert complaint.state is DeliveryState.COMPLAINED
    assert complaint.error_code == "abuse"


async def test_a_message_signed_by_another_key_is_refused(
    tmp_path: Path, topic: FakeSns, receiver: CallbackReceiver, verifier: sns.SnsVerifier
) -> None:
    (tmp_path / "other").mkdir()
    other = FakeSns(tmp_path / "other")
    topic.signing_key = other.signing_key
    topic.script(Step("Delivery"))
    topic.accepted("m-3", "ana@example.com")
    await topic.settle()

    with pytest.raises(BadSignature):
        await receipts_in(receiver, verifier, topic)


async def test_the_subscription_confirmation_names_a_url_on_the_fake(
    topic: FakeSns, receiver: CallbackReceiver, verifier: sns.SnsVerifier
) -> None:
    await topic.confirm_subscription()

    message = await verifier.verify(receiver.requests[0].body, {topic.topic_arn})
    url = sns.subscribe_url_to_visit(message)
    assert url.startswith(f"https://{topic.host}/?Action=ConfirmSubscription")
    assert topic.confirmations == []


@pytest.fixture
def moto_url() -> Iterator[str]:
    port = unused_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


async def test_what_moto_ses_sent_is_picked_up_once(
    topic: FakeSns, receiver: CallbackReceiver, moto_url: str, verifier: sns.SnsVerifier
) -> None:
    def send() -> str:
        client = boto3.client(
            "sesv2",
            region_name="eu-west-1",
            endpoint_url=moto_url,
            aws_access_key_id="AKIAFAKESNSCALLBACK",
            aws_secret_access_key="fake-secret",
        )
        try:
            client.create_email_identity(EmailIdentity="notify@example.com")
            sent = client.send_email(
                FromEmailAddress="notify@example.com",
                Destination={"ToAddresses": ["bob@example.com"]},
                Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
            )
        finally:
            client.close()
        message_id: str = sent["MessageId"]
        return message_id

    await topic.watch_moto(moto_url, report=False)
    message_id = await asyncio.to_thread(send)
    topic.default_steps = [Step("Delivery")]

    assert await topic.watch_moto(moto_url) == 1
    assert await topic.watch_moto(moto_url) == 0
    await topic.settle()

    [receipt] = await receipts_in(receiver, verifier, topic)
    assert receipt.provider_message_id == message_id
    assert receipt.recipient == "bob@example.com"
    assert receipt.state is DeliveryState.DELIVERED


async def test_a_repeated_step_is_the_same_notification_again(
    topic: FakeSns, receiver: CallbackReceiver
) -> None:
    topic.script(Step("Bounce"), Step("Delivery"), Step("Bounce"))
    topic.accepted("m-4", "ana@example.com")
    await topic.settle()

    first, delivery, again = (r.body for r in receiver.requests)
    assert again == first
    assert delivery != first
