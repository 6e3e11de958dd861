"""Accepting a notification: validate, route, deduplicate, persist, enqueue."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

from integration_hub import tracing
from integration_hub.domain import errors, routing
from integration_hub.domain.ids import new_id
from integration_hub.domain.models import (
    Notification,
    NotificationRequest,
    check_recipient,
    fingerprint,
    from_epoch,
)
from integration_hub.domain.tenants import Tenant
from integration_hub.ports import (
    Clock,
    IdempotencyRecord,
    IngestStore,
    Metrics,
    NewKeyAccept,
    NoMetrics,
    Queue,
)
from integration_hub.service.receipts import (
    SuppressionCheck,
    recipient_address,
    recipient_field,
)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to a submission: the original one when ``replayed``."""

    body: dict[str, Any]
    replayed: bool


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    """Idempotency timings."""

    ttl_seconds: float = 86400.0
    lock_seconds: float = 10.0


class IngestService:
    """Turns a validated request into a durable, queued notification."""

    def __init__(
        self,
        store: IngestStore,
        queue: Queue,
        clock: Clock,
        policy: IngestPolicy | None = None,
        *,
        metrics: Metrics | None = None,
        suppressions: SuppressionCheck | None = None,
    ) -> None:
        self.store = store
        # A new notification to a suppressed recipient is refused (None: no lists).
        self.suppressions = suppressions
        self.queue = queue
        self.clock = clock
        self.policy = policy or IngestPolicy()
        self.metrics = metrics or NoMetrics()
        # SQL stores accept under a new key in one transaction (NewKeyAccept).
        self._one_step = store if isinstance(store, NewKeyAccept) else None

    async def _release(self, tenant: str, key: str, reservation: str) -> None:
        # Free the key so that the client's retry is not met by a 409 for the
        # whole lock period. Shielded: a cancelled request still frees it.
        await asyncio.shield(
            self.store.release_idempotency_key(tenant, key, reservation=reservation)
        )

    async def submit(
        self,
        tenant: Tenant,
        country: str,
        idempotency_key: str,
        request: NotificationRequest,
    ) -> Accepted:
        """Accept ``request`` once per (tenant, Idempotency-Key)."""
        code = routing.normalize_country(country)
        route = tenant.route(code)
        check_recipient(route.channel, request.recipient)
        fp = fingerprint(code, request)
        suppressed = await self._suppressed(tenant, route.channel, request)
        limited = tenant.rate_limit_per_second is not None or tenant.daily_quota is not None
        if self._one_step is not None and not limited and suppressed is None:
            # The common case, a key never seen: one transaction instead of
            # reserve + accept. Limits must be counted between the two phases.
            notification, body = self._new(tenant, code, route, idempotency_key, request)
            first = await self._one_step.accept_new(
                notification, body, fingerprint=fp, ttl_seconds=self.policy.ttl_seconds
            )
            if first.existing is not None:
                return self._answer(first.existing, fp)
            if not first.enqueued:
                await self.queue.enqueue(notification.id, tenant.id)
            self.metrics.accepted(notification)
            return Accepted(body, replayed=False)
        reservation = secrets.token_hex(8)
        existing = await self.store.reserve_idempotency_key(
            tenant.id,
            idempotency_key,
            fp,
            reservation=reservation,
            lock_seconds=self.policy.lock_seconds,
        )
        if existing is not None:
            return self._answer(existing, fp)
        if suppressed is not None:
            # A new notification (a replay was answered above): nothing is stored.
            await self._release(tenant.id, idempotency_key, reservation)
            raise suppressed

        if tenant.rate_limit_per_second is not None or tenant.daily_quota is not None:
            try:
                refused_for = await self.store.consume_quota(
                    tenant.id, per_second=tenant.rate_limit_per_second, per_day=tenant.daily_quota
                )
            except BaseException:
                await self._release(tenant.id, idempotency_key, reservation)
                raise
            if refused_for is not None:
                # Nothing is stored for a refused request: the key is free again.
                await self._release(tenant.id, idempotency_key, reservation)
                raise errors.RateLimited(
                    "this tenant is over its rate limit or daily quota", retry_after=refused_for
                )

        notification, body = self._new(tenant, code, route, idempotency_key, request)
        try:
            enqueued = await self.store.accept(
                notification, body, reservation=reservation, ttl_seconds=self.policy.ttl_seconds
            )
        except BaseException:
            await self._release(tenant.id, idempotency_key, reservation)
            raise
        if not enqueued:
            await self.queue.enqueue(notification.id, tenant.id)
        self.metrics.accepted(notification)
        return Accepted(body, replayed=False)

    async def _suppressed(
        self, tenant: Tenant, channel: routing.Channel, request: NotificationRequest
    ) -> errors.Suppressed | None:
        """The refusal to raise for a new notification, if its recipient is suppressed."""
        if self.suppressions is None:
            return None
        address = recipient_address(channel, request.recipient)
        found = await self.suppressions.find(tenant.id, channel, address)
        if found is None:
            return None
        return errors.Suppressed(str(channel), str(found.reason), field=recipient_field(channel))

    def _answer(self, existing: IdempotencyRecord, fp: str) -> Accepted:
        """The answer when the key is held: a replay, a conflict, or still in progress."""
        if existing.fingerprint != fp:
            raise errors.IdempotencyConflict(
                "this Idempotency-Key was already used with a different payload",
                field="Idempotency-Key",
            )
        if existing.response is None:
            wait = max(1.0, existing.locked_until - self.clock.now())
            raise errors.IdempotencyInProgress(field="Idempotency-Key", retry_after=wait)
        return Accepted(existing.response, replayed=True)

    def _new(
        self,
        tenant: Tenant,
        code: str,
        route: routing.Route,
        idempotency_key: str,
        request: NotificationRequest,
    ) -> tuple[Notification, dict[str, Any]]:
        """A RECEIVED notification and the 202 body that answers it."""
        now = from_epoch(self.clock.now())
        trace = tracing.carrier()  # workers continue this trace (ADR 0015)
        notification = Notification(
            id=new_id(),
            tenant=tenant.id,
            country=code,
            channel=route.channel,
            provider=route.provider,
            request=request,
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
            traceparent=trace.get("traceparent"),
            tracestate=trace.get("tracestate"),
        )
        body = {
            "id": notification.id,
            "status": str(notification.status),
            "tenant": tenant.id,
            "country": code,
            "channel": str(route.channel),
            "created_at": now.isoformat(),
        }
        return notification, body
