"""Outbound messages for provider tests."""

from __future__ import annotations

import uuid
from typing import Any

from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.models import Recipient
from integration_hub.domain.routing import Channel


def sms(
    phone: str = "+15551234567", body: str = "Your code is 123456", **extra: Any
) -> OutboundMessage:
    """An SMS notification for ``phone``."""
    return outbound(Channel.SMS, Recipient(phone=phone), body=body, country="US", **extra)


def whatsapp(
    phone: str = "+5215512345678", body: str = "Your order shipped", **extra: Any
) -> OutboundMessage:
    """A WhatsApp notification for ``phone``."""
    return outbound(Channel.WHATSAPP, Recipient(phone=phone), body=body, country="MX", **extra)


def mail(
    address: str = "ana@example.org",
    body: str = "Hello Ana",
    subject: str | None = "Your receipt",
    **extra: Any,
) -> OutboundMessage:
    """An email notification for ``address``."""
    return outbound(
        Channel.EMAIL, Recipient(email=address), body=body, subject=subject, country="ES", **extra
    )


def outbound(
    channel: Channel,
    recipient: Recipient,
    *,
    body: str,
    country: str,
    subject: str | None = None,
    metadata: dict[str, Any] | None = None,
    notification_id: str | None = None,
    attempt: int = 1,
    tenant: str = "acme",
) -> OutboundMessage:
    """A delivery attempt as the worker hands it to a provider."""
    return OutboundMessage(
        notification_id=notification_id or f"ntf_{uuid.uuid4().hex}",
        tenant=tenant,
        country=country,
        channel=channel,
        recipient=recipient,
        subject=subject,
        body=body,
        metadata=metadata or {},
        attempt=attempt,
    )
