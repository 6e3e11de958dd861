"""In-memory stand-ins for the webhook service's unit tests only (the API and CLI tests
run on the real SQLite backend): a WebhookStore, a sealer."""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from integration_hub.domain import webhooks as wh
from integration_hub.domain.webhooks import (
    AttemptResult,
    Delivery,
    DeliveryDecision,
    DeliveryStatus,
    DisablePolicy,
    Endpoint,
    EventType,
    WebhookEvent,
)
from integration_hub.ports.webhooks import EndpointChanged, WebhookStats
from support import ManualClock


class FakeSealer:
    """Seals as base64 JSON bound to (tenant, purpose): enough to see that a value only
    opens where it was sealed, and that nothing stored is the secret itself."""

    async def seal(self, tenant: str, purpose: str, value: Mapping[str, Any]) -> dict[str, str]:
        blob = json.dumps({"tenant": tenant, "purpose": purpose, "value": dict(value)})
        return {"scheme": "fake", "blob": base64.b64encode(blob.encode()).decode()}

    async def unseal(self, tenant: str, purpose: str, sealed: Mapping[str, str]) -> dict[str, Any]:
        opened = json.loads(base64.b64decode(sealed["blob"]))
        if (opened["tenant"], opened["purpose"]) != (tenant, purpose):
            raise ValueError("sealed for another tenant or purpose")
        value: dict[str, Any] = opened["value"]
        return value


@dataclass
class MemoryWebhookStore:
    """Endpoints, events and deliveries in dicts; the delivery loop's calls are not here."""

    clock: ManualClock
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    events: list[WebhookEvent] = field(default_factory=list)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    replays: list[tuple[str, str, float, frozenset[EventType] | None]] = field(default_factory=list)

    async def create_endpoint(
        self, endpoint: Endpoint, *, limit: int = wh.MAX_ENDPOINTS_PER_TENANT
    ) -> bool:
        assert endpoint.id not in self.endpoints
        if not wh.may_add_endpoint(len(await self.list_endpoints(endpoint.tenant)), limit):
            return False
        self.endpoints[endpoint.id] = endpoint
        return True

    async def get_endpoint(self, tenant: str | None, endpoint_id: str) -> Endpoint | None:
        found = self.endpoints.get(endpoint_id)
        if found is None or (tenant is not None and found.tenant != tenant):
            return None
        return found

    async def list_endpoints(self, tenant: str) -> list[Endpoint]:
        mine = [e for e in self.endpoints.values() if e.tenant == tenant]
        return sorted(mine, key=lambda e: (e.created_at, e.id))

    async def update_endpoint(self, endpoint: Endpoint) -> bool:
        found = self.endpoints.get(endpoint.id)
        if found is None or found.tenant != endpoint.tenant:
            return False
        if wh.update_refused(found, endpoint):
            raise EndpointChanged(endpoint.id)
        if not wh.update_writes_counters(found, endpoint):  # the counters are the loop's
            endpoint = replace(
                endpoint,
                failing_since=found.failing_since,
                consecutive_failures=found.consecutive_failures,
            )
        self.endpoints[endpoint.id] = replace(endpoint, revision=endpoint.revision + 1)
        return True

    async def delete_endpoint(self, tenant: str, endpoint_id: str) -> bool:
        if await self.get_endpoint(tenant, endpoint_id) is None:
            return False
        del self.endpoints[endpoint_id]
        for d in [d for d in self.deliveries.values() if d.endpoint_id == endpoint_id]:
            if d.status is DeliveryStatus.PENDING:
                del self.deliveries[d.id]
        return True

    async def append_event(self, event: WebhookEvent) -> None:
        self.events.append(event)

    async def fan_out(self, *, limit: int = 500) -> int:
        raise NotImplementedError("the delivery loop's, not the service's")

    async def list_events(
        self, tenant: str, *, notification_id: str | None = None, limit: int = 100
    ) -> list[WebhookEvent]:
        mine = [e for e in self.events if e.tenant == tenant]
        if notification_id is not None:
            mine = [e for e in mine if e.notification_id == notification_id]
        return mine[:limit]

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
        raise NotImplementedError("the delivery loop's, not the service's")

    async def finish_attempt(
        self,
        delivery: Delivery,
        token: str,
        result: AttemptResult,
        *,
        policy: DisablePolicy,
    ) -> DeliveryDecision | None:
        raise NotImplementedError("the delivery loop's, not the service's")

    def add_delivery(
        self, endpoint: Endpoint, status: DeliveryStatus = DeliveryStatus.FAILED
    ) -> Delivery:
        """A delivery of a fresh event to ``endpoint``, in ``status``."""
        now = self.clock.now()
        event = wh.ping_event(endpoint, now)
        delivery = Delivery(
            id=wh.new_delivery_id(),
            endpoint_id=endpoint.id,
            tenant=endpoint.tenant,
            event=event,
            status=status,
            created_at=now,
            next_attempt_at=now if status is DeliveryStatus.PENDING else None,
            attempt_count=0 if status is DeliveryStatus.PENDING else wh.MAX_ATTEMPTS,
            finished_at=None if status is DeliveryStatus.PENDING else now,
        )
        self.deliveries[delivery.id] = delivery
        return delivery

    async def list_deliveries(
        self,
        tenant: str | None,
        endpoint_id: str,
        *,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Delivery]:
        mine = [
            d
            for d in self.deliveries.values()
            if d.endpoint_id == endpoint_id and (tenant is None or d.tenant == tenant)
        ]
        mine.sort(key=lambda d: (d.created_at, d.id), reverse=True)
        if before_id is not None:
            ids = [d.id for d in mine]
            mine = mine[ids.index(before_id) + 1 :] if before_id in ids else []
        return mine[:limit]

    async def get_delivery(self, tenant: str | None, delivery_id: str) -> Delivery | None:
        found = self.deliveries.get(delivery_id)
        if found is None or (tenant is not None and found.tenant != tenant):
            return None
        return found

    async def retry_delivery(self, tenant: str | None, endpoint_id: str, delivery_id: str) -> bool:
        found = await self.get_delivery(tenant, delivery_id)
        if found is None or found.endpoint_id != endpoint_id:
            return False
        self.deliveries[delivery_id] = replace(
            found,
            status=DeliveryStatus.PENDING,
            next_attempt_at=self.clock.now(),
            finished_at=None,
        )
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
        chosen = None if types is None else frozenset(types)
        self.replays.append((tenant, endpoint_id, since, chosen))
        return len([e for e in self.events if e.tenant == tenant and e.occurred_at >= since])

    async def webhook_stats(self) -> WebhookStats:
        pending = [d for d in self.deliveries.values() if d.status is DeliveryStatus.PENDING]
        disabled = [e for e in self.endpoints.values() if not e.enabled]
        return WebhookStats(len(pending), 0.0, 0, len(disabled))
