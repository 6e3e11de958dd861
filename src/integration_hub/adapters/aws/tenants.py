"""Tenants, their API keys and their quota windows on the DynamoDB table."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from integration_hub.adapters import rows
from integration_hub.adapters.aws import items
from integration_hub.adapters.aws.client import TableClient
from integration_hub.adapters.aws.session import is_client_error
from integration_hub.adapters.aws.tables import epoch_key
from integration_hub.domain import quota
from integration_hub.domain.errors import NotFound, TenantExists, Unavailable
from integration_hub.domain.tenants import ApiKeyRecord, Tenant


class TenantItems(TableClient):
    """Tenants (``TENANT#<id>``), API keys (``APIKEY#<key_id>``) and quota windows."""

    async def create_tenant(self, tenant: Tenant) -> None:
        """Insert a tenant; raise TenantExists if the id is taken."""
        created = rows.to_epoch(tenant.created_at)
        values = {
            "PK": f"TENANT#{tenant.id}",
            "SK": "TENANT",
            "id": tenant.id,
            "name": tenant.name,
            "status": str(tenant.status),
            "created_at": created,
            "config": rows.tenant_config(tenant),
            "GSI1PK": "TENANTS",
            "GSI1SK": f"{epoch_key(created)}#{tenant.id}",
        }
        try:
            await self._put(values, "attribute_not_exists(PK)")
        except Exception as exc:
            if is_client_error(exc, items.CONDITION_FAILED):
                raise TenantExists(f"tenant {tenant.id!r} exists already") from None
            raise

    async def update_tenant(self, tenant: Tenant) -> None:
        """Replace a tenant's status, routing and budget."""
        u = items.Update().set("name", value=tenant.name).set("status", value=str(tenant.status))
        u.set("config", value=rows.tenant_config(tenant))
        try:
            await self._update(
                {"PK": f"TENANT#{tenant.id}", "SK": "TENANT"}, u, "attribute_exists(PK)"
            )
        except Exception as exc:
            if is_client_error(exc, items.CONDITION_FAILED):
                raise NotFound(f"no tenant {tenant.id!r}", field="tenant") from None
            raise

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """A tenant by id."""
        found = await self._get({"PK": f"TENANT#{tenant_id}", "SK": "TENANT"})
        return None if found is None else rows.tenant_from_row(items.Row(found))

    async def list_tenants(self) -> list[Tenant]:
        """All tenants, oldest first."""
        return [rows.tenant_from_row(items.Row(t)) for t in await self._all("GSI1", "TENANTS")]

    async def add_api_key(self, record: ApiKeyRecord) -> None:
        """Store a key's hash."""
        created = rows.to_epoch(record.created_at)
        await self._put(
            {
                "PK": f"APIKEY#{record.key_id}",
                "SK": "APIKEY",
                "key_id": record.key_id,
                "tenant": record.tenant,
                "hash": record.hash,
                "created_at": created,
                "revoked_at": None
                if record.revoked_at is None
                else rows.to_epoch(record.revoked_at),
                "GSI1PK": f"T#{record.tenant}#KEYS",
                "GSI1SK": f"{epoch_key(created)}#{record.key_id}",
            }
        )

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """A key record by its public id."""
        found = await self._get({"PK": f"APIKEY#{key_id}", "SK": "APIKEY"})
        return None if found is None else rows.api_key_from_row(items.Row(found))

    async def list_api_keys(self, tenant: str) -> list[ApiKeyRecord]:
        """A tenant's keys, oldest first."""
        found = await self._all("GSI1", f"T#{tenant}#KEYS")
        return [rows.api_key_from_row(items.Row(k)) for k in found]

    async def revoke_api_key(self, tenant: str, key_id: str) -> bool:
        """Revoke one of the tenant's active keys."""
        u = items.Update().set("revoked_at", value=self.clock.now())
        condition = (
            f"{u.name('tenant')} = {u.value(tenant)}"
            f" AND attribute_not_exists({u.name('revoked_at')})"
        )
        try:
            await self._update({"PK": f"APIKEY#{key_id}", "SK": "APIKEY"}, u, condition)
        except Exception as exc:
            if is_client_error(exc, items.CONDITION_FAILED):
                return False
            raise
        return True

    async def consume_quota(
        self, tenant: str, *, per_second: int | None, per_day: int | None
    ) -> float | None:
        """Count one notification against the tenant's windows, or say how long to wait."""
        key = {"PK": f"TENANT#{tenant}", "SK": "USAGE"}
        for _ in range(items.MAX_CONTENTION_RETRIES):
            now = self.clock.now()
            found = await self._get(key) or {}
            windows: dict[str, Any] = found.get("windows") or {}
            usage = {n: quota.Window(w["start"], w["count"]) for n, w in windows.items()}
            wait, updated = quota.decide(now, {"second": per_second, "day": per_day}, usage)
            if wait is not None or not updated:
                return wait
            for name, window in updated.items():
                windows[name] = {"start": window.start, "count": window.count}
            version = found.get("version", 0)
            u = items.Update().set("windows", value=windows).set("version", value=version + 1)
            condition = f"attribute_not_exists(PK) OR {u.name('version')} = {u.value(version)}"
            try:
                await self._update(key, u, condition)
            except Exception as exc:
                if not is_client_error(exc, items.CONDITION_FAILED):
                    raise
                await asyncio.sleep(random.uniform(0, 0.005))  # another API process won
                continue
            return None
        raise Unavailable("quota counters are too contended right now")
