"""The WebhookStore port on the DynamoDB table: endpoints, the outbox's fan-out, stats.

Events are written by the store's other parts in the transaction of the
change that causes them (``webhook_items.notification_event_put``); this
part turns them into deliveries. The item layout is in ``webhook_items``;
claims, attempts and replays are in ``webhook_deliveries``.

Fan-out reads the unfanned events from the sparse, sharded GSI5 partitions
``WHFAN#<shard>``; each event is fanned by one transaction that removes it
from that index under the condition that it is still there, together with the
``Put`` of each of its deliveries (at most ``MAX_ENDPOINTS_PER_TENANT`` + 1
items, inside DynamoDB's 100): a second fan-out of the same event fails its
condition and writes nothing. A notification's events are fanned in their
order (``order_key``), all its earlier unfanned ones first, so the delivery of
a later event never exists before the earlier event's deliveries; an event
another process is fanning right now (a transaction conflict) holds back the
rest of its notification until the next round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from integration_hub.adapters.aws import items, webhook_items
from integration_hub.adapters.aws.session import is_client_error
from integration_hub.adapters.aws.tables import epoch_key, item
from integration_hub.adapters.aws.webhook_deliveries import WebhookDeliveryItems
from integration_hub.adapters.aws.webhook_items import WEBHOOK_INDEX
from integration_hub.domain import lifecycle, webhooks
from integration_hub.domain.errors import Unavailable
from integration_hub.domain.webhooks import Endpoint, WebhookEvent
from integration_hub.ports.webhooks import EndpointChanged, WebhookStats

# How many events fan out at once (each is one transaction).
FAN_OUT_CONCURRENCY = 16


class DynamoWebhookStore(WebhookDeliveryItems):
    """``ports.webhooks.WebhookStore`` on the hub's DynamoDB table."""

    # -- endpoints ----------------------------------------------------------------------

    async def create_endpoint(
        self, endpoint: Endpoint, *, limit: int = webhooks.MAX_ENDPOINTS_PER_TENANT
    ) -> bool:
        """Insert an endpoint (its id is new) unless its tenant has ``limit``: one
        transaction with the tenant's endpoint count, conditioned below ``limit``."""
        put = {
            "Put": {
                "TableName": self.table,
                "Item": item(webhook_items.endpoint_item(endpoint, version=0)),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }
        u = items.Update().bump("endpoints")
        n = u.name("endpoints")
        below = f"attribute_not_exists({n}) OR {n} < {u.value(limit)}"
        count = {
            "Update": u.request(
                self.table, webhook_items.endpoint_count_key(endpoint.tenant), below
            )
        }
        for _ in range(items.MAX_CONTENTION_RETRIES):
            try:
                await self._transact(put, count)
            except Unavailable:
                await asyncio.sleep(0.01)  # another creation or deletion of the tenant's
                continue
            except Exception as exc:
                if not is_client_error(exc, items.TRANSACTION_CANCELED):
                    raise
                if items.cancel_codes(exc)[1:2] == ["ConditionalCheckFailed"]:
                    return False
                await asyncio.sleep(0.01)
                continue
            return True
        raise Unavailable("webhook endpoints of this tenant are too contended right now")

    async def get_endpoint(self, tenant: str | None, endpoint_id: str) -> Endpoint | None:
        """An endpoint by id; ``tenant=None`` only for operators. Another tenant's: None."""
        found = await self._get(webhook_items.endpoint_key(endpoint_id))
        if found is None or not lifecycle.visible_to(tenant, found["tenant"]):
            return None
        return webhook_items.endpoint_from_item(found)

    async def list_endpoints(self, tenant: str) -> list[Endpoint]:
        """The tenant's endpoints, oldest first."""
        found = await self._all("GSI1", webhook_items.tenant_endpoints(tenant))
        return [webhook_items.endpoint_from_item(f) for f in found]

    async def update_endpoint(self, endpoint: Endpoint) -> bool:
        """Write what the owner changes and the enabled flag at ``endpoint.revision``
        (see the port); the failure counters only when the flag changes. Its tenant and
        creation time stay; the delivery loop's ``version`` is not touched."""
        key = webhook_items.endpoint_key(endpoint.id)
        found = await self._get(key)
        if found is None or found["tenant"] != endpoint.tenant:
            return False
        stored = webhook_items.endpoint_from_item(found)
        if webhooks.update_refused(stored, endpoint):
            raise EndpointChanged(endpoint.id)
        kept = webhook_items.endpoint_item(endpoint, version=0)
        u = items.Update()
        for field in ("url", "description", "event_types", "secrets", "updated_at"):
            u.set(field, value=kept[field])
        u.set("enabled", value=endpoint.enabled)
        u.set("disabled_reason", value=kept["disabled_reason"])
        u.set("disabled_at", value=endpoint.disabled_at)
        if webhooks.update_writes_counters(stored, endpoint):
            u.set("failing_since", value=endpoint.failing_since)
            u.set("consecutive_failures", value=endpoint.consecutive_failures)
        if endpoint.enabled:
            u.remove("GSI2PK").remove("GSI2SK")
        else:
            u.set("GSI2PK", value=webhook_items.DISABLED_PARTITION)
            u.set("GSI2SK", value=endpoint.id)
        u.bump("revision")
        rev = u.name("revision")
        if endpoint.revision == 0:
            unchanged = f"attribute_not_exists({rev}) OR {rev} = {u.value(0)}"
        else:
            unchanged = f"{rev} = {u.value(endpoint.revision)}"
        try:
            await self._update(key, u, f"attribute_exists(PK) AND ({unchanged})")
        except Exception as exc:
            if is_client_error(exc, items.CONDITION_FAILED, webhook_items.TRANSACTION_CONFLICT):
                if await self._get(key) is None:
                    return False
                raise EndpointChanged(endpoint.id) from None
            raise
        return True

    async def delete_endpoint(self, tenant: str, endpoint_id: str) -> bool:
        """Delete an endpoint and its pending deliveries; False if the tenant has no such one.

        The endpoint goes first: a delivery fanned out to it meanwhile is never
        claimed (its endpoint is gone) and is deleted by the claim that finds it.
        """
        key = webhook_items.endpoint_key(endpoint_id)
        gone = {
            "Delete": {
                "TableName": self.table,
                "Key": item(key),
                "ConditionExpression": "#t = :t",
                "ExpressionAttributeNames": {"#t": "tenant"},
                "ExpressionAttributeValues": item({":t": tenant}),
            }
        }
        count = {
            "Update": items.Update()
            .bump("endpoints", by=-1)
            .request(self.table, webhook_items.endpoint_count_key(tenant), None)
        }
        for _ in range(items.MAX_CONTENTION_RETRIES):
            try:
                await self._transact(gone, count)
            except Unavailable:
                await asyncio.sleep(0.01)
                continue
            except Exception as exc:
                if not is_client_error(exc, items.TRANSACTION_CANCELED):
                    raise
                if items.cancel_codes(exc)[:1] == ["ConditionalCheckFailed"]:
                    return False
                await asyncio.sleep(0.01)
                continue
            break
        else:
            raise Unavailable("webhook endpoints of this tenant are too contended right now")
        pending = {"status": str(webhooks.DeliveryStatus.PENDING)}
        async for found in self._query(
            "GSI1", webhook_items.endpoint_deliveries(endpoint_id), filters=pending
        ):
            await self._drop_delivery(str(found["id"]))
        return True

    # -- the outbox -----------------------------------------------------------------------

    async def append_event(self, event: WebhookEvent) -> None:
        """Write an event no state change causes (test, endpoint disabled) to the outbox.

        One that names a notification all the same sorts after the events its
        changes wrote (``T`` sorts after the digits of ``order_key``).
        """
        order = None if event.notification_id is None else "T" + epoch_key(event.occurred_at)
        await self._call("put_item", **webhook_items.event_put(self.table, event, order)["Put"])

    async def fan_out(self, *, limit: int = 500) -> int:
        """Turn up to ``limit`` unfanned events, oldest first, into pending deliveries, each
        event atomically and exactly once (see the module); how many events."""
        if limit <= 0:
            return 0
        shards = await asyncio.gather(
            *(
                self._all(WEBHOOK_INDEX, webhook_items.fan_partition(s), limit=limit)
                for s in range(webhook_items.FAN_SHARDS)
            )
        )
        oldest = sorted((e for shard in shards for e in shard), key=lambda e: e["GSI5SK"])
        groups: dict[str, list[dict[str, Any]]] = {}
        for found in oldest[:limit]:
            groups.setdefault(str(found.get("notification_id") or found["PK"]), []).append(found)
        budget = [limit]
        endpoints: dict[str, list[Endpoint]] = {}
        gate = asyncio.Semaphore(FAN_OUT_CONCURRENCY)

        async def fan_group(picked: list[dict[str, Any]]) -> int:
            async with gate:
                nid = picked[0].get("notification_id")
                if nid is None:
                    events = picked
                else:
                    # Its earlier unfanned events too, in order: they go first.
                    last = max(str(e["SK"]) for e in picked)
                    events = [
                        e
                        for e in await self._events_of(str(nid))
                        if "GSI5PK" in e and str(e["SK"]) <= last
                    ]
                done = 0
                for found in events:
                    if budget[0] <= 0:
                        break
                    budget[0] -= 1  # taken before the await: the groups run concurrently
                    outcome = await self._fan_one(found, endpoints)
                    if outcome == "fanned":
                        done += 1
                        continue
                    budget[0] += 1
                    if outcome == "busy":
                        break  # someone else is fanning it: the rest waits for its turn
                return done

        return sum(await asyncio.gather(*(fan_group(g) for g in groups.values())))

    async def _fan_one(self, found: Mapping[str, Any], cache: dict[str, list[Endpoint]]) -> str:
        """Fan one event out: 'fanned', 'taken' (already fanned) or 'busy' (being fanned)."""
        event = webhook_items.event_from_item(found)
        if event.tenant not in cache:
            cache[event.tenant] = await self.list_endpoints(event.tenant)
        now = self.clock.now()
        u = items.Update().set("fanned_at", value=now).remove("GSI5PK").remove("GSI5SK")
        still = f"attribute_exists({u.name('GSI5PK')})"
        mark = u.request(self.table, {"PK": found["PK"], "SK": found["SK"]}, still)
        puts = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": item(
                        webhook_items.delivery_item(
                            webhooks.new_delivery_id(), e.id, event, found.get("order"), now
                        )
                    ),
                }
            }
            for e in webhooks.fan_out(event, cache[event.tenant])
        ]
        try:
            if puts:
                await self._transact({"Update": mark}, *puts)
            else:
                await self._call("update_item", **mark)
        except Unavailable:
            return "busy"
        except Exception as exc:
            if is_client_error(exc, webhook_items.TRANSACTION_CONFLICT):
                return "busy"
            if is_client_error(exc, items.CONDITION_FAILED) or (
                is_client_error(exc, items.TRANSACTION_CANCELED)
                and items.cancel_codes(exc)[:1] == ["ConditionalCheckFailed"]
            ):
                return "taken"
            raise
        return "fanned"

    async def _events_of(self, notification_id: str) -> list[dict[str, Any]]:
        """A notification's event items, in order (strongly consistent)."""
        found: list[dict[str, Any]] = []
        async for e in self._prefixed(f"N#{notification_id}", webhook_items.EVENT_PREFIX):
            found.append(e)
        return found

    async def list_events(
        self, tenant: str, *, notification_id: str | None = None, limit: int = 100
    ) -> list[WebhookEvent]:
        """The tenant's events, oldest first (for ``notification_id``: its own, in order)."""
        if notification_id is not None:
            found = [e for e in await self._events_of(notification_id) if e["tenant"] == tenant]
        else:
            found = await self._all("GSI1", webhook_items.tenant_events(tenant), limit=limit)
        return [webhook_items.event_from_item(e) for e in found[:limit]]

    # -- retention --------------------------------------------------------------------------

    async def purge_webhooks(
        self, older_than_seconds: float, *, page_size: int = 1000
    ) -> dict[str, int]:
        """Delete deliveries finished (with their attempts), and events of no notification
        fanned out, more than ``older_than_seconds`` ago; items deleted per kind, named as
        ``retention.PURGE_COUNTS`` (a notification's events go with it, counted there).

        Scans, as ``purge`` does: a pending delivery, or an unfanned event, stays.
        """
        cutoff = self.clock.now() - older_than_seconds
        counts = dict.fromkeys(("webhook_events", "webhook_deliveries", "webhook_attempts"), 0)
        finished = "#sk = :d AND #finished < :cutoff AND #status IN (:ok, :gave_up)"
        values = {":d": "D", ":cutoff": cutoff}
        values |= {":ok": str(webhooks.DeliveryStatus.SUCCEEDED)}
        values |= {":gave_up": str(webhooks.DeliveryStatus.FAILED)}
        async for found in self._scan(finished, values, page_size):
            # Its attempts sort before the delivery (A# < D): a purge that dies
            # midway leaves the delivery for the next run.
            parts = [p async for p in self._prefixed(f"WHD#{found['id']}", "")]
            for part in parts:
                await self._call(
                    "delete_item",
                    TableName=self.table,
                    Key=item({"PK": part["PK"], "SK": part["SK"]}),
                )
                if part["SK"] == "D":
                    counts["webhook_deliveries"] += 1
                elif part["SK"].startswith(webhook_items.ATTEMPT_PREFIX):
                    counts["webhook_attempts"] += 1
        fanned = "#sk = :e AND fanned_at < :cutoff"
        async for found in self._scan(fanned, {":e": "WHEV", ":cutoff": cutoff}, page_size):
            await self._call(
                "delete_item",
                TableName=self.table,
                Key=item({"PK": found["PK"], "SK": found["SK"]}),
            )
            counts["webhook_events"] += 1
        return counts

    # -- stats ------------------------------------------------------------------------------

    async def webhook_stats(self) -> WebhookStats:
        """Pending deliveries, the oldest due one's wait, unfanned events, disabled endpoints."""
        now = self.clock.now()
        due = [webhook_items.due_partition(s) for s in range(webhook_items.DUE_SHARDS)]
        fan = [webhook_items.fan_partition(s) for s in range(webhook_items.FAN_SHARDS)]
        pending, unfanned, disabled, heads = await asyncio.gather(
            self._count_all(WEBHOOK_INDEX, due),
            self._count_all(WEBHOOK_INDEX, fan),
            self._count_all("GSI2", [webhook_items.DISABLED_PARTITION]),
            asyncio.gather(
                *(self._all(WEBHOOK_INDEX, p, below=epoch_key(now) + "$", limit=1) for p in due)
            ),
        )
        # A due entry's sort key starts with when it became claimable.
        since = [float(str(h[0]["GSI5SK"]).split("#")[0]) for h in heads if h]
        return WebhookStats(
            pending=pending,
            oldest_due_age_seconds=max(0.0, now - min(since)) if since else 0.0,
            unfanned_events=unfanned,
            disabled_endpoints=disabled,
        )
