"""Notifications, their requests and their attempts."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from integration_hub.domain.errors import InvalidRecipient
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status

# Every C0 control, DEL and every C1 control: none belongs in an address, a
# one-line header value (subject), or a key.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Free text (body, metadata string values) may break lines and indent: tab, LF
# and CR are allowed there; NUL and every other control is not. NUL in
# particular cannot be stored by PostgreSQL, and ESC/CSI sequences repaint the
# terminal of whoever reads the message or the logs.
TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# The same rules as JSON Schema patterns, for the OpenAPI document (the
# validators below enforce them, with messages that name the character).
ONE_LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
# A body is text as above with at least one character that is not white space.
BODY_PATTERN = (
    r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*"
    r"[^\s\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
    r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
)
_ADDRESS_CHAR = r"[^@\s\x00-\x1f\x7f-\x9f]"
# Deliberately loose: one @, a dot in the domain, no spaces, no controls.
# Deliverability is the provider's call; this only catches what is obviously
# not an address. Surrounding spaces and line ends (a pasted value) are
# stripped; nothing else. The same patterns are published in the OpenAPI document.
_AROUND = "[ \\t\\n\\r]*"
EMAIL_PATTERN = (
    rf"^{_AROUND}{_ADDRESS_CHAR}{{1,64}}@{_ADDRESS_CHAR}+\.{_ADDRESS_CHAR}{{2,}}{_AROUND}$"
)
E164_PATTERN = rf"^{_AROUND}\+[1-9][0-9]{{1,14}}{_AROUND}$"
_STRIPPED = " \t\n\r"
EMAIL = re.compile(EMAIL_PATTERN)
E164 = re.compile(E164_PATTERN)
METADATA_MAX_BYTES = 4096
METADATA_MAX_DEPTH = 16
STORED = {"stored": True}
"""Validation context for a request read back from a store: it was accepted
under the rules of its day, so the character rules added since do not make it
unreadable (a notification nobody can list or dispatch)."""


def _documented(pattern: str, **constraints: int) -> WithJsonSchema:
    """The JSON Schema of a string field: its rule as a pattern (enforced by a validator)."""
    return WithJsonSchema({"type": "string", "pattern": pattern, **constraints})


def _stored(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("stored"))


def _control_error(what: str, value: str, pattern: re.Pattern[str], at: str = "") -> None:
    """PydanticCustomError naming the first control character of ``value``, if any.

    ``at`` is the path inside the field (``order.note`` in metadata): the API
    appends it to the field it names.
    """
    found = pattern.search(value)
    if found is None:
        return
    raise PydanticCustomError(
        "control_character",
        "{what} must not contain the control character {char} (at index {index})",
        {"what": what, "char": f"U+{ord(found.group()):04X}", "index": found.start(), "at": at},
    )


class Recipient(BaseModel):
    """Who receives the notification; which field is needed depends on the channel."""

    model_config = ConfigDict(extra="forbid")

    email: (
        Annotated[str, Field(max_length=254), _documented(EMAIL_PATTERN, maxLength=254)] | None
    ) = Field(default=None, examples=["ana@example.com"])
    phone: Annotated[str, _documented(E164_PATTERN)] | None = Field(
        default=None, description="E.164, e.g. +34600111222", examples=["+5215512345678"]
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not _stored(info):
            _control_error("an email address", value.strip(_STRIPPED), CONTROL)
            if not EMAIL.fullmatch(value):
                raise ValueError("not a valid email address")
        return value.strip(_STRIPPED)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not _stored(info):
            _control_error("a phone number", value.strip(_STRIPPED), CONTROL)
            if not E164.fullmatch(value):
                raise ValueError("not an E.164 phone number (+ and 2 to 15 digits)")
        return value.strip(_STRIPPED)


class NotificationRequest(BaseModel):
    """What a client asks to send."""

    model_config = ConfigDict(extra="forbid")

    recipient: Recipient
    subject: (
        Annotated[str, Field(max_length=998), _documented(ONE_LINE_PATTERN, maxLength=998)] | None
    ) = Field(default=None, description="email subject: one line, no control characters")
    body: Annotated[str, Field(min_length=1), _documented(BODY_PATTERN, minLength=1)] = Field(
        description="message text, not blank; tab, LF and CR are the only control characters"
        " allowed"
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"small JSON object (at most {METADATA_MAX_BYTES} bytes, nesting at most"
        f" {METADATA_MAX_DEPTH} levels); keys have no control characters, string values"
        " none but tab, LF and CR",
    )

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A subject becomes a mail header: a line break would be refused at send
        # time as a permanent failure; refuse it here, where the client can fix it.
        if value is not None and not _stored(info):
            _control_error("subject", value, CONTROL)
        return value

    @field_validator("body")
    @classmethod
    def _text(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("body must not be blank")
        if not _stored(info):
            _control_error("body", value, TEXT_CONTROL)
        return value

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if value is None:
            return None
        # Depth first: a deep structure must not reach the serialiser (which
        # would fail) or the store (which could not load it back).
        if _depth(value) > METADATA_MAX_DEPTH:
            raise ValueError(f"metadata must not nest deeper than {METADATA_MAX_DEPTH} levels")
        if not _stored(info):
            _check_metadata_text(value)
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


def _check_metadata_text(value: dict[str, Any]) -> None:
    """No control character in any key, none but tab/LF/CR in any string value.

    Iterative, like ``_depth``; the error names the path (``order.note``,
    ``items.0``) of the first offending value, or the object holding the
    first offending key.
    """
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            _control_error("a metadata value", item, TEXT_CONTROL, path)
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                if isinstance(key, str):
                    # Named by the object that holds it: the key itself is
                    # what must not be echoed.
                    _control_error("a metadata key", key, CONTROL, path)
                children.append((child, f"{path}.{key}" if path else str(key)))
            stack.extend(reversed(children))  # popped in document order
        elif isinstance(item, list):
            children = [(child, f"{path}.{i}" if path else str(i)) for i, child in enumerate(item)]
            stack.extend(reversed(children))


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
    # What happened after a provider accepted it (ADR 0019): None until an
    # attempt is DELIVERED with a provider message id, then ``sent`` and
    # whatever the provider's receipts say; never lowered (receipts.advance).
    delivery_state: DeliveryState | None = None
    delivery_updated_at: datetime | None = None
    provider_message_id: str | None = None
    """The accepted attempt's message id at ``provider``: what receipts name it by."""
