"""The CredentialStore and DataKeyStore ports on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from integration_hub.adapters.postgres.database import PostgresDatabase
from integration_hub.domain.errors import NotFound

# Inserts nothing (and returns no row) when the tenant does not exist.
PUT = """
INSERT INTO provider_credentials (tenant, provider, config, updated_at)
SELECT id, $2, $3, $4 FROM tenants WHERE id = $1
ON CONFLICT (tenant, provider) DO UPDATE SET
    config = excluded.config, updated_at = excluded.updated_at
RETURNING 1
"""


class PostgresCredentials:
    """Provider configuration and wrapped data keys per tenant, in the hub's database."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def get_credentials(self, tenant: str, provider: str) -> dict[str, Any] | None:
        """A tenant's configuration of one provider."""
        async with self.db.connection() as conn:
            config = await conn.fetchval(
                "SELECT config FROM provider_credentials WHERE tenant = $1 AND provider = $2",
                tenant,
                provider,
            )
        return None if config is None else dict(json.loads(config))

    async def put_credentials(self, tenant: str, provider: str, config: dict[str, Any]) -> None:
        """Create or replace a tenant's configuration of one provider."""
        now = self.db.clock.now()
        async with self.db.connection() as conn:
            stored = await conn.fetchval(PUT, tenant, provider, json.dumps(config), now)
        if stored is None:
            raise NotFound(f"no tenant {tenant!r}", field="tenant")

    async def list_credentials(self, tenant: str) -> list[str]:
        """The providers a tenant has configured."""
        async with self.db.connection() as conn:
            found = await conn.fetch(
                "SELECT provider FROM provider_credentials WHERE tenant = $1 ORDER BY provider",
                tenant,
            )
        return [r["provider"] for r in found]

    # -- the DataKeyStore port --------------------------------------------------

    async def get_data_key(self, tenant: str) -> bytes | None:
        """The tenant's wrapped data key."""
        async with self.db.connection() as conn:
            wrapped = await conn.fetchval(
                "SELECT wrapped FROM tenant_data_keys WHERE tenant = $1", tenant
            )
        return None if wrapped is None else bytes(wrapped)

    async def add_data_key(self, tenant: str, wrapped: bytes) -> bytes:
        """Store a wrapped key unless the tenant has one; the one stored."""
        now = self.db.clock.now()
        async with self.db.transaction() as conn:
            # A racing insert makes ours wait, then do nothing; the read that
            # follows (a new snapshot) sees the winner's key.
            await conn.execute(
                "INSERT INTO tenant_data_keys (tenant, wrapped, created_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (tenant) DO NOTHING",
                tenant,
                wrapped,
                now,
            )
            stored = await conn.fetchval(
                "SELECT wrapped FROM tenant_data_keys WHERE tenant = $1", tenant
            )
        return bytes(stored)

    async def list_data_keys(self) -> list[tuple[str, bytes]]:
        """Every (tenant, wrapped key)."""
        async with self.db.connection() as conn:
            found = await conn.fetch("SELECT tenant, wrapped FROM tenant_data_keys ORDER BY tenant")
        return [(r["tenant"], bytes(r["wrapped"])) for r in found]

    async def replace_data_key(self, tenant: str, old: bytes, new: bytes) -> bool:
        """Swap a wrapped key if it is still ``old``; whether it was."""
        now = self.db.clock.now()
        async with self.db.connection() as conn:
            changed = await conn.fetchval(
                "UPDATE tenant_data_keys SET wrapped = $1, rotated_at = $2"
                " WHERE tenant = $3 AND wrapped = $4 RETURNING 1",
                new,
                now,
                tenant,
                old,
            )
        return changed is not None
