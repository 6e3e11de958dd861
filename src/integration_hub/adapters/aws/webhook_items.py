"""Webhook items on the DynamoDB table: keys, the event/endpoint/delivery codecs, and the
``Put`` of a notification's event that every state-changing transaction carries.

Item layout (ADR 0021; the other kinds are in ADR 0011):

- a notification's event: ``N#<notification id>`` / ``WHEV#<order>#<event id>``,
  in the notification's partition so retention deletes it with the notification
  and ``list_events(notification_id=...)`` is one strongly consistent Query in
  the order the changes happened. ``<order>`` is the notification's ``version``
  and ``event_count`` after the change: every event-writing change moves one of
  the two forward, so it orders the events causally whatever the clocks say.
- any other event (``webhook.test``, ``endpoint.disabled``): ``WHEV#<id>`` / ``WHEV``.
  Every event is in GSI1 ``T#<tenant>#WHEV`` by time, and, until fanned out, in the
  sparse GSI5 ``WHFAN#<shard>``.
- an endpoint: ``WHEP#<id>`` / ``EP``; GSI1 ``T#<tenant>#WHEP`` by creation,
  GSI2 ``WHEP#DISABLED`` while disabled (sparse, for the stats).
- a delivery: ``WHD#<id>`` / ``D`` holding a copy of its event (the body is
  rebuilt byte for byte from it); its attempts ``WHD#<id>`` / ``A#<number>``. GSI1
  ``WHEP#<endpoint>#D`` by creation, then event time (newest first listings), GSI3
  ``WHORD#<endpoint>#<notification>`` by the event's order (``may_deliver``), and
  while PENDING the sparse GSI5 ``WHDUE#<shard>`` by when it is next due (a claim
  moves that to the lease's end, so a lapsed lease is due again by itself).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from integration_hub.adapters.aws.tables import epoch_key, item, seq_key
from integration_hub.domain import webhooks
from integration_hub.domain.webhooks import (
    Attempted,
    AttemptOutcome,
    AttemptResult,
    Delivery,
    DeliveryStatus,
    DisabledReason,
    Endpoint,
    EventType,
    WebhookEvent,
)

WEBHOOK_INDEX = "GSI5"
"""The sparse index of unfanned events (``WHFAN#``) and pending deliveries (``WHDUE#``)."""
FAN_SHARDS = 8
DUE_SHARDS = 8
EVENT_PREFIX = "WHEV#"
ATTEMPT_PREFIX = "A#"
DISABLED_PARTITION = "WHEP#DISABLED"
# A single-item write refused because a transaction is changing the item right now.
TRANSACTION_CONFLICT = "TransactionConflictException"


def _shard(some_id: str, shards: int) -> int:
    # Ids end in a hex digit (UUIDv7 text, or a prefix and its hex).
    return int(some_id[-1], 16) % shards


def fan_partition(shard: int) -> str:
    """A GSI5 partition of unfanned events."""
    return f"WHFAN#{shard}"


def due_partition(shard: int) -> str:
    """A GSI5 partition of pending deliveries."""
    return f"WHDUE#{shard}"


def due_partition_of(delivery_id: str) -> str:
    """The GSI5 partition of a delivery while it is pending."""
    return due_partition(_shard(delivery_id, DUE_SHARDS))


def due_sort_key(due_at: float, delivery_id: str) -> str:
    """A pending delivery's GSI5 sort key: when it can next be claimed."""
    return f"{epoch_key(due_at)}#{delivery_id}"


def order_key(version: int, event_count: int) -> str:
    """The position of a notification's event among its others (see the module)."""
    return f"{seq_key(version)}.{seq_key(event_count)}"


def endpoint_key(endpoint_id: str) -> dict[str, str]:
    """The key of an endpoint."""
    return {"PK": f"WHEP#{endpoint_id}", "SK": "EP"}


def delivery_key(delivery_id: str) -> dict[str, str]:
    """The key of a delivery."""
    return {"PK": f"WHD#{delivery_id}", "SK": "D"}


def attempt_key(delivery_id: str, number: int) -> dict[str, str]:
    """The key of a delivery's attempt ``number`` (numbers go on across a retry)."""
    return {"PK": f"WHD#{delivery_id}", "SK": f"{ATTEMPT_PREFIX}{seq_key(number)}"}


def endpoint_deliveries(endpoint_id: str) -> str:
    """The GSI1 partition of an endpoint's deliveries."""
    return f"WHEP#{endpoint_id}#D"


def ordering_partition(endpoint_id: str, notification_id: str) -> str:
    """The GSI3 partition of one notification's deliveries to one endpoint."""
    return f"WHORD#{endpoint_id}#{notification_id}"


def tenant_events(tenant: str) -> str:
    """The GSI1 partition of a tenant's events."""
    return f"T#{tenant}#WHEV"


def endpoint_count_key(tenant: str) -> dict[str, str]:
    """The key of the item counting a tenant's endpoints (``endpoints``), which every
    creation and deletion updates in its transaction: the cap holds under concurrency."""
    return {"PK": f"WHCOUNT#{tenant}", "SK": "COUNT"}


def tenant_endpoints(tenant: str) -> str:
    """The GSI1 partition of a tenant's endpoints."""
    return f"T#{tenant}#WHEP"


# -- events -------------------------------------------------------------------------


def event_item(event: WebhookEvent, order: str | None = None) -> dict[str, Any]:
    """An event as an item, unfanned (``order`` for a notification's event)."""
    if event.notification_id is not None:
        if order is None:
            raise ValueError("a notification's event needs its order")
        key = {"PK": f"N#{event.notification_id}", "SK": f"{EVENT_PREFIX}{order}#{event.id}"}
        shard = _shard(event.notification_id, FAN_SHARDS)
    else:
        key = {"PK": f"{EVENT_PREFIX}{event.id}", "SK": "WHEV"}
        shard = _shard(event.id, FAN_SHARDS)
    when = f"{epoch_key(event.occurred_at)}#{event.id}"
    return key | {
        "id": event.id,
        "type": str(event.type),
        "tenant": event.tenant,
        "occurred_at": event.occurred_at,
        # JSON, not a map: a map keeps no nulls, and the body must be the same bytes.
        "data": json.dumps(event.data, sort_keys=True, ensure_ascii=False),
        "notification_id": event.notification_id,
        "endpoint_id": event.endpoint_id,
        "order": order,
        "GSI1PK": tenant_events(event.tenant),
        "GSI1SK": when,
        "GSI5PK": fan_partition(shard),
        "GSI5SK": when,
    }


def event_from_item(found: Mapping[str, Any], prefix: str = "") -> WebhookEvent:
    """An event item (or a delivery's copy, its attributes under ``prefix``)."""
    return WebhookEvent(
        id=str(found[f"{prefix}id"]),
        type=EventType(found[f"{prefix}type"]),
        tenant=str(found[f"{prefix}tenant"]),
        occurred_at=float(found[f"{prefix}occurred_at"]),
        data=json.loads(found[f"{prefix}data"]),
        notification_id=found.get(f"{prefix}notification_id"),
        endpoint_id=found.get(f"{prefix}endpoint_id"),
    )


def event_put(table: str, event: WebhookEvent, order: str | None = None) -> dict[str, Any]:
    """The transaction item that writes ``event`` to the outbox."""
    return {
        "Put": {
            "TableName": table,
            "Item": item(event_item(event, order)),
            "ConditionExpression": "attribute_not_exists(PK)",
        }
    }


def notification_event_put(
    table: str, type_: EventType, after: Mapping[str, Any], now: float
) -> dict[str, Any]:
    """The ``Put`` of the event of a change to a notification, ``after`` being its item
    as the change leaves it (``version`` and ``event_count`` included)."""
    event = webhooks.notification_event(type_, after, now)
    order = order_key(int(after.get("version") or 0), int(after.get("event_count") or 0))
    return event_put(table, event, order)


# -- endpoints ----------------------------------------------------------------------


def endpoint_item(endpoint: Endpoint, version: int) -> dict[str, Any]:
    """An endpoint as an item."""
    types = None if endpoint.event_types is None else sorted(str(t) for t in endpoint.event_types)
    values = endpoint_key(endpoint.id) | {
        "id": endpoint.id,
        "tenant": endpoint.tenant,
        "url": endpoint.url,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
        "secrets": dict(endpoint.secrets),
        "description": endpoint.description,
        "event_types": types,
        "enabled": endpoint.enabled,
        "disabled_reason": None
        if endpoint.disabled_reason is None
        else str(endpoint.disabled_reason),
        "disabled_at": endpoint.disabled_at,
        "failing_since": endpoint.failing_since,
        "consecutive_failures": endpoint.consecutive_failures,
        "version": version,
        "revision": endpoint.revision,
        "GSI1PK": tenant_endpoints(endpoint.tenant),
        "GSI1SK": f"{epoch_key(endpoint.created_at)}#{endpoint.id}",
    }
    if not endpoint.enabled:
        values |= {"GSI2PK": DISABLED_PARTITION, "GSI2SK": endpoint.id}
    return values


def endpoint_from_item(found: Mapping[str, Any]) -> Endpoint:
    """An endpoint item as the domain's ``Endpoint``."""
    types = found.get("event_types")
    reason = found.get("disabled_reason")
    return Endpoint(
        id=str(found["id"]),
        tenant=str(found["tenant"]),
        url=str(found["url"]),
        created_at=float(found["created_at"]),
        updated_at=float(found["updated_at"]),
        secrets={str(k): str(v) for k, v in (found.get("secrets") or {}).items()},
        description=str(found.get("description") or ""),
        event_types=None if types is None else frozenset(EventType(t) for t in types),
        enabled=bool(found.get("enabled", True)),
        disabled_reason=None if reason is None else DisabledReason(reason),
        disabled_at=_float(found.get("disabled_at")),
        failing_since=_float(found.get("failing_since")),
        consecutive_failures=int(found.get("consecutive_failures") or 0),
        revision=int(found.get("revision") or 0),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# -- deliveries ---------------------------------------------------------------------


def delivery_item(
    delivery_id: str,
    endpoint_id: str,
    event: WebhookEvent,
    order: str | None,
    now: float,
) -> dict[str, Any]:
    """A new pending delivery of ``event`` to an endpoint, due at ``now``."""
    copy = event_item(event, order)
    values = delivery_key(delivery_id) | {
        "id": delivery_id,
        "endpoint_id": endpoint_id,
        "tenant": event.tenant,
        "status": str(DeliveryStatus.PENDING),
        "created_at": now,
        "next_attempt_at": now,
        "attempt_count": 0,
        # A retry starts the schedule over from the next attempt (its number goes on).
        "schedule_offset": 0,
        "order": order,
        **{f"event_{k}": copy[k] for k in _EVENT_FIELDS},
        "GSI1PK": endpoint_deliveries(endpoint_id),
        # Created in one instant (one fan-out), the later event is the newer delivery.
        "GSI1SK": f"{epoch_key(now)}#{epoch_key(event.occurred_at)}#{delivery_id}",
        "GSI5PK": due_partition_of(delivery_id),
        "GSI5SK": due_sort_key(now, delivery_id),
    }
    if event.notification_id is not None:
        values["GSI3PK"] = ordering_partition(endpoint_id, event.notification_id)
        values["GSI3SK"] = f"{order}#{delivery_id}"
    return values


_EVENT_FIELDS = ("id", "type", "tenant", "occurred_at", "data", "notification_id", "endpoint_id")


def attempt_item(delivery_id: str, attempted: Attempted) -> dict[str, Any]:
    """One recorded attempt."""
    r = attempted.result
    return attempt_key(delivery_id, attempted.number) | {
        "number": attempted.number,
        "at": attempted.at,
        "outcome": str(r.outcome),
        "status_code": r.status_code,
        "latency_ms": r.latency_ms,
        "error": r.error,
        "retry_after_seconds": r.retry_after_seconds,
        "response_excerpt": r.response_excerpt,
    }


def attempt_from_item(found: Mapping[str, Any]) -> Attempted:
    """An attempt item."""
    code = found.get("status_code")
    return Attempted(
        number=int(found["number"]),
        at=float(found["at"]),
        result=AttemptResult(
            outcome=AttemptOutcome(found["outcome"]),
            status_code=None if code is None else int(code),
            latency_ms=float(found.get("latency_ms") or 0.0),
            error=found.get("error"),
            retry_after_seconds=_float(found.get("retry_after_seconds")),
            response_excerpt=found.get("response_excerpt"),
        ),
    )


def delivery_from_item(found: Mapping[str, Any], attempts: tuple[Attempted, ...] = ()) -> Delivery:
    """A delivery item (and its attempts, oldest first) as the domain's ``Delivery``."""
    code = found.get("last_status_code")
    return Delivery(
        id=str(found["id"]),
        endpoint_id=str(found["endpoint_id"]),
        tenant=str(found["tenant"]),
        event=event_from_item(found, "event_"),
        status=DeliveryStatus(found["status"]),
        created_at=float(found["created_at"]),
        next_attempt_at=_float(found.get("next_attempt_at")),
        attempt_count=int(found.get("attempt_count") or 0),
        attempts=attempts,
        claim_token=found.get("claim_token"),
        claim_expires_at=_float(found.get("claim_expires_at")),
        last_status_code=None if code is None else int(code),
        last_error=found.get("last_error"),
        finished_at=_float(found.get("finished_at")),
    )
