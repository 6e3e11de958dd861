"""Idempotency-Key reservations and the ingest transaction on the DynamoDB table.

A key is reserved by one conditional put; ``accept`` completes it and puts
the notification and its ``notification.accepted`` event in one transaction.
The SQS message is sent afterwards by the service (and repaired by the
reconciler if that send is lost).
"""

from __future__ import annotations

import json
import math
from typing import Any

from integration_hub.adapters import rows
from integration_hub.adapters.aws import conditions, items, webhook_items
from integration_hub.adapters.aws.client import TableClient
from integration_hub.adapters.aws.session import is_client_error
from integration_hub.adapters.aws.tables import epoch_key, item, pending_shard
from integration_hub.domain import lifecycle, webhooks
from integration_hub.domain.errors import IdempotencyInProgress, Unavailable
from integration_hub.domain.models import Notification
from integration_hub.domain.status import Status
from integration_hub.ports import IdempotencyRecord


class IdempotencyItems(TableClient):
    """Idempotency keys (``IDEM#<tenant>#<key>``) and ``accept``."""

    async def reserve_idempotency_key(
        self, tenant: str, key: str, fingerprint: str, *, reservation: str, lock_seconds: float
    ) -> IdempotencyRecord | None:
        """Reserve a key: None if it is now ours, else the record that holds it."""
        now = self.clock.now()
        values = items.idempotency_key(tenant, key) | {
            "tenant": tenant,
            "key": key,
            "fingerprint": fingerprint,
            "reservation": reservation,
            "created_at": now,
            "locked_until": now + lock_seconds,
            "expires_at": now + lock_seconds,
            "expires_ttl": math.ceil(now + lock_seconds),
        }
        # One conditional put reserves a new key or takes over an expired or
        # abandoned one (lifecycle.key_free, stated as a condition: two requests
        # race for a key neither has read); DynamoDB's TTL deletion is only
        # housekeeping.
        u = items.Update()
        free = items.condition_params(u, conditions.key_free(u, now))
        for _ in range(items.MAX_CONTENTION_RETRIES):
            try:
                await self._call("put_item", TableName=self.table, Item=item(values), **free)
            except Exception as exc:
                if not is_client_error(exc, items.CONDITION_FAILED):
                    raise
            else:
                return None
            held = await self._get(items.idempotency_key(tenant, key))
            if held is None or lifecycle.key_free(lifecycle.KeyState.of(items.Row(held)), now):
                continue  # freed in between (released, say): try again
            return IdempotencyRecord(
                tenant=tenant,
                key=key,
                fingerprint=held["fingerprint"],
                created_at=held["created_at"],
                locked_until=held["locked_until"],
                response=json.loads(held["response"]) if held.get("response") else None,
            )
        raise Unavailable("idempotency key is too contended right now")

    async def release_idempotency_key(self, tenant: str, key: str, *, reservation: str) -> None:
        """Drop an in-progress reservation after a failed accept."""
        try:
            await self._call(
                "delete_item",
                TableName=self.table,
                Key=item(items.idempotency_key(tenant, key)),
                ConditionExpression="#reservation = :r AND attribute_not_exists(#response)",
                ExpressionAttributeNames={"#response": "response", "#reservation": "reservation"},
                ExpressionAttributeValues=item({":r": reservation}),
            )
        except Exception as exc:
            if not is_client_error(exc, items.CONDITION_FAILED):
                raise

    async def accept(
        self,
        notification: Notification,
        response: dict[str, Any],
        *,
        reservation: str,
        ttl_seconds: float,
    ) -> bool:
        """Persist a RECEIVED notification, its accepted event, and complete its key in one
        transaction.

        The SQS message cannot join the transaction: False, the caller enqueues
        (and the reconciler covers a failed send).
        """
        now = self.clock.now()
        n = notification
        key = items.Update()
        key.set("response", value=json.dumps(response)).set("expires_at", value=now + ttl_seconds)
        key.set("locked_until", value=now).set("expires_ttl", value=math.ceil(now + ttl_seconds))
        mine = (
            f"{key.name('reservation')} = {key.value(reservation)}"
            f" AND attribute_not_exists({key.name('response')})"
        )
        created = rows.to_epoch(n.created_at)
        values: dict[str, Any] = items.notification_key(n.id) | {
            "id": n.id,
            "tenant": n.tenant,
            "country": n.country,
            "channel": str(n.channel),
            "provider": n.provider,
            "status": str(Status.RECEIVED),
            "request": n.request.model_dump_json(exclude_none=True),
            "idempotency_key": n.idempotency_key,
            "created_at": created,
            "updated_at": rows.to_epoch(n.updated_at),
            "attempts_used": 0,
            "attempt_count": 0,
            "attempts": {},
            "version": 0,
            "GSI1PK": f"T#{n.tenant}#N",
            "GSI1SK": n.id,
            "GSI2PK": items.status_index(n.tenant, Status.RECEIVED),
            "GSI2SK": n.id,
            "GSI3PK": f"T#{n.tenant}#C#{n.country}",
            "GSI3SK": n.id,
            "GSI4PK": pending_shard(n.id),
            "GSI4SK": f"{epoch_key(now)}#{n.id}",
            "traceparent": n.traceparent,  # ADR 0015; None is left out of the item
            "tracestate": n.tracestate,
        }
        try:
            await self._transact(
                {
                    "Update": key.request(
                        self.table, items.idempotency_key(n.tenant, n.idempotency_key), mine
                    )
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": item(values),
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
                webhook_items.notification_event_put(
                    self.table, webhooks.ACCEPT_EVENT, values, now
                ),
            )
        except Exception as exc:
            if is_client_error(exc, items.TRANSACTION_CANCELED) and items.cancel_codes(exc)[:1] == [
                "ConditionalCheckFailed"
            ]:
                # Our reservation lapsed and another request took the key over.
                raise IdempotencyInProgress() from None
            raise
        return False
