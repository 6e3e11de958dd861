"""The SecretStore port on the DynamoDB table: provider credentials and data keys.

Both sit in the tenant's partition (``CRED#<provider>``, ``DATAKEY``); the
values are already sealed by the envelope encryption above this port.
"""

from __future__ import annotations

import json
from typing import Any

from integration_hub.adapters.aws import items
from integration_hub.adapters.aws.client import TableClient
from integration_hub.adapters.aws.session import is_client_error
from integration_hub.adapters.aws.tables import item
from integration_hub.domain.errors import NotFound


class SecretItems(TableClient):
    """Provider credentials and wrapped data keys of each tenant."""

    async def get_credentials(self, tenant: str, provider: str) -> dict[str, Any] | None:
        """A tenant's configuration of one provider."""
        found = await self._get({"PK": f"TENANT#{tenant}", "SK": f"CRED#{provider}"})
        return None if found is None else dict(json.loads(found["config"]))

    async def put_credentials(self, tenant: str, provider: str, config: dict[str, Any]) -> None:
        """Create or replace a tenant's configuration of one provider."""
        values = {
            "PK": f"TENANT#{tenant}",
            "SK": f"CRED#{provider}",
            "provider": provider,
            "config": json.dumps(config),
            "updated_at": self.clock.now(),
        }
        try:
            await self._transact(
                {
                    "ConditionCheck": {
                        "TableName": self.table,
                        "Key": item({"PK": f"TENANT#{tenant}", "SK": "TENANT"}),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
                {"Put": {"TableName": self.table, "Item": item(values)}},
            )
        except Exception as exc:
            if is_client_error(exc, items.TRANSACTION_CANCELED):
                raise NotFound(f"no tenant {tenant!r}", field="tenant") from None
            raise

    async def list_credentials(self, tenant: str) -> list[str]:
        """The providers a tenant has configured."""
        found = await self._all(None, f"TENANT#{tenant}")
        return [f["provider"] for f in found if f["SK"].startswith("CRED#")]

    async def get_data_key(self, tenant: str) -> bytes | None:
        """The tenant's wrapped data key."""
        found = await self._get({"PK": f"TENANT#{tenant}", "SK": "DATAKEY"})
        return None if found is None else bytes(found["wrapped"])

    async def add_data_key(self, tenant: str, wrapped: bytes) -> bytes:
        """Store a wrapped key unless the tenant has one; the one stored."""
        values = {
            "PK": f"TENANT#{tenant}",
            "SK": "DATAKEY",
            "tenant": tenant,
            "wrapped": wrapped,
            "created_at": self.clock.now(),
            "GSI1PK": "DATAKEYS",
            "GSI1SK": tenant,
        }
        try:
            await self._put(values, "attribute_not_exists(PK)")
        except Exception as exc:
            if not is_client_error(exc, items.CONDITION_FAILED):
                raise
        stored = await self.get_data_key(tenant)
        assert stored is not None
        return stored

    async def list_data_keys(self) -> list[tuple[str, bytes]]:
        """Every (tenant, wrapped key)."""
        return [(k["tenant"], bytes(k["wrapped"])) for k in await self._all("GSI1", "DATAKEYS")]

    async def replace_data_key(self, tenant: str, old: bytes, new: bytes) -> bool:
        """Swap a wrapped key if it is still ``old``."""
        u = items.Update().set("wrapped", value=new).set("rotated_at", value=self.clock.now())
        condition = f"{u.name('wrapped')} = {u.value(old)}"
        try:
            await self._update({"PK": f"TENANT#{tenant}", "SK": "DATAKEY"}, u, condition)
        except Exception as exc:
            if is_client_error(exc, items.CONDITION_FAILED):
                return False
            raise
        return True
