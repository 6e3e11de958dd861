"""Ports: the small interfaces the service layer needs from the outside world.

Adapters under ``integration_hub.adapters`` implement them; only ``bootstrap``
and the entry points know which adapter is in use.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any, Protocol, runtime_checkable

from integration_hub.domain.delivery import DeliveryResult, OutboundMessage, ProviderCheck
from integration_hub.domain.models import Attempt, Notification
from integration_hub.domain.routing import Channel
from integration_hub.domain.status import Status
from integration_hub.domain.tenants import ApiKeyRecord, Tenant


class Clock(Protocol):
    """Time source, so tests can move time for leases, backoff and key expiry."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()


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


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A message the sandbox provider 'delivered'."""

    seq: int
    notification_id: str
    tenant: str
    channel: Channel
    recipient: str
    subject: str | None
    body: str
    attempt: int
    provider_message_id: str
    delivered_at: datetime


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


class Store(Protocol):
    """Durable state: tenants, keys, idempotency records, notifications, dead letters."""

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
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Notification]:
        """The tenant's notifications, newest first, strictly older than ``before_id``."""
        ...

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

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class FirstAccept:
    """What ``NewKeyAccept.accept_new`` did."""

    existing: IdempotencyRecord | None
    """The record that holds the key (nothing was written), or None: accepted."""
    enqueued: bool = False
    """As for ``Store.accept``: the queue entry was written in the same transaction."""


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


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """A received queue message, leased until its visibility timeout."""

    notification_id: str
    tenant: str
    receipt: str
    receive_count: int
    # W3C trace context the message carried (SQS message attributes); SQL
    # queues carry none and the dispatcher uses the notification's.
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True, slots=True)
class Settle:
    """How to settle a received message once its attempt's outcome is recorded."""

    message: QueueMessage
    release_delay: float | None = None
    """None deletes the message (ack); seconds make it visible again then (a retry)."""


@dataclass(frozen=True, slots=True)
class PendingOutcome:
    """A provider's answer that is not yet recorded in the store: what
    ``Store.complete_attempt`` is to be called with, under the claim's receipt."""

    message: QueueMessage
    attempt: Attempt
    status: Status
    dead_letter_reason: str | None = None
    release_delay: float | None = None


class OutcomeJournal(Protocol):
    """A worker's local, durable record of provider answers not yet in the store.

    The dispatcher journals an answer that says "delivered" while it
    records it, and forgets it once recorded; a worker that starts replays
    what a killed one left (``pending``) before it claims anything, so a
    message the provider accepted is not sent again by a re-claim.
    """

    def pending(self) -> list[tuple[int, PendingOutcome]]:
        """What earlier workers left unrecorded, with the sequence numbers to forget."""
        ...

    def write(self, outcome: PendingOutcome) -> tuple[int, Awaitable[None]]:
        """Start making ``outcome`` durable: its sequence number, and an awaitable
        done once it is fsynced (or once it was forgotten before it had to be)."""
        ...

    def forget(self, seq: int) -> None:
        """The outcome is recorded (or can never be): no need to replay it."""
        ...

    async def close(self) -> None:
        """Flush and release the journal."""
        ...


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Queue depth as an operator sees it."""

    visible: int
    in_flight: int
    delayed: int
    oldest_age_seconds: float


class Queue(Protocol):
    """At-least-once queue of notification ids with visibility timeouts."""

    async def enqueue(self, notification_id: str, tenant: str, *, delay: float = 0.0) -> None:
        """Make a notification id available after ``delay`` seconds."""
        ...

    async def receive(
        self, max_messages: int, *, visibility_timeout: float
    ) -> Sequence[QueueMessage]:
        """Lease up to ``max_messages`` available messages."""
        ...

    async def ack(self, message: QueueMessage) -> None:
        """Delete a message; a stale receipt is ignored."""
        ...

    async def release(self, message: QueueMessage, *, delay: float) -> None:
        """Make a leased message available again after ``delay`` seconds."""
        ...

    async def wait_for_messages(self, max_wait: float) -> None:
        """Return when messages may be available, or after ``max_wait`` seconds."""
        ...

    async def stats(self) -> QueueStats:
        """Current depth."""
        ...


class Provider(Protocol):
    """A delivery channel's external integration."""

    name: str

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Deliver once; classify every failure, never raise for a provider error."""
        ...

    async def check(self) -> ProviderCheck:
        """Verify configuration and credentials without sending a message."""
        ...

    async def close(self) -> None:
        """Release sessions and connections."""
        ...


class ProviderDirectory(Protocol):
    """Finds the provider instance for a tenant, channel and provider name.

    Raises ProviderNotConfigured (a domain error) when the tenant has no usable
    configuration for it: a configuration failure, not a transient one.
    """

    async def get(self, tenant: str, channel: Channel, name: str) -> Provider:
        """The provider to call."""
        ...

    async def close(self) -> None:
        """Close every provider instance."""
        ...


class CredentialStore(Protocol):
    """Per-tenant provider configuration and credentials."""

    async def get_credentials(self, tenant: str, provider: str) -> dict[str, Any] | None:
        """A tenant's configuration of one provider."""
        ...

    async def put_credentials(self, tenant: str, provider: str, config: dict[str, Any]) -> None:
        """Create or replace a tenant's configuration of one provider."""
        ...

    async def list_credentials(self, tenant: str) -> list[str]:
        """The providers a tenant has configured."""
        ...


class DataKeyStore(Protocol):
    """Wrapped per-tenant data keys (only ever stored wrapped by a KeyRing)."""

    async def get_data_key(self, tenant: str) -> bytes | None:
        """The tenant's wrapped data key."""
        ...

    async def add_data_key(self, tenant: str, wrapped: bytes) -> bytes:
        """Store a wrapped key unless the tenant has one; the one stored."""
        ...

    async def list_data_keys(self) -> list[tuple[str, bytes]]:
        """Every (tenant, wrapped key)."""
        ...

    async def replace_data_key(self, tenant: str, old: bytes, new: bytes) -> bool:
        """Swap a wrapped key if it is still ``old``; whether it was."""
        ...


class SecretStore(CredentialStore, DataKeyStore, Protocol):
    """What a backend stores for secrets: sealed settings and wrapped data keys."""


class KeyRing(Protocol):
    """Wraps data keys under master keys (local key file, env var, or AWS KMS)."""

    def primary_key_id(self) -> str:
        """The master key that wraps new data keys."""
        ...

    def key_id_of(self, wrapped: bytes) -> str:
        """The master key that wrapped ``wrapped``."""
        ...

    async def generate_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """A new data key as (plaintext, wrapped), bound to ``context``."""
        ...

    async def decrypt_data_key(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """Unwrap a data key; fails unless ``context`` is the one it was wrapped with."""
        ...

    async def rewrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The same data key wrapped under the primary master key."""
        ...

    async def close(self) -> None:
        """Release clients."""
        ...


class Outbox(Protocol):
    """Where the sandbox provider puts what it delivers."""

    async def append(self, message: OutboundMessage, provider_message_id: str) -> None:
        """Record one delivery."""
        ...

    async def list_outbox(
        self, tenant: str | None = None, *, limit: int = 100
    ) -> list[OutboxEntry]:
        """Deliveries, newest first."""
        ...


@dataclass(frozen=True, slots=True)
class PoisonMessage:
    """A message the queue service itself gave up on (SQS: its DLQ after maxReceiveCount)."""

    message_id: str
    notification_id: str
    tenant: str
    receive_count: int
    sent_at: datetime


class QueueDeadLetters(Protocol):
    """A queue's own dead-letter queue, apart from the store's dead letters.

    Only queues with such a thing (SQS's redrive policy) have one; a SQL queue
    never gives up on a message, the dispatcher dead-letters in the store.
    """

    async def list_poison(self, tenant: str | None, *, limit: int) -> list[PoisonMessage]:
        """The messages waiting there, without consuming them; ``tenant=None``: all."""
        ...

    async def redrive_poison(
        self, tenant: str | None, notification_ids: Collection[str] | None
    ) -> list[str]:
        """Move messages back to the main queue (``None``: every one); the ids moved."""
        ...


class Metrics(Protocol):
    """What the service layer reports for operators to count (see adapters/metrics).

    Calls are synchronous and cheap; an implementation must never raise.
    """

    def accepted(self, n: Notification) -> None:
        """A new notification was persisted and queued (not an idempotent replay)."""
        ...

    def attempted(
        self, n: Notification, provider: str, result: DeliveryResult, seconds: float
    ) -> None:
        """One call to ``provider`` ended with ``result`` after ``seconds``."""
        ...

    def finished(self, n: Notification, provider: str, status: Status, at: float) -> None:
        """The notification reached DONE or FAILED at ``at`` (epoch seconds)."""
        ...


class NoMetrics:
    """Counts nothing: the default for services built without metrics."""

    def accepted(self, n: Notification) -> None:
        """Nothing."""

    def attempted(
        self, n: Notification, provider: str, result: DeliveryResult, seconds: float
    ) -> None:
        """Nothing."""

    def finished(self, n: Notification, provider: str, status: Status, at: float) -> None:
        """Nothing."""
