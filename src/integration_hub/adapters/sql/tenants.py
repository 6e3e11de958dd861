"""Flows of tenants, API keys, quotas and Idempotency-Key records."""

from __future__ import annotations

import json
from typing import Any

from integration_hub.adapters import rows as convert
from integration_hub.adapters.sql import statements as q
from integration_hub.adapters.sql.flow import Flow, count, row, rows, run, value
from integration_hub.adapters.sql.webhooks import record_event
from integration_hub.domain import quota, webhooks
from integration_hub.domain.errors import IdempotencyInProgress, NotFound, TenantExists
from integration_hub.domain.models import Notification
from integration_hub.domain.tenants import ApiKeyRecord, Tenant
from integration_hub.ports import FirstAccept, IdempotencyRecord

# -- tenants and keys ------------------------------------------------------------------


def create_tenant(tenant: Tenant) -> Flow[None]:
    """Insert a tenant; TenantExists if the id is taken."""
    inserted = yield value(
        q.CREATE_TENANT,
        id=tenant.id,
        name=tenant.name,
        status=str(tenant.status),
        created_at=convert.to_epoch(tenant.created_at),
        config=convert.tenant_config(tenant),
    )
    if inserted is None:
        raise TenantExists(f"tenant {tenant.id!r} exists already")


def update_tenant(tenant: Tenant) -> Flow[None]:
    """Replace a tenant's status, routing and budget; NotFound if it does not exist."""
    changed = yield count(
        q.UPDATE_TENANT,
        name=tenant.name,
        status=str(tenant.status),
        config=convert.tenant_config(tenant),
        id=tenant.id,
    )
    if changed != 1:
        raise NotFound(f"no tenant {tenant.id!r}", field="tenant")


def get_tenant(tenant_id: str) -> Flow[Tenant | None]:
    """A tenant by id."""
    found = yield row(q.TENANT, id=tenant_id)
    return convert.tenant_from_row(found) if found else None


def list_tenants() -> Flow[list[Tenant]]:
    """All tenants, oldest first."""
    return [convert.tenant_from_row(r) for r in (yield rows(q.TENANTS))]


def add_api_key(record: ApiKeyRecord) -> Flow[None]:
    """Store a key's hash."""
    yield run(
        q.ADD_API_KEY,
        key_id=record.key_id,
        tenant=record.tenant,
        hash=record.hash,
        created_at=convert.to_epoch(record.created_at),
    )


def get_api_key(key_id: str) -> Flow[ApiKeyRecord | None]:
    """A key record by its public id."""
    found = yield row(q.API_KEY, key_id=key_id)
    return convert.api_key_from_row(found) if found else None


def list_api_keys(tenant: str) -> Flow[list[ApiKeyRecord]]:
    """A tenant's keys, oldest first."""
    return [convert.api_key_from_row(r) for r in (yield rows(q.API_KEYS, tenant=tenant))]


def revoke_api_key(tenant: str, key_id: str, now: float) -> Flow[bool]:
    """Revoke one of the tenant's active keys; whether one was."""
    changed = yield count(q.REVOKE_API_KEY, now=now, tenant=tenant, key_id=key_id)
    return bool(changed == 1)


def consume_quota(
    tenant: str, per_second: int | None, per_day: int | None, now: float
) -> Flow[float | None]:
    """Count one notification against the tenant's windows, or say how long to wait."""
    yield run(q.LOCK_TENANT, tenant=tenant)
    usage = {
        r["window"]: quota.Window(r["window_start"], r["count"])
        for r in (yield rows(q.USAGE, tenant=tenant))
    }
    wait, updated = quota.decide(now, {"second": per_second, "day": per_day}, usage)
    for name, window in updated.items():
        yield run(
            q.PUT_USAGE, tenant=tenant, window=name, window_start=window.start, count=window.count
        )
    return wait


# -- idempotency and ingest ----------------------------------------------------------------


def _record(tenant: str, key: str, found: Any) -> IdempotencyRecord:
    return IdempotencyRecord(
        tenant=tenant,
        key=key,
        fingerprint=found["fingerprint"],
        created_at=found["created_at"],
        locked_until=found["locked_until"],
        response=json.loads(found["response"]) if found["response"] else None,
    )


def reserve_key(
    tenant: str, key: str, fingerprint: str, reservation: str, lock_seconds: float, now: float
) -> Flow[IdempotencyRecord | None]:
    """Reserve a key: None if it is now ours, else the record that holds it."""
    ours = yield value(
        q.RESERVE,
        tenant=tenant,
        key=key,
        fingerprint=fingerprint,
        reservation=reservation,
        now=now,
        locked_until=now + lock_seconds,
    )
    if ours is not None:
        return None
    # The conflict clause left (and on PostgreSQL locked) the holder's row.
    return _record(tenant, key, (yield row(q.HELD, tenant=tenant, key=key)))


def release_key(tenant: str, key: str, reservation: str) -> Flow[None]:
    """Drop an in-progress reservation after a failed accept."""
    yield run(q.RELEASE_KEY, tenant=tenant, key=key, reservation=reservation)


def insert_received(n: Notification, now: float) -> Flow[None]:
    """A new RECEIVED notification, its queue entry (with the NOTIFY) and its event."""
    yield run(
        q.INSERT_NOTIFICATION,
        id=n.id,
        tenant=n.tenant,
        country=n.country,
        channel=str(n.channel),
        provider=n.provider,
        status=str(n.status),
        request=n.request.model_dump_json(exclude_none=True),
        idempotency_key=n.idempotency_key,
        created_at=convert.to_epoch(n.created_at),
        updated_at=convert.to_epoch(n.updated_at),
        traceparent=n.traceparent,
        tracestate=n.tracestate,
    )
    yield run(q.ENQUEUE_FRESH, id=n.id, tenant=n.tenant, available_at=now, now=now)
    yield from record_event(webhooks.accepted_event(n, now))


def accept(
    n: Notification, response: dict[str, Any], reservation: str, ttl_seconds: float, now: float
) -> Flow[bool]:
    """Complete our reservation and persist the notification with its queue entry."""
    done = yield count(
        q.COMPLETE_KEY,
        response=json.dumps(response),
        expires_at=now + ttl_seconds,
        now=now,
        tenant=n.tenant,
        key=n.idempotency_key,
        reservation=reservation,
    )
    if done != 1:
        # Our reservation lapsed and another request took the key over.
        raise IdempotencyInProgress()
    yield from insert_received(n, now)
    return True


def accept_new(
    n: Notification, response: dict[str, Any], fingerprint: str, ttl_seconds: float, now: float
) -> Flow[FirstAccept]:
    """Reserve, complete and persist in one transaction when the key is free."""
    ours = yield value(
        q.RESERVE_COMPLETE,
        tenant=n.tenant,
        key=n.idempotency_key,
        fingerprint=fingerprint,
        reservation=n.id,  # never released: the record is complete from the start
        now=now,
        expires_at=now + ttl_seconds,
        response=json.dumps(response),
    )
    if ours is None:
        held = yield row(q.HELD, tenant=n.tenant, key=n.idempotency_key)
        return FirstAccept(_record(n.tenant, n.idempotency_key, held))
    yield from insert_received(n, now)
    return FirstAccept(None, enqueued=True)
