"""The CredentialStore and DataKeyStore ports on a SQL database."""

from __future__ import annotations

import json
from typing import Any

from integration_hub.adapters.sql import statements as q
from integration_hub.adapters.sql.flow import Flow, Runner, count, rows, run, single, value
from integration_hub.domain.errors import NotFound


def put_credentials(tenant: str, provider: str, config: str, now: float) -> Flow[None]:
    """Create or replace a configuration; NotFound if the tenant does not exist."""
    stored = yield value(
        q.PUT_CREDENTIALS, provider=provider, config=config, now=now, tenant=tenant
    )
    if stored is None:
        raise NotFound(f"no tenant {tenant!r}", field="tenant")


def add_data_key(tenant: str, wrapped: bytes, now: float) -> Flow[bytes]:
    """Store a wrapped key unless the tenant has one; the one stored."""
    yield run(q.ADD_DATA_KEY, tenant=tenant, wrapped=wrapped, now=now)
    return bytes((yield value(q.DATA_KEY, tenant=tenant)))


class SqlCredentials:
    """Provider configuration and wrapped data keys per tenant, in the hub's database."""

    def __init__(self, sql: Runner) -> None:
        self.sql = sql

    async def get_credentials(self, tenant: str, provider: str) -> dict[str, Any] | None:
        """A tenant's configuration of one provider."""
        query = value(q.CREDENTIALS, tenant=tenant, provider=provider)
        config = await self.sql.read(single(query))
        return None if config is None else dict(json.loads(config))

    async def put_credentials(self, tenant: str, provider: str, config: dict[str, Any]) -> None:
        """Create or replace a tenant's configuration of one provider."""
        now = self.sql.clock.now()
        await self.sql.autocommit(put_credentials(tenant, provider, json.dumps(config), now))

    async def list_credentials(self, tenant: str) -> list[str]:
        """The providers a tenant has configured."""
        found = await self.sql.read(single(rows(q.CREDENTIAL_PROVIDERS, tenant=tenant)))
        return [r["provider"] for r in found]

    # -- the DataKeyStore port ------------------------------------------------------------

    async def get_data_key(self, tenant: str) -> bytes | None:
        """The tenant's wrapped data key."""
        wrapped = await self.sql.read(single(value(q.DATA_KEY, tenant=tenant)))
        return None if wrapped is None else bytes(wrapped)

    async def add_data_key(self, tenant: str, wrapped: bytes) -> bytes:
        """Store a wrapped key unless the tenant has one; the one stored."""
        return await self.sql.write(add_data_key(tenant, wrapped, self.sql.clock.now()))

    async def list_data_keys(self) -> list[tuple[str, bytes]]:
        """Every (tenant, wrapped key)."""
        found = await self.sql.read(single(rows(q.DATA_KEYS)))
        return [(r["tenant"], bytes(r["wrapped"])) for r in found]

    async def replace_data_key(self, tenant: str, old: bytes, new: bytes) -> bool:
        """Swap a wrapped key if it is still ``old``; whether it was."""
        now = self.sql.clock.now()
        query = count(q.REPLACE_DATA_KEY, new=new, now=now, tenant=tenant, old=old)
        return bool(await self.sql.autocommit(single(query)) == 1)
