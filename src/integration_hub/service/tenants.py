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
from integration_hub.ports import Clock, TenantStore

_MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class NewTenant:
    """A created tenant and its API key, which is shown this once."""

    tenant: Tenant
    api_key: str


async def create_tenant(
    store: TenantStore, clock: Clock, tenant_id: str, name: str | None = None
) -> NewTenant:
    """Create a tenant and its first API key."""
    validate_tenant_id(tenant_id)
    now = from_epoch(clock.now())
    tenant = Tenant(id=tenant_id, name=name or tenant_id, created_at=now)
    await store.create_tenant(tenant)
    api_key = await issue_key(store, clock, tenant_id)
    return NewTenant(tenant, api_key)


async def issue_key(store: TenantStore, clock: Clock, tenant_id: str) -> str:
    """A new API key for an existing tenant; only its hash is stored."""
    key_id, key = new_api_key()
    record = ApiKeyRecord(
        key_id=key_id, tenant=tenant_id, hash=hash_api_key(key), created_at=from_epoch(clock.now())
    )
    await store.add_api_key(record)
    return key


async def authenticate(
    store: TenantStore,
    api_key: str | None,
    tenant_header: str,
    *,
    keys: ApiKeyCache | None = None,
    tenants: TenantCache | None = None,
) -> Tenant:
    """The tenant an API key acts for; it must be the one named in X-Tenant.

    With ``keys`` and ``tenants`` the key record and the tenant come from
    those short-lived caches instead of the store; the presented key is
    hashed and compared in constant time on every call either way.
    """
    if not api_key:
        raise errors.Unauthenticated(
            "missing API key: send 'Authorization: Bearer <key>'", field="Authorization"
        )
    key_id = parse_api_key(api_key)
    record = None
    if key_id:
        record = await (keys.get(key_id) if keys else store.get_api_key(key_id))
    if record is None or record.revoked_at is not None or not key_matches(api_key, record):
        raise errors.Unauthenticated("unknown or revoked API key", field="Authorization")
    if record.tenant != tenant_header:
        raise errors.Forbidden(field="X-Tenant")
    tenant = await (tenants.get(record.tenant) if tenants else store.get_tenant(record.tenant))
    if tenant is None or tenant.status is not TenantStatus.ACTIVE:
        raise errors.Forbidden("this tenant is disabled", field="X-Tenant")
    return tenant


class TenantCache:
    """Tenant configuration cached for a few seconds, so changes apply without a restart."""

    def __init__(self, store: TenantStore, clock: Clock, ttl_seconds: float = 2.0) -> None:
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

    def forget(self, tenant_id: str) -> None:
        """Drop a cached tenant: this process changed it and must see the change at once."""
        self._entries.pop(tenant_id, None)


class ApiKeyCache:
    """API-key records by key id, cached for a few seconds on the API's hot path.

    Authenticating cost two store reads per request (the key, then its
    tenant): thread hand-offs that dominated ingest. Only the stored record
    (key id, tenant, hash, revocation time) is cached, never the presented
    key; the caller still hashes what it is given and compares in constant
    time. So a revoked key keeps working for at most ``ttl_seconds`` in other
    processes, and stops at once in the process that revoked it (``forget``).
    Unknown key ids are not cached: a new key works at once.
    """

    def __init__(self, store: TenantStore, clock: Clock, ttl_seconds: float = 2.0) -> None:
        self.store = store
        self.clock = clock
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, ApiKeyRecord]] = {}

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """The key's record, at most ``ttl_seconds`` old."""
        now = self.clock.now()
        hit = self._entries.get(key_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = await self.store.get_api_key(key_id)
        if record is None:
            self._entries.pop(key_id, None)
        elif self.ttl > 0:
            if len(self._entries) >= _MAX_CACHED_KEYS:
                self._evict(now)
            self._entries[key_id] = (now + self.ttl, record)
        return record

    def forget(self, key_id: str) -> None:
        """Drop a cached key record (it was just revoked here)."""
        self._entries.pop(key_id, None)

    def _evict(self, now: float) -> None:
        # Bounded memory whatever the number of keys presented: expired
        # entries go first, then (all fresh) the whole cache.
        for key_id in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key_id]
        if len(self._entries) >= _MAX_CACHED_KEYS:
            self._entries.clear()
