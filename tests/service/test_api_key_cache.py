"""API-key authentication through the short-lived caches, on a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.store import SqliteStore
from integration_hub.domain import errors
from integration_hub.domain.tenants import ApiKeyRecord, Tenant, TenantStatus, parse_api_key
from integration_hub.ports import TenantStore
from integration_hub.service.tenants import (
    ApiKeyCache,
    TenantCache,
    authenticate,
    create_tenant,
)
from support import ManualClock

TTL = 5.0


class CountingStore(TenantStore):
    """The SQLite store's tenant role, counting the reads authentication makes.

    It subclasses the port so that mypy checks every method against it.
    """

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.key_reads = 0
        self.tenant_reads = 0

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        self.key_reads += 1
        return await self.store.get_api_key(key_id)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        self.tenant_reads += 1
        return await self.store.get_tenant(tenant_id)

    async def create_tenant(self, tenant: Tenant) -> None:
        await self.store.create_tenant(tenant)

    async def update_tenant(self, tenant: Tenant) -> None:
        await self.store.update_tenant(tenant)

    async def list_tenants(self) -> list[Tenant]:
        return await self.store.list_tenants()

    async def add_api_key(self, record: ApiKeyRecord) -> None:
        await self.store.add_api_key(record)

    async def list_api_keys(self, tenant: str) -> list[ApiKeyRecord]:
        return await self.store.list_api_keys(tenant)

    async def revoke_api_key(self, tenant: str, key_id: str) -> bool:
        return await self.store.revoke_api_key(tenant, key_id)


class Auth:
    """A store, the two caches on a manual clock, and a tenant with its key."""

    def __init__(self, store: CountingStore, clock: ManualClock, key: str) -> None:
        self.store = store
        self.clock = clock
        self.key = key
        self.keys = ApiKeyCache(store, clock, TTL)
        self.tenants = TenantCache(store, clock, TTL)

    async def __call__(self, key: str | None = None, tenant: str = "acme") -> Tenant:
        return await authenticate(
            self.store,
            key or self.key,
            tenant,
            keys=self.keys,
            tenants=self.tenants,
        )


@pytest.fixture
async def auth(tmp_path: Path) -> AsyncIterator[Auth]:
    clock = ManualClock()
    db = SqliteDatabase(tmp_path / "auth.db", clock=clock)
    await db.migrate()
    store = SqliteStore(db)
    made = await create_tenant(store, clock, "acme")
    yield Auth(CountingStore(store), clock, made.api_key)
    await store.close()


async def test_repeated_requests_within_the_ttl_read_the_store_once(auth: Auth) -> None:
    for _ in range(5):
        assert (await auth()).id == "acme"
    assert (auth.store.key_reads, auth.store.tenant_reads) == (1, 1)
    auth.clock.advance(TTL + 0.1)
    await auth()
    assert (auth.store.key_reads, auth.store.tenant_reads) == (2, 2)


async def test_a_wrong_secret_for_a_cached_key_id_is_still_refused(auth: Auth) -> None:
    await auth()
    prefix, key_id, secret = auth.key.split("_", 2)
    forged = f"{prefix}_{key_id}_{'A' * len(secret)}"
    assert parse_api_key(forged) == key_id
    with pytest.raises(errors.Unauthenticated):
        await auth(forged)
    assert auth.store.key_reads == 1  # refused from the cached hash, not a store read


async def test_a_key_revoked_by_another_process_stops_within_the_ttl(auth: Auth) -> None:
    await auth()
    key_id = parse_api_key(auth.key)
    assert key_id is not None
    # Revoked in the store directly, as the CLI in another process does.
    assert await auth.store.revoke_api_key("acme", key_id)
    auth.clock.advance(TTL + 0.01)
    with pytest.raises(errors.Unauthenticated):
        await auth()


async def test_a_key_revoked_in_this_process_stops_at_once(auth: Auth) -> None:
    await auth()
    key_id = parse_api_key(auth.key)
    assert key_id is not None
    assert await auth.store.revoke_api_key("acme", key_id)
    auth.keys.forget(key_id)
    with pytest.raises(errors.Unauthenticated):
        await auth()


async def test_a_disabled_tenant_is_refused_within_the_ttl(auth: Auth) -> None:
    tenant = await auth()
    tenant.status = TenantStatus.DISABLED
    await auth.store.update_tenant(tenant)
    auth.clock.advance(TTL + 0.01)
    with pytest.raises(errors.Forbidden):
        await auth()


async def test_the_key_still_only_works_for_its_own_tenant(auth: Auth) -> None:
    await auth()
    with pytest.raises(errors.Forbidden):
        await auth(tenant="globex")


async def test_a_ttl_of_zero_reads_the_store_every_time(auth: Auth) -> None:
    auth.keys = ApiKeyCache(auth.store, auth.clock, 0)
    auth.tenants = TenantCache(auth.store, auth.clock, 0)
    await auth()
    await auth()
    assert (auth.store.key_reads, auth.store.tenant_reads) == (2, 2)


async def test_unknown_key_ids_are_not_cached(auth: Auth) -> None:
    with pytest.raises(errors.Unauthenticated):
        await auth("ihub_0123456789ab_whatever")
    with pytest.raises(errors.Unauthenticated):
        await auth("ihub_0123456789ab_whatever")
    assert auth.store.key_reads == 2
