"""The WebhookStore port: endpoints, the event outbox, deliveries and their attempts.

A role of ``Store``: every backend implements it (ADR 0021).

Events themselves are written by the other store roles, in the transaction
of the change that causes them (ADR 0021): ``accept`` and ``accept_new``
write ``notification.accepted``; ``complete_attempt`` the event of
``webhooks.completion_event``; a claim that ends FAILED (``lifecycle.Fail``)
and ``dead_letter`` write ``notification.dead_lettered``; ``redrive``
``notification.redriven``; ``record_receipt`` and ``expire_deliveries`` the
event of ``webhooks.delivery_event`` when the delivery state moves. Each
builds it with ``webhooks.notification_event`` from the row as it is after
the change. ``append_event`` is for events no state change causes
(``webhook.test``, ``endpoint.disabled``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from integration_hub.domain import webhooks
from integration_hub.domain.webhooks import (
    AttemptResult,
    Delivery,
    DeliveryDecision,
    DisablePolicy,
    Endpoint,
    EventType,
    WebhookEvent,
)


class EndpointChanged(Exception):
    """``update_endpoint`` refused: the endpoint's owner fields or enabled flag changed
    since it was read (its ``revision`` moved). Read it again and re-apply the change."""


@dataclass(frozen=True, slots=True)
class WebhookStats:
    """The webhook queue: pending deliveries, and how long the oldest due one has waited."""

    pending: int
    oldest_due_age_seconds: float
    """0 when nothing is due."""
    unfanned_events: int
    """Events not yet fanned out to deliveries."""
    disabled_endpoints: int


class WebhookStore(Protocol):
    """Tenants' webhook endpoints and the delivery of their events."""

    # -- endpoints ----------------------------------------------------------------------

    async def create_endpoint(
        self, endpoint: Endpoint, *, limit: int = webhooks.MAX_ENDPOINTS_PER_TENANT
    ) -> bool:
        """Insert an endpoint (its id is new) unless its tenant already has ``limit``;
        whether it did. Atomic: concurrent creations never take a tenant past ``limit``."""
        ...

    async def get_endpoint(self, tenant: str | None, endpoint_id: str) -> Endpoint | None:
        """An endpoint by id; ``tenant=None`` only for operators. Another tenant's: None."""
        ...

    async def list_endpoints(self, tenant: str) -> list[Endpoint]:
        """The tenant's endpoints, oldest first."""
        ...

    async def update_endpoint(self, endpoint: Endpoint) -> bool:
        """Write what an endpoint's owner changes (url, description, event types, sealed
        secrets, ``updated_at``) and its enabled flag with the disabled reason and time,
        if its ``revision`` is still ``endpoint.revision``; it moves by one. The failure
        counters are written only when the enabled flag changes (re-enabling starts
        afresh); otherwise they are the delivery loop's. False if it does not exist;
        ``EndpointChanged`` if its revision moved (another update, or the loop
        disabling it): nothing is written."""
        ...

    async def delete_endpoint(self, tenant: str, endpoint_id: str) -> bool:
        """Delete an endpoint and its pending deliveries; False if the tenant has no such one."""
        ...

    # -- the outbox -----------------------------------------------------------------------

    async def append_event(self, event: WebhookEvent) -> None:
        """Write an event no state change causes (test, endpoint disabled) to the outbox."""
        ...

    async def fan_out(self, *, limit: int = 500) -> int:
        """Turn up to ``limit`` outbox events, oldest first, into one pending delivery per
        endpoint that ``accepts`` it (due at once), and mark them fanned out, atomically
        per event: an event is fanned out exactly once. Returns how many events."""
        ...

    async def list_events(
        self, tenant: str, *, notification_id: str | None = None, limit: int = 100
    ) -> list[WebhookEvent]:
        """The tenant's events, oldest first (for ``notification_id``: its own)."""
        ...

    # -- deliveries -----------------------------------------------------------------------

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
        """Take up to ``limit`` due deliveries for one attempt each, oldest due first.

        Due: PENDING, ``next_attempt_at <= now``, no live claim, its endpoint
        enabled, and every earlier delivery of the same notification to the
        same endpoint finished (``webhooks.may_deliver``). At most
        ``per_endpoint`` of one endpoint, none of ``exclude_endpoints`` or
        ``exclude_tenants`` (those at their in-flight cap). Each is leased to
        ``token`` until now + ``lease_seconds``; a lapsed lease is claimable
        again (the process died mid-send: at least once).
        """
        ...

    async def finish_attempt(
        self,
        delivery: Delivery,
        token: str,
        result: AttemptResult,
        *,
        policy: DisablePolicy,
    ) -> DeliveryDecision | None:
        """Record attempt ``delivery.attempt_count + 1`` and what it decides.

        In one transaction: read the endpoint's failure counters, ask
        ``webhooks.decide_delivery``, record the attempt, apply the decision to
        the delivery (status, next attempt, last status code and error) and to
        the endpoint (counters; with ``decision.disable``: disabled, and
        ``webhooks.disabled_event`` written to the outbox), clearing the claim.
        None, writing nothing, unless ``token`` still holds the claim.
        """
        ...

    async def list_deliveries(
        self,
        tenant: str | None,
        endpoint_id: str,
        *,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Delivery]:
        """An endpoint's deliveries with their attempts, newest first."""
        ...

    async def get_delivery(self, tenant: str | None, delivery_id: str) -> Delivery | None:
        """One delivery with its attempts."""
        ...

    async def retry_delivery(self, tenant: str | None, endpoint_id: str, delivery_id: str) -> bool:
        """A finished delivery PENDING again, due at once, with a fresh schedule (its
        attempts are kept); False if there is no such delivery of that endpoint."""
        ...

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
        (that it accepts: its event types, or ``types``), same ids (receivers dedupe by
        ``webhook-id``); how many."""
        ...

    async def webhook_stats(self) -> WebhookStats:
        """For the metrics: queue depth, oldest due age, unfanned events, disabled endpoints."""
        ...


class WebhookTransport(Protocol):
    """Sends one signed webhook request (adapters/webhooks: aiohttp behind the outbound rule)."""

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> AttemptResult:
        """POST ``body`` with ``headers`` to ``url`` once; never raises for what the endpoint
        or the network did (that is the result's outcome), and sends nothing to an address
        the outbound rule refuses (``BLOCKED``)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
