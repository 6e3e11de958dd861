"""Response bodies of the API (requests are the domain's NotificationRequest)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from integration_hub.domain.models import Attempt, Notification, Outcome, Recipient
from integration_hub.domain.receipts import DeliveryState, SuppressionReason
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status
from integration_hub.domain.webhooks import (
    Attempted,
    AttemptOutcome,
    Delivery,
    DeliveryStatus,
    DisabledReason,
    Endpoint,
    EventType,
)
from integration_hub.ports import DeliveryEvent, PoisonMessage, Suppression


class AcceptedBody(BaseModel):
    """202: the notification is stored and queued."""

    id: str
    status: Status
    tenant: str
    country: str = Field(description="ISO 3166-1 alpha-2 (UK is stored as GB)")
    channel: Channel
    created_at: datetime


class AttemptView(BaseModel):
    """One provider call, as its tenant sees it.

    ``message`` is the classified outcome and the provider's documented error
    text, bounded and sanitised; never the provider's raw answer (that is in
    the operators' view only).
    """

    number: int
    provider: str
    started_at: datetime
    outcome: Outcome
    error_class: str | None
    error_code: str | None
    message: str | None
    latency_ms: float
    provider_message_id: str | None

    @classmethod
    def of(cls, a: Attempt) -> AttemptView:
        """From the domain attempt."""
        return cls(
            number=a.number,
            provider=a.provider,
            started_at=a.started_at,
            outcome=a.outcome,
            error_class=a.error_class,
            error_code=a.error_code,
            message=a.message,
            latency_ms=a.latency_ms,
            provider_message_id=a.provider_message_id,
        )


class RecipientView(BaseModel):
    """The recipient as stored (it may predate today's input rules: no patterns here)."""

    email: str | None = None
    phone: str | None = None

    @classmethod
    def of(cls, r: Recipient) -> RecipientView:
        """From the domain recipient."""
        return cls(email=r.email, phone=r.phone)


class DeliveryEventView(BaseModel):
    """One receipt recorded for a notification, as the provider reported it."""

    provider: str
    state: DeliveryState
    raw_status: str = Field(description="the provider's own status word")
    error_code: str | None
    occurred_at: datetime | None = Field(description="the provider's time, where it gives one")
    received_at: datetime

    @classmethod
    def of(cls, e: DeliveryEvent) -> DeliveryEventView:
        """From the port's event."""
        return cls(
            provider=e.provider,
            state=e.state,
            raw_status=e.raw_status,
            error_code=e.error_code,
            occurred_at=e.occurred_at,
            received_at=e.received_at,
        )


class DeliveryView(BaseModel):
    """What happened after the provider accepted the message (receipts merged)."""

    state: DeliveryState
    updated_at: datetime | None
    events: list[DeliveryEventView] = Field(description="oldest received first (at most 100)")

    @classmethod
    def of(cls, n: Notification, events: list[DeliveryEvent]) -> DeliveryView | None:
        """None while the notification never reached a provider that reports on it."""
        if n.delivery_state is None:
            return None
        return cls(
            state=n.delivery_state,
            updated_at=n.delivery_updated_at,
            events=[DeliveryEventView.of(e) for e in events],
        )


class NotificationSummary(BaseModel):
    """A notification in a listing."""

    id: str
    tenant: str
    country: str
    channel: Channel
    provider: str
    status: Status
    attempt_count: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    last_error: str | None
    delivery_state: DeliveryState | None = Field(
        description="sent, delivered, read, undelivered, bounced, complained or expired;"
        " null until a provider accepted it"
    )

    @classmethod
    def of(cls, n: Notification) -> NotificationSummary:
        """From the domain notification."""
        return cls(
            id=n.id,
            tenant=n.tenant,
            country=n.country,
            channel=n.channel,
            provider=n.provider,
            status=n.status,
            attempt_count=n.attempt_count,
            created_at=n.created_at,
            updated_at=n.updated_at,
            finished_at=n.finished_at,
            last_error=n.last_error,
            delivery_state=n.delivery_state,
        )


class NotificationView(NotificationSummary):
    """A notification with its request and every attempt."""

    recipient: RecipientView
    subject: str | None
    metadata: dict[str, Any] | None
    attempts: list[AttemptView]
    delivery: DeliveryView | None = Field(
        description="the delivery state and its receipts; null when no provider accepted it"
    )

    @classmethod
    def full(cls, n: Notification, events: list[DeliveryEvent] | None = None) -> NotificationView:
        """From the domain notification, attempts and recorded receipts included."""
        return cls(
            **NotificationSummary.of(n).model_dump(),
            recipient=RecipientView.of(n.request.recipient),
            subject=n.request.subject,
            metadata=n.request.metadata,
            attempts=[AttemptView.of(a) for a in n.attempts],
            delivery=DeliveryView.of(n, events or []),
        )


class OperatorAttemptView(AttemptView):
    """One provider call as operators see it: with the provider's raw answer."""

    provider_response: str | None = Field(
        description="start of the provider's raw answer, secrets redacted (operators only)"
    )

    @classmethod
    def of(cls, a: Attempt) -> OperatorAttemptView:
        """From the domain attempt, the raw answer included."""
        return cls(**AttemptView.of(a).model_dump(), provider_response=a.provider_response)


class OperatorNotificationView(NotificationView):
    """A notification as operators see it (admin API, ``ihub status``)."""

    attempts: list[OperatorAttemptView]  # type: ignore[assignment]  # a wider view of each

    @classmethod
    def full(
        cls, n: Notification, events: list[DeliveryEvent] | None = None
    ) -> OperatorNotificationView:
        """From the domain notification, with every attempt's raw provider answer."""
        tenant_view = NotificationView.full(n, events).model_dump(exclude={"attempts"})
        return cls(**tenant_view, attempts=[OperatorAttemptView.of(a) for a in n.attempts])


class NotificationPage(BaseModel):
    """A page of notifications, newest first."""

    items: list[NotificationSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at end")


class PoisonView(BaseModel):
    """A message the queue service gave up on (SQS's DLQ), as operators see it."""

    id: str = Field(description="the notification id (the message body)")
    tenant: str
    message_id: str
    receive_count: int = Field(description="receives so far, this listing's included")
    sent_at: datetime
    age_seconds: float

    @classmethod
    def of(cls, m: PoisonMessage, now: float) -> PoisonView:
        """The view of a poison message, its age measured at ``now`` (epoch seconds)."""
        return cls(
            id=m.notification_id,
            tenant=m.tenant,
            message_id=m.message_id,
            receive_count=m.receive_count,
            sent_at=m.sent_at,
            age_seconds=max(0.0, round(now - m.sent_at.timestamp(), 3)),
        )


class SuppressionView(BaseModel):
    """A recipient the tenant does not send to on a channel, and why."""

    channel: Channel
    address: str = Field(description="normalised: email lower-cased, phone E.164")
    reason: SuppressionReason
    created_at: datetime
    source: str | None = Field(
        description="the notification whose receipt added it, `inbound` for a STOP keyword"
    )
    note: str | None

    @classmethod
    def of(cls, s: Suppression) -> SuppressionView:
        """From the port's suppression."""
        return cls(
            channel=s.channel,
            address=s.address,
            reason=s.reason,
            created_at=s.created_at,
            source=s.source,
            note=s.note,
        )


class SuppressionPage(BaseModel):
    """A page of suppressions, ordered by channel and address."""

    items: list[SuppressionView]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at end")


# -- webhooks ---------------------------------------------------------------------------------


def _time(at: float | None) -> datetime | None:
    return None if at is None else datetime.fromtimestamp(at, UTC)


class WebhookEndpointView(BaseModel):
    """A webhook endpoint as its tenant sees it: never its secret, sealed or not."""

    id: str
    url: str
    description: str
    event_types: list[EventType] | None = Field(description="null: every event type")
    enabled: bool
    disabled_reason: DisabledReason | None = Field(
        description="by_tenant, gone (it answered 410) or failing (it failed for too long)"
    )
    disabled_at: datetime | None
    failing_since: datetime | None = Field(
        description="when its current run of failed attempts began; null: the last one succeeded"
    )
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, e: Endpoint) -> WebhookEndpointView:
        """From the domain endpoint."""
        return cls(
            id=e.id,
            url=e.url,
            description=e.description,
            event_types=None if e.event_types is None else sorted(e.event_types),
            enabled=e.enabled,
            disabled_reason=e.disabled_reason,
            disabled_at=_time(e.disabled_at),
            failing_since=_time(e.failing_since),
            consecutive_failures=e.consecutive_failures,
            created_at=datetime.fromtimestamp(e.created_at, UTC),
            updated_at=datetime.fromtimestamp(e.updated_at, UTC),
        )


class WebhookCreated(WebhookEndpointView):
    """A new endpoint and its signing secret: the secret is shown this once."""

    secret: str = Field(description="`whsec_` and base64: verify signatures with it; shown once")


class WebhookSecretRotated(BaseModel):
    """The endpoint's new signing secret, shown this once."""

    id: str
    secret: str = Field(description="`whsec_` and base64: signs from now on; shown once")
    previous_secret_valid_until: datetime | None = Field(
        description="the old secret signs too (a second signature) until then"
    )


class WebhookEndpointList(BaseModel):
    """The tenant's endpoints, oldest first."""

    items: list[WebhookEndpointView]


class WebhookAttemptView(BaseModel):
    """One HTTP attempt of a delivery."""

    number: int
    at: datetime
    outcome: AttemptOutcome
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None = Field(description="the start of the endpoint's answer")

    @classmethod
    def of(cls, a: Attempted) -> WebhookAttemptView:
        """From the domain's recorded attempt."""
        return cls(
            number=a.number,
            at=datetime.fromtimestamp(a.at, UTC),
            outcome=a.result.outcome,
            status_code=a.result.status_code,
            latency_ms=a.result.latency_ms,
            error=a.result.error,
            response_excerpt=a.result.response_excerpt,
        )


class WebhookDeliveryView(BaseModel):
    """One event's delivery to the endpoint, with its attempts."""

    id: str
    endpoint_id: str
    event_id: str = Field(description="the `webhook-id` header: the same on every retry")
    event_type: EventType
    notification_id: str | None
    status: DeliveryStatus
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="the next retry; null once finished")
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    finished_at: datetime | None
    attempts: list[WebhookAttemptView]

    @classmethod
    def of(cls, d: Delivery) -> WebhookDeliveryView:
        """From the domain delivery."""
        return cls(
            id=d.id,
            endpoint_id=d.endpoint_id,
            event_id=d.event.id,
            event_type=d.event.type,
            notification_id=d.event.notification_id,
            status=d.status,
            created_at=datetime.fromtimestamp(d.created_at, UTC),
            next_attempt_at=_time(d.next_attempt_at),
            attempt_count=d.attempt_count,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            finished_at=_time(d.finished_at),
            attempts=[WebhookAttemptView.of(a) for a in d.attempts],
        )


class WebhookDeliveryPage(BaseModel):
    """A page of deliveries, newest first."""

    items: list[WebhookDeliveryView]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at end")


class WebhookTestSent(BaseModel):
    """The test event, on its way to the endpoint."""

    event_id: str
    type: EventType


class WebhookReplayed(BaseModel):
    """Past events on their way to the endpoint again (same `webhook-id`s)."""

    replayed: int


# -- what the hub sends to endpoints (the OpenAPI document's webhooks section) ----------------


class NotificationEventData(BaseModel):
    """A notification as of the change the event reports."""

    id: str
    tenant: str
    country: str = Field(description="ISO 3166-1 alpha-2")
    channel: Channel
    provider: str | None
    status: Status
    delivery_state: DeliveryState | None
    attempt_count: int
    last_error: str | None


class NotificationEvent(BaseModel):
    """A change in a notification's life."""

    type: EventType
    timestamp: datetime = Field(description="when the change happened (UTC, milliseconds)")
    data: NotificationEventData


class PingEventData(BaseModel):
    """What a test event says."""

    endpoint_id: str
    message: str


class PingEvent(BaseModel):
    """`webhook.test`: sent on request, to one endpoint."""

    type: EventType
    timestamp: datetime
    data: PingEventData


class EndpointDisabledData(BaseModel):
    """Which endpoint was disabled, and why."""

    endpoint_id: str
    url: str
    reason: DisabledReason


class EndpointDisabledEvent(BaseModel):
    """`endpoint.disabled`: told to the tenant's other endpoints."""

    type: EventType
    timestamp: datetime
    data: EndpointDisabledData
