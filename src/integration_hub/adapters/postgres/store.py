"""The Store port on PostgreSQL.

Concurrency comes from row locks rather than a single writer: a claim and
the completion of an attempt lock the notification row (``FOR UPDATE``), so
exactly one of many racing workers holds a claim; an Idempotency-Key is
reserved by one upsert whose conflict clause only takes over an expired or
abandoned record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from integration_hub.adapters import rows
from integration_hub.adapters.postgres.database import CHANNEL, Connection, PostgresDatabase
from integration_hub.adapters.postgres.queue import ACK, APPEND, ENQUEUE_FRESH, RELEASE
from integration_hub.domain import quota
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.errors import IdempotencyInProgress, NotFound, TenantExists
from integration_hub.domain.models import Attempt, Notification
from integration_hub.domain.status import TERMINAL, Status, check_transition
from integration_hub.domain.tenants import ApiKeyRecord, Tenant
from integration_hub.ports import (
    ClaimRequest,
    Completion,
    DeadLetter,
    FirstAccept,
    IdempotencyRecord,
    Settle,
)

# Ours if there was no record, or if the one there expired or was abandoned
# (in progress with a lapsed lock). Otherwise the conflicting row stays as it
# is, locked by this transaction until we have read it.
RESERVE = """
INSERT INTO idempotency_keys AS k
    (tenant, key, fingerprint, reservation, created_at, locked_until, expires_at, response)
VALUES ($1, $2, $3, $4, $5, $6, $6, NULL)
ON CONFLICT (tenant, key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    reservation = excluded.reservation,
    created_at = excluded.created_at,
    locked_until = excluded.locked_until,
    expires_at = excluded.expires_at,
    response = NULL
WHERE k.expires_at <= $5 OR (k.response IS NULL AND k.locked_until <= $5)
RETURNING 1
"""

# The same takeover rule as RESERVE, but the record is complete at once:
# the notification is written in the same transaction (accept_new).
RESERVE_COMPLETE = """
INSERT INTO idempotency_keys AS k
    (tenant, key, fingerprint, reservation, created_at, locked_until, expires_at, response)
VALUES ($1, $2, $3, $4, $5, $5, $6, $7)
ON CONFLICT (tenant, key) DO UPDATE SET
    fingerprint = excluded.fingerprint,
    reservation = excluded.reservation,
    created_at = excluded.created_at,
    locked_until = excluded.locked_until,
    expires_at = excluded.expires_at,
    response = excluded.response
WHERE k.expires_at <= $5 OR (k.response IS NULL AND k.locked_until <= $5)
RETURNING 1
"""

HELD = "SELECT * FROM idempotency_keys WHERE tenant = $1 AND key = $2"

COMPLETE_KEY = """
UPDATE idempotency_keys SET response = $1, expires_at = $2, locked_until = $3
WHERE tenant = $4 AND key = $5 AND reservation = $6 AND response IS NULL
RETURNING 1
"""

INSERT_NOTIFICATION = """
INSERT INTO notifications (id, tenant, country, channel, provider, status,
    request, idempotency_key, created_at, updated_at, traceparent, tracestate)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""

LIST = "SELECT * FROM notifications WHERE tenant = $1"

CLAIM_LOCK = "SELECT * FROM notifications WHERE id = $1 FOR UPDATE"

CLAIM = """
UPDATE notifications SET status = 'PROCESSING', claim_token = $1, claim_expires_at = $2,
    attempts_used = attempts_used + 1, attempt_count = $3, updated_at = $4
WHERE id = $5
RETURNING *
"""

START_ATTEMPT = """
INSERT INTO attempts (notification_id, number, provider, started_at) VALUES ($1, $2, $3, $4)
"""

FAIL = """
UPDATE notifications SET status = 'FAILED', provider = COALESCE($1, provider),
    claim_token = NULL, claim_expires_at = NULL, last_error = $2, finished_at = $3,
    updated_at = $3
WHERE id = $4
RETURNING *
"""

DEAD_LETTER = """
INSERT INTO dead_letters (notification_id, tenant, reason, dead_lettered_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (notification_id) DO UPDATE SET
    tenant = excluded.tenant, reason = excluded.reason,
    dead_lettered_at = excluded.dead_lettered_at
"""

POISON_LOCK = """
SELECT tenant, status, claim_token, claim_expires_at FROM notifications WHERE id = $1 FOR UPDATE
"""

HOLDER_LOCK = """
SELECT tenant FROM notifications
WHERE id = $1 AND claim_token = $2 AND status = 'PROCESSING'
FOR UPDATE
"""

FINISH_ATTEMPT = """
UPDATE attempts SET finished_at = $1, provider = $2, outcome = $3, error_class = $4,
    error_code = $5, message = $6, latency_ms = $7, provider_message_id = $8,
    provider_response = $11
WHERE notification_id = $9 AND number = $10
"""

FINISH = """
UPDATE notifications SET status = $1, provider = $2, claim_token = NULL,
    claim_expires_at = NULL, last_error = $3, finished_at = $4, updated_at = $5
WHERE id = $6
"""

DEAD_LETTERS = "SELECT * FROM dead_letters ORDER BY dead_lettered_at DESC LIMIT $1"

TENANT_DEAD_LETTERS = """
SELECT * FROM dead_letters WHERE tenant = $1 ORDER BY dead_lettered_at DESC LIMIT $2
"""

# Locks both rows: a concurrent redrive that deleted the dead letter first
# makes this one find nothing.
REDRIVE_LOCK = """
SELECT d.tenant, n.status FROM dead_letters d
JOIN notifications n ON n.id = d.notification_id
WHERE d.notification_id = $1
FOR UPDATE
"""

REDRIVE = """
UPDATE notifications SET status = 'RECEIVED', attempts_used = 0, finished_at = NULL,
    updated_at = $1
WHERE id = $2
"""


def _record(tenant: str, key: str, row: Any) -> IdempotencyRecord:
    return IdempotencyRecord(
        tenant=tenant,
        key=key,
        fingerprint=row["fingerprint"],
        created_at=row["created_at"],
        locked_until=row["locked_until"],
        response=json.loads(row["response"]) if row["response"] else None,
    )


async def _insert_received(conn: Connection, n: Notification, now: float) -> None:
    """A new RECEIVED notification and its queue entry (with the NOTIFY)."""
    await conn.execute(
        INSERT_NOTIFICATION,
        n.id,
        n.tenant,
        n.country,
        str(n.channel),
        n.provider,
        str(n.status),
        n.request.model_dump_json(exclude_none=True),
        n.idempotency_key,
        rows.to_epoch(n.created_at),
        rows.to_epoch(n.updated_at),
        n.traceparent,
        n.tracestate,
    )
    await conn.execute(ENQUEUE_FRESH, n.id, n.tenant, now, now, CHANNEL)


class PostgresStore:
    """Tenants, keys, idempotency records, notifications and dead letters in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    @property
    def _now(self) -> float:
        return self.db.clock.now()

    # -- tenants and keys -------------------------------------------------

    async def create_tenant(self, tenant: Tenant) -> None:
        """Insert a tenant; raise TenantExists if the id is taken."""
        async with self.db.connection() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO tenants (id, name, status, created_at, config)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING 1",
                tenant.id,
                tenant.name,
                str(tenant.status),
                rows.to_epoch(tenant.created_at),
                rows.tenant_config(tenant),
            )
        if inserted is None:
            raise TenantExists(f"tenant {tenant.id!r} exists already")

    async def update_tenant(self, tenant: Tenant) -> None:
        """Replace a tenant's status, routing and budget; NotFound if it does not exist."""
        async with self.db.connection() as conn:
            changed = await conn.fetchval(
                "UPDATE tenants SET name = $1, status = $2, config = $3 WHERE id = $4 RETURNING 1",
                tenant.name,
                str(tenant.status),
                rows.tenant_config(tenant),
                tenant.id,
            )
        if changed is None:
            raise NotFound(f"no tenant {tenant.id!r}", field="tenant")

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """A tenant by id."""
        async with self.db.connection() as conn:
            row = await conn.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)
        return rows.tenant_from_row(row) if row else None

    async def list_tenants(self) -> list[Tenant]:
        """All tenants, oldest first."""
        async with self.db.connection() as conn:
            found = await conn.fetch("SELECT * FROM tenants ORDER BY created_at, id")
        return [rows.tenant_from_row(r) for r in found]

    async def add_api_key(self, record: ApiKeyRecord) -> None:
        """Store a key's hash."""
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO api_keys (key_id, tenant, hash, created_at) VALUES ($1, $2, $3, $4)",
                record.key_id,
                record.tenant,
                record.hash,
                rows.to_epoch(record.created_at),
            )

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """A key record by its public id."""
        async with self.db.connection() as conn:
            row = await conn.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", key_id)
        return rows.api_key_from_row(row) if row else None

    async def list_api_keys(self, tenant: str) -> list[ApiKeyRecord]:
        """A tenant's keys, oldest first."""
        async with self.db.connection() as conn:
            found = await conn.fetch(
                "SELECT * FROM api_keys WHERE tenant = $1 ORDER BY created_at, key_id", tenant
            )
        return [rows.api_key_from_row(r) for r in found]

    async def revoke_api_key(self, tenant: str, key_id: str) -> bool:
        """Revoke one of the tenant's active keys."""
        async with self.db.connection() as conn:
            changed = await conn.fetchval(
                "UPDATE api_keys SET revoked_at = $1 WHERE tenant = $2 AND key_id = $3"
                " AND revoked_at IS NULL RETURNING 1",
                self._now,
                tenant,
                key_id,
            )
        return changed is not None

    async def consume_quota(
        self, tenant: str, *, per_second: int | None, per_day: int | None
    ) -> float | None:
        """Count one notification against the tenant's windows, or say how long to wait."""
        now = self._now
        async with self.db.transaction() as conn:
            # The tenant row lock serialises concurrent API processes.
            await conn.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant)
            usage = {
                r["window"]: quota.Window(r["window_start"], r["count"])
                for r in await conn.fetch(
                    'SELECT "window", window_start, count FROM tenant_usage WHERE tenant = $1',
                    tenant,
                )
            }
            wait, updated = quota.decide(now, {"second": per_second, "day": per_day}, usage)
            for name, window in updated.items():
                await conn.execute(
                    'INSERT INTO tenant_usage (tenant, "window", window_start, count)'
                    ' VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, "window") DO UPDATE SET'
                    " window_start = excluded.window_start, count = excluded.count",
                    tenant,
                    name,
                    window.start,
                    window.count,
                )
        return wait

    # -- idempotency and ingest -------------------------------------------

    async def reserve_idempotency_key(
        self, tenant: str, key: str, fingerprint: str, *, reservation: str, lock_seconds: float
    ) -> IdempotencyRecord | None:
        """Reserve a key: None if it is now ours, else the record that holds it."""
        now = self._now
        async with self.db.transaction() as conn:
            ours = await conn.fetchval(
                RESERVE, tenant, key, fingerprint, reservation, now, now + lock_seconds
            )
            if ours is not None:
                return None
            # The conflict clause locked the holder's row: it is still there.
            row = await conn.fetchrow(HELD, tenant, key)
        return _record(tenant, key, row)

    async def release_idempotency_key(self, tenant: str, key: str, *, reservation: str) -> None:
        """Drop an in-progress reservation after a failed accept."""
        async with self.db.connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE tenant = $1 AND key = $2"
                " AND reservation = $3 AND response IS NULL",
                tenant,
                key,
                reservation,
            )

    async def accept(
        self,
        notification: Notification,
        response: dict[str, Any],
        *,
        reservation: str,
        ttl_seconds: float,
    ) -> bool:
        """Persist a RECEIVED notification, its queue entry and its idempotency response."""
        now = self._now
        n = notification
        async with self.db.transaction() as conn:
            done = await conn.fetchval(
                COMPLETE_KEY,
                json.dumps(response),
                now + ttl_seconds,
                now,
                n.tenant,
                n.idempotency_key,
                reservation,
            )
            if done is None:
                # Our reservation lapsed and another request took the key over.
                raise IdempotencyInProgress()
            await _insert_received(conn, n, now)
        self.db.notify_enqueued()
        return True

    async def accept_new(
        self,
        notification: Notification,
        response: dict[str, Any],
        *,
        fingerprint: str,
        ttl_seconds: float,
    ) -> FirstAccept:
        """Reserve, complete and persist in one transaction when the key is free."""
        now = self._now
        n = notification
        async with self.db.transaction() as conn:
            ours = await conn.fetchval(
                RESERVE_COMPLETE,
                n.tenant,
                n.idempotency_key,
                fingerprint,
                n.id,  # never released: the record is complete from the start
                now,
                now + ttl_seconds,
                json.dumps(response),
            )
            if ours is None:
                row = await conn.fetchrow(HELD, n.tenant, n.idempotency_key)
                return FirstAccept(_record(n.tenant, n.idempotency_key, row))
            await _insert_received(conn, n, now)
        self.db.notify_enqueued()
        return FirstAccept(None, enqueued=True)

    # -- reads --------------------------------------------------------------

    async def get_notification(
        self, tenant: str | None, notification_id: str
    ) -> Notification | None:
        """A notification with its attempts; ``tenant=None`` only for operators."""
        async with self.db.connection() as conn:
            if tenant is None:
                row = await conn.fetchrow(
                    "SELECT * FROM notifications WHERE id = $1", notification_id
                )
            else:
                row = await conn.fetchrow(
                    "SELECT * FROM notifications WHERE id = $1 AND tenant = $2",
                    notification_id,
                    tenant,
                )
            if row is None:
                return None
            attempts = await conn.fetch(
                "SELECT * FROM attempts WHERE notification_id = $1 ORDER BY number",
                notification_id,
            )
        return rows.notification_from_row(row, [rows.attempt_from_row(a) for a in attempts])

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
        query, args = listing_query(tenant, status, country, limit, before_id)
        async with self.db.connection() as conn:
            found = await conn.fetch(query, *args)
        return [rows.notification_from_row(r) for r in found]

    # -- worker ---------------------------------------------------------------

    async def claim(
        self,
        notification_id: str,
        token: str,
        *,
        lease_seconds: float,
        max_attempts: int,
    ) -> Notification | None:
        """Take a notification for one attempt (see the Store port)."""
        request = ClaimRequest(notification_id, token, max_attempts)
        [found] = await self.claim_many([request], lease_seconds=lease_seconds)
        return found

    async def claim_many(
        self, requests: Sequence[ClaimRequest], *, lease_seconds: float
    ) -> list[Notification | None]:
        """``claim`` each request in one transaction, answers in order.

        Rows are locked in id order, so two workers claiming overlapping
        batches (a redelivery) wait for each other instead of deadlocking.
        """
        now = self._now
        found: dict[int, Notification | None] = {}
        order = sorted(range(len(requests)), key=lambda i: requests[i].notification_id)
        async with self.db.transaction() as conn:
            for i in order:
                found[i] = await self._claim(conn, requests[i], lease_seconds, now)
        return [found[i] for i in range(len(requests))]

    async def _claim(
        self, conn: Connection, request: ClaimRequest, lease_seconds: float, now: float
    ) -> Notification | None:
        notification_id, max_attempts = request.notification_id, request.max_attempts
        row = await conn.fetchrow(CLAIM_LOCK, notification_id)
        if row is None:
            return None
        current = Status(row["status"])
        held = row["claim_token"] is not None and (row["claim_expires_at"] or 0) > now
        if current in TERMINAL or (current is Status.PROCESSING and held):
            return rows.notification_from_row(row)
        check_transition(current, Status.PROCESSING)
        if row["attempts_used"] >= max_attempts:
            # Earlier attempts died mid-call (crashes) and spent the budget.
            reason = (
                f"attempt budget of {max_attempts} exhausted without a recorded outcome"
                " (the worker stopped during the provider call)"
            )
            fresh = await self._fail(conn, notification_id, row["tenant"], reason, now)
        else:
            number = row["attempt_count"] + 1
            fresh = await conn.fetchrow(
                CLAIM, request.token, now + lease_seconds, number, now, notification_id
            )
            await conn.execute(START_ATTEMPT, notification_id, number, row["provider"], now)
        return rows.notification_from_row(fresh)

    async def dead_letter(self, notification_id: str, reason: str) -> bool:
        """End an unprocessable notification FAILED (see the Store port)."""
        now = self._now
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(POISON_LOCK, notification_id)
            if row is None or Status(row["status"]) in TERMINAL:
                return True
            if row["claim_token"] is not None and (row["claim_expires_at"] or 0) > now:
                return False
            await self._fail(conn, notification_id, row["tenant"], reason, now)
        return True

    @staticmethod
    async def _fail(
        conn: Connection,
        notification_id: str,
        tenant: str,
        reason: str,
        now: float,
        *,
        provider: str | None = None,
    ) -> Any:
        failed = await conn.fetchrow(FAIL, provider, reason, now, notification_id)
        await conn.execute(DEAD_LETTER, notification_id, tenant, reason, now)
        return failed

    async def complete_attempt(
        self,
        notification_id: str,
        token: str,
        attempt: Attempt,
        *,
        status: Status,
        dead_letter_reason: str | None = None,
        settle: Settle | None = None,
        outbox: OutboundMessage | None = None,
    ) -> Completion:
        """Record an attempt's outcome and move to ``status``; only the claim holder may.

        ``settle``'s queue message is acked or released, and ``outbox``'s
        sandbox delivery written, in the same transaction.
        """
        check_transition(Status.PROCESSING, status)
        now = self._now
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(HOLDER_LOCK, notification_id, token)
            if row is None:
                return Completion.LOST
            await conn.execute(
                FINISH_ATTEMPT,
                now,
                attempt.provider,
                str(attempt.outcome),
                attempt.error_class,
                attempt.error_code,
                attempt.message,
                attempt.latency_ms,
                attempt.provider_message_id,
                notification_id,
                attempt.number,
                attempt.provider_response,
            )
            if status is Status.FAILED:
                await self._fail(
                    conn,
                    notification_id,
                    row["tenant"],
                    dead_letter_reason or attempt.message or "failed",
                    now,
                    provider=attempt.provider,
                )
            else:
                await conn.execute(
                    FINISH,
                    str(status),
                    attempt.provider,
                    attempt.message if attempt.error_class else None,
                    now if status is Status.DONE else None,
                    now,
                    notification_id,
                )
            if outbox is not None:
                pmid = attempt.provider_message_id or ""
                await conn.execute(APPEND, *rows.outbox_values(outbox, pmid, now))
            if settle is None:
                return Completion.RECORDED
            # The receipt condition makes a stale receipt settle nothing, as in
            # PostgresQueue.ack and release.
            message = settle.message
            if settle.release_delay is None:
                await conn.execute(ACK, message.notification_id, message.receipt)
            else:
                await conn.execute(
                    RELEASE, now + settle.release_delay, message.notification_id, message.receipt
                )
        return Completion.SETTLED

    # -- dead letters ---------------------------------------------------------

    async def list_dead_letters(self, tenant: str | None, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest first; ``tenant=None`` lists every tenant's."""
        async with self.db.connection() as conn:
            if tenant is None:
                found = await conn.fetch(DEAD_LETTERS, limit)
            else:
                found = await conn.fetch(TENANT_DEAD_LETTERS, tenant, limit)
        return [rows.dead_letter_from_row(r) for r in found]

    async def count_dead_letters(self) -> int:
        """How many dead letters there are, every tenant's (the DLQ depth)."""
        async with self.db.connection() as conn:
            return int(await conn.fetchval("SELECT COUNT(*) FROM dead_letters"))

    async def redrive(self, tenant: str | None, notification_id: str) -> bool | None:
        """FAILED -> RECEIVED with a fresh budget, removing the dead letter."""
        now = self._now
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(REDRIVE_LOCK, notification_id)
            if row is None or (tenant is not None and row["tenant"] != tenant):
                return None
            check_transition(Status(row["status"]), Status.RECEIVED)
            await conn.execute(REDRIVE, now, notification_id)
            await conn.execute(
                "DELETE FROM dead_letters WHERE notification_id = $1", notification_id
            )
            await conn.execute(ENQUEUE_FRESH, notification_id, row["tenant"], now, now, CHANNEL)
        self.db.notify_enqueued()
        return True

    async def close(self) -> None:
        """Release connections."""
        await self.db.close()


def listing_query(
    tenant: str,
    status: Status | None,
    country: str | None,
    limit: int,
    before_id: str | None,
) -> tuple[str, list[Any]]:
    """The SQL and arguments of one page of a tenant's notifications."""
    sql = [LIST]
    args: list[Any] = [tenant]
    if status is not None:
        args.append(str(status))
        sql.append(f"AND status = ${len(args)}")
    if country is not None:
        args.append(country)
        sql.append(f"AND country = ${len(args)}")
    if before_id is not None:
        args.append(before_id)
        sql.append(f"AND id < ${len(args)}")
    args.append(limit)
    sql.append(f"ORDER BY id DESC LIMIT ${len(args)}")
    return " ".join(sql), args
