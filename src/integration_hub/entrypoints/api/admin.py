"""The admin API under /admin/v1, for operators: protected by IHUB_ADMIN_TOKEN, never a
tenant key. Credentials are write-only; nothing here returns a secret but the new
API key a create call makes (once)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from integration_hub.adapters.providers import registry
from integration_hub.bootstrap import Hub
from integration_hub.domain import errors, routing
from integration_hub.domain.models import CONTROL, ONE_LINE_PATTERN
from integration_hub.domain.receipts import Lifter
from integration_hub.domain.routing import Channel
from integration_hub.domain.tenants import (
    TENANT_ID,
    TenantStatus,
    parse_api_key,
    validate_tenant_id,
)
from integration_hub.entrypoints.api import webhooks as webhook_routes
from integration_hub.entrypoints.api.problems import Problem
from integration_hub.entrypoints.api.schemas import (
    OperatorNotificationView,
    PoisonView,
    SuppressionPage,
    SuppressionView,
)
from integration_hub.entrypoints.api.suppressions import AddressPath
from integration_hub.entrypoints.api.suppressions import page as suppression_page
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
# Documented patterns; an id that does not match is simply no tenant (404).
TenantId = Annotated[str, Path(json_schema_extra={"pattern": TENANT_ID.pattern})]
CountryPath = Annotated[
    str,
    Path(
        description="ISO 3166-1 alpha-2, case-insensitive; UK = GB",
        json_schema_extra={"pattern": routing.COUNTRY_PATTERN},
    ),
]
_ONE_LINE = {"type": "string", "pattern": ONE_LINE_PATTERN}
router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=ERRORS)


# Every provider name a route may use, and those that take credentials.
CONFIGURABLE = sorted(registry.KINDS)
PROVIDERS = ["sandbox", *CONFIGURABLE]


def _serving(channel: Channel) -> list[str]:
    return ["sandbox", *(n for n in CONFIGURABLE if channel in registry.KINDS[n].channels)]


def _route_schema(schema: dict[str, Any]) -> None:
    # JSON Schema can tie the provider to the channel of the same body.
    schema["anyOf"] = [
        {
            "properties": {
                "channel": {"const": str(channel)},
                "provider": {"enum": _serving(channel)},
            }
        }
        for channel in Channel
    ]


class NewTenantBody(BaseModel):
    """A tenant to create."""

    model_config = ConfigDict(extra="forbid")
    tenant: Annotated[str, WithJsonSchema({"type": "string", "pattern": TENANT_ID.pattern})] = (
        Field(description="tenant id: a slug, as sent in X-Tenant")
    )
    name: (
        Annotated[str, Field(max_length=200), WithJsonSchema(_ONE_LINE | {"maxLength": 200})] | None
    ) = Field(default=None, description="a display name: one line, no control characters")

    @field_validator("tenant")
    @classmethod
    def _slug(cls, value: str) -> str:
        try:
            return validate_tenant_id(value)
        except errors.HubError as exc:
            raise ValueError(exc.message) from None

    @field_validator("name")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and CONTROL.search(value):
            raise ValueError("name must be one line without control characters")
        return value


class RouteBody(BaseModel):
    """Where one country goes; the provider must serve the channel."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_route_schema)
    channel: Channel
    provider: Annotated[str, WithJsonSchema({"type": "string", "enum": PROVIDERS})] = "sandbox"


class ProviderBody(BaseModel):
    """The provider of a channel's default routes; it must serve that channel."""

    model_config = ConfigDict(extra="forbid")
    provider: Annotated[str, WithJsonSchema({"type": "string", "enum": PROVIDERS})]


class CreatedKey(BaseModel):
    """A new API key: shown this once."""

    tenant: str
    key_id: str
    api_key: str


class Redriven(BaseModel):
    """Notifications put back in the queue."""

    redriven: list[str]


@router.post(
    "/tenants",
    status_code=201,
    response_model=CreatedKey,
    responses={409: {**_PROBLEM, "description": "a tenant with this id exists (tenant-exists)"}},
)
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
async def get_tenant(admin: Admin, tenant_id: TenantId) -> dict[str, Any]:
    """Routing, limits and configured providers; never credentials."""
    return await admin.view(tenant_id)


@router.post("/tenants/{tenant_id}/disable")
async def disable_tenant(admin: Admin, tenant_id: TenantId) -> dict[str, Any]:
    """Refuse its keys at once; its queued notifications end FAILED, unsent."""
    await admin.set_status(tenant_id, TenantStatus.DISABLED)
    return await admin.view(tenant_id)


@router.post("/tenants/{tenant_id}/enable")
async def enable_tenant(admin: Admin, tenant_id: TenantId) -> dict[str, Any]:
    """Accept its keys again."""
    await admin.set_status(tenant_id, TenantStatus.ACTIVE)
    return await admin.view(tenant_id)


@router.put("/tenants/{tenant_id}/routes/{country}")
async def set_route(
    admin: Admin, tenant_id: TenantId, country: CountryPath, body: RouteBody
) -> dict[str, Any]:
    """Route one country to a channel and provider."""
    try:
        code = routing.normalize_country(country)
    except errors.HubError as exc:
        # The country is the path's here, not an X-Country header.
        raise errors.HubError(exc.message, field="country") from None
    await admin.set_route(tenant_id, code, body.channel, body.provider)
    return await admin.view(tenant_id)


@router.put("/tenants/{tenant_id}/channels/{channel}")
async def set_channel_provider(
    admin: Admin, tenant_id: TenantId, channel: Channel, body: ProviderBody
) -> dict[str, Any]:
    """The provider for a channel's default routes (``sandbox`` resets)."""
    await admin.set_channel_provider(tenant_id, channel, body.provider)
    return await admin.view(tenant_id)


@router.patch("/tenants/{tenant_id}/limits")
async def set_limits(admin: Admin, tenant_id: TenantId, body: TenantLimits) -> dict[str, Any]:
    """Countries, retry budget, rate limit and daily quota; fields not sent are kept."""
    await admin.set_limits(tenant_id, body)
    return await admin.view(tenant_id)


@router.put("/tenants/{tenant_id}/credentials/{provider}", status_code=204)
async def set_credentials(
    admin: Admin,
    tenant_id: TenantId,
    provider: Annotated[str, Path(json_schema_extra={"enum": CONFIGURABLE})],
    body: dict[str, Any],
) -> Response:
    """Store a provider's settings, validated and encrypted; write-only."""
    await admin.set_credentials(tenant_id, provider, body)
    return Response(status_code=204)


@router.post("/tenants/{tenant_id}/keys", status_code=201, response_model=CreatedKey)
async def create_key(admin: Admin, tenant_id: TenantId) -> CreatedKey:
    """Another active key, for rotation without downtime."""
    key = await admin.create_key(tenant_id)
    return CreatedKey(tenant=tenant_id, key_id=parse_api_key(key) or "", api_key=key)


@router.get("/tenants/{tenant_id}/keys")
async def list_keys(admin: Admin, tenant_id: TenantId) -> list[dict[str, Any]]:
    """Key ids and dates, never hashes."""
    return [key_view(k) for k in await admin.list_keys(tenant_id)]


@router.delete("/tenants/{tenant_id}/keys/{key_id}", status_code=204)
async def revoke_key(admin: Admin, tenant_id: TenantId, key_id: str) -> Response:
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
    store = admin.hub.store
    n = await store.get_notification(tenant_id, notification_id)
    if n is None:
        raise errors.NotFound(f"no notification {notification_id!r}", field="notification_id")
    events = await store.delivery_events(tenant_id, n.id) if n.delivery_state else []
    return OperatorNotificationView.full(n, events)


@router.get("/tenants/{tenant_id}/dead-letters")
async def list_dead_letters(admin: Admin, tenant_id: TenantId) -> list[dict[str, Any]]:
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
async def redrive_all(admin: Admin, tenant_id: TenantId) -> Redriven:
    """Every dead letter of the tenant back in the queue, with a fresh budget."""
    await admin.get(tenant_id)
    hub = admin.hub
    return Redriven(redriven=await redrive_service.redrive_all(hub.store, hub.queue, tenant_id))


@router.post("/tenants/{tenant_id}/dead-letters/{notification_id}/redrive", response_model=Redriven)
async def redrive_one(admin: Admin, tenant_id: TenantId, notification_id: str) -> Redriven:
    """One dead letter of the tenant back in the queue."""
    hub = admin.hub
    if not await redrive_service.redrive(hub.store, hub.queue, tenant_id, notification_id):
        raise errors.NotFound(f"no dead letter {notification_id!r}", field="notification_id")
    return Redriven(redriven=[notification_id])


@router.get("/tenants/{tenant_id}/queue-dead-letters", response_model=list[PoisonView])
async def list_queue_dead_letters(admin: Admin, tenant_id: TenantId) -> list[PoisonView]:
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
async def redrive_queue_dead_letters(admin: Admin, tenant_id: TenantId) -> Redriven:
    """Every one of the tenant's SQS DLQ messages back in the main queue, as they were."""
    await admin.get(tenant_id)
    dlq = admin.hub.queue_dead_letters
    return Redriven(redriven=[] if dlq is None else await dlq.redrive_poison(tenant_id, None))


@router.post(
    "/tenants/{tenant_id}/queue-dead-letters/{notification_id}/redrive", response_model=Redriven
)
async def redrive_queue_dead_letter(
    admin: Admin, tenant_id: TenantId, notification_id: str
) -> Redriven:
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


class NewSuppressionBody(BaseModel):
    """An operator's suppression: only the operator can lift it."""

    model_config = ConfigDict(extra="forbid")
    channel: Channel
    address: str = Field(
        min_length=1, max_length=320, description="an email address or an E.164 phone number"
    )
    note: (
        Annotated[str, Field(max_length=500), WithJsonSchema(_ONE_LINE | {"maxLength": 500})] | None
    ) = Field(default=None, description="why (one line): shown to the tenant too")

    @field_validator("note")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and CONTROL.search(value):
            raise ValueError("note must be one line without control characters")
        return value


@router.get("/tenants/{tenant_id}/suppressions", response_model=SuppressionPage)
async def list_suppressions(
    request: Request,
    admin: Admin,
    tenant_id: TenantId,
    channel: Annotated[Channel | None, Query(description="only this channel")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: str | None = None,
) -> SuppressionPage:
    """A tenant's suppression list, by channel and address."""
    await admin.get(tenant_id)
    return await suppression_page(request, tenant_id, channel, limit, cursor)


@router.post("/tenants/{tenant_id}/suppressions", status_code=201, response_model=SuppressionView)
async def add_suppression(
    admin: Admin, tenant_id: TenantId, body: NewSuppressionBody
) -> SuppressionView:
    """Suppress a recipient for a tenant (reason ``operator``); an existing entry is kept."""
    await admin.get(tenant_id)
    added = await admin.hub.receipts.add(tenant_id, body.channel, body.address, note=body.note)
    return SuppressionView.of(added)


@router.delete("/tenants/{tenant_id}/suppressions/{channel}/{address:path}", status_code=204)
async def remove_suppression(
    admin: Admin, tenant_id: TenantId, channel: Channel, address: AddressPath
) -> Response:
    """Lift any suppression of a tenant, whoever added it."""
    await admin.get(tenant_id)
    await admin.hub.receipts.lift(tenant_id, channel, address, by=Lifter.OPERATOR)
    return Response(status_code=204)


async def _webhook_tenant(admin: Admin, tenant_id: TenantId) -> str:
    """The tenant named in the path, which must exist."""
    await admin.get(tenant_id)
    return tenant_id


# The tenant API's webhook routes, for any tenant (routes and checks shared, not copied).
webhook_routes.install(router, _webhook_tenant, prefix="/tenants/{tenant_id}")
