"""What every receipt adapter shares: its errors, the body limit, safe JSON access.

Errors::

    ReceiptRejected          nothing was recorded; the endpoint answers 4xx
    ├── BadSignature         not signed by the provider with this tenant's secret
    │   └── UntrustedSource  signed, but by a certificate, URL or topic we do not accept
    └── MalformedReceipt     signed or not, it cannot be read as the provider's format
        └── BodyTooLarge     over MAX_BODY_BYTES, refused before parsing

A parser never lets a KeyError, TypeError or ValueError escape: anything that
is not the provider's shape is MalformedReceipt, so an endpoint can map these
few types to answers and never 500 on garbage.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

MAX_BODY_BYTES: Final = 1024 * 1024
"""Above any receipt we expect (an SNS message is at most 256 KiB before JSON
escaping; Twilio callbacks are a few hundred bytes); anything larger is
refused unread, and anything up to it is parsed with the guards below."""


class ReceiptRejected(Exception):
    """The receipt was not accepted."""


class BadSignature(ReceiptRejected):
    """The request is not signed by the provider with the expected secret."""


class UntrustedSource(BadSignature):
    """The signature's certificate, its URL or the topic is not one we trust."""


class MalformedReceipt(ReceiptRejected):
    """The body is not a receipt in the provider's format."""


class BodyTooLarge(MalformedReceipt):
    """The body is larger than any receipt a provider sends."""


def check_size(body: bytes, limit: int = MAX_BODY_BYTES) -> None:
    """Raise BodyTooLarge when ``body`` is over ``limit`` bytes."""
    if len(body) > limit:
        raise BodyTooLarge(f"body of {len(body)} bytes is over the {limit} byte limit")


def equal(expected: str, given: str) -> bool:
    """Constant-time comparison of two secrets or signatures (any characters)."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def load_object(body: bytes) -> dict[str, object]:
    """The JSON object in ``body``, or MalformedReceipt."""
    check_size(body)
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedReceipt("body is not JSON") from exc
    if not isinstance(value, dict):
        raise MalformedReceipt("body is not a JSON object")
    return value


def field(obj: Mapping[str, object], key: str) -> str:
    """A required, non-empty string field."""
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedReceipt(f"{key} is missing or not a string")
    return value


def optional_field(obj: Mapping[str, object], key: str) -> str | None:
    """An optional string field (absent or null is None; any other type is malformed)."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedReceipt(f"{key} is not a string")
    return value


def section(obj: Mapping[str, object], key: str) -> dict[str, object]:
    """A required JSON object field."""
    value = obj.get(key)
    if not isinstance(value, dict):
        raise MalformedReceipt(f"{key} is missing or not an object")
    return value


def items(obj: Mapping[str, object], key: str) -> list[dict[str, object]]:
    """An optional list of objects (absent is empty)."""
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise MalformedReceipt(f"{key} is not a list of objects")
    return value


def iso_time(value: str, what: str) -> datetime:
    """An ISO 8601 time as providers write it (``Z`` for UTC), as an aware datetime."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedReceipt(f"{what} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise MalformedReceipt(f"{what} has no time zone")
    return parsed.astimezone(UTC)


def epoch_time(value: object, what: str) -> datetime:
    """A Unix time in seconds, as a string or an integer, as an aware UTC datetime."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedReceipt(f"{what} is not a Unix time")
    text = str(value)
    if not text.isdigit() or len(text) > 12:
        raise MalformedReceipt(f"{what} is not a Unix time")
    try:
        return datetime.fromtimestamp(int(text), tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:  # past year 9999
        raise MalformedReceipt(f"{what} is out of range") from exc
