"""Status webhooks to tenants: events, endpoints, signatures, and the delivery rules.

Pure: no store, no clock, no I/O. Every backend writes the ``WebhookEvent``
of a committed status change in that change's own transaction (a transactional
outbox), fans it out to the tenant's endpoints that accept it
(``Endpoint.accepts``), and the delivery loop (service/webhooks) sends each
delivery signed as the Standard Webhooks specification says (``sign``),
asking ``decide_delivery`` what an attempt's response means.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from integration_hub.domain import errors
from integration_hub.domain.ids import new_id
from integration_hub.domain.models import Notification
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.status import Status


class EventType(StrEnum):
    """What a webhook reports."""

    ACCEPTED = "notification.accepted"
    RETRYING = "notification.retrying"
    DONE = "notification.done"
    FAILED = "notification.failed"
    DEAD_LETTERED = "notification.dead_lettered"
    REDRIVEN = "notification.redriven"
    DELIVERED = "notification.delivered"
    READ = "notification.read"
    UNDELIVERED = "notification.undelivered"
    BOUNCED = "notification.bounced"
    COMPLAINED = "notification.complained"
    EXPIRED = "notification.expired"
    TEST = "webhook.test"
    ENDPOINT_DISABLED = "endpoint.disabled"


NOTIFICATION_EVENTS: frozenset[EventType] = frozenset(
    t for t in EventType if t.value.startswith("notification.")
)
"""The events of a notification's life: exactly one per reported status change."""

SUBSCRIBABLE: frozenset[EventType] = frozenset(EventType) - {EventType.TEST}
"""What an endpoint may subscribe to: ``webhook.test`` is sent to one endpoint on request,
whatever it subscribes to."""


def parse_event_types(
    values: Iterable[str] | None, *, field: str = "event_types"
) -> frozenset[EventType] | None:
    """The event types an endpoint receives (None: every one); a HubError naming ``field``
    for an unknown type or an empty list (send null for every type)."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    chosen: set[EventType] = set()
    for value in values:
        try:
            type_ = EventType(value)
        except ValueError:
            type_ = None
        if type_ is None or type_ not in SUBSCRIBABLE:
            known = ", ".join(sorted(SUBSCRIBABLE))
            raise errors.HubError(f"unknown event type {value!r}; known: {known}", field=field)
        chosen.add(type_)
    if not chosen:
        raise errors.HubError(
            "an empty list would receive nothing; send null for every event type", field=field
        )
    return frozenset(chosen)


def parse_since(text: str, *, field: str = "since") -> float:
    """A replay's start: an RFC 3339 time (with its offset) or Unix seconds; a HubError
    naming ``field`` otherwise."""
    raw = text.strip()
    try:
        value = float(raw) if raw and raw.replace(".", "", 1).isdigit() else None
        if value is None:
            stamp = datetime.fromisoformat(raw)
            if stamp.tzinfo is None:
                raise ValueError("no offset")
            value = stamp.timestamp()
    except (ValueError, OverflowError, OSError):
        raise errors.HubError(
            f"{text!r} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor Unix seconds",
            field=field,
        ) from None
    if not math.isfinite(value):
        raise errors.HubError(f"{text!r} is not a time", field=field)
    return value


# -- which change is which event ------------------------------------------------------------


def completion_event(status: Status) -> EventType:
    """The event of recording an attempt's outcome that moves PROCESSING -> ``status``.

    PROCESSING (a retry is scheduled) is ``retrying``; DONE ``done``; FAILED
    ``failed`` (a provider's permanent refusal, or the retry budget spent on
    recorded outcomes).
    """
    if status is Status.PROCESSING:
        return EventType.RETRYING
    if status is Status.DONE:
        return EventType.DONE
    if status is Status.FAILED:
        return EventType.FAILED
    raise ValueError(f"an attempt's outcome cannot move a notification to {status}")


DEAD_LETTER_EVENT = EventType.DEAD_LETTERED
"""FAILED without a recorded outcome: a poison message (``Store.dead_letter``) or a
claim finding the budget spent by attempts that died mid-call (``lifecycle.Fail``)."""

ACCEPT_EVENT = EventType.ACCEPTED
"""A notification stored RECEIVED (``accept``, ``accept_new``)."""

REDRIVE_EVENT = EventType.REDRIVEN
"""FAILED -> RECEIVED by a redrive."""

_DELIVERY_EVENTS: Mapping[DeliveryState, EventType] = {
    DeliveryState.DELIVERED: EventType.DELIVERED,
    DeliveryState.READ: EventType.READ,
    DeliveryState.UNDELIVERED: EventType.UNDELIVERED,
    DeliveryState.BOUNCED: EventType.BOUNCED,
    DeliveryState.COMPLAINED: EventType.COMPLAINED,
    DeliveryState.EXPIRED: EventType.EXPIRED,
}


def delivery_event(before: DeliveryState | None, after: DeliveryState) -> EventType | None:
    """The event of a delivery state change, or None when nothing changed.

    ``sent`` has none of its own: ``notification.done`` carries it. A receipt
    that does not move the state (a duplicate, or one the merge order ranks
    lower) changes nothing and reports nothing.
    """
    if before is after:
        return None
    return _DELIVERY_EVENTS.get(after)


# -- events -------------------------------------------------------------------------------


def new_event_id() -> str:
    """A ``webhook-id``: unique per event, the same on every retry and every endpoint."""
    return "msg_" + new_id().replace("-", "")


def new_endpoint_id() -> str:
    """A webhook endpoint's public id."""
    return "ep_" + new_id().replace("-", "")


def new_delivery_id() -> str:
    """One event's delivery to one endpoint."""
    return "dlv_" + new_id().replace("-", "")


DATA_FIELDS = (
    "id",
    "tenant",
    "country",
    "channel",
    "provider",
    "status",
    "delivery_state",
    "attempt_count",
    "last_error",
)


def _plain(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "is_integer") and hasattr(value, "as_integer_ratio"):  # Decimal
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


def notification_data(row: Mapping[str, Any]) -> dict[str, Any]:
    """A notification's webhook ``data`` from its row or item as of the change.

    ``row`` holds the notification's columns after the change (a SQL row or a
    DynamoDB item as plain values; absent means null).
    """
    data: dict[str, Any] = {}
    for name in DATA_FIELDS:
        try:
            data[name] = _plain(row[name])
        except (KeyError, IndexError):
            data[name] = None
    if data["attempt_count"] is None:
        data["attempt_count"] = 0
    return data


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One thing to tell a tenant: written once, delivered to each endpoint accepting it."""

    id: str
    type: EventType
    tenant: str
    occurred_at: float
    """Unix seconds (the store's clock) of the change."""
    data: Mapping[str, Any]
    notification_id: str | None = None
    endpoint_id: str | None = None
    """Set: for that endpoint only (``webhook.test``, a replay); None: every endpoint."""

    def body(self) -> bytes:
        """The request body every endpoint receives, byte for byte the same on retries."""
        return encode_body(self.type, self.occurred_at, self.data)


def encode_body(type_: EventType, occurred_at: float, data: Mapping[str, Any]) -> bytes:
    """``{type, timestamp, data}``: compact JSON, keys sorted, timestamp ISO 8601 UTC."""
    stamp = datetime.fromtimestamp(occurred_at, UTC).isoformat(timespec="milliseconds")
    document = {"type": str(type_), "timestamp": stamp.replace("+00:00", "Z"), "data": data}
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def event(
    type_: EventType,
    *,
    tenant: str,
    occurred_at: float,
    data: Mapping[str, Any],
    notification_id: str | None = None,
    endpoint_id: str | None = None,
) -> WebhookEvent:
    """A new event with a fresh id."""
    return WebhookEvent(
        id=new_event_id(),
        type=type_,
        tenant=tenant,
        occurred_at=occurred_at,
        data=dict(data),
        notification_id=notification_id,
        endpoint_id=endpoint_id,
    )


def notification_event(type_: EventType, row: Mapping[str, Any], now: float) -> WebhookEvent:
    """The event of a change to the notification ``row`` (as it is after the change)."""
    data = notification_data(row)
    return event(
        type_, tenant=str(data["tenant"]), occurred_at=now, data=data, notification_id=data["id"]
    )


def accepted_event(notification: Notification, now: float) -> WebhookEvent:
    """``notification.accepted`` of a notification being stored RECEIVED."""
    fields = {name: getattr(notification, name, None) for name in DATA_FIELDS}
    return notification_event(ACCEPT_EVENT, fields, now)


# -- endpoints ------------------------------------------------------------------------------

MAX_ENDPOINTS_PER_TENANT = 50
"""An event fans out in one transaction per event (DynamoDB: at most 100 items)."""


class DisabledReason(StrEnum):
    """Why an endpoint is not receiving."""

    BY_TENANT = "by_tenant"
    GONE = "gone"
    """It answered 410 Gone."""
    FAILING = "failing"
    """It failed every attempt for the configured time, or N attempts in a row."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A tenant's webhook receiver.

    ``secrets`` is sealed (envelope encryption with the tenant's data key):
    the store keeps it as an opaque mapping; only the webhook service opens it
    into ``SigningSecrets``.
    """

    id: str
    tenant: str
    url: str
    created_at: float
    updated_at: float
    secrets: Mapping[str, str]
    description: str = ""
    event_types: frozenset[EventType] | None = None
    """None: every event type."""
    enabled: bool = True
    disabled_reason: DisabledReason | None = None
    disabled_at: float | None = None
    failing_since: float | None = None
    """When the current run of failed attempts began (None: the last one succeeded)."""
    consecutive_failures: int = 0
    revision: int = 0
    """The store's count of changes to what the owner sets and to the enabled flag, as
    read: an update is written only if no one changed those since (ports/webhooks.py)."""

    def accepts(self, event: WebhookEvent) -> bool:
        """Whether ``event`` is delivered here: ours, enabled, addressed and subscribed."""
        if event.tenant != self.tenant or not self.enabled:
            return False
        if event.endpoint_id is not None:
            return event.endpoint_id == self.id
        if event.type is EventType.ENDPOINT_DISABLED and event.data.get("endpoint_id") == self.id:
            return False  # the news of its own disabling is for the others
        return self.event_types is None or event.type in self.event_types

    def with_enabled(self, enabled: bool, now: float) -> Endpoint:
        """The tenant turning it on or off. Re-enabling is a fresh start: no disabled
        reason, its failure run forgotten (so it is not disabled again at its next
        failure); disabling is ``by_tenant``. The same flag again changes nothing."""
        if enabled == self.enabled:
            return self
        if enabled:
            return replace(
                self,
                enabled=True,
                disabled_reason=None,
                disabled_at=None,
                failing_since=None,
                consecutive_failures=0,
                updated_at=now,
            )
        return replace(
            self,
            enabled=False,
            disabled_reason=DisabledReason.BY_TENANT,
            disabled_at=now,
            updated_at=now,
        )


def may_add_endpoint(existing: int, limit: int = MAX_ENDPOINTS_PER_TENANT) -> bool:
    """Whether a tenant with ``existing`` endpoints may create one more (DynamoDB spells
    it in the condition on its per-tenant count: ``endpoints < limit``)."""
    return existing < limit


def update_refused(stored: Endpoint, changed: Endpoint) -> bool:
    """Whether an owner's update read before another change must not be written: the
    stored revision moved since ``changed`` was read (another update, or the delivery
    loop disabling it). The caller reads again and re-applies."""
    return stored.revision != changed.revision


def update_writes_counters(stored: Endpoint, changed: Endpoint) -> bool:
    """Whether an owner's update writes the failure counters too: only when it flips the
    enabled flag (enabling starts afresh, ``with_enabled``); otherwise they are the
    delivery loop's, which counts them without moving the revision."""
    return stored.enabled != changed.enabled


def fan_out(event: WebhookEvent, endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """The endpoints ``event`` is delivered to."""
    return [e for e in endpoints if e.accepts(event)]


# -- secrets and signatures ----------------------------------------------------------------

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32
"""Random bytes of a new secret (the specification asks for 24 at least)."""
DEFAULT_ROTATION_OVERLAP_SECONDS = 24 * 3600.0


def sealing_purpose(endpoint_id: str) -> str:
    """What an endpoint's secrets are sealed for (``SealedData``): bound to that endpoint."""
    return f"webhook:{endpoint_id}"


def new_secret() -> str:
    """``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ and base64") from None


@dataclass(frozen=True, slots=True)
class SigningSecrets:
    """An endpoint's secrets as opened: the current one, and during a rotation the old one."""

    current: str
    previous: str | None = None
    previous_until: float | None = None
    """The old secret signs until then (Unix seconds)."""

    def signing(self, now: float) -> list[str]:
        """The secrets that sign at ``now``: the new one first, then the old while it overlaps."""
        keys = [self.current]
        if self.previous is not None and (self.previous_until or 0.0) > now:
            keys.append(self.previous)
        return keys

    def rotated(self, new: str, now: float, overlap_seconds: float) -> SigningSecrets:
        """After a rotation at ``now``: ``new`` signs, the current one for the overlap too."""
        if overlap_seconds <= 0:
            return SigningSecrets(current=new)
        return SigningSecrets(
            current=new, previous=self.current, previous_until=now + overlap_seconds
        )

    def as_dict(self) -> dict[str, Any]:
        """For sealing."""
        return {
            "current": self.current,
            "previous": self.previous,
            "previous_until": self.previous_until,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> SigningSecrets:
        """From ``as_dict`` after opening."""
        until = value.get("previous_until")
        return cls(
            current=str(value["current"]),
            previous=value.get("previous"),
            previous_until=None if until is None else float(until),
        )


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` and base64 of HMAC-SHA256 over ``{id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; several secrets sign space-separated."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
    }


# -- delivery ------------------------------------------------------------------------------

SCHEDULE: tuple[float, ...] = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""The Standard Webhooks retry schedule: the wait before attempt 1, 2, ... 8
(immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; about 27 h in all)."""
MAX_ATTEMPTS = len(SCHEDULE)
RETRY_AFTER_LIMIT_SECONDS = 3600.0
"""A ``Retry-After`` above this is read as this (a day-long one must not park an event)."""


class DeliveryStatus(StrEnum):
    """Where one event's delivery to one endpoint is."""

    PENDING = "pending"
    """Waiting for its next attempt (``next_attempt_at``), or being attempted."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Gave up: the schedule is spent, the endpoint answered 410, or it was disabled."""

    @property
    def finished(self) -> bool:
        """Whether no attempt follows (the next delivery of its notification may go)."""
        return self is not DeliveryStatus.PENDING


class AttemptOutcome(StrEnum):
    """What one HTTP attempt came to."""

    SUCCESS = "success"
    """A 2xx."""
    HTTP_ERROR = "http_error"
    """Any other status code (a redirect is one: redirects are not followed)."""
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    BLOCKED = "blocked"
    """The outbound rule refused the address: nothing was sent."""
    GONE = "gone"
    """410 Gone: the endpoint is disabled at once."""


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt as the sender saw it."""

    outcome: AttemptOutcome
    status_code: int | None = None
    latency_ms: float = 0.0
    error: str | None = None
    """Short and free of secrets; for a failure, what went wrong."""
    retry_after_seconds: float | None = None
    """From ``Retry-After`` on a 429 or 503."""
    response_excerpt: str | None = None
    """The start of the response body (at most 1 KiB kept), for the tenant's debugging."""


def outcome_of(status_code: int) -> AttemptOutcome:
    """A response's outcome: 2xx success, 410 gone, anything else an HTTP error."""
    if 200 <= status_code < 300:
        return AttemptOutcome.SUCCESS
    if status_code == 410:
        return AttemptOutcome.GONE
    return AttemptOutcome.HTTP_ERROR


@dataclass(frozen=True, slots=True)
class Attempted:
    """One recorded attempt of a delivery."""

    number: int
    at: float
    result: AttemptResult


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event's delivery to one endpoint, and its attempts so far."""

    id: str
    endpoint_id: str
    tenant: str
    event: WebhookEvent
    status: DeliveryStatus
    created_at: float
    next_attempt_at: float | None
    """When the next attempt is due (None once finished)."""
    attempt_count: int = 0
    attempts: tuple[Attempted, ...] = ()
    claim_token: str | None = None
    claim_expires_at: float | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    finished_at: float | None = None


def backoff(attempt: int, *, rng: random.Random | None = None) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): full jitter on the schedule.

    Uniform in [0, the schedule's next step]: many deliveries failing at once
    (an endpoint down) spread their retries instead of arriving together.
    """
    step = SCHEDULE[min(attempt, MAX_ATTEMPTS - 1)]
    return (rng or random).uniform(0.0, step)


@dataclass(frozen=True, slots=True)
class DisablePolicy:
    """When a failing endpoint is disabled (Svix: five days of failures)."""

    failing_seconds: float = 5 * 24 * 3600.0
    consecutive_failures: int = 1000

    def __post_init__(self) -> None:
        if not (0 < self.failing_seconds < math.inf) or self.consecutive_failures < 1:
            raise ValueError("need a positive failing time and at least one failure")


@dataclass(frozen=True, slots=True)
class DeliveryDecision:
    """What recording an attempt does to the delivery and to its endpoint."""

    status: DeliveryStatus
    next_attempt_at: float | None
    failing_since: float | None
    """The endpoint's new ``failing_since`` (None: it is healthy)."""
    consecutive_failures: int
    disable: DisabledReason | None = None
    """Disable the endpoint for this reason (and tell the tenant's other endpoints)."""


def decide_delivery(
    *,
    attempt: int,
    result: AttemptResult,
    now: float,
    failing_since: float | None,
    consecutive_failures: int,
    policy: DisablePolicy,
    rng: random.Random | None = None,
) -> DeliveryDecision:
    """After attempt number ``attempt`` (1-based) of a delivery ended as ``result``.

    2xx: succeeded, and the endpoint is healthy again. 410: failed, and the
    endpoint is disabled at once. Any other failure (HTTP error, timeout,
    connection error, a refused address) is retried after ``backoff``, or a
    ``Retry-After`` if the endpoint sent a longer one, until the schedule's
    attempts are spent; the endpoint is disabled once it has failed
    continuously for ``policy.failing_seconds`` or
    ``policy.consecutive_failures`` attempts in a row.
    """
    if result.outcome is AttemptOutcome.SUCCESS:
        return DeliveryDecision(DeliveryStatus.SUCCEEDED, None, None, 0)
    since = failing_since if failing_since is not None else now
    failures = consecutive_failures + 1
    if result.outcome is AttemptOutcome.GONE:
        return DeliveryDecision(DeliveryStatus.FAILED, None, since, failures, DisabledReason.GONE)
    disable = None
    if now - since >= policy.failing_seconds or failures >= policy.consecutive_failures:
        disable = DisabledReason.FAILING
    if attempt >= MAX_ATTEMPTS or disable is not None:
        return DeliveryDecision(DeliveryStatus.FAILED, None, since, failures, disable)
    wait = backoff(attempt, rng=rng)
    if result.retry_after_seconds is not None:
        wait = max(wait, min(result.retry_after_seconds, RETRY_AFTER_LIMIT_SECONDS))
    return DeliveryDecision(DeliveryStatus.PENDING, now + wait, since, failures)


def disabled_event(endpoint: Endpoint, reason: DisabledReason, now: float) -> WebhookEvent:
    """``endpoint.disabled``: told to the tenant's other endpoints."""
    return event(
        EventType.ENDPOINT_DISABLED,
        tenant=endpoint.tenant,
        occurred_at=now,
        data={"endpoint_id": endpoint.id, "url": endpoint.url, "reason": str(reason)},
    )


def ping_event(endpoint: Endpoint, now: float) -> WebhookEvent:
    """``webhook.test``: for this endpoint only."""
    return event(
        EventType.TEST,
        tenant=endpoint.tenant,
        occurred_at=now,
        data={"endpoint_id": endpoint.id, "message": "a test event from Integration Hub"},
        endpoint_id=endpoint.id,
    )


def may_deliver(head: Sequence[DeliveryStatus]) -> bool:
    """Whether a delivery may go, given the statuses of the earlier deliveries of the
    same notification to the same endpoint: only once all of them are finished
    (so a ``done`` never arrives before its ``accepted``)."""
    return all(s.finished for s in head)


@dataclass(slots=True)
class InFlight:
    """The delivery loop's in-flight counts, per endpoint and per tenant (isolation)."""

    per_endpoint: int = 4
    per_tenant: int = 16
    endpoints: dict[str, int] = field(default_factory=dict)
    tenants: dict[str, int] = field(default_factory=dict)

    def full_endpoints(self) -> set[str]:
        """Endpoints at their cap: not to be claimed for now."""
        return {e for e, n in self.endpoints.items() if n >= self.per_endpoint}

    def full_tenants(self) -> set[str]:
        """Tenants at their cap."""
        return {t for t, n in self.tenants.items() if n >= self.per_tenant}

    def admit(self, endpoint: str, tenant: str) -> bool:
        """Take a slot for one delivery, if both caps allow."""
        if self.endpoints.get(endpoint, 0) >= self.per_endpoint:
            return False
        if self.tenants.get(tenant, 0) >= self.per_tenant:
            return False
        self.endpoints[endpoint] = self.endpoints.get(endpoint, 0) + 1
        self.tenants[tenant] = self.tenants.get(tenant, 0) + 1
        return True

    def release(self, endpoint: str, tenant: str) -> None:
        """Give a slot back."""
        for counts, key in ((self.endpoints, endpoint), (self.tenants, tenant)):
            left = counts.get(key, 0) - 1
            if left > 0:
                counts[key] = left
            else:
                counts.pop(key, None)
