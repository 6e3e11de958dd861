"""The Store port, split by role: each service asks for the roles it uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Protocol, runtime_checkable

from integration_hub.domain.delivery import OutboundMessage
from integration_hub.domain.models import Attempt, Notification
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.status import Status
from integration_hub.domain.tenants import ApiKeyRecord, Tenant
from integration_hub.ports.queue import Settle
from integration_hub.ports.receipts import ReceiptStore, SuppressionStore
from integration_hub.ports.webhooks import WebhookStore


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A stored Idempotency-Key: in progress until ``response`` is set."""

    tenant: str
    key: str
    fingerprint: str
    created_at: float
    locked_until: float
    response: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A notification that ended FAILED, and why."""

    notification_id: str
    tenant: str
    reason: str
    dead_lettered_at: datetime


class Completion(IntEnum):
    """What ``Store.complete_attempt`` did; falsy when nothing changed."""

    LOST = 0
    """Not the holder of the live claim: nothing was written."""
    RECORDED = 1
    """The outcome is recorded; the caller still acks or releases the queue message."""
    SETTLED = 2
    """The outcome is recorded and the queue message settled in the same transaction."""


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """One notification to claim for one attempt, under ``token``, within its budget."""

    notification_id: str
    token: str
    max_attempts: int


@dataclass(frozen=True, slots=True)
class FirstAccept:
    """What ``NewKeyAccept.accept_new`` did."""

    existing: IdempotencyRecord | None
    """The record that holds the key (nothing was written), or None: accepted."""
    enqueued: bool = False
    """As for ``Store.accept``: the queue entry was written in the same transaction."""


class TenantStore(Protocol):
    """Tenants and their API keys (hashes only)."""

    async def create_tenant(self, tenant: Tenant) -> None:
        """Insert a tenant; raise TenantExists if the id is taken."""
        ...

    async def update_tenant(self, tenant: Tenant) -> None:
        """Replace a tenant's status, routing and budget; NotFound if it does not exist."""
        ...

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """A tenant by id."""
        ...

    async def list_tenants(self) -> list[Tenant]:
        """All tenants, oldest first."""
        ...

    async def add_api_key(self, record: ApiKeyRecord) -> None:
        """Store a key's hash."""
        ...

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """A key record by its public id."""
        ...

    async def list_api_keys(self, tenant: str) -> list[ApiKeyRecord]:
        """A tenant's keys (hashes only), oldest first, revoked ones included."""
        ...

    async def revoke_api_key(self, tenant: str, key_id: str) -> bool:
        """Revoke one of the tenant's keys at once; False if it has no such active key."""
        ...


class IngestStore(Protocol):
    """What ingest writes: quota, Idempotency-Key reservations, accepted notifications."""

    async def consume_quota(
        self, tenant: str, *, per_second: int | None, per_day: int | None
    ) -> float | None:
        """Count one accepted notification against the tenant's limits, atomically.

        None if within both limits (and counted); otherwise the seconds until
        the exceeded window resets, and nothing is counted.
        """
        ...

    async def reserve_idempotency_key(
        self, tenant: str, key: str, fingerprint: str, *, reservation: str, lock_seconds: float
    ) -> IdempotencyRecord | None:
        """Reserve a key: None if it is now ours, else the record that holds it.

        An expired record, or an in-progress one whose lock lapsed (the request
        that took it died), is taken over.
        """
        ...

    async def release_idempotency_key(self, tenant: str, key: str, *, reservation: str) -> None:
        """Drop an in-progress reservation after a failed accept, so the client can retry."""
        ...

    async def accept(
        self,
        notification: Notification,
        response: dict[str, Any],
        *,
        reservation: str,
        ttl_seconds: float,
    ) -> bool:
        """Persist a RECEIVED notification and complete its idempotency record, atomically.

        Raise IdempotencyInProgress, writing nothing, if ``reservation`` no
        longer holds the key (it lapsed and another request took it over).

        Return True if the queue entry was written in the same transaction
        (SQL backends), False if the caller must enqueue it.
        """
        ...


class ReadStore(Protocol):
    """Notifications as clients and operators read them."""

    async def get_notification(
        self, tenant: str | None, notification_id: str
    ) -> Notification | None:
        """A notification with its attempts; ``tenant=None`` only for operators."""
        ...

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
        """The tenant's notifications, newest first, strictly older than ``before_id``.

        Filters combine (AND); ``delivery_state`` matches the current state.
        """
        ...


class ClaimStore(Protocol):
    """The worker's transitions: claim an attempt, record its outcome, dead-letter poison."""

    async def claim(
        self,
        notification_id: str,
        token: str,
        *,
        lease_seconds: float,
        max_attempts: int,
    ) -> Notification | None:
        """Take a notification for one attempt: RECEIVED, or PROCESSING with no live claim.

        Moves it to PROCESSING under ``token``, spends one attempt of the
        budget and records the attempt as started. If the budget is already
        spent (earlier attempts died mid-call) it ends FAILED and dead-lettered
        instead. Returns the notification as it now is (``claimed_by == token``
        when the claim is ours), or None if there is no such notification.
        """
        ...

    async def claim_many(
        self, requests: Sequence[ClaimRequest], *, lease_seconds: float
    ) -> list[Notification | None]:
        """``claim`` each request, answers in the same order.

        SQL backends claim a received batch in one transaction (one commit
        instead of one per message); if any claim raises, none is made.
        """
        ...

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
        """Record an attempt's outcome and move to ``status`` (PROCESSING for a retry).

        ``attempt.provider`` is the provider actually called (routing is read
        at dispatch time) and becomes the notification's provider.

        Only the holder of the live claim succeeds; LOST otherwise, and nothing
        changes. FAILED with a reason also writes the dead letter.

        A backend whose queue lives in the same database (SQL) also settles
        ``settle``'s message in the same transaction and returns SETTLED: one
        commit instead of two, and no window in which a finished notification
        is still queued. A stale receipt settles nothing, as ``Queue.ack``
        ignores it. Other backends return RECORDED and the caller settles it.

        ``outbox`` is a sandbox delivery (``Delivered.outbox``) to write with
        the outcome: SQL backends write it in the same transaction, and only
        when the claim is still ours, so it is delivered exactly once.
        """
        ...

    async def dead_letter(self, notification_id: str, reason: str) -> bool:
        """End a notification that cannot be processed FAILED, with its dead letter.

        For poison messages: it never reads the stored request, which may be
        what cannot be read. True when the notification is now finished (failed
        here, or DONE/FAILED already) or does not exist; False, changing
        nothing, while another worker holds a live claim on it.
        """
        ...


class DeadLetterStore(Protocol):
    """Dead letters: list, count, redrive."""

    async def list_dead_letters(self, tenant: str | None, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest first; ``tenant=None`` lists every tenant's."""
        ...

    async def count_dead_letters(self) -> int:
        """How many dead letters there are, every tenant's (the DLQ depth)."""
        ...

    async def redrive(self, tenant: str | None, notification_id: str) -> bool | None:
        """FAILED -> RECEIVED with a fresh budget, removing the dead letter.

        None if there is no such dead letter; otherwise as ``accept``: True if
        the queue entry was written in the same transaction.
        """
        ...


class Store(
    TenantStore,
    IngestStore,
    ReadStore,
    ClaimStore,
    DeadLetterStore,
    ReceiptStore,
    SuppressionStore,
    WebhookStore,
    Protocol,
):
    """Durable state: every role of one backend, and its connections."""

    async def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class NewKeyAccept(Protocol):
    """A store that can accept a notification under a new Idempotency-Key in one step.

    The common case (a key never seen) then costs one write transaction
    instead of two (reserve, then accept). Optional: ingest falls back to the
    two-phase path of ADR 0003 for stores without it, and for tenants with
    rate limits or quotas, which must be counted between the two phases.
    """

    async def accept_new(
        self,
        notification: Notification,
        response: dict[str, Any],
        *,
        fingerprint: str,
        ttl_seconds: float,
    ) -> FirstAccept:
        """If the key is free (no record, or an expired or abandoned one), store its
        completed record with ``response``, the RECEIVED notification and its queue
        entry atomically; otherwise write nothing and return the record holding it.
        """
        ...
