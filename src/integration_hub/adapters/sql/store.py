"""The Store port on a SQL database, once for SQLite and PostgreSQL.

Each method reads the clock, runs one flow (``tenants.py``, ``work.py``)
through the backend's ``Runner`` and wakes consumers after an enqueue.
Concurrency is the runner's: on SQLite one writer thread serialises every
write transaction; on PostgreSQL a claim, a dead letter and a completion lock
the notification row (``{lock}``), and an Idempotency-Key is reserved by one
upsert whose conflict clause only takes over a free record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from integration_hub.adapters.sql import receipts, tenants, work
from integration_hub.adapters.sql.flow import Runner
from integration_hub.adapters.sql.webhooks import SqlWebhookStore
from integration_hub.domain import lifecycle
from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.models import Attempt, Notification
from integration_hub.domain.receipts import DeliveryState, Receipt
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status
from integration_hub.domain.tenants import ApiKeyRecord, Tenant
from integration_hub.ports import (
    ClaimRequest,
    Completion,
    DeadLetter,
    DeliveryEvent,
    FirstAccept,
    IdempotencyRecord,
    ReceiptRecord,
    Settle,
    Suppression,
)


class SqlStore(SqlWebhookStore):
    """Tenants, keys, idempotency records, notifications, dead letters, receipts,
    suppression lists and webhooks (``SqlWebhookStore``) in SQL."""

    def __init__(self, sql: Runner) -> None:
        super().__init__(sql)

    # -- tenants and keys ---------------------------------------------------------------

    async def create_tenant(self, tenant: Tenant) -> None:
        """Insert a tenant; raise TenantExists if the id is taken."""
        await self.sql.autocommit(tenants.create_tenant(tenant))

    async def update_tenant(self, tenant: Tenant) -> None:
        """Replace a tenant's status, routing and budget; NotFound if it does not exist."""
        await self.sql.autocommit(tenants.update_tenant(tenant))

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """A tenant by id."""
        return await self.sql.read(tenants.get_tenant(tenant_id))

    async def list_tenants(self) -> list[Tenant]:
        """All tenants, oldest first."""
        return await self.sql.read(tenants.list_tenants())

    async def add_api_key(self, record: ApiKeyRecord) -> None:
        """Store a key's hash."""
        await self.sql.autocommit(tenants.add_api_key(record))

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """A key record by its public id."""
        return await self.sql.read(tenants.get_api_key(key_id))

    async def list_api_keys(self, tenant: str) -> list[ApiKeyRecord]:
        """A tenant's keys, oldest first."""
        return await self.sql.read(tenants.list_api_keys(tenant))

    async def revoke_api_key(self, tenant: str, key_id: str) -> bool:
        """Revoke one of the tenant's active keys."""
        return await self.sql.autocommit(tenants.revoke_api_key(tenant, key_id, self._now))

    async def consume_quota(
        self, tenant: str, *, per_second: int | None, per_day: int | None
    ) -> float | None:
        """Count one notification against the tenant's windows, or say how long to wait."""
        flow = tenants.consume_quota(tenant, per_second, per_day, self._now)
        return await self.sql.write(flow)

    # -- idempotency and ingest -----------------------------------------------------------

    async def reserve_idempotency_key(
        self, tenant: str, key: str, fingerprint: str, *, reservation: str, lock_seconds: float
    ) -> IdempotencyRecord | None:
        """Reserve a key: None if it is now ours, else the record that holds it."""
        flow = tenants.reserve_key(tenant, key, fingerprint, reservation, lock_seconds, self._now)
        return await self.sql.write(flow)

    async def release_idempotency_key(self, tenant: str, key: str, *, reservation: str) -> None:
        """Drop an in-progress reservation after a failed accept."""
        await self.sql.autocommit(tenants.release_key(tenant, key, reservation))

    async def accept(
        self,
        notification: Notification,
        response: dict[str, Any],
        *,
        reservation: str,
        ttl_seconds: float,
    ) -> bool:
        """Persist a RECEIVED notification, its queue entry and its idempotency response."""
        flow = tenants.accept(notification, response, reservation, ttl_seconds, self._now)
        enqueued = await self.sql.write(flow)
        self.sql.notify_enqueued()
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
        flow = tenants.accept_new(notification, response, fingerprint, ttl_seconds, self._now)
        accepted = await self.sql.write(flow)
        if accepted.existing is None:
            self.sql.notify_enqueued()
        return accepted

    # -- reads -------------------------------------------------------------------------------

    async def get_notification(
        self, tenant: str | None, notification_id: str
    ) -> Notification | None:
        """A notification with its attempts; ``tenant=None`` only for operators."""
        return await self.sql.read(work.get_notification(tenant, notification_id))

    async def list_notifications(
        self,
        tenant: str,
        *,
        status: Status | None = None,
        country: str | None = None,
        delivery_state: DeliveryState | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Notification]:
        """The tenant's notifications, newest first, strictly older than ``before_id``."""
        flow = work.list_notifications(tenant, status, country, limit, before_id, delivery_state)
        return await self.sql.read(flow)

    # -- worker ---------------------------------------------------------------------------------

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
        return await self.sql.write(work.claim_many(requests, lease_seconds, self._now))

    async def dead_letter(self, notification_id: str, reason: str) -> bool:
        """End an unprocessable notification FAILED (see the Store port)."""
        return await self.sql.write(work.dead_letter(notification_id, reason, self._now))

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
        finish = lifecycle.decide_completion(
            attempt, status=status, dead_letter_reason=dead_letter_reason, now=self._now
        )
        flow = work.complete_attempt(notification_id, token, attempt, finish, settle, outbox)
        return await self.sql.write(flow)

    # -- dead letters ---------------------------------------------------------------------------

    async def list_dead_letters(self, tenant: str | None, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest first; ``tenant=None`` lists every tenant's."""
        return await self.sql.read(work.list_dead_letters(tenant, limit))

    async def count_dead_letters(self) -> int:
        """How many dead letters there are, every tenant's (the DLQ depth)."""
        return await self.sql.read(work.count_dead_letters())

    async def redrive(self, tenant: str | None, notification_id: str) -> bool | None:
        """FAILED -> RECEIVED with a fresh budget, removing the dead letter."""
        result = await self.sql.write(work.redrive(tenant, notification_id, self._now))
        if result:
            self.sql.notify_enqueued()
        return result

    # -- delivery receipts --------------------------------------------------------------------

    async def record_receipt(self, receipt: Receipt) -> ReceiptRecord:
        """Apply one provider event to the notification it names, in one write transaction."""
        return await self.sql.write(receipts.record_receipt(receipt))

    async def delivery_events(self, tenant: str, notification_id: str) -> list[DeliveryEvent]:
        """The tenant's notification's recorded events, oldest received first (max 100)."""
        return await self.sql.read(receipts.delivery_events(tenant, notification_id))

    async def expire_deliveries(self, *, sent_before: datetime, now: datetime, limit: int) -> int:
        """Up to ``limit`` notifications still ``sent`` since before ``sent_before`` expire."""
        return await self.sql.write(receipts.expire_deliveries(sent_before, now, limit))

    # -- suppression lists ----------------------------------------------------------------------

    async def add_suppression(self, suppression: Suppression) -> Suppression:
        """Store it unless that address is already suppressed: the stored one either way."""
        return await self.sql.write(receipts.add_suppression(suppression))

    async def get_suppression(
        self, tenant: str, channel: Channel, address: str
    ) -> Suppression | None:
        """The suppression for a normalised address, by primary key."""
        return await self.sql.read(receipts.get_suppression(tenant, channel, address))

    async def list_suppressions(
        self,
        tenant: str,
        *,
        channel: Channel | None = None,
        limit: int = 100,
        after: tuple[Channel, str] | None = None,
    ) -> list[Suppression]:
        """The tenant's suppressions ordered by (channel, address), strictly after ``after``."""
        return await self.sql.read(receipts.list_suppressions(tenant, channel, limit, after))

    async def remove_suppression(self, tenant: str, channel: Channel, address: str) -> bool:
        """Lift a suppression; False if there was none."""
        return await self.sql.autocommit(receipts.remove_suppression(tenant, channel, address))
