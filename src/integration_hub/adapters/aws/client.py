"""The DynamoDB calls every part of the store is built on.

One aiobotocore client (from the shared ``AwsSession``), vendor errors
translated by ``translated``; items go in and come out as plain dicts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from integration_hub.adapters.aws import items
from integration_hub.adapters.aws.session import AwsSession, translated
from integration_hub.adapters.aws.tables import item, plain
from integration_hub.ports import Clock


class TableClient:
    """Get, put, update, transact, query and scan one table, times from ``clock``."""

    def __init__(self, session: AwsSession, table: str, *, clock: Clock) -> None:
        self.session = session
        self.table = table
        self.clock = clock

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        client = await self.session.client("dynamodb")
        async with translated("DynamoDB"):
            result: dict[str, Any] = await getattr(client, operation)(**params)
            return result

    async def _get(self, key: Mapping[str, str]) -> dict[str, Any] | None:
        found = await self._call(
            "get_item", TableName=self.table, Key=item(key), ConsistentRead=True
        )
        return plain(found["Item"]) if "Item" in found else None

    async def _put(self, values: Mapping[str, Any], condition: str | None = None) -> None:
        params: dict[str, Any] = {"TableName": self.table, "Item": item(values)}
        if condition:
            params["ConditionExpression"] = condition
        await self._call("put_item", **params)

    async def _update(
        self,
        key: Mapping[str, str],
        update: items.Update,
        condition: str | None = None,
        *,
        returns: str = "NONE",
    ) -> dict[str, Any]:
        found = await self._call(
            "update_item", **update.request(self.table, key, condition), ReturnValues=returns
        )
        return plain(found.get("Attributes", {}))

    async def _transact(self, *items: dict[str, Any]) -> None:
        await self._call("transact_write_items", TransactItems=list(items))

    async def _query(
        self,
        index: str | None,
        partition: str,
        *,
        below: str | None = None,
        newest_first: bool = False,
        limit: int | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Items of one partition (base table or GSI), in sort-key order, paginated."""
        pk, sk = (f"{index}PK", f"{index}SK") if index else ("PK", "SK")
        condition = "#pk = :pk" + (" AND #sk < :below" if below is not None else "")
        names = {"#pk": pk} | ({"#sk": sk} if below is not None else {})
        values: dict[str, Any] = {":pk": partition}
        if below is not None:
            values[":below"] = below
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ScanIndexForward": not newest_first,
        }
        if index:
            params["IndexName"] = index
        else:
            params["ConsistentRead"] = True
        if filters:
            clauses = []
            for i, (attr, wanted) in enumerate(filters.items()):
                names[f"#f{i}"] = attr
                values[f":f{i}"] = wanted
                clauses.append(f"#f{i} = :f{i}")
            params["FilterExpression"] = " AND ".join(clauses)
        elif limit is not None:
            params["Limit"] = limit
        params["ExpressionAttributeNames"] = names
        params["ExpressionAttributeValues"] = item(values)
        given = 0
        while True:
            page = await self._call("query", **params)
            for found in page.get("Items", []):
                yield plain(found)
                given += 1
                if limit is not None and given >= limit:
                    return
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def _all(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [found async for found in self._query(*args, **kwargs)]

    async def _scan(
        self, condition: str, values: Mapping[str, Any], page_size: int
    ) -> AsyncIterator[dict[str, Any]]:
        names = {"#sk": "SK", "#status": "status", "#finished": "finished_at"}
        params: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": condition,
            "ExpressionAttributeNames": {k: v for k, v in names.items() if k in condition},
            "ExpressionAttributeValues": item(values),
            "ConsistentRead": True,
            "Limit": page_size,
        }
        while True:
            page = await self._call("scan", **params)
            for found in page.get("Items", []):
                yield plain(found)
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
