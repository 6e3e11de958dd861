"""Tenants: creation with a first API key, authentication, a short-lived cache."""

from __future__ import annotations

from dataclasses import dataclass

from integration_hub.domain import errors
from integration_hub.domain.models import from_epoch
from integration_hub.domain.tenants import (
    ApiKeyRecord,
    Tenant,
    TenantStatus,
    hash_api_key,
    key_matches,
    new_api_key,
    parse_api_key,
    validate_tenant_id,
)
from integration_hub.ports import Clock, Store


@dataclass(frozen=True, slots=True)
class NewTenant:
    """A created tenant and its API key, which is shown this once."""

    tenant: Tenant
    api_key: str


async def create_tenant(
    store: Store, clock: Clock, tenant_id: str, name: str | None = None
) -> NewTenant:
    """Create a tenant and its first API key."""
    validate_tenant_id(tenant_id)
    now = from_epoch(clock.now())
    tenant = Tenant(id=tenant_id, name=name or tenant_id, created_at=now)
    await store.create_tenant(tenant)
    api_key = await issue_key(store, clock, tenant_id)
    return NewTenant(tenant, api_key)


async def issue_key(store: Store, clock: Clock, tenant_id: str) -> str:
    """A new API key for an existing tenant; only its hash is stored."""
    key_id, key = new_api_key()
    record = ApiKeyRecord(
        key_id=key_id, tenant=tenant_id, hash=hash_api_key(key), created_at=from_epoch(clock.now())
    )
    await store.add_api_key(record)
    return key


async def authenticate(store: Store, api_key: str | None, tenant_header: str) -> Tenant:
    """The tenant an API key acts for; it must be the one named in X-Tenant."""
    if not api_key:
        raise errors.Unauthenticated(
            "missing API key: send 'Authorization: Bearer <key>'", field="Authorization"
        )
    key_id = parse_api_key(api_key)
    record = await store.get_api_key(key_id) if key_id else None
    if record is None or record.revoked_at is not None or not key_matches(api_key, record):
        raise errors.Unauthenticated("unknown or revoked API key", field="Authorization")
    if record.tenant != tenant_header:
        raise errors.Forbidden(field="X-Tenant")
    tenant = await store.get_tenant(record.tenant)
    if tenant is None or tenant.status is not TenantStatus.ACTIVE:
        raise errors.Forbidden("this tenant is disabled", field="X-Tenant")
    return tenant


class TenantCache:
    """Tenant configuration cached for a few seconds, so changes apply without a restart."""

    def __init__(self, store: Store, clock: Clock, ttl_seconds: float = 2.0) -> None:
        self.store = store
        self.clock = clock
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Tenant | None]] = {}

    async def get(self, tenant_id: str) -> Tenant | None:
        """The tenant, at most ``ttl_seconds`` old."""
        now = self.clock.now()
        hit = self._entries.get(tenant_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        tenant = await self.store.get_tenant(tenant_id)
        if tenant is not None:  # an unknown id is not cached: it may be created next
            self._entries[tenant_id] = (now + self.ttl, tenant)
        return tenant
