"""Webhook deliveries on the DynamoDB table: claim, record an attempt, list, retry, replay.

A pending delivery sits in the sparse GSI5 partition ``WHDUE#<shard>`` sorted
by when it can next be claimed. A claim is a conditional update on the sort
key it read (whoever changed the delivery since wins) that takes the lease and
moves that key to the lease's end: a live claim is out of the due range, a
lapsed one due again without anyone cleaning up. Whether a delivery may go
before the earlier deliveries of its notification to the same endpoint are
finished is ``webhooks.may_deliver`` on the statuses read from GSI3
``WHORD#<endpoint>#<notification>`` (in the events' order). GSIs are read
eventually consistently: a delivery that just became due, or finished, may
wait one more round, which costs latency, never order.

``finish_attempt`` is one ``TransactWriteItems``: the attempt item, the
delivery (conditioned on the claim token), the endpoint's counters
(conditioned on the endpoint's version as read, so two attempts finishing
together are decided one after the other) and, when the decision disables
the endpoint, its ``endpoint.disabled`` event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import replace
from typing import Any

from integration_hub.adapters.aws import items, webhook_items
from integration_hub.adapters.aws.client import TableClient
from integration_hub.adapters.aws.session import is_client_error
from integration_hub.adapters.aws.tables import epoch_key, item, plain
from integration_hub.adapters.aws.webhook_items import WEBHOOK_INDEX
from integration_hub.domain import lifecycle, webhooks
from integration_hub.domain.errors import Unavailable
from integration_hub.domain.webhooks import (
    Attempted,
    AttemptResult,
    Delivery,
    DeliveryDecision,
    DeliveryStatus,
    DisablePolicy,
    Endpoint,
    EventType,
)

PENDING = str(DeliveryStatus.PENDING)
DISABLED_ERROR = "the endpoint was disabled"
# A claim reads this many due entries per shard and page for each one it may take
# (at least MIN_PAGE): some are held back (their endpoint is at per_endpoint, or an
# earlier delivery of the same notification is not finished).
READ_AHEAD = 4
MIN_PAGE = 100
# Pages per shard one claim reads at most: what bounds its cost when a backlog of
# skipped deliveries sits ahead of the claimable ones.
MAX_CLAIM_PAGES = 20
# DynamoDB's IN takes at most 100 values; what is left is skipped after reading.
_MAX_IN_VALUES = 100
# How many concurrent attempts one endpoint's counters may see in a row before the
# caller hears Unavailable (the in-flight cap per endpoint is 4 by default).
MAX_FINISH_RETRIES = 50


class WebhookDeliveryItems(TableClient):
    """The delivery half of the WebhookStore port (see the module)."""

    async def claim_deliveries(
        self,
        *,
        token: str,
        lease_seconds: float,
        limit: int,
        per_endpoint: int,
        exclude_endpoints: Collection[str] = (),
        exclude_tenants: Collection[str] = (),
    ) -> list[Delivery]:
        """Take up to ``limit`` due deliveries, oldest due first (see the port).

        The due partitions are read a page per shard at a time, in due order
        within a shard (roughly across shards), until ``limit`` are taken.
        Deliveries of excluded and disabled endpoints and excluded tenants are
        filtered out by DynamoDB (they still count towards a page's ``Limit``):
        a full or dead endpoint's backlog costs read capacity, not other
        endpoints' turns, as long as it is shorter than ``MAX_CLAIM_PAGES``
        pages per shard.
        """
        if limit <= 0 or per_endpoint <= 0:
            return []
        now = self.clock.now()
        disabled = {
            str(e["GSI2SK"]) for e in await self._all("GSI2", webhook_items.DISABLED_PARTITION)
        }
        skip_endpoints = set(exclude_endpoints) | disabled
        skip_tenants = set(exclude_tenants)
        queries: list[dict[str, Any] | None] = [
            self._due_query(s, now, max(limit * READ_AHEAD, MIN_PAGE), skip_endpoints, skip_tenants)
            for s in range(webhook_items.DUE_SHARDS)
        ]
        taken: list[Delivery] = []
        per: dict[str, int] = {}
        endpoints: dict[str, Endpoint | None] = {}
        for _ in range(MAX_CLAIM_PAGES):
            live = [(i, q) for i, q in enumerate(queries) if q is not None]
            if not live:
                break
            pages = await asyncio.gather(*(self._call("query", **q) for _, q in live))
            batch: list[dict[str, Any]] = []
            for (i, query), page in zip(live, pages, strict=True):
                batch += [plain(found) for found in page.get("Items", [])]
                if "LastEvaluatedKey" in page:
                    query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
                else:
                    queries[i] = None
            due = [
                d
                for d in sorted(batch, key=lambda d: str(d["GSI5SK"]))
                if str(d["endpoint_id"]) not in skip_endpoints  # past the filter's 100 values
                and str(d["tenant"]) not in skip_tenants
            ]
            while due and len(taken) < limit:
                # A wave: a few candidates per endpoint that may still take some (held
                # back ones wait for the next wave, so a backlog of deliveries that are
                # not their turn never hides one that is), checked concurrently, then
                # leased in due order within each endpoint's cap. A later delivery of a
                # notification in the same wave sees the earlier one pending and waits.
                wave, due = self._wave(due, per, per_endpoint, limit - len(taken))
                unknown = sorted({str(f["endpoint_id"]) for f in wave} - endpoints.keys())
                read = await asyncio.gather(*(self._endpoint(e) for e in unknown))
                endpoints.update(zip(unknown, read, strict=True))
                turns = await asyncio.gather(
                    *(self._claimable(f, endpoints[str(f["endpoint_id"])]) for f in wave)
                )
                chosen: list[dict[str, Any]] = []
                room = dict(per)
                for found, ok in zip(wave, turns, strict=True):
                    endpoint_id = str(found["endpoint_id"])
                    fits = len(taken) + len(chosen) < limit
                    if ok and fits and room.get(endpoint_id, 0) < per_endpoint:
                        room[endpoint_id] = room.get(endpoint_id, 0) + 1
                        chosen.append(found)
                leased = await asyncio.gather(
                    *(self._lease(f, token, now + lease_seconds) for f in chosen)
                )
                for claimed in leased:
                    if claimed is not None:
                        per[claimed.endpoint_id] = per.get(claimed.endpoint_id, 0) + 1
                        taken.append(claimed)
                # What may go but did not fit takes the place of a lease another claim
                # won in the next wave (an endpoint that reached its cap drops out there).
                picked = {id(f) for f in chosen}
                unpicked = [
                    f for f, ok in zip(wave, turns, strict=True) if ok and id(f) not in picked
                ]
                due = unpicked + due
            if len(taken) >= limit:
                break
        return taken

    @staticmethod
    def _wave(
        due: list[dict[str, Any]], per: dict[str, int], per_endpoint: int, wanted: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The next wave of ``due`` (in due order) and what is left for later waves.

        At most ``READ_AHEAD`` candidates per slot an endpoint has left, and per
        delivery still wanted; an endpoint already at its cap drops out.
        """
        wave: list[dict[str, Any]] = []
        rest: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        for found in due:
            endpoint_id = str(found["endpoint_id"])
            left = per_endpoint - per.get(endpoint_id, 0)
            if left <= 0:
                continue
            if seen.get(endpoint_id, 0) < left * READ_AHEAD and len(wave) < wanted * READ_AHEAD:
                seen[endpoint_id] = seen.get(endpoint_id, 0) + 1
                wave.append(found)
            else:
                rest.append(found)
        return wave, rest

    async def _claimable(self, found: dict[str, Any], endpoint: Endpoint | None) -> bool:
        """Whether ``found`` may be leased: its endpoint takes deliveries, it is its turn."""
        if endpoint is None:
            await self._drop_delivery(str(found["id"]))  # fanned out as it was deleted
            return False
        return endpoint.enabled and await self._its_turn(found)

    def _due_query(
        self,
        shard: int,
        now: float,
        page: int,
        skip_endpoints: Collection[str],
        skip_tenants: Collection[str],
    ) -> dict[str, Any]:
        """The Query of one due partition up to ``now``, without what is skipped."""
        names = {"#pk": "GSI5PK", "#sk": "GSI5SK"}
        # '$' sorts after '#': what is due exactly at ``now`` is due.
        values: dict[str, Any] = {":pk": webhook_items.due_partition(shard)}
        values[":due"] = epoch_key(now) + "$"
        clauses = []
        for attribute, skipped in (("endpoint_id", skip_endpoints), ("tenant", skip_tenants)):
            listed = sorted(skipped)[:_MAX_IN_VALUES]
            if not listed:
                continue
            names[f"#{attribute}"] = attribute
            placeholders = []
            for value in listed:
                placeholders.append(f":x{len(values)}")
                values[placeholders[-1]] = value
            clauses.append(f"NOT (#{attribute} IN ({', '.join(placeholders)}))")
        params: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": WEBHOOK_INDEX,
            "KeyConditionExpression": "#pk = :pk AND #sk < :due",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": item(values),
            "Limit": page,
        }
        if clauses:
            params["FilterExpression"] = " AND ".join(clauses)
        return params

    async def _endpoint(self, endpoint_id: str) -> Endpoint | None:
        found = await self._get(webhook_items.endpoint_key(endpoint_id))
        return None if found is None else webhook_items.endpoint_from_item(found)

    async def _its_turn(self, found: dict[str, Any]) -> bool:
        """``webhooks.may_deliver``: every earlier delivery of its notification to its
        endpoint is finished."""
        if "GSI3PK" not in found:
            return True  # no notification: no order to keep
        head = await self._all("GSI3", str(found["GSI3PK"]), below=str(found["GSI3SK"]))
        return webhooks.may_deliver([DeliveryStatus(h["status"]) for h in head])

    async def _lease(self, found: dict[str, Any], token: str, until: float) -> Delivery | None:
        """Take ``found`` for ``token`` until ``until``, if it is as read; the delivery."""
        delivery_id = str(found["id"])
        u = items.Update().set("claim_token", value=token).set("claim_expires_at", value=until)
        u.set("GSI5SK", value=webhook_items.due_sort_key(until, delivery_id))
        condition = (
            f"{u.name('status')} = {u.value(PENDING)}"
            f" AND {u.name('GSI5SK')} = {u.value(found['GSI5SK'])}"
        )
        try:
            fresh = await self._update(
                webhook_items.delivery_key(delivery_id), u, condition, returns="ALL_NEW"
            )
        except Exception as exc:
            if is_client_error(exc, items.CONDITION_FAILED, webhook_items.TRANSACTION_CONFLICT):
                return None  # claimed, finished or retried since the index was read
            raise
        return webhook_items.delivery_from_item(fresh)

    async def finish_attempt(
        self,
        delivery: Delivery,
        token: str,
        result: AttemptResult,
        *,
        policy: DisablePolicy,
    ) -> DeliveryDecision | None:
        """Record attempt ``delivery.attempt_count + 1`` and what it decides (see the module)."""
        key = webhook_items.delivery_key(delivery.id)
        for _ in range(MAX_FINISH_RETRIES):
            now = self.clock.now()
            current = await self._get(key)
            if current is None or current.get("claim_token") != token:
                return None
            found = await self._get(webhook_items.endpoint_key(delivery.endpoint_id))
            if found is None:
                return None  # deleted, and its pending deliveries with it
            endpoint = webhook_items.endpoint_from_item(found)
            number = int(current.get("attempt_count") or 0) + 1
            decision = webhooks.decide_delivery(
                attempt=number - int(current.get("schedule_offset") or 0),
                result=result,
                now=now,
                failing_since=endpoint.failing_since,
                consecutive_failures=endpoint.consecutive_failures,
                policy=policy,
            )
            writes = self._finish(current, token, number, result, decision, now)
            writes += self._count(endpoint, int(found.get("version") or 0), decision, now)
            try:
                await self._transact(*writes)
            except Unavailable:
                await asyncio.sleep(0.01)  # another attempt of this endpoint: decide again
                continue
            except Exception as exc:
                if not is_client_error(exc, items.TRANSACTION_CANCELED):
                    raise
                codes = items.cancel_codes(exc)
                if codes[1:2] == ["ConditionalCheckFailed"]:
                    return None  # the claim was lost meanwhile
                continue  # the endpoint's counters moved: decide again
            if decision.disable is not None and endpoint.enabled:
                await self._fail_waiting(endpoint.id, now)
            return decision
        raise Unavailable("webhook endpoint is too contended right now")

    async def _fail_waiting(self, endpoint_id: str, now: float) -> None:
        """A disabled endpoint's waiting deliveries give up (those in flight finish first).

        After the disabling's transaction, not in it: there may be more than
        one transaction holds. Until then a claim skips them (the endpoint is
        disabled), so the delay changes nothing anyone sees but the status.
        """
        pending = {"status": PENDING}
        async for found in self._query(
            "GSI1", webhook_items.endpoint_deliveries(endpoint_id), filters=pending
        ):
            u = items.Update().set("status", value=str(DeliveryStatus.FAILED))
            u.set("last_error", value=DISABLED_ERROR).set("finished_at", value=now)
            u.remove("next_attempt_at").remove("GSI5PK").remove("GSI5SK")
            token, until = u.name("claim_token"), u.name("claim_expires_at")
            waiting = (
                f"{u.name('status')} = {u.value(PENDING)} AND (attribute_not_exists({token})"
                f" OR {until} <= {u.value(now)})"
            )
            try:
                await self._update(webhook_items.delivery_key(str(found["id"])), u, waiting)
            except Exception as exc:
                if not is_client_error(
                    exc, items.CONDITION_FAILED, webhook_items.TRANSACTION_CONFLICT
                ):
                    raise

    def _finish(
        self,
        current: dict[str, Any],
        token: str,
        number: int,
        result: AttemptResult,
        decision: DeliveryDecision,
        now: float,
    ) -> list[dict[str, Any]]:
        """The attempt's Put and the delivery's Update (under the claim token)."""
        delivery_id = str(current["id"])
        attempt = webhook_items.attempt_item(delivery_id, Attempted(number, now, result))
        u = items.Update().set("status", value=str(decision.status))
        u.set("next_attempt_at", value=decision.next_attempt_at)
        u.set("attempt_count", value=number)
        u.set("last_status_code", value=result.status_code).set("last_error", value=result.error)
        u.remove("claim_token").remove("claim_expires_at")
        if decision.status.finished:
            u.set("finished_at", value=now).remove("GSI5PK").remove("GSI5SK")
        else:
            assert decision.next_attempt_at is not None
            u.set("GSI5SK", value=webhook_items.due_sort_key(decision.next_attempt_at, delivery_id))
        ours = f"{u.name('claim_token')} = {u.value(token)}"
        return [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": item(attempt),
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {"Update": u.request(self.table, webhook_items.delivery_key(delivery_id), ours)},
        ]

    def _count(
        self, endpoint: Endpoint, version: int, decision: DeliveryDecision, now: float
    ) -> list[dict[str, Any]]:
        """The endpoint's counters (and its disabling, with the event) as decided."""
        u = items.Update().set("failing_since", value=decision.failing_since)
        u.set("consecutive_failures", value=decision.consecutive_failures)
        u.set("version", value=version + 1)
        writes: list[dict[str, Any]] = []
        if decision.disable is not None and endpoint.enabled:
            u.set("enabled", value=False).set("disabled_reason", value=str(decision.disable))
            u.set("disabled_at", value=now).set("updated_at", value=now)
            u.set("GSI2PK", value=webhook_items.DISABLED_PARTITION)
            u.set("GSI2SK", value=endpoint.id).bump("revision")
            told = webhooks.disabled_event(endpoint, decision.disable, now)
            writes.append(webhook_items.event_put(self.table, told))
        unchanged = f"{u.name('version')} = {u.value(version)}"
        key = webhook_items.endpoint_key(endpoint.id)
        return [{"Update": u.request(self.table, key, unchanged)}, *writes]

    # -- reading, retrying, replaying ---------------------------------------------------

    async def get_delivery(self, tenant: str | None, delivery_id: str) -> Delivery | None:
        """One delivery with its attempts (one strongly consistent Query)."""
        parts = [p async for p in self._prefixed(f"WHD#{delivery_id}", "")]
        head = next((p for p in parts if p["SK"] == "D"), None)
        if head is None or not lifecycle.visible_to(tenant, head["tenant"]):
            return None
        attempts = tuple(
            webhook_items.attempt_from_item(p)
            for p in parts
            if str(p["SK"]).startswith(webhook_items.ATTEMPT_PREFIX)
        )
        return webhook_items.delivery_from_item(head, attempts)

    async def list_deliveries(
        self,
        tenant: str | None,
        endpoint_id: str,
        *,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Delivery]:
        """An endpoint's deliveries with their attempts, newest first."""
        if tenant is not None:
            owner = await self._get(webhook_items.endpoint_key(endpoint_id))
            if owner is None or owner["tenant"] != tenant:
                return []
        below = None
        if before_id is not None:
            cursor = await self._get(webhook_items.delivery_key(before_id))
            if cursor is None or cursor["endpoint_id"] != endpoint_id:
                return []
            below = str(cursor["GSI1SK"])
        found = await self._all(
            "GSI1",
            webhook_items.endpoint_deliveries(endpoint_id),
            below=below,
            newest_first=True,
            limit=limit,
        )
        whole = await asyncio.gather(*(self.get_delivery(tenant, str(f["id"])) for f in found))
        return [d for d in whole if d is not None]

    async def retry_delivery(self, tenant: str | None, endpoint_id: str, delivery_id: str) -> bool:
        """A finished delivery of the endpoint PENDING again, due now, its schedule starting
        over from its next attempt (the attempts so far stay, numbered on); False if there
        is no such finished one (a pending one is left as it is)."""
        owner = await self._get(webhook_items.endpoint_key(endpoint_id))
        if owner is None or not lifecycle.visible_to(tenant, owner["tenant"]):
            return False
        key = webhook_items.delivery_key(delivery_id)
        found = await self._get(key)
        if found is None or found["endpoint_id"] != endpoint_id:
            return False
        if not DeliveryStatus(found["status"]).finished:
            return False
        now = self.clock.now()
        u = items.Update().set("status", value=PENDING).set("next_attempt_at", value=now)
        u.set("schedule_offset", value=int(found.get("attempt_count") or 0))
        u.remove("finished_at").remove("claim_token").remove("claim_expires_at")
        u.set("GSI5PK", value=webhook_items.due_partition_of(delivery_id))
        u.set("GSI5SK", value=webhook_items.due_sort_key(now, delivery_id))
        same = f"{u.name('status')} = {u.value(found['status'])}"
        try:
            await self._update(key, u, same)
        except Exception as exc:
            if is_client_error(exc, webhook_items.TRANSACTION_CONFLICT):
                raise Unavailable("webhook delivery is being written right now") from exc
            if is_client_error(exc, items.CONDITION_FAILED):
                return False  # retried by someone else meanwhile
            raise
        return True

    async def replay(
        self,
        tenant: str,
        endpoint_id: str,
        *,
        since: float,
        types: Collection[EventType] | None = None,
        limit: int = 10_000,
    ) -> int:
        """New pending deliveries to the endpoint of the tenant's events since ``since``
        that it accepts (its event types, or ``types``), same event ids; how many."""
        found = await self._get(webhook_items.endpoint_key(endpoint_id))
        if found is None or found["tenant"] != tenant or limit <= 0:
            return 0
        endpoint = webhook_items.endpoint_from_item(found)
        # A disabled endpoint accepts nothing: it is enabled first, then replayed to.
        wants = endpoint if types is None else replace(endpoint, event_types=frozenset(types))
        now = self.clock.now()
        made = 0
        batch: list[dict[str, Any]] = []
        async for e in self._from("GSI1", webhook_items.tenant_events(tenant), epoch_key(since)):
            event = webhook_items.event_from_item(e)
            if not wants.accepts(event):
                continue
            delivery = webhook_items.delivery_item(
                webhooks.new_delivery_id(), endpoint_id, event, e.get("order"), now
            )
            batch.append(delivery)
            made += 1
            if len(batch) >= 25:
                await self._put_all(batch)
                batch = []
            if made >= limit:
                break
        await self._put_all(batch)
        return made

    async def _put_all(self, values: Sequence[dict[str, Any]]) -> None:
        await asyncio.gather(
            *(self._call("put_item", TableName=self.table, Item=item(v)) for v in values)
        )

    async def _drop_delivery(self, delivery_id: str) -> None:
        """Delete a delivery and its attempts."""
        parts = [p async for p in self._prefixed(f"WHD#{delivery_id}", "")]
        for p in parts:
            await self._call(
                "delete_item", TableName=self.table, Key=item({"PK": p["PK"], "SK": p["SK"]})
            )

    # -- queries the table client does not have ---------------------------------------

    async def _prefixed(self, partition: str, prefix: str) -> AsyncIterator[dict[str, Any]]:
        """A base-table partition's items whose sort key starts with ``prefix``, in order."""
        condition = "PK = :pk" + (" AND begins_with(SK, :prefix)" if prefix else "")
        values = {":pk": partition} | ({":prefix": prefix} if prefix else {})
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": item(values),
            "ConsistentRead": True,
        }
        async for found in self._pages(params):
            yield found

    async def _from(self, index: str, partition: str, lowest: str) -> AsyncIterator[dict[str, Any]]:
        """A GSI partition's items from sort key ``lowest`` on, in order."""
        params: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": "#pk = :pk AND #sk >= :lowest",
            "ExpressionAttributeNames": {"#pk": f"{index}PK", "#sk": f"{index}SK"},
            "ExpressionAttributeValues": item({":pk": partition, ":lowest": lowest}),
        }
        async for found in self._pages(params):
            yield found

    async def _pages(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        while True:
            page = await self._call("query", **params)
            for found in page.get("Items", []):
                yield plain(found)
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def _count_all(self, index: str, partitions: Sequence[str]) -> int:
        """How many items the GSI ``index`` holds in ``partitions`` (COUNT queries)."""
        total = 0
        for partition in partitions:
            params: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": index,
                "KeyConditionExpression": "#pk = :pk",
                "ExpressionAttributeNames": {"#pk": f"{index}PK"},
                "ExpressionAttributeValues": item({":pk": partition}),
                "Select": "COUNT",
            }
            while True:
                page = await self._call("query", **params)
                total += int(page.get("Count", 0))
                if "LastEvaluatedKey" not in page:
                    break
                params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return total
