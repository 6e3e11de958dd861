"""Row <-> domain conversions shared by the SQL backends."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.models import (
    STORED,
    Attempt,
    Notification,
    NotificationRequest,
    Outcome,
    from_epoch,
)
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.routing import Channel, Route
from integration_hub.domain.status import Status
from integration_hub.domain.tenants import ApiKeyRecord, Tenant, TenantStatus
from integration_hub.ports import DeadLetter, OutboxEntry


def to_dt(value: float | None) -> datetime | None:
    """Epoch seconds to an aware UTC datetime."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


to_dt_required = from_epoch


def to_epoch(value: datetime) -> float:
    """Aware datetime to epoch seconds."""
    return value.timestamp()


def tenant_config(tenant: Tenant) -> str:
    """The JSON column that holds a tenant's routing and budget."""
    return json.dumps(
        {
            "routes": {
                country: {"channel": str(r.channel), "provider": r.provider}
                for country, r in tenant.routes.items()
            },
            "channel_providers": {str(c): p for c, p in tenant.channel_providers.items()},
            "enabled_countries": (
                None if tenant.enabled_countries is None else sorted(tenant.enabled_countries)
            ),
            "max_attempts": tenant.max_attempts,
            "backoff_base_seconds": tenant.backoff_base_seconds,
            "backoff_cap_seconds": tenant.backoff_cap_seconds,
            "rate_limit_per_second": tenant.rate_limit_per_second,
            "daily_quota": tenant.daily_quota,
        }
    )


def tenant_from_row(row: Mapping[str, Any]) -> Tenant:
    """A tenants row to a Tenant."""
    config = json.loads(row["config"] or "{}")
    routes = {
        country: Route(Channel(r["channel"]), r.get("provider", "sandbox"))
        for country, r in config.get("routes", {}).items()
    }
    return Tenant(
        id=row["id"],
        name=row["name"],
        status=TenantStatus(row["status"]),
        created_at=to_dt_required(row["created_at"]),
        routes=routes,
        channel_providers={Channel(c): p for c, p in config.get("channel_providers", {}).items()},
        enabled_countries=(
            None
            if config.get("enabled_countries") is None
            else frozenset(config["enabled_countries"])
        ),
        max_attempts=config.get("max_attempts"),
        backoff_base_seconds=config.get("backoff_base_seconds"),
        backoff_cap_seconds=config.get("backoff_cap_seconds"),
        rate_limit_per_second=config.get("rate_limit_per_second"),
        daily_quota=config.get("daily_quota"),
    )


def api_key_from_row(row: Mapping[str, Any]) -> ApiKeyRecord:
    """An api_keys row to an ApiKeyRecord."""
    return ApiKeyRecord(
        key_id=row["key_id"],
        tenant=row["tenant"],
        hash=row["hash"],
        created_at=to_dt_required(row["created_at"]),
        revoked_at=to_dt(row["revoked_at"]),
    )


def notification_from_row(
    row: Mapping[str, Any], attempts: list[Attempt] | None = None
) -> Notification:
    """A notifications row (and its attempts) to a Notification."""
    return Notification(
        id=row["id"],
        tenant=row["tenant"],
        country=row["country"],
        channel=Channel(row["channel"]),
        provider=row["provider"],
        request=NotificationRequest.model_validate_json(row["request"], context=STORED),
        idempotency_key=row["idempotency_key"],
        created_at=to_dt_required(row["created_at"]),
        updated_at=to_dt_required(row["updated_at"]),
        status=Status(row["status"]),
        attempts_used=row["attempts_used"],
        attempt_count=row["attempt_count"],
        last_error=row["last_error"],
        finished_at=to_dt(row["finished_at"]),
        claimed_by=row["claim_token"],
        attempts=attempts or [],
        traceparent=_optional(row, "traceparent"),
        tracestate=_optional(row, "tracestate"),
        delivery_state=_delivery_state(_optional(row, "delivery_state")),
        delivery_updated_at=to_dt(_optional(row, "delivery_updated_at")),
        provider_message_id=_optional(row, "provider_message_id"),
    )


def _delivery_state(value: str | None) -> DeliveryState | None:
    return None if value is None else DeliveryState(value)


def _optional(row: Mapping[str, Any], column: str) -> Any:
    # Queries that name their columns may leave the trace context out.
    return row[column] if column in row.keys() else None  # noqa: SIM118 - sqlite3.Row has no __contains__ of names


def attempt_from_row(row: Mapping[str, Any]) -> Attempt:
    """An attempts row to an Attempt; an attempt with no outcome never finished."""
    return Attempt(
        number=row["number"],
        provider=row["provider"],
        started_at=to_dt_required(row["started_at"]),
        outcome=Outcome(row["outcome"]) if row["outcome"] else Outcome.ABANDONED,
        latency_ms=row["latency_ms"] or 0.0,
        error_class=row["error_class"],
        error_code=row["error_code"],
        message=row["message"],
        provider_message_id=row["provider_message_id"],
        provider_response=_optional(row, "provider_response"),
    )


OUTBOX_COLUMNS = (
    "notification_id",
    "tenant",
    "channel",
    "recipient",
    "subject",
    "body",
    "attempt",
    "provider_message_id",
    "delivered_at",
)


def outbox_values(
    message: OutboundMessage, provider_message_id: str, now: float
) -> tuple[Any, ...]:
    """The columns of one sandbox delivery, in ``OUTBOX_COLUMNS`` order."""
    recipient = message.recipient.email if message.channel is Channel.EMAIL else None
    return (
        message.notification_id,
        message.tenant,
        str(message.channel),
        recipient or message.recipient.phone or "",
        message.subject,
        message.body,
        message.attempt,
        provider_message_id,
        now,
    )


def outbox_entry_from_row(row: Mapping[str, Any]) -> OutboxEntry:
    """An outbox row to an OutboxEntry."""
    return OutboxEntry(
        seq=row["seq"],
        notification_id=row["notification_id"],
        tenant=row["tenant"],
        channel=Channel(row["channel"]),
        recipient=row["recipient"],
        subject=row["subject"],
        body=row["body"],
        attempt=row["attempt"],
        provider_message_id=row["provider_message_id"],
        delivered_at=to_dt_required(row["delivered_at"]),
    )


def dead_letter_from_row(row: Mapping[str, Any]) -> DeadLetter:
    """A dead_letters row to a DeadLetter."""
    return DeadLetter(
        notification_id=row["notification_id"],
        tenant=row["tenant"],
        reason=row["reason"],
        dead_lettered_at=to_dt_required(row["dead_lettered_at"]),
    )
