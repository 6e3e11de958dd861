"""Amazon SES events (through a verified SNS notification) as receipts.

SES writes ``eventType`` in events published through a configuration set
and ``notificationType`` in identity notifications; both carry the same
sections. The provider message id is ``mail.messageId``, the id SES returned
on send. A bounce or complaint names its recipients; each one becomes its
own receipt, since each is a recipient to suppress.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from integration_hub.adapters.receipts.common import (
    MalformedReceipt,
    field,
    iso_time,
    items,
    load_object,
    optional_field,
    section,
)
from integration_hub.adapters.receipts.sns import NOTIFICATION, SnsMessage
from integration_hub.domain.receipts import (
    DeliveryState,
    InvalidAddress,
    Receipt,
    normalise_email,
)
from integration_hub.domain.routing import Channel

PROVIDER: Final = "ses"

# Events that say nothing about delivery (Send is our own "accepted", Open
# and Click need tracking we do not turn on): parsed, recorded as nothing.
IGNORED: Final = frozenset({"Send", "Open", "Click", "Rendering Failure", "Subscription"})


def _recipients(block: Mapping[str, object], key: str) -> list[str | None]:
    found: list[str | None] = []
    for recipient in items(block, key):
        address = optional_field(recipient, "emailAddress")
        found.append(_address(address))
    return found or [None]


def _address(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalise_email(value)
    except InvalidAddress:
        return None


def _plain(values: object) -> list[str | None]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise MalformedReceipt("delivery.recipients is not a list of addresses")
    return [_address(v) for v in values] or [None]


def _outcome(
    kind: str, event: Mapping[str, object]
) -> tuple[DeliveryState, str, str | None, Mapping[str, object], list[str | None]]:
    """(state, raw status, error code, the event's section, recipients)."""
    if kind == "Delivery":
        block = section(event, "delivery")
        return DeliveryState.DELIVERED, "Delivery", None, block, _plain(block.get("recipients"))
    if kind == "Bounce":
        block = section(event, "bounce")
        bounce_type = field(block, "bounceType")
        sub_type = optional_field(block, "bounceSubType")
        state = DeliveryState.BOUNCED if bounce_type == "Permanent" else DeliveryState.UNDELIVERED
        return (
            state,
            f"Bounce/{bounce_type}",
            sub_type,
            block,
            _recipients(block, "bouncedRecipients"),
        )
    if kind == "Complaint":
        block = section(event, "complaint")
        feedback = optional_field(block, "complaintFeedbackType")
        recipients = _recipients(block, "complainedRecipients")
        return DeliveryState.COMPLAINED, "Complaint", feedback, block, recipients
    if kind == "Reject":
        block = section(event, "reject")
        return DeliveryState.UNDELIVERED, "Reject", optional_field(block, "reason"), block, [None]
    if kind == "DeliveryDelay":
        block = section(event, "deliveryDelay")
        delay = optional_field(block, "delayType")
        return DeliveryState.SENT, "DeliveryDelay", delay, block, [None]
    raise MalformedReceipt("eventType is not one SES documents")


def parse_event(tenant: str, event_json: bytes | str, received_at: datetime) -> list[Receipt]:
    """The receipts in one SES event (the ``Message`` of an SNS notification)."""
    body = event_json.encode("utf-8") if isinstance(event_json, str) else event_json
    event = load_object(body)
    kind = optional_field(event, "eventType") or optional_field(event, "notificationType")
    if kind is None:
        raise MalformedReceipt("neither eventType nor notificationType")
    if kind in IGNORED:
        return []
    mail = section(event, "mail")
    message_id = field(mail, "messageId")
    state, raw, code, block, recipients = _outcome(kind, event)
    stamp = optional_field(block, "timestamp") or optional_field(mail, "timestamp")
    occurred_at = iso_time(stamp, f"{kind} timestamp") if stamp is not None else None
    return [
        Receipt(
            tenant=tenant,
            provider=PROVIDER,
            provider_message_id=message_id,
            state=state,
            raw_status=raw,
            error_code=code,
            occurred_at=occurred_at,
            received_at=received_at,
            channel=Channel.EMAIL,
            recipient=recipient,
        )
        for recipient in recipients
    ]


def parse_notification(tenant: str, message: SnsMessage, received_at: datetime) -> list[Receipt]:
    """The receipts in a verified SNS notification carrying an SES event."""
    if message.type != NOTIFICATION:
        return []
    return parse_event(tenant, message.message, received_at)
