"""The /v1 routes."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from integration_hub import tracing
from integration_hub.bootstrap import Hub
from integration_hub.domain import errors, routing
from integration_hub.domain.models import NotificationRequest
from integration_hub.domain.receipts import DeliveryState
from integration_hub.domain.status import Status
from integration_hub.domain.tenants import TENANT_ID, Tenant
from integration_hub.entrypoints.api.problems import BadRequest, Problem, UnsupportedMediaType
from integration_hub.entrypoints.api.schemas import (
    AcceptedBody,
    NotificationPage,
    NotificationSummary,
    NotificationView,
)
from integration_hub.service.tenants import authenticate

log = logging.getLogger(__name__)
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)

router = APIRouter(prefix="/v1")

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
COMMON_ERRORS: dict[int | str, dict[str, object]] = {
    400: {**_PROBLEM, "description": "a required header is missing or malformed"},
    401: {**_PROBLEM, "description": "missing, unknown or revoked API key"},
    403: {**_PROBLEM, "description": "the key belongs to another tenant than X-Tenant"},
    503: {**_PROBLEM, "description": "the store is unavailable; honour Retry-After"},
}


def hub(request: Request) -> Hub:
    """The hub wired at startup."""
    wired: Hub = request.app.state.hub
    return wired


def _single(request: Request, name: str) -> None:
    """Refuse a repeated header: a proxy that reads the other copy would disagree with us."""
    if len(request.headers.getlist(name)) > 1:
        raise BadRequest(f"the {name} header must be sent once", field=name)


async def caller(
    request: Request,
    x_tenant: Annotated[str | None, Header(description="tenant id")] = None,
    authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None,
) -> Tenant:
    """The authenticated tenant; the key must belong to X-Tenant."""
    _single(request, "X-Tenant")
    _single(request, "Authorization")
    if not x_tenant:
        raise BadRequest("the X-Tenant header is required", field="X-Tenant")
    if not TENANT_ID.fullmatch(x_tenant.strip()):
        # Refused before it reaches a log line or a store lookup.
        raise BadRequest(
            "X-Tenant must be a tenant id: 1-63 characters of a-z, 0-9 and '-'",
            field="X-Tenant",
        )
    key = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            key = value.strip()
    h = hub(request)
    tenant = await authenticate(h.store, key, x_tenant.strip(), keys=h.keys, tenants=h.tenants)
    tracing.note(tenant=tenant.id)
    return tenant


async def country_header(
    request: Request,
    x_country: Annotated[
        str | None, Header(description="ISO 3166-1 alpha-2, case-insensitive; UK = GB")
    ] = None,
) -> str:
    """X-Country, required on submission."""
    _single(request, "X-Country")
    if not x_country:
        raise BadRequest("the X-Country header is required", field="X-Country")
    return x_country


async def idempotency_header(
    request: Request,
    idempotency_key: Annotated[
        str | None, Header(description="1-255 printable characters, unique per request")
    ] = None,
) -> str:
    """Idempotency-Key, required on submission."""
    _single(request, "Idempotency-Key")
    if idempotency_key is None:
        raise BadRequest("the Idempotency-Key header is required", field="Idempotency-Key")
    if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise BadRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            field="Idempotency-Key",
        )
    return idempotency_key


async def json_body(
    request: Request,
    content_type: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """Bodies are JSON; anything else is refused before it is parsed."""
    _single(request, "Content-Type")
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {media or 'missing'!r}",
            field="Content-Type",
        )


Caller = Annotated[Tenant, Depends(caller)]


@router.post(
    "/notifications",
    status_code=202,
    response_model=AcceptedBody,
    responses={
        **COMMON_ERRORS,
        409: {**_PROBLEM, "description": "same Idempotency-Key still being accepted"},
        413: {**_PROBLEM, "description": "body over the size limit"},
        415: {**_PROBLEM, "description": "the body is not JSON"},
        422: {
            **_PROBLEM,
            "description": "invalid field, unsupported country, wrong recipient,"
            " or Idempotency-Key reused with another payload",
        },
    },
    summary="Submit a notification",
)
async def submit(
    request: Request,
    response: Response,
    tenant: Caller,
    country: Annotated[str, Depends(country_header)],
    key: Annotated[str, Depends(idempotency_header)],
    _: Annotated[None, Depends(json_body)],
    payload: NotificationRequest,
) -> AcceptedBody:
    """Validate, store as RECEIVED, enqueue and answer at once; the channel comes from routing."""
    with tracing.span("ihub.accept", tenant=tenant.id):
        accepted = await hub(request).ingest.submit(tenant, country, key, payload)
        tracing.note(
            notification_id=accepted.body["id"],
            country=accepted.body["country"],
            replayed=accepted.replayed,
        )
        # DEBUG: uvicorn's access line carries the same context at INFO.
        log.debug("notification accepted%s", " (replayed)" if accepted.replayed else "")
    response.headers["Location"] = f"/v1/notifications/{accepted.body['id']}"
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return AcceptedBody.model_validate(accepted.body)


@router.get(
    "/notifications/{notification_id}",
    response_model=NotificationView,
    responses={**COMMON_ERRORS, 404: {**_PROBLEM, "description": "no such notification"}},
    summary="Get a notification with its attempts and delivery receipts",
)
async def get_notification(
    request: Request, tenant: Caller, notification_id: str
) -> NotificationView:
    """Status, channel, provider, attempts, timestamps and the delivery state with its
    receipts; only the caller's own."""
    store = hub(request).store
    n = await store.get_notification(tenant.id, notification_id)
    if n is None:
        raise errors.NotFound(f"no notification {notification_id!r}", field="id")
    events = await store.delivery_events(tenant.id, n.id) if n.delivery_state else []
    return NotificationView.full(n, events)


_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor.encode() + b"=" * (-len(cursor) % 4)
        decoded = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        decoded = ""
    if not _ID.match(decoded):
        raise errors.HubError("cursor is not one this API returned", field="cursor")
    return decoded


@router.get(
    "/notifications",
    response_model=NotificationPage,
    responses={**COMMON_ERRORS, 422: {**_PROBLEM, "description": "invalid query parameter"}},
    summary="List the tenant's notifications, newest first",
)
async def list_notifications(
    request: Request,
    tenant: Caller,
    status: Status | None = None,
    country: Annotated[
        str | None,
        Query(
            description="ISO alpha-2, case-insensitive; UK = GB; empty: no filter",
            json_schema_extra={"pattern": r"^([A-Za-z]{2})?$"},
        ),
    ] = None,
    delivery_state: Annotated[
        DeliveryState | None, Query(description="only notifications in this delivery state")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: str | None = None,
) -> NotificationPage:
    """Cursor pagination over the caller's notifications."""
    try:
        code = routing.normalize_country(country) if country else None
    except errors.HubError as exc:
        raise errors.HubError(exc.message, field="country") from None
    before = _decode_cursor(cursor) if cursor else None
    found = await hub(request).store.list_notifications(
        tenant.id,
        status=status,
        country=code,
        limit=limit + 1,
        before_id=before,
        # Only when asked: a store without delivery states (DynamoDB, for now)
        # serves every other listing as before.
        **({"delivery_state": delivery_state} if delivery_state is not None else {}),
    )
    more = len(found) > limit
    items = found[:limit]
    next_cursor = (
        base64.urlsafe_b64encode(items[-1].id.encode()).decode().rstrip("=")
        if more and items
        else None
    )
    return NotificationPage(
        items=[NotificationSummary.of(n) for n in items], next_cursor=next_cursor
    )
