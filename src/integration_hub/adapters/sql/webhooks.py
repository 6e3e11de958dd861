"""Webhooks on a SQL database (ports/webhooks.py), once for SQLite and PostgreSQL.

The flows find, write and read; what an event is, who receives it, when a
delivery may go and what an attempt decides are ``domain/webhooks.py``'s.
``record_event`` is also what the notification flows (``tenants.py``,
``work.py``, ``receipts.py``) yield inside their own transaction: the outbox
of ADR 0021.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping
from typing import Any

from integration_hub.adapters.sql import webhook_statements as q
from integration_hub.adapters.sql.flow import Flow, Runner, count, row, rows, run
from integration_hub.domain import webhooks
from integration_hub.domain.webhooks import (
    Attempted,
    AttemptOutcome,
    AttemptResult,
    Delivery,
    DeliveryDecision,
    DeliveryStatus,
    DisabledReason,
    DisablePolicy,
    Endpoint,
    EventType,
    WebhookEvent,
)
from integration_hub.ports.webhooks import EndpointChanged, WebhookStats

_DISABLED_ERROR = "the endpoint was disabled"


# -- events, written by every flow that changes a notification -----------------------------


def record_event(event: WebhookEvent) -> Flow[None]:
    """Write ``event`` to the outbox, in the caller's transaction."""
    yield run(
        q.INSERT_EVENT,
        id=event.id,
        tenant=event.tenant,
        type=str(event.type),
        occurred_at=event.occurred_at,
        notification_id=event.notification_id,
        endpoint_id=event.endpoint_id,
        data=json.dumps(dict(event.data), separators=(",", ":"), sort_keys=True),
    )


def record_change(type_: EventType, after: Mapping[str, Any], now: float) -> Flow[None]:
    """Write the event of a change to a notification, ``after`` being its row as changed."""
    yield from record_event(webhooks.notification_event(type_, after, now))


def event_from_row(found: Mapping[str, Any]) -> WebhookEvent:
    """A webhook_events row to a WebhookEvent."""
    return WebhookEvent(
        id=found["id"],
        type=EventType(found["type"]),
        tenant=found["tenant"],
        occurred_at=float(found["occurred_at"]),
        data=json.loads(found["data"]),
        notification_id=found["notification_id"],
        endpoint_id=found["endpoint_id"],
    )


# -- endpoints -----------------------------------------------------------------------------


def _types_text(types: frozenset[EventType] | None) -> str | None:
    return None if types is None else json.dumps(sorted(str(t) for t in types))


def _text(value: DisabledReason | None) -> str | None:
    return None if value is None else str(value)


def endpoint_values(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint's columns."""
    return {
        "id": endpoint.id,
        "tenant": endpoint.tenant,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": _types_text(endpoint.event_types),
        "enabled": endpoint.enabled,
        "disabled_reason": _text(endpoint.disabled_reason),
        "disabled_at": endpoint.disabled_at,
        "failing_since": endpoint.failing_since,
        "consecutive_failures": endpoint.consecutive_failures,
        "secrets": json.dumps(dict(endpoint.secrets), sort_keys=True),
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }


def _update_values(endpoint: Endpoint) -> dict[str, Any]:
    return {**endpoint_values(endpoint), "revision": endpoint.revision}


def endpoint_from_row(found: Mapping[str, Any]) -> Endpoint:
    """A webhook_endpoints row to an Endpoint."""
    types = found["event_types"]
    reason = found["disabled_reason"]
    return Endpoint(
        id=found["id"],
        tenant=found["tenant"],
        url=found["url"],
        created_at=float(found["created_at"]),
        updated_at=float(found["updated_at"]),
        secrets=json.loads(found["secrets"]),
        description=found["description"] or "",
        event_types=None if types is None else frozenset(EventType(t) for t in json.loads(types)),
        enabled=bool(found["enabled"]),
        disabled_reason=None if reason is None else DisabledReason(reason),
        disabled_at=found["disabled_at"],
        failing_since=found["failing_since"],
        consecutive_failures=int(found["consecutive_failures"]),
        revision=int(found["revision"]),
    )


def get_endpoint(tenant: str | None, endpoint_id: str) -> Flow[Endpoint | None]:
    """An endpoint by id, the tenant's only unless ``tenant`` is None (operators)."""
    if tenant is None:
        found = yield row(q.ENDPOINT, id=endpoint_id)
    else:
        found = yield row(q.TENANT_ENDPOINT, id=endpoint_id, tenant=tenant)
    return None if found is None else endpoint_from_row(found)


def create_endpoint(endpoint: Endpoint, limit: int) -> Flow[bool]:
    """Insert ``endpoint`` unless its tenant has ``limit`` already (see the statements)."""
    yield row(q.LOCK_TENANT_ENDPOINTS, lock_key=f"webhook_endpoints:{endpoint.tenant}")
    found = yield row(q.COUNT_TENANT_ENDPOINTS, tenant=endpoint.tenant)
    if not webhooks.may_add_endpoint(int(found["n"]) if found else 0, limit):
        return False
    yield run(q.INSERT_ENDPOINT, **endpoint_values(endpoint))
    return True


def update_endpoint(endpoint: Endpoint) -> Flow[bool | None]:
    """Write ``endpoint`` at its revision: True, False if it does not exist, None if its
    revision moved (the rules are ``webhooks.update_refused`` and
    ``update_writes_counters``; the UPDATE checks the revision again)."""
    found = yield row(q.TENANT_ENDPOINT, id=endpoint.id, tenant=endpoint.tenant)
    if found is None:
        return False
    stored = endpoint_from_row(found)
    if webhooks.update_refused(stored, endpoint):
        return None
    writes_counters = webhooks.update_writes_counters(stored, endpoint)
    statement = q.UPDATE_ENDPOINT_AND_COUNTERS if writes_counters else q.UPDATE_ENDPOINT
    changed: int = yield count(statement, **_update_values(endpoint))
    return True if changed else None


def delete_endpoint(tenant: str, endpoint_id: str) -> Flow[bool]:
    """The endpoint, its deliveries and their attempts; False if the tenant has no such one."""
    found = yield row(q.TENANT_ENDPOINT, id=endpoint_id, tenant=tenant)
    if found is None:
        return False
    yield run(q.DELETE_ENDPOINT_ATTEMPTS, id=endpoint_id)
    yield run(q.DELETE_ENDPOINT_DELIVERIES, id=endpoint_id)
    deleted: int = yield count(q.DELETE_ENDPOINT, id=endpoint_id, tenant=tenant)
    return deleted > 0


# -- fan-out -------------------------------------------------------------------------------


def _add_delivery(event: WebhookEvent, seq: int, endpoint: Endpoint, now: float) -> Flow[None]:
    yield run(
        q.INSERT_DELIVERY,
        id=webhooks.new_delivery_id(),
        endpoint_id=endpoint.id,
        tenant=event.tenant,
        event_id=event.id,
        event_seq=seq,
        notification_id=event.notification_id,
        now=now,
    )


def fan_out(limit: int, now: float) -> Flow[int]:
    """Up to ``limit`` unfanned events to one delivery per accepting endpoint, marked fanned."""
    found = yield rows(q.UNFANNED, limit=limit)
    if not found:
        return 0
    events = [(int(r["seq"]), event_from_row(r)) for r in found]
    tenants = sorted({e.tenant for _, e in events})
    endpoints = [endpoint_from_row(r) for r in (yield rows(q.ENDPOINTS_OF, tenants=tenants))]
    for seq, event in events:
        for endpoint in webhooks.fan_out(event, endpoints):
            yield from _add_delivery(event, seq, endpoint, now)
    yield run(q.MARK_FANNED, seqs=[seq for seq, _ in events])
    return len(events)


def list_events(tenant: str, notification_id: str | None, limit: int) -> Flow[list[WebhookEvent]]:
    """The tenant's events (or one notification's), oldest first."""
    if notification_id is None:
        found = yield rows(q.TENANT_EVENTS, tenant=tenant, limit=limit)
    else:
        found = yield rows(
            q.NOTIFICATION_EVENTS, tenant=tenant, notification_id=notification_id, limit=limit
        )
    return [event_from_row(r) for r in found]


# -- deliveries ----------------------------------------------------------------------------


def _attempt_from_row(found: Mapping[str, Any]) -> Attempted:
    return Attempted(
        number=int(found["number"]),
        at=float(found["at"]),
        result=AttemptResult(
            outcome=AttemptOutcome(found["outcome"]),
            status_code=found["status_code"],
            latency_ms=float(found["latency_ms"] or 0.0),
            error=found["error"],
            response_excerpt=found["response_excerpt"],
        ),
    )


def delivery_from_row(found: Mapping[str, Any], attempts: tuple[Attempted, ...] = ()) -> Delivery:
    """A webhook_deliveries row joined with its event (``_WITH_EVENT``) to a Delivery."""
    event = WebhookEvent(
        id=found["event_id"],
        type=EventType(found["event_type"]),
        tenant=found["tenant"],
        occurred_at=float(found["event_occurred_at"]),
        data=json.loads(found["event_data"]),
        notification_id=found["notification_id"],
        endpoint_id=found["event_endpoint_id"],
    )
    return Delivery(
        id=found["id"],
        endpoint_id=found["endpoint_id"],
        tenant=found["tenant"],
        event=event,
        status=DeliveryStatus(found["status"]),
        created_at=float(found["created_at"]),
        next_attempt_at=found["next_attempt_at"],
        attempt_count=int(found["attempt_count"]),
        attempts=attempts,
        claim_token=found["claim_token"],
        claim_expires_at=found["claim_expires_at"],
        last_status_code=found["last_status_code"],
        last_error=found["last_error"],
        finished_at=found["finished_at"],
    )


def _with_attempts(found: list[Any]) -> Flow[list[Delivery]]:
    if not found:
        return []
    attempts: dict[str, list[Attempted]] = {}
    for a in (yield rows(q.ATTEMPTS, ids=[r["id"] for r in found])):
        attempts.setdefault(a["delivery_id"], []).append(_attempt_from_row(a))
    return [delivery_from_row(r, tuple(attempts.get(r["id"], ()))) for r in found]


def claim_deliveries(
    token: str,
    lease_seconds: float,
    limit: int,
    per_endpoint: int,
    exclude_endpoints: Collection[str],
    exclude_tenants: Collection[str],
    now: float,
) -> Flow[list[Delivery]]:
    """Lease up to ``limit`` due deliveries to ``token`` (``WebhookStore.claim_deliveries``)."""
    if limit <= 0 or per_endpoint <= 0:
        return []
    claimed = yield rows(
        q.CLAIM_DELIVERIES,
        now=now,
        until=now + lease_seconds,
        token=token,
        limit=limit,
        per_endpoint=per_endpoint,
        exclude_endpoints=sorted(exclude_endpoints),
        exclude_tenants=sorted(exclude_tenants),
    )
    if not claimed:
        return []
    found = yield rows(q.CLAIMED, token=token, ids=[r["id"] for r in claimed])
    return [delivery_from_row(r) for r in found]


def finish_attempt(
    delivery_id: str, token: str, result: AttemptResult, policy: DisablePolicy, now: float
) -> Flow[DeliveryDecision | None]:
    """Record the attempt and apply ``webhooks.decide_delivery`` (``finish_attempt``)."""
    held = yield row(q.HELD_DELIVERY, id=delivery_id, token=token)
    if held is None:
        return None
    found = yield row(q.ENDPOINT_LOCK, id=held["endpoint_id"])
    if found is None:
        return None
    endpoint = endpoint_from_row(found)
    number = int(held["attempt_count"]) + 1
    decision = webhooks.decide_delivery(
        attempt=number - int(held["schedule_offset"]),
        result=result,
        now=now,
        failing_since=endpoint.failing_since,
        consecutive_failures=endpoint.consecutive_failures,
        policy=policy,
    )
    yield run(
        q.INSERT_ATTEMPT,
        delivery_id=delivery_id,
        number=number,
        at=now,
        outcome=str(result.outcome),
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error=result.error,
        response_excerpt=result.response_excerpt,
    )
    yield run(
        q.FINISH_DELIVERY,
        status=str(decision.status),
        next_attempt_at=decision.next_attempt_at,
        attempt_count=number,
        status_code=result.status_code,
        error=result.error,
        finished_at=now if decision.status.finished else None,
        id=delivery_id,
    )
    yield run(
        q.ENDPOINT_HEALTH,
        failing_since=decision.failing_since,
        consecutive_failures=decision.consecutive_failures,
        id=endpoint.id,
    )
    if decision.disable is not None and endpoint.enabled:
        yield run(q.DISABLE_ENDPOINT, reason=str(decision.disable), now=now, id=endpoint.id)
        yield run(q.FAIL_WAITING, reason=_DISABLED_ERROR, now=now, id=endpoint.id)
        yield from record_event(webhooks.disabled_event(endpoint, decision.disable, now))
    return decision


def list_deliveries(
    tenant: str | None, endpoint_id: str, limit: int, before_id: str | None
) -> Flow[list[Delivery]]:
    """An endpoint's deliveries with their attempts, newest first (none of another tenant's)."""
    endpoint = yield from get_endpoint(tenant, endpoint_id)
    if endpoint is None:
        return []
    found = yield rows(
        q.delivery_listing(before=before_id is not None),
        endpoint_id=endpoint_id,
        before_id=before_id,
        limit=limit,
    )
    return (yield from _with_attempts(list(found)))


def get_delivery(tenant: str | None, delivery_id: str) -> Flow[Delivery | None]:
    """One delivery with its attempts (None if it is another tenant's)."""
    found = yield row(q.DELIVERY, id=delivery_id)
    if found is None or (tenant is not None and found["tenant"] != tenant):
        return None
    [delivery] = yield from _with_attempts([found])
    return delivery


def retry_delivery(
    tenant: str | None, endpoint_id: str, delivery_id: str, now: float
) -> Flow[bool]:
    """A finished delivery of the endpoint due again at once, with a fresh schedule."""
    endpoint = yield from get_endpoint(tenant, endpoint_id)
    if endpoint is None:
        return False
    changed: int = yield count(q.RETRY_DELIVERY, now=now, id=delivery_id, endpoint_id=endpoint_id)
    return changed > 0


def replay(
    tenant: str,
    endpoint_id: str,
    since: float,
    types: Collection[EventType] | None,
    limit: int,
    now: float,
) -> Flow[int]:
    """New deliveries to the endpoint of the tenant's events since ``since`` it accepts."""
    found = yield row(q.TENANT_ENDPOINT, id=endpoint_id, tenant=tenant)
    if found is None:
        return 0
    endpoint = endpoint_from_row(found)
    if types is not None:
        endpoint = dataclasses.replace(endpoint, event_types=frozenset(types))
    replayed = 0
    for r in (yield rows(q.EVENTS_SINCE, tenant=tenant, since=since, limit=limit)):
        event = event_from_row(r)
        if endpoint.accepts(event):
            yield from _add_delivery(event, int(r["seq"]), endpoint, now)
            replayed += 1
    return replayed


def webhook_stats(now: float) -> Flow[WebhookStats]:
    """Queue depth, oldest due age, unfanned events and disabled endpoints."""
    found = yield row(q.STATS, now=now)
    oldest = found["oldest_due"]
    return WebhookStats(
        pending=int(found["pending"]),
        oldest_due_age_seconds=0.0 if oldest is None else max(0.0, now - float(oldest)),
        unfanned_events=int(found["unfanned"]),
        disabled_endpoints=int(found["disabled"]),
    )


# -- the store -------------------------------------------------------------------------------


class SqlWebhookStore:
    """``WebhookStore`` on the backend's ``Runner`` (SQLite or PostgreSQL)."""

    def __init__(self, sql: Runner) -> None:
        self.sql = sql

    @property
    def _now(self) -> float:
        return self.sql.clock.now()

    async def create_endpoint(
        self, endpoint: Endpoint, *, limit: int = webhooks.MAX_ENDPOINTS_PER_TENANT
    ) -> bool:
        """Insert an endpoint (its id is new) unless its tenant has ``limit``."""
        return await self.sql.write(create_endpoint(endpoint, limit))

    async def get_endpoint(self, tenant: str | None, endpoint_id: str) -> Endpoint | None:
        """An endpoint by id; another tenant's: None."""
        return await self.sql.read(get_endpoint(tenant, endpoint_id))

    async def list_endpoints(self, tenant: str) -> list[Endpoint]:
        """The tenant's endpoints, oldest first."""
        return await self.sql.read(_endpoints(tenant))

    async def update_endpoint(self, endpoint: Endpoint) -> bool:
        """Write an endpoint at its revision (see the port)."""
        written = await self.sql.write(update_endpoint(endpoint))
        if written is None:
            raise EndpointChanged(endpoint.id)
        return written

    async def delete_endpoint(self, tenant: str, endpoint_id: str) -> bool:
        """Delete an endpoint with its deliveries."""
        return await self.sql.write(delete_endpoint(tenant, endpoint_id))

    async def append_event(self, event: WebhookEvent) -> None:
        """Write an event no state change causes."""
        await self.sql.write(record_event(event))

    async def fan_out(self, *, limit: int = 500) -> int:
        """Unfanned events to deliveries, each exactly once."""
        return await self.sql.write(fan_out(limit, self._now))

    async def list_events(
        self, tenant: str, *, notification_id: str | None = None, limit: int = 100
    ) -> list[WebhookEvent]:
        """The tenant's events, oldest first."""
        return await self.sql.read(list_events(tenant, notification_id, limit))

    async def claim_deliveries(
        self,
        *,
        token: str,
        lease_seconds: float,
        limit: int,
        per_endpoint: int,
        exclude_endpoints: Collection[str] = (),
        exclude_tenants: Collection[str] = (),
    ) -> list[Delivery]:
        """Lease due deliveries (see the port)."""
        flow = claim_deliveries(
            token,
            lease_seconds,
            limit,
            per_endpoint,
            exclude_endpoints,
            exclude_tenants,
            self._now,
        )
        return await self.sql.write(flow)

    async def finish_attempt(
        self,
        delivery: Delivery,
        token: str,
        result: AttemptResult,
        *,
        policy: DisablePolicy,
    ) -> DeliveryDecision | None:
        """Record an attempt and what it decides (see the port)."""
        return await self.sql.write(finish_attempt(delivery.id, token, result, policy, self._now))

    async def list_deliveries(
        self,
        tenant: str | None,
        endpoint_id: str,
        *,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Delivery]:
        """An endpoint's deliveries, newest first."""
        return await self.sql.read(list_deliveries(tenant, endpoint_id, limit, before_id))

    async def get_delivery(self, tenant: str | None, delivery_id: str) -> Delivery | None:
        """One delivery with its attempts."""
        return await self.sql.read(get_delivery(tenant, delivery_id))

    async def retry_delivery(self, tenant: str | None, endpoint_id: str, delivery_id: str) -> bool:
        """A finished delivery pending again, due at once."""
        return await self.sql.write(retry_delivery(tenant, endpoint_id, delivery_id, self._now))

    async def replay(
        self,
        tenant: str,
        endpoint_id: str,
        *,
        since: float,
        types: Collection[EventType] | None = None,
        limit: int = 10_000,
    ) -> int:
        """Deliver the tenant's events since ``since`` to the endpoint again."""
        flow = replay(tenant, endpoint_id, since, types, limit, self._now)
        return await self.sql.write(flow)

    async def webhook_stats(self) -> WebhookStats:
        """For the metrics."""
        return await self.sql.read(webhook_stats(self._now))


def _endpoints(tenant: str) -> Flow[list[Endpoint]]:
    return [endpoint_from_row(r) for r in (yield rows(q.ENDPOINTS, tenant=tenant))]
