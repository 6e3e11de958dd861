"""The CredentialStore port on SQLite."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.domain.errors import NotFound


class SqliteCredentials:
    """Provider configuration per tenant, in the hub's database file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def get_credentials(self, tenant: str, provider: str) -> dict[str, Any] | None:
        """A tenant's configuration of one provider."""

        def run(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT config FROM provider_credentials WHERE tenant = ? AND provider = ?",
                (tenant, provider),
            ).fetchone()
            return None if row is None else dict(json.loads(row["config"]))

        return await self.db.read(run)

    async def put_credentials(self, tenant: str, provider: str, config: dict[str, Any]) -> None:
        """Create or replace a tenant's configuration of one provider."""
        now = self.db.clock.now()

        def run(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant,)).fetchone() is None:
                raise NotFound(f"no tenant {tenant!r}", field="tenant")
            conn.execute(
                "INSERT INTO provider_credentials (tenant, provider, config, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (tenant, provider) DO UPDATE SET"
                " config = excluded.config, updated_at = excluded.updated_at",
                (tenant, provider, json.dumps(config), now),
            )

        await self.db.write(run)

    async def list_credentials(self, tenant: str) -> list[str]:
        """The providers a tenant has configured."""

        def run(conn: sqlite3.Connection) -> list[str]:
            found = conn.execute(
                "SELECT provider FROM provider_credentials WHERE tenant = ? ORDER BY provider",
                (tenant,),
            )
            return [r["provider"] for r in found]

        return await self.db.read(run)

    # -- the DataKeyStore port --------------------------------------------------

    async def get_data_key(self, tenant: str) -> bytes | None:
        """The tenant's wrapped data key."""

        def run(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT wrapped FROM tenant_data_keys WHERE tenant = ?", (tenant,)
            ).fetchone()
            return None if row is None else bytes(row["wrapped"])

        return await self.db.read(run)

    async def add_data_key(self, tenant: str, wrapped: bytes) -> bytes:
        """Store a wrapped key unless the tenant has one; the one stored."""
        now = self.db.clock.now()

        def run(conn: sqlite3.Connection) -> bytes:
            conn.execute(
                "INSERT INTO tenant_data_keys (tenant, wrapped, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (tenant) DO NOTHING",
                (tenant, wrapped, now),
            )
            row = conn.execute(
                "SELECT wrapped FROM tenant_data_keys WHERE tenant = ?", (tenant,)
            ).fetchone()
            return bytes(row["wrapped"])

        return await self.db.write(run)

    async def list_data_keys(self) -> list[tuple[str, bytes]]:
        """Every (tenant, wrapped key)."""

        def run(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            found = conn.execute("SELECT tenant, wrapped FROM tenant_data_keys ORDER BY tenant")
            return [(r["tenant"], bytes(r["wrapped"])) for r in found]

        return await self.db.read(run)

    async def replace_data_key(self, tenant: str, old: bytes, new: bytes) -> bool:
        """Swap a wrapped key if it is still ``old``."""
        now = self.db.clock.now()

        def run(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE tenant_data_keys SET wrapped = ?, rotated_at = ?"
                " WHERE tenant = ? AND wrapped = ?",
                (new, now, tenant, old),
            ).rowcount
            return bool(changed == 1)

        return await self.db.write(run)
