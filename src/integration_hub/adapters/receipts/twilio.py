"""Twilio status callbacks and inbound SMS keywords: signature check and parsing.

Twilio signs a callback with ``X-Twilio-Signature``: base64 of HMAC-SHA1,
keyed with the account's auth token, over the full URL Twilio called
followed by every POST parameter, sorted by name, as name and value
concatenated with no separator. The URL is the hub's configured public URL
for the tenant's endpoint, never one rebuilt from the Host header, so a
proxy in front of the hub changes nothing and a forged Host proves nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Final

from integration_hub.adapters.receipts.common import BadSignature, MalformedReceipt, equal
from integration_hub.domain.receipts import (
    OPT_IN_KEYWORDS,
    OPT_OUT_KEYWORDS,
    DeliveryState,
    InvalidAddress,
    Receipt,
    normalise_phone,
)
from integration_hub.domain.routing import Channel

PROVIDER: Final = "twilio"
SIGNATURE_HEADER: Final = "X-Twilio-Signature"

# MessageStatus -> delivery state. queued/accepted/scheduled/sending/sent all
# mean Twilio has it and it has not failed; failed means it never left
# Twilio, undelivered that a carrier gave up: both are undelivered to us.
STATUSES: Mapping[str, DeliveryState] = {
    "accepted": DeliveryState.SENT,
    "scheduled": DeliveryState.SENT,
    "queued": DeliveryState.SENT,
    "sending": DeliveryState.SENT,
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,  # WhatsApp through Twilio only
    "undelivered": DeliveryState.UNDELIVERED,
    "failed": DeliveryState.UNDELIVERED,
    "canceled": DeliveryState.UNDELIVERED,
}

# Statuses of inbound messages: a status callback never carries them, an
# inbound webhook does; they are not receipts.
INBOUND_STATUSES: Final = frozenset({"receiving", "received"})


def _pairs(params: Mapping[str, str | Sequence[str]]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if isinstance(value, str):
            pairs.append((name, value))
        else:
            pairs.extend((name, one) for one in value)
    return pairs


def signature(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a POST of ``params`` to ``url``.

    A parameter given more than once (a list) contributes each distinct value,
    sorted, as Twilio's own validators do.
    """
    data = url + "".join(name + value for name, value in sorted(set(_pairs(params))))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(
    auth_token: str,
    url: str,
    params: Mapping[str, str | Sequence[str]],
    header: str | None,
) -> None:
    """Raise BadSignature unless ``header`` is Twilio's signature of this request."""
    if not auth_token or not header:
        raise BadSignature("missing X-Twilio-Signature or auth token")
    if not equal(signature(auth_token, url, params), header.strip()):
        raise BadSignature("X-Twilio-Signature does not match")


def _channel_and_address(value: str | None) -> tuple[Channel, str | None]:
    if value is None or not value.strip():
        return Channel.SMS, None
    channel = Channel.WHATSAPP if value.strip().lower().startswith("whatsapp:") else Channel.SMS
    try:
        return channel, normalise_phone(value)
    except InvalidAddress:
        return channel, None  # a short code or alphanumeric sender: not a phone


def parse_status(tenant: str, params: Mapping[str, str], received_at: datetime) -> list[Receipt]:
    """The receipt in a status callback (none for an inbound message's status).

    Raises MalformedReceipt for a callback without a message id or with a
    status Twilio does not document.
    """
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if not sid or not status:
        raise MalformedReceipt("MessageSid or MessageStatus is missing")
    if status in INBOUND_STATUSES:
        return []
    state = STATUSES.get(status)
    if state is None:
        raise MalformedReceipt("MessageStatus is not one Twilio documents")
    code = (params.get("ErrorCode") or "").strip() or None
    if code is not None and not code.isdigit():
        raise MalformedReceipt("ErrorCode is not a number")
    channel, recipient = _channel_and_address(params.get("To"))
    return [
        Receipt(
            tenant=tenant,
            provider=PROVIDER,
            provider_message_id=sid,
            state=state,
            raw_status=status,
            error_code=code,
            occurred_at=None,
            received_at=received_at,
            channel=channel,
            recipient=recipient,
        )
    ]


class OptAction(StrEnum):
    """What an inbound message asks of the tenant's suppression list."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


def _keyword(text: str) -> str:
    # Carriers match the whole message, trimmed, in any case; accents are
    # dropped so that "ARRÊT" and "arrêt" are ARRET.
    decomposed = unicodedata.normalize("NFKD", text.strip())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.strip().rstrip(".!").upper()


def inbound_keyword(
    body: str,
    opt_out: Iterable[str] = OPT_OUT_KEYWORDS,
    opt_in: Iterable[str] = OPT_IN_KEYWORDS,
) -> OptAction | None:
    """Whether an inbound SMS body is an opt-out or opt-in keyword (and which)."""
    word = _keyword(body)
    if not word:
        return None
    if word in {_keyword(k) for k in opt_out}:
        return OptAction.OPT_OUT
    if word in {_keyword(k) for k in opt_in}:
        return OptAction.OPT_IN
    return None


def inbound_sender(params: Mapping[str, str]) -> str:
    """The E.164 sender of an inbound message (the address to suppress or lift)."""
    sender = params.get("From")
    if not sender:
        raise MalformedReceipt("From is missing")
    try:
        return normalise_phone(sender)
    except InvalidAddress as exc:
        raise MalformedReceipt("From is not a phone number") from exc
