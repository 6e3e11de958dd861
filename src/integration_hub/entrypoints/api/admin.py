"""The admin API under /admin/v1, for operators: protected by IHUB_ADMIN_TOKEN, never a
tenant key. Credentials are write-only; nothing here returns a secret but the new
API key a create call makes (once)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from integration_hub.bootstrap import Hub
from integration_hub.domain import errors
from integration_hub.domain.routing import Channel
from integration_hub.domain.tenants import TenantStatus, parse_api_key
from integration_hub.entrypoints.api.problems import Problem
from integration_hub.entrypoints.api.schemas import OperatorNotificationView, PoisonView
from integration_hub.entrypoints.tenant_admin import TenantAdmin, TenantLimits, key_view
from integration_hub.service import redrive as redrive_service

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**_PROBLEM, "description": "missing or wrong admin token"},
    403: {**_PROBLEM, "description": "the admin API is disabled (no IHUB_ADMIN_TOKEN)"},
    404: {**_PROBLEM, "description": "no such tenant, key or dead letter"},
    422: {**_PROBLEM, "description": "invalid field"},
}


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def require_admin(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <admin token>")] = None,
) -> TenantAdmin:
    """The operator's handle on tenants; only for the admin token, compared in constant time."""
    hub = _hub(request)
    token = hub.settings.admin_token
    if token is None:
        raise errors.Forbidden("the admin API is disabled: set IHUB_ADMIN_TOKEN")
    scheme, _, presented = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
        raise errors.Unauthenticated("missing or wrong admin token", field="Authorization")
    return TenantAdmin(hub)


Admin = Annotated[TenantAdmin, Depends(require_admin)]
router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=ERRORS)


class NewTenantBody(BaseModel):
    """A tenant to create."""

    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(description="tenant id: a slug, as sent in X-Tenant")
    name: str | None = None


class RouteBody(BaseModel):
    """Where one country goes."""

    model_config = ConfigDict(extra="forbid")
    channel: Channel
    provider: str = "sandbox"


class ProviderBody(BaseModel):
    """The provider of a channel's default routes."""

    model_config = ConfigDict(extra="forbid")
    provider: str


class CreatedKey(BaseModel):
    """A new API key: shown this once."""

    tenant: str
    key_id: str
    api_key: str


class Redriven(BaseModel):
    """Notifications put back in the queue."""

    redriven: list[str]


@router.post("/tenants", status_code=201, response_model=CreatedKey)
async def create_tenant(admin: Admin, body: NewTenantBody) -> CreatedKey:
    """Create a tenant and its first API key."""
    created = await admin.create(body.tenant, body.name)
    return CreatedKey(
        tenant=created.tenant.id,
        key_id=parse_api_key(created.api_key) or "",
        api_key=created.api_key,
    )


@router.get("/tenants")
async def list_tenants(admin: Admin) -> list[dict[str, Any]]:
    """Every tenant."""
    return [
        {
            "tenant": t.id,
            "name": t.name,
            "status": str(t.status),
            "created_at": t.created_at.isoformat(),
        }
        for t in await admin.list_tenants()
    ]


@router.get("/tenants/{tenant_id}")
async def get_tenant(admin: Admin, tenant_id: str) -> dict[str, Any]:
    """Routing, limits and configured providers; never credentials."""
    return await admin.view(tenant_id)


@router.post("/tenants/{tenant_id}/disable")
async def disable_tenant(admin: Admin, tenant_id: str) -> dict[str, Any]:
    """Refuse its keys at once; its queued notifications end FAILED, unsent."""
    await admin.set_status(tenant_id, TenantStatus.DISABLED)
    return await admin.view(tenant_id)


@router.post("/tenants/{tenant_id}/enable")
async def enable_tenant(admin: Admin, tenant_id: str) -> dict[str, Any]:
    """Accept its keys again."""
    await admin.set_status(tenant_id, TenantStatus.ACTIVE)
    return await admin.view(tenant_id)


@router.put("/tenants/{tenant_id}/routes/{country}")
async def set_route(admin: Admin, tenant_id: str, country: str, body: RouteBody) -> dict[str, Any]:
    """Route one country to a channel and provider."""
    await admin.set_route(tenant_id, country, body.channel, body.provider)
    return await admin.view(tenant_id)


@router.put("/tenants/{tenant_id}/channels/{channel}")
async def set_channel_provider(
    admin: Admin, tenant_id: str, channel: Channel, body: ProviderBody
) -> dict[str, Any]:
    """The provider for a channel's default routes (``sandbox`` resets)."""
    await admin.set_channel_provider(tenant_id, channel, body.provider)
    return await admin.view(tenant_id)


@router.patch("/tenants/{tenant_id}/limits")
async def set_limits(admin: Admin, tenant_id: str, body: TenantLimits) -> dict[str, Any]:
    """Countries, retry budget, rate limit and daily quota; fields not sent are kept."""
    await admin.set_limits(tenant_id, body)
    return await admin.view(tenant_id)


@router.put("/tenants/{tenant_id}/credentials/{provider}", status_code=204)
async def set_credentials(
    admin: Admin, tenant_id: str, provider: str, body: dict[str, Any]
) -> Response:
    """Store a provider's settings, validated and encrypted; write-only."""
    await admin.set_credentials(tenant_id, provider, body)
    return Response(status_code=204)


@router.post("/tenants/{tenant_id}/keys", status_code=201, response_model=CreatedKey)
async def create_key(admin: Admin, tenant_id: str) -> CreatedKey:
    """Another active key, for rotation without downtime."""
    key = await admin.create_key(tenant_id)
    return CreatedKey(tenant=tenant_id, key_id=parse_api_key(key) or "", api_key=key)


@router.get("/tenants/{tenant_id}/keys")
async def list_keys(admin: Admin, tenant_id: str) -> list[dict[str, Any]]:
    """Key ids and dates, never hashes."""
    return [key_view(k) for k in await admin.list_keys(tenant_id)]


@router.delete("/tenants/{tenant_id}/keys/{key_id}", status_code=204)
async def revoke_key(admin: Admin, tenant_id: str, key_id: str) -> Response:
    """Revoke a key: refused at once here, within IHUB_TENANT_CACHE_SECONDS elsewhere."""
    await admin.revoke_key(tenant_id, key_id)
    return Response(status_code=204)


@router.get(
    "/tenants/{tenant_id}/notifications/{notification_id}",
    response_model=OperatorNotificationView,
)
async def get_notification(
    admin: Admin, tenant_id: str, notification_id: str
) -> OperatorNotificationView:
    """A tenant's notification with every attempt, including the provider's raw answers."""
    await admin.get(tenant_id)
    n = await admin.hub.store.get_notification(tenant_id, notification_id)
    if n is None:
        raise errors.NotFound(f"no notification {notification_id!r}", field="notification_id")
    return OperatorNotificationView.full(n)


@router.get("/tenants/{tenant_id}/dead-letters")
async def list_dead_letters(admin: Admin, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's dead letters, newest first."""
    await admin.get(tenant_id)
    letters = await admin.hub.store.list_dead_letters(tenant_id, limit=1000)
    return [
        {
            "id": d.notification_id,
            "reason": d.reason,
            "dead_lettered_at": d.dead_lettered_at.isoformat(),
        }
        for d in letters
    ]


@router.post("/tenants/{tenant_id}/dead-letters/redrive", response_model=Redriven)
async def redrive_all(admin: Admin, tenant_id: str) -> Redriven:
    """Every dead letter of the tenant back in the queue, with a fresh budget."""
    await admin.get(tenant_id)
    hub = admin.hub
    return Redriven(redriven=await redrive_service.redrive_all(hub.store, hub.queue, tenant_id))


@router.post("/tenants/{tenant_id}/dead-letters/{notification_id}/redrive", response_model=Redriven)
async def redrive_one(admin: Admin, tenant_id: str, notification_id: str) -> Redriven:
    """One dead letter of the tenant back in the queue."""
    hub = admin.hub
    if not await redrive_service.redrive(hub.store, hub.queue, tenant_id, notification_id):
        raise errors.NotFound(f"no dead letter {notification_id!r}", field="notification_id")
    return Redriven(redriven=[notification_id])


@router.get("/tenants/{tenant_id}/queue-dead-letters", response_model=list[PoisonView])
async def list_queue_dead_letters(admin: Admin, tenant_id: str) -> list[PoisonView]:
    """The tenant's messages in the queue service's own DLQ (SQS), oldest first; not consumed.

    Messages SQS gave up on after ``maxReceiveCount`` receives: the worker never
    finished them. Always empty on a SQL queue, which has no such thing.
    """
    await admin.get(tenant_id)
    dlq = admin.hub.queue_dead_letters
    if dlq is None:
        return []
    now = admin.hub.clock.now()
    return [PoisonView.of(m, now) for m in await dlq.list_poison(tenant_id, limit=1000)]


@router.post("/tenants/{tenant_id}/queue-dead-letters/redrive", response_model=Redriven)
async def redrive_queue_dead_letters(admin: Admin, tenant_id: str) -> Redriven:
    """Every one of the tenant's SQS DLQ messages back in the main queue, as they were."""
    await admin.get(tenant_id)
    dlq = admin.hub.queue_dead_letters
    return Redriven(redriven=[] if dlq is None else await dlq.redrive_poison(tenant_id, None))


@router.post(
    "/tenants/{tenant_id}/queue-dead-letters/{notification_id}/redrive", response_model=Redriven
)
async def redrive_queue_dead_letter(admin: Admin, tenant_id: str, notification_id: str) -> Redriven:
    """One notification's SQS DLQ message(s) back in the main queue."""
    await admin.get(tenant_id)
    dlq = admin.hub.queue_dead_letters
    moved = [] if dlq is None else await dlq.redrive_poison(tenant_id, [notification_id])
    if not moved:
        raise errors.NotFound(
            f"no message for {notification_id!r} in the queue's dead-letter queue",
            field="notification_id",
        )
    return Redriven(redriven=moved)
