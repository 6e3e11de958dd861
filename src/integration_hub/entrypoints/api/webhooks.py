"""The tenant's webhook endpoints: /v1/webhooks (and, through ``install``, the admin
API's /admin/v1/tenants/{tenant_id}/webhooks), and the OpenAPI document's ``webhooks``
section: what the hub sends to those endpoints.

An endpoint's signing secret is in two answers only, creating the endpoint and
rotating its secret; nothing else returns it, sealed or not. Another tenant's
endpoint, like an unknown one, is a 404 problem.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, WithJsonSchema

from integration_hub.bootstrap import Hub
from integration_hub.domain import errors, webhooks
from integration_hub.domain.models import ONE_LINE_PATTERN
from integration_hub.entrypoints.api.routes import _PROBLEM, COMMON_ERRORS, Caller, hub
from integration_hub.entrypoints.api.schemas import (
    EndpointDisabledEvent,
    NotificationEvent,
    PingEvent,
    WebhookCreated,
    WebhookDeliveryPage,
    WebhookDeliveryView,
    WebhookEndpointList,
    WebhookEndpointView,
    WebhookReplayed,
    WebhookSecretRotated,
    WebhookTestSent,
)
from integration_hub.service.webhooks.manage import (
    KEEP,
    MAX_DESCRIPTION_LENGTH,
    MAX_URL_LENGTH,
    WebhookService,
)

router = APIRouter(prefix="/v1", tags=["webhooks"])

CURSOR = re.compile(r"^dlv_[0-9a-f]{32}$")
_URL_SCHEMA = {
    "type": "string",
    "maxLength": MAX_URL_LENGTH,
    "description": "https:// (plain http only where IHUB_WEBHOOKS_ALLOW_HTTP is set); a host"
    " that is or resolves to a loopback, private or link-local address is refused",
}
_DESCRIPTION_SCHEMA = {
    "type": "string",
    "maxLength": MAX_DESCRIPTION_LENGTH,
    "pattern": ONE_LINE_PATTERN,
    "description": "what it is for: one line",
}
_EVENT_TYPES_SCHEMA = {
    "anyOf": [
        {
            "type": "array",
            "items": {"type": "string", "enum": sorted(webhooks.SUBSCRIBABLE)},
            "minItems": 1,
        },
        {"type": "null"},
    ],
    "description": "the event types it receives; null: every one",
}


class NewWebhookBody(BaseModel):
    """An endpoint to create."""

    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, WithJsonSchema(_URL_SCHEMA)]
    description: Annotated[str, WithJsonSchema(_DESCRIPTION_SCHEMA)] = ""
    event_types: Annotated[list[str] | None, WithJsonSchema(_EVENT_TYPES_SCHEMA)] = None
    enabled: bool = True


class WebhookChangesBody(BaseModel):
    """What to change; fields not sent are kept (``event_types: null`` is every type)."""

    model_config = ConfigDict(extra="forbid")
    url: Annotated[str | None, WithJsonSchema(_URL_SCHEMA)] = None
    description: Annotated[str | None, WithJsonSchema(_DESCRIPTION_SCHEMA)] = None
    event_types: Annotated[list[str] | None, WithJsonSchema(_EVENT_TYPES_SCHEMA)] = None
    enabled: Annotated[
        bool | None,
        WithJsonSchema({"type": "boolean", "description": "true again: a fresh start"}),
    ] = None


def _service(request: Request) -> WebhookService:
    wired: Hub = hub(request)
    return wired.webhook_service


def _errors(
    base: dict[int | str, dict[str, Any]], more: dict[int, str]
) -> dict[int | str, dict[str, Any]]:
    return {**base, **{code: {**_PROBLEM, "description": text} for code, text in more.items()}}


def install(
    target: APIRouter,
    scope: Callable[..., Awaitable[str]],
    *,
    prefix: str = "",
    responses: dict[int | str, dict[str, Any]] | None = None,
) -> None:
    """Add the webhook routes to ``target`` under ``prefix``; ``scope`` is the dependency
    that answers the tenant they act for (the caller's, or the operator's choice)."""
    base = responses or {}
    missing = "no such webhook endpoint (or another tenant's)"
    path = prefix + "/webhooks"
    one = path + "/{endpoint_id}"

    @target.post(
        path,
        status_code=201,
        response_model=WebhookCreated,
        responses=_errors(
            base,
            {
                409: f"the tenant has {webhooks.MAX_ENDPOINTS_PER_TENANT} endpoints already",
                422: "invalid field (a url the outbound rule refuses, an unknown event type)",
            },
        ),
        summary="Create a webhook endpoint (its secret is shown in this answer only)",
    )
    async def create_webhook(
        request: Request, body: NewWebhookBody, tenant: str = Depends(scope)
    ) -> WebhookCreated:
        """A new endpoint and its signing secret."""
        created = await _service(request).create(
            tenant,
            body.url,
            description=body.description,
            event_types=body.event_types,
            enabled=body.enabled,
        )
        view = WebhookEndpointView.of(created.endpoint)
        return WebhookCreated(**view.model_dump(), secret=created.secret)

    @target.get(path, response_model=WebhookEndpointList, responses=base, summary="List endpoints")
    async def list_webhooks(request: Request, tenant: str = Depends(scope)) -> WebhookEndpointList:
        """The tenant's endpoints, oldest first (never their secrets)."""
        found = await _service(request).endpoints(tenant)
        return WebhookEndpointList(items=[WebhookEndpointView.of(e) for e in found])

    @target.get(
        one,
        response_model=WebhookEndpointView,
        responses=_errors(base, {404: missing}),
        summary="Show an endpoint",
    )
    async def get_webhook(
        request: Request, endpoint_id: str, tenant: str = Depends(scope)
    ) -> WebhookEndpointView:
        """One endpoint (never its secret)."""
        return WebhookEndpointView.of(await _service(request).get(tenant, endpoint_id))

    @target.patch(
        one,
        response_model=WebhookEndpointView,
        responses=_errors(base, {404: missing, 422: "invalid field"}),
        summary="Change an endpoint (enabling it again clears its failures)",
    )
    async def update_webhook(
        request: Request, endpoint_id: str, body: WebhookChangesBody, tenant: str = Depends(scope)
    ) -> WebhookEndpointView:
        """Change the fields sent; the others are kept."""
        sent = body.model_fields_set
        for name in ("url", "description", "enabled"):
            if name in sent and getattr(body, name) is None:
                raise errors.HubError(f"{name} cannot be null", field=name)
        changed = await _service(request).update(
            tenant,
            endpoint_id,
            url=body.url,
            description=body.description,
            event_types=body.event_types if "event_types" in sent else KEEP,
            enabled=body.enabled,
        )
        return WebhookEndpointView.of(changed)

    @target.delete(
        one,
        status_code=204,
        responses=_errors(base, {404: missing}),
        summary="Delete an endpoint and its pending deliveries",
    )
    async def delete_webhook(
        request: Request, endpoint_id: str, tenant: str = Depends(scope)
    ) -> Response:
        """Delete the endpoint: nothing more is sent to it."""
        await _service(request).delete(tenant, endpoint_id)
        return Response(status_code=204)

    @target.post(
        one + "/rotate-secret",
        response_model=WebhookSecretRotated,
        responses=_errors(base, {404: missing}),
        summary="Rotate the signing secret (the old one signs too for the overlap)",
    )
    async def rotate_webhook_secret(
        request: Request, endpoint_id: str, tenant: str = Depends(scope)
    ) -> WebhookSecretRotated:
        """A new secret, shown this once; during the overlap both sign."""
        rotated = await _service(request).rotate_secret(tenant, endpoint_id)
        until = rotated.previous_valid_until
        return WebhookSecretRotated(
            id=rotated.endpoint.id,
            secret=rotated.secret,
            previous_secret_valid_until=None
            if until is None
            else datetime.fromtimestamp(until, UTC),
        )

    @target.get(
        one + "/deliveries",
        response_model=WebhookDeliveryPage,
        responses=_errors(base, {404: missing, 422: "invalid query parameter"}),
        summary="List an endpoint's deliveries with their attempts, newest first",
    )
    async def list_webhook_deliveries(
        request: Request,
        endpoint_id: str,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        cursor: Annotated[
            str | None, Query(description="next_cursor of the last page", pattern=CURSOR.pattern)
        ] = None,
        tenant: str = Depends(scope),
    ) -> WebhookDeliveryPage:
        """Each delivery with status code, latency and error of every attempt, and the
        next retry."""
        found = await _service(request).deliveries(
            tenant, endpoint_id, limit=limit + 1, before_id=cursor
        )
        items = found[:limit]
        more = len(found) > limit
        return WebhookDeliveryPage(
            items=[WebhookDeliveryView.of(d) for d in items],
            next_cursor=items[-1].id if more and items else None,
        )

    @target.post(
        one + "/deliveries/{delivery_id}/retry",
        status_code=202,
        response_model=WebhookDeliveryView,
        responses=_errors(
            base,
            {
                404: "no such endpoint, or no such delivery of it",
                409: "the delivery is still pending: it is retried on its schedule",
            },
        ),
        summary="Retry a finished delivery now, with a fresh schedule",
    )
    async def retry_webhook_delivery(
        request: Request, endpoint_id: str, delivery_id: str, tenant: str = Depends(scope)
    ) -> WebhookDeliveryView:
        """The delivery, due again at once."""
        again = await _service(request).retry(tenant, endpoint_id, delivery_id)
        return WebhookDeliveryView.of(again)

    @target.post(
        one + "/test",
        status_code=202,
        response_model=WebhookTestSent,
        responses=_errors(base, {404: missing, 409: "the endpoint is disabled"}),
        summary="Send a webhook.test event to the endpoint",
    )
    async def test_webhook(
        request: Request, endpoint_id: str, tenant: str = Depends(scope)
    ) -> WebhookTestSent:
        """A ``webhook.test`` event for this endpoint only, whatever it subscribes to."""
        ping = await _service(request).send_test(tenant, endpoint_id)
        return WebhookTestSent(event_id=ping.id, type=ping.type)

    @target.post(
        one + "/replay",
        status_code=202,
        response_model=WebhookReplayed,
        responses=_errors(
            base,
            {
                404: missing,
                409: "the endpoint is disabled: enable it first",
                422: "since is not a time, or an unknown event type",
            },
        ),
        summary="Send the tenant's events since a time to the endpoint again",
    )
    async def replay_webhook(
        request: Request,
        endpoint_id: str,
        since: Annotated[
            str,
            Query(description="RFC 3339 with its offset (2026-01-31T12:00:00Z) or Unix seconds"),
        ],
        types: Annotated[
            list[str] | None,
            Query(description="only these event types (default: what the endpoint receives)"),
            WithJsonSchema(
                {
                    "type": "array",
                    "items": {"type": "string", "enum": sorted(webhooks.SUBSCRIBABLE)},
                }
            ),
        ] = None,
        tenant: str = Depends(scope),
    ) -> WebhookReplayed:
        """Events since ``since`` delivered again, with their original ``webhook-id``s."""
        service = _service(request)
        await service.get(tenant, endpoint_id)  # an unknown endpoint is a 404 whatever the query
        start = webhooks.parse_since(since)
        count = await service.replay(tenant, endpoint_id, start, types)
        return WebhookReplayed(replayed=count)


async def _caller_tenant(tenant: Caller) -> str:
    return tenant.id


install(
    router,
    _caller_tenant,
    responses={**COMMON_ERRORS, 422: {**_PROBLEM, "description": "invalid field"}},
)


# -- what the hub sends (OpenAPI 3.1 webhooks) ------------------------------------------------

WebhookId = Annotated[
    str,
    Header(
        alias="webhook-id",
        description="the event's id (`msg_...`): the same on every retry and every endpoint,"
        " so a receiver dedupes by it",
    ),
]
WebhookTimestamp = Annotated[
    str,
    Header(
        alias="webhook-timestamp",
        description="Unix seconds of this attempt; refuse one far from your clock (replays)",
        pattern=r"^[0-9]+$",
    ),
]
WebhookSignature = Annotated[
    str,
    Header(
        alias="webhook-signature",
        description="`v1,` and base64 of HMAC-SHA256 with the secret over"
        " `{webhook-id}.{webhook-timestamp}.{body}`; during a rotation two, space-separated"
        " (Standard Webhooks: verify with any of its libraries)",
        pattern=r"^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$",
    ),
]
RECEIVER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "any 2xx: received (the body is not read past 64 KiB)"},
    410: {"description": "Gone: the endpoint is disabled at once"},
    "default": {
        "description": "any other answer (redirects are not followed), a timeout (15 s) or no"
        " connection: retried with backoff for about 27 hours; Retry-After on 429 and 503"
        " is honoured"
    },
}


async def _notification_event(
    body: NotificationEvent,
    webhook_id: WebhookId,
    webhook_timestamp: WebhookTimestamp,
    webhook_signature: WebhookSignature,
) -> None:
    """Documentation only: what a tenant's endpoint receives."""


async def _test_event(
    body: PingEvent,
    webhook_id: WebhookId,
    webhook_timestamp: WebhookTimestamp,
    webhook_signature: WebhookSignature,
) -> None:
    """Documentation only: what a tenant's endpoint receives."""


async def _disabled_event(
    body: EndpointDisabledEvent,
    webhook_id: WebhookId,
    webhook_timestamp: WebhookTimestamp,
    webhook_signature: WebhookSignature,
) -> None:
    """Documentation only: what a tenant's endpoint receives."""


E = webhooks.EventType
_Receiver = Callable[..., Awaitable[None]]
RECEIVERS: dict[webhooks.EventType, tuple[str, _Receiver]] = {
    E.ACCEPTED: ("a notification was accepted (stored and queued)", _notification_event),
    E.RETRYING: ("an attempt failed; another is scheduled", _notification_event),
    E.DONE: ("the provider accepted the notification", _notification_event),
    E.FAILED: ("the notification failed for good", _notification_event),
    E.DEAD_LETTERED: ("the notification was dead-lettered", _notification_event),
    E.REDRIVEN: ("a dead letter was put back in the queue", _notification_event),
    E.DELIVERED: ("the provider reports it delivered", _notification_event),
    E.READ: ("the provider reports it read", _notification_event),
    E.UNDELIVERED: ("the provider reports it undelivered", _notification_event),
    E.BOUNCED: ("the email bounced", _notification_event),
    E.COMPLAINED: ("the recipient marked it as spam", _notification_event),
    E.EXPIRED: ("no receipt came in time", _notification_event),
    E.TEST: ("sent on request (POST /v1/webhooks/{id}/test)", _test_event),
    E.ENDPOINT_DISABLED: (
        "another endpoint of the tenant was disabled (410, or failing too long)",
        _disabled_event,
    ),
}


def document(app: FastAPI) -> None:
    """Describe every event type in ``app.webhooks`` (the document's ``webhooks`` section)."""
    for type_ in sorted(webhooks.EventType):
        summary, receiver = RECEIVERS[type_]
        app.webhooks.add_api_route(
            str(type_),
            receiver,
            methods=["POST"],
            summary=summary,
            operation_id="webhook_" + type_.value.replace(".", "_"),
            responses=RECEIVER_RESPONSES,
            tags=["webhooks"],
        )
