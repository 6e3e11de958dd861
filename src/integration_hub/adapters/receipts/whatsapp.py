"""WhatsApp Cloud API webhooks: the verification handshake, the signature, the statuses.

Meta checks an endpoint once with a GET carrying ``hub.mode=subscribe``,
``hub.verify_token`` (the token the tenant chose when configuring the
webhook) and ``hub.challenge``, which the endpoint echoes. Every POST then
carries ``X-Hub-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the raw
body keyed with the app secret: it is checked over the bytes as received,
before they are parsed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from integration_hub.adapters.receipts.common import (
    BadSignature,
    MalformedReceipt,
    check_size,
    epoch_time,
    equal,
    field,
    items,
    load_object,
    section,
)
from integration_hub.domain.receipts import (
    DeliveryState,
    InvalidAddress,
    Receipt,
    normalise_phone,
)
from integration_hub.domain.routing import Channel

PROVIDER: Final = "whatsapp"
SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
_PREFIX: Final = "sha256="

STATUSES: Mapping[str, DeliveryState] = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "failed": DeliveryState.UNDELIVERED,
}


def verify_subscription(query: Mapping[str, str], verify_token: str) -> str:
    """The ``hub.challenge`` to echo, if the GET is Meta's handshake with our token."""
    if not verify_token:
        raise BadSignature("no webhook verify token configured")
    if query.get("hub.mode") != "subscribe":
        raise BadSignature("hub.mode is not subscribe")
    if not equal(verify_token, query.get("hub.verify_token") or ""):
        raise BadSignature("hub.verify_token does not match")
    challenge = query.get("hub.challenge")
    if not challenge or len(challenge) > 512 or not challenge.isprintable():
        raise MalformedReceipt("hub.challenge is missing or not printable")
    return challenge


def signature(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``body``."""
    digest = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify(app_secret: str, body: bytes, header: str | None) -> None:
    """Raise BadSignature unless ``header`` is Meta's signature of the raw ``body``."""
    check_size(body)
    if not app_secret or not header:
        raise BadSignature("missing X-Hub-Signature-256 or app secret")
    given = header.strip()
    if not given.lower().startswith(_PREFIX):
        raise BadSignature("X-Hub-Signature-256 is not sha256=<hex>")
    # Hex digits in either case are the same signature.
    if not equal(signature(app_secret, body), _PREFIX + given[len(_PREFIX) :].lower()):
        raise BadSignature("X-Hub-Signature-256 does not match")


def _error_code(status: Mapping[str, object]) -> str | None:
    for error in items(status, "errors"):
        code = error.get("code")
        if isinstance(code, bool) or not isinstance(code, int | str):
            raise MalformedReceipt("errors[].code is not a number")
        text = str(code).strip()
        if not text.isdigit():
            raise MalformedReceipt("errors[].code is not a number")
        return text
    return None


def _receipt(tenant: str, status: Mapping[str, object], received_at: datetime) -> Receipt:
    raw = field(status, "status").lower()
    state = STATUSES.get(raw)
    if state is None:
        raise MalformedReceipt("statuses[].status is not one Meta documents")
    recipient_id = status.get("recipient_id")
    recipient: str | None = None
    if isinstance(recipient_id, str):
        try:
            recipient = normalise_phone(recipient_id, international_digits=True)
        except InvalidAddress:
            recipient = None  # a group or a BSUID: no number to suppress
    return Receipt(
        tenant=tenant,
        provider=PROVIDER,
        provider_message_id=field(status, "id"),
        state=state,
        raw_status=raw,
        error_code=_error_code(status),
        occurred_at=epoch_time(status.get("timestamp"), "statuses[].timestamp"),
        received_at=received_at,
        channel=Channel.WHATSAPP,
        recipient=recipient,
    )


def parse(tenant: str, body: bytes, received_at: datetime) -> list[Receipt]:
    """Every status in a webhook POST, in payload order (messages and other fields skipped).

    Anything that is not the documented shape raises MalformedReceipt; a
    payload with no statuses (an inbound message, a template update) is an
    empty list.
    """
    payload = load_object(body)
    if payload.get("object") != "whatsapp_business_account":
        raise MalformedReceipt("object is not whatsapp_business_account")
    receipts: list[Receipt] = []
    for entry in items(payload, "entry"):
        for change in items(entry, "changes"):
            if change.get("field") != "messages":
                continue
            value = section(change, "value")
            receipts.extend(
                _receipt(tenant, status, received_at) for status in items(value, "statuses")
            )
    return receipts
