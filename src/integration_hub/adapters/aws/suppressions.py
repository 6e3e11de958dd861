"""Suppression lists on the DynamoDB table: one partition per tenant.

Item ``PK = SUPP#<tenant>``, ``SK = <channel>#<address>`` (the address as
``domain.receipts.normalise_address`` keys it), so a lookup is one GetItem and
a listing is a Query in (channel, address) order. Adding is a Put under
``attribute_not_exists``: the first suppression of an address is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integration_hub.adapters.aws import items
from integration_hub.adapters.aws.client import TableClient
from integration_hub.adapters.aws.session import is_client_error
from integration_hub.adapters.aws.tables import item, plain
from integration_hub.adapters.rows import to_dt_required, to_epoch
from integration_hub.domain.receipts import SuppressionReason
from integration_hub.domain.routing import Channel
from integration_hub.ports import Suppression


def _suppression(found: Mapping[str, Any]) -> Suppression:
    return Suppression(
        tenant=found["tenant"],
        channel=Channel(found["channel"]),
        address=found["address"],
        reason=SuppressionReason(found["reason"]),
        created_at=to_dt_required(found["created_at"]),
        source=found.get("source"),
        note=found.get("note"),
    )


class SuppressionItems(TableClient):
    """The SuppressionStore port (see ``ports.receipts``) on one DynamoDB table."""

    async def add_suppression(self, suppression: Suppression) -> Suppression:
        """Store it unless that address is already suppressed: the stored one either way."""
        s = suppression
        values = items.suppression_key(s.tenant, s.channel, s.address) | {
            "tenant": s.tenant,
            "channel": str(s.channel),
            "address": s.address,
            "reason": str(s.reason),
            "created_at": to_epoch(s.created_at),
            "source": s.source,
            "note": s.note,
        }
        for _ in range(items.MAX_CONTENTION_RETRIES):
            try:
                await self._put(values, "attribute_not_exists(PK)")
            except Exception as exc:
                if not is_client_error(exc, items.CONDITION_FAILED):
                    raise
                existing = await self.get_suppression(s.tenant, s.channel, s.address)
                if existing is not None:
                    return existing
                continue  # lifted between our write and our read: try again
            return suppression
        return suppression  # pragma: no cover - added and lifted a hundred times meanwhile

    async def get_suppression(
        self, tenant: str, channel: Channel, address: str
    ) -> Suppression | None:
        """The suppression for a normalised address, in one GetItem."""
        found = await self._get(items.suppression_key(tenant, channel, address))
        return None if found is None else _suppression(found)

    async def list_suppressions(
        self,
        tenant: str,
        *,
        channel: Channel | None = None,
        limit: int = 100,
        after: tuple[Channel, str] | None = None,
    ) -> list[Suppression]:
        """The tenant's suppressions ordered by (channel, address), strictly after ``after``."""
        if limit <= 0:
            return []
        pk = f"SUPP#{tenant}"
        prefix = None if channel is None else f"{channel}#"
        start = None if after is None else items.suppression_key(tenant, *after)["SK"]
        values: dict[str, Any] = {":pk": pk}
        condition = "PK = :pk"
        if start is not None and (prefix is None or start >= prefix):
            if prefix is not None and not start.startswith(prefix):
                return []  # after every address of this channel
            # Strictly after ``after``, read from the key on (DynamoDB refuses a
            # start key outside the key condition, so the condition is the start).
            condition += " AND SK > :start"
            values[":start"] = start
        elif prefix is not None:
            condition += " AND begins_with(SK, :prefix)"
            values[":prefix"] = prefix
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": item(values),
            "ConsistentRead": True,
            "Limit": limit,
        }
        out: list[Suppression] = []
        while True:
            page = await self._call("query", **params)
            for found in page.get("Items", []):
                entry = plain(found)
                if prefix is not None and not str(entry["SK"]).startswith(prefix):
                    return out  # past this channel's addresses
                out.append(_suppression(entry))
                if len(out) >= limit:
                    return out
            if "LastEvaluatedKey" not in page:
                return out
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def remove_suppression(self, tenant: str, channel: Channel, address: str) -> bool:
        """Lift a suppression; False if there was none."""
        found = await self._call(
            "delete_item",
            TableName=self.table,
            Key=item(items.suppression_key(tenant, channel, address)),
            ReturnValues="ALL_OLD",
        )
        return bool(found.get("Attributes"))
