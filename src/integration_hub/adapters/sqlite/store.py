"""The Store port on SQLite."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from integration_hub.adapters import rows
from integration_hub.adapters.sqlite.database import SqliteDatabase
from integration_hub.adapters.sqlite.queue import insert_outbox
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

_ENQUEUE = (
    "INSERT INTO queue (notification_id, tenant, available_at, enqueued_at, receive_count)"
    " VALUES (?, ?, ?, ?, 0)"
    " ON CONFLICT (notification_id) DO UPDATE SET available_at = excluded.available_at,"
    " receipt = NULL, receive_count = 0"
)


def _key_holder(
    conn: sqlite3.Connection, tenant: str, key: str, now: float
) -> IdempotencyRecord | None:
    """The record holding an Idempotency-Key, unless it expired or was abandoned."""
    row = conn.execute(
        "SELECT * FROM idempotency_keys WHERE tenant = ? AND key = ?", (tenant, key)
    ).fetchone()
    if row is None:
        return None
    expired = row["expires_at"] <= now
    abandoned = row["response"] is None and row["locked_until"] <= now
    if expired or abandoned:
        return None
    return IdempotencyRecord(
        tenant=tenant,
        key=key,
        fingerprint=row["fingerprint"],
        created_at=row["created_at"],
        locked_until=row["locked_until"],
        response=json.loads(row["response"]) if row["response"] else None,
    )


def _insert_received(conn: sqlite3.Connection, n: Notification, now: float) -> None:
    """A new RECEIVED notification and its queue entry."""
    conn.execute(
        "INSERT INTO notifications (id, tenant, country, channel, provider, status,"
        " request, idempotency_key, created_at, updated_at, traceparent, tracestate)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
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
        ),
    )
    conn.execute(_ENQUEUE, (n.id, n.tenant, now, now))


def _settle(conn: sqlite3.Connection, settle: Settle, now: float) -> None:
    # The receipt condition makes a stale receipt (the message was received
    # again since) settle nothing, exactly like SqliteQueue.ack and release.
    message = settle.message
    if settle.release_delay is None:
        conn.execute(
            "DELETE FROM queue WHERE notification_id = ? AND receipt = ?",
            (message.notification_id, message.receipt),
        )
    else:
        conn.execute(
            "UPDATE queue SET available_at = ?, receipt = NULL"
            " WHERE notification_id = ? AND receipt = ?",
            (now + settle.release_delay, message.notification_id, message.receipt),
        )


class SqliteStore:
    """Tenants, keys, idempotency records, notifications and dead letters in SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    @property
    def _now(self) -> float:
        return self.db.clock.now()

    # -- tenants and keys -------------------------------------------------

    async def create_tenant(self, tenant: Tenant) -> None:
        """Insert a tenant; raise TenantExists if the id is taken."""

        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO tenants (id, name, status, created_at, config)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        tenant.id,
                        tenant.name,
                        str(tenant.status),
                        rows.to_epoch(tenant.created_at),
                        rows.tenant_config(tenant),
                    ),
                )
            except sqlite3.IntegrityError:
                raise TenantExists(f"tenant {tenant.id!r} exists already") from None

        await self.db.write(run)

    async def update_tenant(self, tenant: Tenant) -> None:
        """Replace a tenant's status, routing and budget."""

        def run(conn: sqlite3.Connection) -> None:
            changed = conn.execute(
                "UPDATE tenants SET name = ?, status = ?, config = ? WHERE id = ?",
                (tenant.name, str(tenant.status), rows.tenant_config(tenant), tenant.id),
            ).rowcount
            if changed != 1:
                raise NotFound(f"no tenant {tenant.id!r}", field="tenant")

        await self.db.write(run)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """A tenant by id."""

        def run(conn: sqlite3.Connection) -> Tenant | None:
            row = conn.execute("SELECT * FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
            return rows.tenant_from_row(row) if row else None

        return await self.db.read(run)

    async def list_tenants(self) -> list[Tenant]:
        """All tenants, oldest first."""

        def run(conn: sqlite3.Connection) -> list[Tenant]:
            found = conn.execute("SELECT * FROM tenants ORDER BY created_at, id").fetchall()
            return [rows.tenant_from_row(r) for r in found]

        return await self.db.read(run)

    async def add_api_key(self, record: ApiKeyRecord) -> None:
        """Store a key's hash."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO api_keys (key_id, tenant, hash, created_at) VALUES (?, ?, ?, ?)",
                (record.key_id, record.tenant, record.hash, rows.to_epoch(record.created_at)),
            )

        await self.db.write(run)

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """A key record by its public id."""

        def run(conn: sqlite3.Connection) -> ApiKeyRecord | None:
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
            return rows.api_key_from_row(row) if row else None

        return await self.db.read(run)

    async def list_api_keys(self, tenant: str) -> list[ApiKeyRecord]:
        """A tenant's keys, oldest first."""

        def run(conn: sqlite3.Connection) -> list[ApiKeyRecord]:
            found = conn.execute(
                "SELECT * FROM api_keys WHERE tenant = ? ORDER BY created_at, key_id", (tenant,)
            )
            return [rows.api_key_from_row(r) for r in found]

        return await self.db.read(run)

    async def revoke_api_key(self, tenant: str, key_id: str) -> bool:
        """Revoke one of the tenant's active keys."""
        now = self._now

        def run(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE tenant = ? AND key_id = ?"
                " AND revoked_at IS NULL",
                (now, tenant, key_id),
            ).rowcount
            return bool(changed == 1)

        return await self.db.write(run)

    async def consume_quota(
        self, tenant: str, *, per_second: int | None, per_day: int | None
    ) -> float | None:
        """Count one notification against the tenant's windows, or say how long to wait."""
        now = self._now

        def run(conn: sqlite3.Connection) -> float | None:
            usage = {
                r["window"]: quota.Window(r["window_start"], r["count"])
                for r in conn.execute(
                    "SELECT window, window_start, count FROM tenant_usage WHERE tenant = ?",
                    (tenant,),
                )
            }
            wait, updated = quota.decide(now, {"second": per_second, "day": per_day}, usage)
            for name, window in updated.items():
                conn.execute(
                    "INSERT INTO tenant_usage (tenant, window, window_start, count)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (tenant, window) DO UPDATE SET"
                    " window_start = excluded.window_start, count = excluded.count",
                    (tenant, name, window.start, window.count),
                )
            return wait

        return await self.db.write(run)

    # -- idempotency and ingest -------------------------------------------

    async def reserve_idempotency_key(
        self, tenant: str, key: str, fingerprint: str, *, reservation: str, lock_seconds: float
    ) -> IdempotencyRecord | None:
        """Reserve a key: None if it is now ours, else the record that holds it."""
        now = self._now

        def run(conn: sqlite3.Connection) -> IdempotencyRecord | None:
            held = _key_holder(conn, tenant, key, now)
            if held is not None:
                return held
            conn.execute(
                "INSERT OR REPLACE INTO idempotency_keys (tenant, key, fingerprint, reservation,"
                " created_at, locked_until, expires_at, response)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    tenant,
                    key,
                    fingerprint,
                    reservation,
                    now,
                    now + lock_seconds,
                    now + lock_seconds,
                ),
            )
            return None

        return await self.db.write(run)

    async def release_idempotency_key(self, tenant: str, key: str, *, reservation: str) -> None:
        """Drop an in-progress reservation after a failed accept."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM idempotency_keys WHERE tenant = ? AND key = ? AND reservation = ?"
                " AND response IS NULL",
                (tenant, key, reservation),
            )

        await self.db.write(run)

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

        def run(conn: sqlite3.Connection) -> bool:
            done = conn.execute(
                "UPDATE idempotency_keys SET response = ?, expires_at = ?, locked_until = ?"
                " WHERE tenant = ? AND key = ? AND reservation = ? AND response IS NULL",
                (
                    json.dumps(response),
                    now + ttl_seconds,
                    now,
                    n.tenant,
                    n.idempotency_key,
                    reservation,
                ),
            ).rowcount
            if done != 1:
                # Our reservation lapsed and another request took the key over.
                raise IdempotencyInProgress()
            _insert_received(conn, n, now)
            return True

        enqueued = await self.db.write(run)
        self.db.notify_enqueued()
        return enqueued

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

        def run(conn: sqlite3.Connection) -> FirstAccept:
            held = _key_holder(conn, n.tenant, n.idempotency_key, now)
            if held is not None:
                return FirstAccept(held)
            conn.execute(
                "INSERT OR REPLACE INTO idempotency_keys (tenant, key, fingerprint, reservation,"
                " created_at, locked_until, expires_at, response)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    n.tenant,
                    n.idempotency_key,
                    fingerprint,
                    n.id,  # never released: the record is complete from the start
                    now,
                    now,
                    now + ttl_seconds,
                    json.dumps(response),
                ),
            )
            _insert_received(conn, n, now)
            return FirstAccept(None, enqueued=True)

        accepted = await self.db.write(run)
        if accepted.existing is None:
            self.db.notify_enqueued()
        return accepted

    # -- reads --------------------------------------------------------------

    async def get_notification(
        self, tenant: str | None, notification_id: str
    ) -> Notification | None:
        """A notification with its attempts; ``tenant=None`` only for operators."""

        def run(conn: sqlite3.Connection) -> Notification | None:
            if tenant is None:
                row = conn.execute(
                    "SELECT * FROM notifications WHERE id = ?", (notification_id,)
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT * FROM notifications WHERE id = ? AND tenant = ?",
                    (notification_id, tenant),
                ).fetchone()
            if row is None:
                return None
            attempts = conn.execute(
                "SELECT * FROM attempts WHERE notification_id = ? ORDER BY number",
                (notification_id,),
            ).fetchall()
            return rows.notification_from_row(row, [rows.attempt_from_row(a) for a in attempts])

        return await self.db.read(run)

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
        sql = ["SELECT * FROM notifications WHERE tenant = ?"]
        args: list[Any] = [tenant]
        if status is not None:
            sql.append("AND status = ?")
            args.append(str(status))
        if country is not None:
            sql.append("AND country = ?")
            args.append(country)
        if before_id is not None:
            sql.append("AND id < ?")
            args.append(before_id)
        sql.append("ORDER BY id DESC LIMIT ?")
        args.append(limit)
        query = " ".join(sql)

        def run(conn: sqlite3.Connection) -> list[Notification]:
            return [rows.notification_from_row(r) for r in conn.execute(query, args)]

        return await self.db.read(run)

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
        """``claim`` each request in one write transaction, answers in order."""
        now = self._now

        def run(conn: sqlite3.Connection) -> list[Notification | None]:
            return [self._claim(conn, r, lease_seconds, now) for r in requests]

        return await self.db.write(run)

    async def dead_letter(self, notification_id: str, reason: str) -> bool:
        """End an unprocessable notification FAILED (see the Store port)."""
        now = self._now

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT tenant, status, claim_token, claim_expires_at FROM notifications"
                " WHERE id = ?",
                (notification_id,),
            ).fetchone()
            if row is None or Status(row["status"]) in TERMINAL:
                return True
            if row["claim_token"] is not None and (row["claim_expires_at"] or 0) > now:
                return False
            self._fail(conn, notification_id, row["tenant"], reason, now)
            return True

        return await self.db.write(run)

    def _claim(
        self, conn: sqlite3.Connection, request: ClaimRequest, lease_seconds: float, now: float
    ) -> Notification | None:
        notification_id, max_attempts = request.notification_id, request.max_attempts
        row = conn.execute(
            "SELECT * FROM notifications WHERE id = ?", (notification_id,)
        ).fetchone()
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
            self._fail(conn, notification_id, row["tenant"], reason, now)
        else:
            number = row["attempt_count"] + 1
            conn.execute(
                "UPDATE notifications SET status = 'PROCESSING', claim_token = ?,"
                " claim_expires_at = ?, attempts_used = attempts_used + 1,"
                " attempt_count = ?, updated_at = ? WHERE id = ?",
                (request.token, now + lease_seconds, number, now, notification_id),
            )
            conn.execute(
                "INSERT INTO attempts (notification_id, number, provider, started_at)"
                " VALUES (?, ?, ?, ?)",
                (notification_id, number, row["provider"], now),
            )
        fresh = conn.execute(
            "SELECT * FROM notifications WHERE id = ?", (notification_id,)
        ).fetchone()
        return rows.notification_from_row(fresh)

    @staticmethod
    def _fail(
        conn: sqlite3.Connection,
        notification_id: str,
        tenant: str,
        reason: str,
        now: float,
        *,
        provider: str | None = None,
    ) -> None:
        conn.execute(
            "UPDATE notifications SET status = 'FAILED', provider = COALESCE(?, provider),"
            " claim_token = NULL, claim_expires_at = NULL, last_error = ?, finished_at = ?,"
            " updated_at = ? WHERE id = ?",
            (provider, reason, now, now, notification_id),
        )
        conn.execute(
            "INSERT OR REPLACE INTO dead_letters (notification_id, tenant, reason,"
            " dead_lettered_at) VALUES (?, ?, ?, ?)",
            (notification_id, tenant, reason, now),
        )

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

        def run(conn: sqlite3.Connection) -> Completion:
            row = conn.execute(
                "SELECT tenant FROM notifications WHERE id = ? AND claim_token = ?"
                " AND status = 'PROCESSING'",
                (notification_id, token),
            ).fetchone()
            if row is None:
                return Completion.LOST
            self._record(
                conn, notification_id, row["tenant"], attempt, status, dead_letter_reason, now
            )
            if outbox is not None:
                insert_outbox(conn, outbox, attempt.provider_message_id or "", now)
            if settle is None:
                return Completion.RECORDED
            _settle(conn, settle, now)
            return Completion.SETTLED

        return await self.db.write(run)

    def _record(
        self,
        conn: sqlite3.Connection,
        notification_id: str,
        tenant: str,
        attempt: Attempt,
        status: Status,
        dead_letter_reason: str | None,
        now: float,
    ) -> None:
        conn.execute(
            "UPDATE attempts SET finished_at = ?, provider = ?, outcome = ?, error_class = ?,"
            " error_code = ?, message = ?, latency_ms = ?, provider_message_id = ?,"
            " provider_response = ? WHERE notification_id = ? AND number = ?",
            (
                now,
                attempt.provider,
                str(attempt.outcome),
                attempt.error_class,
                attempt.error_code,
                attempt.message,
                attempt.latency_ms,
                attempt.provider_message_id,
                attempt.provider_response,
                notification_id,
                attempt.number,
            ),
        )
        if status is Status.FAILED:
            self._fail(
                conn,
                notification_id,
                tenant,
                dead_letter_reason or attempt.message or "failed",
                now,
                provider=attempt.provider,
            )
            return
        conn.execute(
            "UPDATE notifications SET status = ?, provider = ?, claim_token = NULL,"
            " claim_expires_at = NULL, last_error = ?, finished_at = ?, updated_at = ?"
            " WHERE id = ?",
            (
                str(status),
                attempt.provider,
                attempt.message if attempt.error_class else None,
                now if status is Status.DONE else None,
                now,
                notification_id,
            ),
        )

    # -- dead letters ---------------------------------------------------------

    async def list_dead_letters(self, tenant: str | None, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest first; ``tenant=None`` lists every tenant's."""

        def run(conn: sqlite3.Connection) -> list[DeadLetter]:
            if tenant is None:
                found = conn.execute(
                    "SELECT * FROM dead_letters ORDER BY dead_lettered_at DESC LIMIT ?",
                    (limit,),
                )
            else:
                found = conn.execute(
                    "SELECT * FROM dead_letters WHERE tenant = ?"
                    " ORDER BY dead_lettered_at DESC LIMIT ?",
                    (tenant, limit),
                )
            return [rows.dead_letter_from_row(r) for r in found]

        return await self.db.read(run)

    async def count_dead_letters(self) -> int:
        """How many dead letters there are, every tenant's (the DLQ depth)."""

        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])

        return await self.db.read(run)

    async def redrive(self, tenant: str | None, notification_id: str) -> bool | None:
        """FAILED -> RECEIVED with a fresh budget, removing the dead letter."""
        now = self._now

        def run(conn: sqlite3.Connection) -> bool | None:
            row = conn.execute(
                "SELECT d.tenant, n.status FROM dead_letters d"
                " JOIN notifications n ON n.id = d.notification_id"
                " WHERE d.notification_id = ?",
                (notification_id,),
            ).fetchone()
            if row is None or (tenant is not None and row["tenant"] != tenant):
                return None
            check_transition(Status(row["status"]), Status.RECEIVED)
            conn.execute(
                "UPDATE notifications SET status = 'RECEIVED', attempts_used = 0,"
                " finished_at = NULL, updated_at = ? WHERE id = ?",
                (now, notification_id),
            )
            conn.execute("DELETE FROM dead_letters WHERE notification_id = ?", (notification_id,))
            conn.execute(_ENQUEUE, (notification_id, row["tenant"], now, now))
            return True

        result = await self.db.write(run)
        if result:
            self.db.notify_enqueued()
        return result

    async def close(self) -> None:
        """Release connections."""
        self.db.close()
