"""The Store, Outbox and SecretStore ports on one DynamoDB table.

Every status transition is a conditional write, and every change that spans
items is one ``TransactWriteItems``; times are numbers from the injected
clock, never the server's. Item layout and access patterns: ADR 0011.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncIterator, Mapping
from typing import Any

from integration_hub.adapters import rows
from integration_hub.adapters.aws import tables
from integration_hub.adapters.aws.session import AwsSession, is_client_error, translated
from integration_hub.adapters.aws.tables import epoch_key, item, pending_shard, plain, seq_key
from integration_hub.domain import quota
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.errors import IdempotencyInProgress, NotFound, TenantExists, Unavailable
from integration_hub.domain.models import Attempt, Notification
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import TERMINAL, Status, check_transition
from integration_hub.domain.tenants import ApiKeyRecord, Tenant
from integration_hub.ports import Clock, DeadLetter, IdempotencyRecord, OutboxEntry, Store

CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"
# Optimistic writes (claims, quota windows) retry this often before giving up.
MAX_CONTENTION_RETRIES = 100
PURGE_COUNTS = ("notifications", "attempts", "dead_letters", "outbox", "queue", "idempotency_keys")


class Row(dict[str, Any]):
    """An item as a row: absent attributes read as None (DynamoDB stores no nulls)."""

    def __missing__(self, key: str) -> None:
        return None


class Update:
    """An UpdateExpression with placeholders for every name and value."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._sets: list[str] = []
        self._removes: list[str] = []

    def name(self, *path: str) -> str:
        """A document path of placeholders."""
        out = []
        for part in path:
            placeholder = f"#n{len(self.names)}"
            found = next((k for k, v in self.names.items() if v == part), None)
            if found is None:
                self.names[placeholder] = part
                found = placeholder
            out.append(found)
        return ".".join(out)

    def value(self, value: Any) -> str:
        """A value placeholder."""
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def set(self, *path: str, value: Any) -> Update:
        """SET a path (None removes it: absent is null)."""
        if value is None:
            self._removes.append(self.name(*path))
        else:
            self._sets.append(f"{self.name(*path)} = {self.value(value)}")
        return self

    def remove(self, *path: str) -> Update:
        """REMOVE a path."""
        self._removes.append(self.name(*path))
        return self

    def bump(self, attribute: str = "version", by: int = 1) -> Update:
        """Add to a number (``version`` by default, which every transition bumps)."""
        path = self.name(attribute)
        self._sets.append(f"{path} = if_not_exists({path}, {self.value(0)}) + {self.value(by)}")
        return self

    def request(self, table: str, key: Mapping[str, str], condition: str | None) -> dict[str, Any]:
        """UpdateItem parameters (also the ``Update`` of a transaction)."""
        parts = []
        if self._sets:
            parts.append("SET " + ", ".join(self._sets))
        if self._removes:
            parts.append("REMOVE " + ", ".join(self._removes))
        params: dict[str, Any] = {
            "TableName": table,
            "Key": item(key),
            "UpdateExpression": " ".join(parts),
            "ExpressionAttributeNames": self.names,
        }
        if self.values:
            params["ExpressionAttributeValues"] = {
                k: tables.encode(v) for k, v in self.values.items()
            }
        if condition:
            params["ConditionExpression"] = condition
        return params


def _notification_key(notification_id: str) -> dict[str, str]:
    return {"PK": f"N#{notification_id}", "SK": "N"}


def _dead_letter_key(notification_id: str) -> dict[str, str]:
    return {"PK": f"N#{notification_id}", "SK": "DL"}


def _idempotency_key(tenant: str, key: str) -> dict[str, str]:
    return {"PK": f"IDEM#{tenant}#{key}", "SK": "IDEM"}


def _status_index(tenant: str, status: Status | str) -> str:
    return f"T#{tenant}#S#{status}"


def _cancel_codes(exc: BaseException) -> list[str]:
    """Per-item codes of a canceled transaction ('None' where an item was fine)."""
    reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
    return [str(r.get("Code", "None")) for r in reasons]


def _notification(found: Mapping[str, Any]) -> Notification:
    row = Row(found)
    attempts = sorted((found.get("attempts") or {}).values(), key=lambda a: a["number"])
    return rows.notification_from_row(row, [rows.attempt_from_row(Row(a)) for a in attempts])


class DynamoStore:
    """Store, Outbox and SecretStore on one DynamoDB table (see ADR 0011)."""

    def __init__(self, session: AwsSession, table: str, *, clock: Clock) -> None:
        self.session = session
        self.table = table
        self.clock = clock

    # -- plumbing -------------------------------------------------------------

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
        update: Update,
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

    # -- tenants and keys -------------------------------------------------------

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
            if is_client_error(exc, CONDITION_FAILED):
                raise TenantExists(f"tenant {tenant.id!r} exists already") from None
            raise

    async def update_tenant(self, tenant: Tenant) -> None:
        """Replace a tenant's status, routing and budget."""
        u = Update().set("name", value=tenant.name).set("status", value=str(tenant.status))
        u.set("config", value=rows.tenant_config(tenant))
        try:
            await self._update(
                {"PK": f"TENANT#{tenant.id}", "SK": "TENANT"}, u, "attribute_exists(PK)"
            )
        except Exception as exc:
            if is_client_error(exc, CONDITION_FAILED):
                raise NotFound(f"no tenant {tenant.id!r}", field="tenant") from None
            raise

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """A tenant by id."""
        found = await self._get({"PK": f"TENANT#{tenant_id}", "SK": "TENANT"})
        return None if found is None else rows.tenant_from_row(Row(found))

    async def list_tenants(self) -> list[Tenant]:
        """All tenants, oldest first."""
        return [rows.tenant_from_row(Row(t)) for t in await self._all("GSI1", "TENANTS")]

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
        return None if found is None else rows.api_key_from_row(Row(found))

    async def list_api_keys(self, tenant: str) -> list[ApiKeyRecord]:
        """A tenant's keys, oldest first."""
        found = await self._all("GSI1", f"T#{tenant}#KEYS")
        return [rows.api_key_from_row(Row(k)) for k in found]

    async def revoke_api_key(self, tenant: str, key_id: str) -> bool:
        """Revoke one of the tenant's active keys."""
        u = Update().set("revoked_at", value=self.clock.now())
        condition = (
            f"{u.name('tenant')} = {u.value(tenant)}"
            f" AND attribute_not_exists({u.name('revoked_at')})"
        )
        try:
            await self._update({"PK": f"APIKEY#{key_id}", "SK": "APIKEY"}, u, condition)
        except Exception as exc:
            if is_client_error(exc, CONDITION_FAILED):
                return False
            raise
        return True

    async def consume_quota(
        self, tenant: str, *, per_second: int | None, per_day: int | None
    ) -> float | None:
        """Count one notification against the tenant's windows, or say how long to wait."""
        key = {"PK": f"TENANT#{tenant}", "SK": "USAGE"}
        for _ in range(MAX_CONTENTION_RETRIES):
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
            u = Update().set("windows", value=windows).set("version", value=version + 1)
            condition = f"attribute_not_exists(PK) OR {u.name('version')} = {u.value(version)}"
            try:
                await self._update(key, u, condition)
            except Exception as exc:
                if not is_client_error(exc, CONDITION_FAILED):
                    raise
                await asyncio.sleep(random.uniform(0, 0.005))  # another API process won
                continue
            return None
        raise Unavailable("quota counters are too contended right now")

    # -- idempotency and ingest -------------------------------------------------

    async def reserve_idempotency_key(
        self, tenant: str, key: str, fingerprint: str, *, reservation: str, lock_seconds: float
    ) -> IdempotencyRecord | None:
        """Reserve a key: None if it is now ours, else the record that holds it."""
        now = self.clock.now()
        values = _idempotency_key(tenant, key) | {
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
        # abandoned one; DynamoDB's TTL deletion is only housekeeping.
        condition = (
            "attribute_not_exists(PK) OR #expires <= :now"
            " OR (attribute_not_exists(#response) AND #locked <= :now)"
        )
        for _ in range(MAX_CONTENTION_RETRIES):
            try:
                await self._call(
                    "put_item",
                    TableName=self.table,
                    Item=item(values),
                    ConditionExpression=condition,
                    ExpressionAttributeNames={
                        "#response": "response",
                        "#expires": "expires_at",
                        "#locked": "locked_until",
                    },
                    ExpressionAttributeValues=item({":now": now}),
                )
            except Exception as exc:
                if not is_client_error(exc, CONDITION_FAILED):
                    raise
            else:
                return None
            held = await self._get(_idempotency_key(tenant, key))
            if held is None:
                continue  # released in between: try again
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
                Key=item(_idempotency_key(tenant, key)),
                ConditionExpression="#reservation = :r AND attribute_not_exists(#response)",
                ExpressionAttributeNames={"#response": "response", "#reservation": "reservation"},
                ExpressionAttributeValues=item({":r": reservation}),
            )
        except Exception as exc:
            if not is_client_error(exc, CONDITION_FAILED):
                raise

    async def accept(
        self,
        notification: Notification,
        response: dict[str, Any],
        *,
        reservation: str,
        ttl_seconds: float,
    ) -> bool:
        """Persist a RECEIVED notification and complete its key in one transaction.

        The SQS message cannot join the transaction: False, the caller enqueues
        (and the reconciler covers a failed send).
        """
        now = self.clock.now()
        n = notification
        key = Update()
        key.set("response", value=json.dumps(response)).set("expires_at", value=now + ttl_seconds)
        key.set("locked_until", value=now).set("expires_ttl", value=math.ceil(now + ttl_seconds))
        mine = (
            f"{key.name('reservation')} = {key.value(reservation)}"
            f" AND attribute_not_exists({key.name('response')})"
        )
        created = rows.to_epoch(n.created_at)
        values: dict[str, Any] = _notification_key(n.id) | {
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
            "GSI2PK": _status_index(n.tenant, Status.RECEIVED),
            "GSI2SK": n.id,
            "GSI3PK": f"T#{n.tenant}#C#{n.country}",
            "GSI3SK": n.id,
            "GSI4PK": pending_shard(n.id),
            "GSI4SK": f"{epoch_key(now)}#{n.id}",
            "traceparent": n.traceparent,  # ADR 0013; None is left out of the item
            "tracestate": n.tracestate,
        }
        try:
            await self._transact(
                {
                    "Update": key.request(
                        self.table, _idempotency_key(n.tenant, n.idempotency_key), mine
                    )
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": item(values),
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
            )
        except Exception as exc:
            if is_client_error(exc, TRANSACTION_CANCELED) and _cancel_codes(exc)[:1] == [
                "ConditionalCheckFailed"
            ]:
                # Our reservation lapsed and another request took the key over.
                raise IdempotencyInProgress() from None
            raise
        return False

    # -- reads --------------------------------------------------------------------

    async def get_notification(
        self, tenant: str | None, notification_id: str
    ) -> Notification | None:
        """A notification with its attempts; ``tenant=None`` only for operators."""
        found = await self._get(_notification_key(notification_id))
        if found is None or (tenant is not None and found["tenant"] != tenant):
            return None
        return _notification(found)

    async def list_notifications(
        self,
        tenant: str,
        *,
        status: Status | None = None,
        country: str | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Notification]:
        """The tenant's notifications, newest first, strictly older than ``before_id``."""
        if status is not None:
            index, partition = "GSI2", _status_index(tenant, status)
        elif country is not None:
            index, partition = "GSI3", f"T#{tenant}#C#{country}"
        else:
            index, partition = "GSI1", f"T#{tenant}#N"
        filters = {"country": country} if status is not None and country is not None else None
        found = await self._all(
            index, partition, below=before_id, newest_first=True, limit=limit, filters=filters
        )
        return [_notification(f) for f in found]

    async def list_received(self, *, older_than: float, limit: int = 1000) -> list[Notification]:
        """RECEIVED notifications not claimed since ``older_than`` (epoch), for the reconciler."""
        out: list[Notification] = []
        for shard in range(tables.PENDING_SHARDS):
            async for found in self._query(
                "GSI4", f"PENDING#{shard}", below=epoch_key(older_than), limit=limit - len(out)
            ):
                out.append(_notification(found))
            if len(out) >= limit:
                break
        return out

    async def touch_received(self, notification: Notification) -> bool:
        """Mark a RECEIVED notification as re-enqueued now, so the next run skips it."""
        now = self.clock.now()
        u = Update().set("GSI4SK", value=f"{epoch_key(now)}#{notification.id}")
        condition = f"{u.name('status')} = {u.value(str(Status.RECEIVED))}"
        try:
            await self._update(_notification_key(notification.id), u, condition)
        except Exception as exc:
            if is_client_error(exc, CONDITION_FAILED):
                return False  # claimed in the meantime
            raise
        return True

    # -- worker -------------------------------------------------------------------

    async def claim(
        self,
        notification_id: str,
        token: str,
        *,
        lease_seconds: float,
        max_attempts: int,
    ) -> Notification | None:
        """Take a notification for one attempt (see the Store port)."""
        key = _notification_key(notification_id)
        for _ in range(MAX_CONTENTION_RETRIES):
            now = self.clock.now()
            found = await self._get(key)
            if found is None:
                return None
            current = Status(found["status"])
            held = found.get("claim_token") is not None and found.get("claim_expires_at", 0) > now
            if current in TERMINAL or (current is Status.PROCESSING and held):
                return _notification(found)
            check_transition(current, Status.PROCESSING)
            u = Update()
            # Whoever changed the item since we read it wins; we read again.
            unchanged = f"{u.name('version')} = {u.value(found['version'])}"
            try:
                if found["attempts_used"] >= max_attempts:
                    # Earlier attempts died mid-call (crashes) and spent the budget.
                    reason = (
                        f"attempt budget of {max_attempts} exhausted without a recorded outcome"
                        " (the worker stopped during the provider call)"
                    )
                    await self._transact(*self._fail(u, found, reason, now, condition=unchanged))
                    found = await self._get(key)
                    assert found is not None
                    return _notification(found)
                number = found["attempt_count"] + 1
                u.set("status", value=str(Status.PROCESSING)).set("claim_token", value=token)
                u.set("claim_expires_at", value=now + lease_seconds)
                u.set("attempts_used", value=found["attempts_used"] + 1)
                u.set("attempt_count", value=number).set("updated_at", value=now)
                u.set(
                    "attempts",
                    str(number),
                    value={"number": number, "provider": found["provider"], "started_at": now},
                )
                u.set("GSI2PK", value=_status_index(found["tenant"], Status.PROCESSING))
                u.remove("GSI4PK").remove("GSI4SK").bump()
                fresh = await self._update(key, u, unchanged, returns="ALL_NEW")
                return _notification(fresh)
            except Exception as exc:
                if not is_client_error(exc, CONDITION_FAILED, TRANSACTION_CANCELED):
                    raise
        raise Unavailable("notification is too contended right now")

    def _fail(
        self,
        u: Update,
        found: Mapping[str, Any],
        reason: str,
        now: float,
        *,
        condition: str,
        provider: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The transaction items that end a notification FAILED with its dead letter."""
        nid, tenant = found["id"], found["tenant"]
        u.set("status", value=str(Status.FAILED)).set("last_error", value=reason)
        if provider is not None:
            u.set("provider", value=provider)
        u.set("finished_at", value=now).set("updated_at", value=now)
        u.set("GSI2PK", value=_status_index(tenant, Status.FAILED))
        u.remove("claim_token").remove("claim_expires_at").remove("GSI4PK").remove("GSI4SK")
        u.bump()
        letter = _dead_letter_key(nid) | {
            "notification_id": nid,
            "tenant": tenant,
            "reason": reason,
            "dead_lettered_at": now,
            "GSI1PK": f"T#{tenant}#DL",
            "GSI1SK": f"{epoch_key(now)}#{nid}",
            "GSI2PK": "DL",
            "GSI2SK": f"{epoch_key(now)}#{nid}",
        }
        return (
            {"Update": u.request(self.table, _notification_key(nid), condition)},
            {"Put": {"TableName": self.table, "Item": item(letter)}},
        )

    async def complete_attempt(
        self,
        notification_id: str,
        token: str,
        attempt: Attempt,
        *,
        status: Status,
        dead_letter_reason: str | None = None,
    ) -> bool:
        """Record an attempt's outcome and move to ``status``; only the claim holder may."""
        check_transition(Status.PROCESSING, status)
        now = self.clock.now()
        u = Update()
        number = str(attempt.number)
        for attr, value in (
            ("finished_at", now),
            ("provider", attempt.provider),
            ("outcome", str(attempt.outcome)),
            ("error_class", attempt.error_class),
            ("error_code", attempt.error_code),
            ("message", attempt.message),
            ("latency_ms", attempt.latency_ms),
            ("provider_message_id", attempt.provider_message_id),
        ):
            u.set("attempts", number, attr, value=value)
        ours = (
            f"{u.name('status')} = {u.value(str(Status.PROCESSING))}"
            f" AND {u.name('claim_token')} = {u.value(token)}"
        )
        key = _notification_key(notification_id)
        try:
            if status is Status.FAILED:
                found = await self._get(key)
                if found is None:
                    return False
                reason = dead_letter_reason or attempt.message or "failed"
                await self._transact(
                    *self._fail(u, found, reason, now, condition=ours, provider=attempt.provider)
                )
                return True
            tenant = await self._tenant_of(notification_id)
            if tenant is None:
                return False
            u.set("status", value=str(status)).set("provider", value=attempt.provider)
            u.set("last_error", value=attempt.message if attempt.error_class else None)
            u.set("finished_at", value=now if status is Status.DONE else None)
            u.set("updated_at", value=now).set("GSI2PK", value=_status_index(tenant, status))
            u.remove("claim_token").remove("claim_expires_at").bump()
            await self._update(key, u, ours)
        except Exception as exc:
            if is_client_error(exc, CONDITION_FAILED, TRANSACTION_CANCELED):
                return False
            raise
        return True

    async def _tenant_of(self, notification_id: str) -> str | None:
        found = await self._call(
            "get_item",
            TableName=self.table,
            Key=item(_notification_key(notification_id)),
            ProjectionExpression="tenant",
        )
        return plain(found["Item"]).get("tenant") if "Item" in found else None

    # -- dead letters ---------------------------------------------------------------

    async def list_dead_letters(self, tenant: str | None, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest first; ``tenant=None`` lists every tenant's."""
        index, partition = ("GSI2", "DL") if tenant is None else ("GSI1", f"T#{tenant}#DL")
        found = await self._all(index, partition, newest_first=True, limit=limit)
        return [rows.dead_letter_from_row(Row(d)) for d in found]

    async def redrive(self, tenant: str | None, notification_id: str) -> bool | None:
        """FAILED -> RECEIVED with a fresh budget, removing the dead letter.

        The SQS message is the caller's to send (False), as for ``accept``.
        """
        now = self.clock.now()
        letter = await self._get(_dead_letter_key(notification_id))
        if letter is None or (tenant is not None and letter["tenant"] != tenant):
            return None
        found = await self._get(_notification_key(notification_id))
        if found is None:
            return None
        check_transition(Status(found["status"]), Status.RECEIVED)
        u = Update().set("status", value=str(Status.RECEIVED)).set("attempts_used", value=0)
        u.set("finished_at", value=None).set("updated_at", value=now)
        u.set("GSI2PK", value=_status_index(letter["tenant"], Status.RECEIVED))
        u.set("GSI4PK", value=pending_shard(notification_id))
        u.set("GSI4SK", value=f"{epoch_key(now)}#{notification_id}").bump()
        unchanged = f"{u.name('version')} = {u.value(found['version'])}"
        try:
            await self._transact(
                {"Update": u.request(self.table, _notification_key(notification_id), unchanged)},
                {
                    "Delete": {
                        "TableName": self.table,
                        "Key": item(_dead_letter_key(notification_id)),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
            )
        except Exception as exc:
            if is_client_error(exc, TRANSACTION_CANCELED):
                return None  # redriven by someone else in the meantime
            raise
        return False

    # -- the Outbox port ------------------------------------------------------------

    async def append(self, message: OutboundMessage, provider_message_id: str) -> None:
        """Record one delivery, numbered by an atomic counter."""
        now = self.clock.now()
        counter = await self._update(
            {"PK": "COUNTER#outbox", "SK": "COUNTER"},
            Update().bump("seq"),
            returns="UPDATED_NEW",
        )
        seq = int(counter["seq"])
        recipient = message.recipient.email if message.channel is Channel.EMAIL else None
        await self._put(
            {
                "PK": f"N#{message.notification_id}",
                "SK": f"OUTBOX#{seq_key(seq)}",
                "seq": seq,
                "notification_id": message.notification_id,
                "tenant": message.tenant,
                "channel": str(message.channel),
                "recipient": recipient or message.recipient.phone or "",
                "subject": message.subject,
                "body": message.body,
                "attempt": message.attempt,
                "provider_message_id": provider_message_id,
                "delivered_at": now,
                "GSI1PK": f"T#{message.tenant}#OUTBOX",
                "GSI1SK": seq_key(seq),
                "GSI2PK": "OUTBOX",
                "GSI2SK": seq_key(seq),
            }
        )

    async def list_outbox(
        self, tenant: str | None = None, *, limit: int = 100
    ) -> list[OutboxEntry]:
        """Deliveries, newest first."""
        index, partition = ("GSI2", "OUTBOX") if tenant is None else ("GSI1", f"T#{tenant}#OUTBOX")
        found = await self._all(index, partition, newest_first=True, limit=limit)
        return [rows.outbox_entry_from_row(Row(e)) for e in found]

    # -- the SecretStore port ---------------------------------------------------------

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
            if is_client_error(exc, TRANSACTION_CANCELED):
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
            if not is_client_error(exc, CONDITION_FAILED):
                raise
        stored = await self.get_data_key(tenant)
        assert stored is not None
        return stored

    async def list_data_keys(self) -> list[tuple[str, bytes]]:
        """Every (tenant, wrapped key)."""
        return [(k["tenant"], bytes(k["wrapped"])) for k in await self._all("GSI1", "DATAKEYS")]

    async def replace_data_key(self, tenant: str, old: bytes, new: bytes) -> bool:
        """Swap a wrapped key if it is still ``old``."""
        u = Update().set("wrapped", value=new).set("rotated_at", value=self.clock.now())
        condition = f"{u.name('wrapped')} = {u.value(old)}"
        try:
            await self._update({"PK": f"TENANT#{tenant}", "SK": "DATAKEY"}, u, condition)
        except Exception as exc:
            if is_client_error(exc, CONDITION_FAILED):
                return False
            raise
        return True

    # -- retention --------------------------------------------------------------------

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

    async def purge(self, older_than_seconds: float, *, page_size: int = 1000) -> dict[str, int]:
        """Delete what finished more than ``older_than_seconds`` ago; items per kind.

        A Scan: fine at the volumes a daily purge sees, and the table's TTL
        already removes expired idempotency keys on its own (those are not
        counted here). SQS messages are never counted: a finished
        notification's message was acked, and SQS drops any other after the
        queue's retention period.
        """
        now = self.clock.now()
        counts = dict.fromkeys(PURGE_COUNTS, 0)
        finished = "#sk = :n AND #finished < :cutoff AND #status IN (:done, :failed)"
        values = {":n": "N", ":cutoff": now - older_than_seconds}
        values |= {":done": str(Status.DONE), ":failed": str(Status.FAILED)}
        async for found in self._scan(finished, values, page_size):
            for part in await self._all(None, f"N#{found['id']}"):
                await self._call(
                    "delete_item",
                    TableName=self.table,
                    Key=item({"PK": part["PK"], "SK": part["SK"]}),
                )
                if part["SK"] == "N":
                    counts["notifications"] += 1
                    counts["attempts"] += len(part.get("attempts") or {})
                elif part["SK"] == "DL":
                    counts["dead_letters"] += 1
                elif part["SK"].startswith("OUTBOX#"):
                    counts["outbox"] += 1
        async for found in self._scan(
            "#sk = :idem AND expires_at <= :now", {":idem": "IDEM", ":now": now}, page_size
        ):
            try:
                await self._call(
                    "delete_item",
                    TableName=self.table,
                    Key=item({"PK": found["PK"], "SK": "IDEM"}),
                    ConditionExpression="expires_at <= :now",
                    ExpressionAttributeValues=item({":now": now}),
                )
            except Exception as exc:
                if not is_client_error(exc, CONDITION_FAILED):
                    raise
                continue  # taken over meanwhile
            counts["idempotency_keys"] += 1
        return counts

    async def close(self) -> None:
        """Close the AWS clients (shared with the SQS queue)."""
        await self.session.close()


async def purge(
    store: Store, *, older_than_seconds: float, batch_size: int = 1000
) -> dict[str, int]:
    """Retention on DynamoDB (see ``DynamoStore.purge``); ``batch_size`` items per Scan page."""
    if not isinstance(store, DynamoStore):
        raise TypeError(f"not a DynamoDB store: {type(store).__name__}")
    return await store.purge(older_than_seconds, page_size=batch_size)
