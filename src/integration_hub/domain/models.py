"""Notifications, their requests and their attempts."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from integration_hub.domain.errors import InvalidRecipient
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
# Deliberately loose: one @, a dot in the domain, no spaces. Deliverability is
# the provider's call; this only catches what is obviously not an address.
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
# C0 controls, DEL and the C1 range: none belongs in a one-line header value.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
METADATA_MAX_BYTES = 4096
METADATA_MAX_DEPTH = 16


class Recipient(BaseModel):
    """Who receives the notification; which field is needed depends on the channel."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str | None = Field(default=None, max_length=254, examples=["ana@example.com"])
    phone: str | None = Field(
        default=None, description="E.164, e.g. +34600111222", examples=["+5215512345678"]
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL.match(value):
            raise ValueError("not a valid email address")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not E164.match(value):
            raise ValueError("not an E.164 phone number (+ and 2 to 15 digits)")
        return value


class NotificationRequest(BaseModel):
    """What a client asks to send."""

    model_config = ConfigDict(extra="forbid")

    recipient: Recipient
    subject: str | None = Field(default=None, max_length=998, description="email subject")
    body: str = Field(min_length=1, description="message text")
    metadata: dict[str, Any] | None = Field(
        default=None, description=f"small JSON object (at most {METADATA_MAX_BYTES} bytes)"
    )

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        # A subject becomes a mail header: a line break would be refused at send
        # time as a permanent failure; refuse it here, where the client can fix it.
        if value is not None and CONTROL.search(value):
            raise ValueError("subject must be one line without control characters")
        return value

    @field_validator("body")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("body must not be blank")
        return value

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        # Depth first: a deep structure must not reach the serialiser (which
        # would fail) or the store (which could not load it back).
        if _depth(value) > METADATA_MAX_DEPTH:
            raise ValueError(f"metadata must not nest deeper than {METADATA_MAX_DEPTH} levels")
        try:
            encoded = canonical_json(value)
        except ValueError:
            raise ValueError("metadata must be JSON: NaN and Infinity are not") from None
        if len(encoded) > METADATA_MAX_BYTES:
            raise ValueError(f"metadata must be at most {METADATA_MAX_BYTES} bytes as JSON")
        return value


def from_epoch(seconds: float) -> datetime:
    """Epoch seconds (what the Clock port gives) to an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no insignificant whitespace; ValueError for NaN/Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _depth(value: Any) -> int:
    """How deeply lists and objects nest (iteratively: no recursion limit to hit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def fingerprint(country: str, request: NotificationRequest) -> str:
    """Idempotency fingerprint: key order and whitespace of the body do not matter."""
    payload = {"country": country, "body": request.model_dump(mode="json", exclude_none=True)}
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def check_recipient(channel: Channel, recipient: Recipient) -> None:
    """Raise InvalidRecipient unless the recipient has what ``channel`` needs."""
    if channel is Channel.EMAIL and not recipient.email:
        raise InvalidRecipient(
            "this country routes to email: recipient.email is required",
            field="recipient.email",
        )
    if channel in (Channel.SMS, Channel.WHATSAPP) and not recipient.phone:
        raise InvalidRecipient(
            f"this country routes to {channel}: recipient.phone (E.164) is required",
            field="recipient.phone",
        )


class Outcome(StrEnum):
    """How one provider attempt ended."""

    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    CONFIGURATION = "configuration"
    # Started but never finished: the worker died during the call, or the call
    # is still running.
    ABANDONED = "abandoned"


@dataclass(slots=True)
class Attempt:
    """One call to a provider, as recorded."""

    number: int
    provider: str
    started_at: datetime
    outcome: Outcome
    latency_ms: float
    error_class: str | None = None
    error_code: str | None = None
    message: str | None = None
    provider_message_id: str | None = None
    # The provider's raw answer (truncated, redacted): operators only, never
    # in a tenant's view (``message`` is the classified, sanitised text).
    provider_response: str | None = None


@dataclass(slots=True)
class Notification:
    """A notification and where it is in its lifecycle."""

    id: str
    tenant: str
    country: str
    channel: Channel
    provider: str
    request: NotificationRequest
    idempotency_key: str
    created_at: datetime
    updated_at: datetime
    status: Status = Status.RECEIVED
    attempts_used: int = 0  # attempts since the last redrive: the retry budget spent
    attempt_count: int = 0  # all attempts ever
    last_error: str | None = None
    finished_at: datetime | None = None
    claimed_by: str | None = None  # the lease token of the worker holding it
    attempts: list[Attempt] = field(default_factory=list)
    # W3C trace context of the accepting request, so that attempts in other
    # processes join its trace (ADR 0015).
    traceparent: str | None = None
    tracestate: str | None = None
