"""SES events as receipts (adapters/receipts/ses.py): every event type the
issue names, both spellings of the type, one receipt per bounced or
complaining recipient, and garbage refused with MalformedReceipt only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from integration_hub.adapters.receipts import ses
from integration_hub.adapters.receipts.common import MalformedReceipt
from integration_hub.adapters.receipts.sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    SnsMessage,
)
from integration_hub.domain.receipts import DeliveryState, SuppressionReason, suppression_for
from integration_hub.domain.routing import Channel

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MAIL = {
    "timestamp": "2026-01-01T10:00:00.000Z",
    "messageId": "0100018c-ses-message-id-000000",
    "source": "noreply@acme.example",
    "destination": ["Jane@Example.com"],
}


def event(kind: str, key: str = "eventType", **sections: Any) -> str:
    return json.dumps({key: kind, "mail": MAIL, **sections})


def one(text: str) -> Any:
    [receipt] = ses.parse_event("acme", text, NOW)
    return receipt


def test_a_delivery_is_delivered_with_the_ses_message_id() -> None:
    receipt = one(
        event(
            "Delivery",
            delivery={"timestamp": "2026-01-01T10:00:02.500Z", "recipients": ["Jane@Example.com"]},
        )
    )
    assert receipt.state is DeliveryState.DELIVERED
    assert receipt.provider == "ses"
    assert receipt.provider_message_id == MAIL["messageId"]
    assert receipt.occurred_at == datetime(2026, 1, 1, 10, 0, 2, 500000, tzinfo=UTC)
    assert receipt.recipient == "jane@example.com"
    assert receipt.channel is Channel.EMAIL
    assert suppression_for(receipt) is None


@pytest.mark.parametrize("key", ["eventType", "notificationType"])
def test_a_permanent_bounce_is_bounced_and_suppresses_each_recipient(key: str) -> None:
    bounce = {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "timestamp": "2026-01-01T10:00:05Z",
        "bouncedRecipients": [{"emailAddress": "Jane@Example.com"}, {"emailAddress": "b@x.io"}],
    }
    receipts = ses.parse_event("acme", event("Bounce", key, bounce=bounce), NOW)
    assert [r.recipient for r in receipts] == ["jane@example.com", "b@x.io"]
    assert {r.state for r in receipts} == {DeliveryState.BOUNCED}
    assert {suppression_for(r) for r in receipts} == {SuppressionReason.HARD_BOUNCE}
    assert receipts[0].raw_status == "Bounce/Permanent"
    assert receipts[0].error_code == "General"
    assert receipts[0].identity != receipts[1].identity


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_a_soft_bounce_is_undelivered_and_suppresses_nothing(bounce_type: str) -> None:
    bounce = {
        "bounceType": bounce_type,
        "bounceSubType": "MailboxFull",
        "bouncedRecipients": [{"emailAddress": "jane@example.com"}],
    }
    receipt = one(event("Bounce", bounce=bounce))
    assert receipt.state is DeliveryState.UNDELIVERED
    assert suppression_for(receipt) is None
    assert receipt.occurred_at == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)  # mail.timestamp


def test_a_complaint_is_complained_and_suppresses() -> None:
    complaint = {
        "complainedRecipients": [{"emailAddress": "jane@example.com"}],
        "timestamp": "2026-01-02T08:00:00Z",
        "complaintFeedbackType": "abuse",
    }
    receipt = one(event("Complaint", complaint=complaint))
    assert receipt.state is DeliveryState.COMPLAINED
    assert receipt.error_code == "abuse"
    assert suppression_for(receipt) is SuppressionReason.COMPLAINT


def test_a_reject_is_undelivered() -> None:
    receipt = one(event("Reject", reject={"reason": "Bad content"}))
    assert receipt.state is DeliveryState.UNDELIVERED
    assert receipt.error_code == "Bad content"
    assert suppression_for(receipt) is None


def test_a_delivery_delay_is_still_sent() -> None:
    receipt = one(
        event(
            "DeliveryDelay",
            deliveryDelay={"delayType": "MailboxFull", "timestamp": "2026-01-01T11:00:00Z"},
        )
    )
    assert receipt.state is DeliveryState.SENT
    assert receipt.error_code == "MailboxFull"


@pytest.mark.parametrize("kind", sorted(ses.IGNORED))
def test_events_that_say_nothing_about_delivery_are_no_receipt(kind: str) -> None:
    assert ses.parse_event("acme", event(kind), NOW) == []


def test_only_a_notification_carries_an_event() -> None:
    delivered = event("Delivery", delivery={"recipients": []})
    note = SnsMessage(NOTIFICATION, "id", "arn", delivered, NOW)
    assert [r.state for r in ses.parse_notification("acme", note, NOW)] == [DeliveryState.DELIVERED]
    confirmation = SnsMessage(SUBSCRIPTION_CONFIRMATION, "id", "arn", "You have chosen", NOW)
    assert ses.parse_notification("acme", confirmation, NOW) == []


GARBAGE = [
    "",
    "You have chosen to subscribe",
    "[]",
    json.dumps({"mail": MAIL}),
    json.dumps({"eventType": "Teleport", "mail": MAIL}),
    json.dumps({"eventType": "Delivery"}),
    json.dumps({"eventType": "Delivery", "mail": {"messageId": 5}, "delivery": {}}),
    json.dumps({"eventType": "Delivery", "mail": MAIL}),
    json.dumps({"eventType": "Delivery", "mail": MAIL, "delivery": {"recipients": "a@b.c"}}),
    json.dumps({"eventType": "Bounce", "mail": MAIL, "bounce": {"bouncedRecipients": []}}),
    json.dumps({"eventType": "Bounce", "mail": MAIL, "bounce": {"bounceType": 1}}),
    json.dumps(
        {
            "eventType": "Bounce",
            "mail": MAIL,
            "bounce": {"bounceType": "Permanent", "bouncedRecipients": [1]},
        }
    ),
    json.dumps({"eventType": "Complaint", "mail": MAIL, "complaint": []}),
    json.dumps({"eventType": "Reject", "mail": {**MAIL, "timestamp": "yesterday"}, "reject": {}}),
    json.dumps(
        {"eventType": "Reject", "mail": {**MAIL, "timestamp": "2026-01-01T10:00:00"}, "reject": {}}
    ),
]


@pytest.mark.parametrize("text", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_malformed_and_nothing_else(text: str) -> None:
    with pytest.raises(MalformedReceipt):
        ses.parse_event("acme", text, NOW)
