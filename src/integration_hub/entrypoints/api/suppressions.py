"""The tenant's own suppression list: /v1/suppressions (list, lift).

A tenant sees only its own list and may lift any entry but the operator's
(``domain.receipts.may_lift`` with ``Lifter.TENANT``): a 403 problem names the
reason of one it may not lift.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from integration_hub.domain import errors
from integration_hub.domain.receipts import Lifter
from integration_hub.domain.routing import Channel
from integration_hub.entrypoints.api.routes import _PROBLEM, COMMON_ERRORS, Caller, hub
from integration_hub.entrypoints.api.schemas import SuppressionPage, SuppressionView
from integration_hub.ports import Suppression

router = APIRouter(prefix="/v1")

AddressPath = Annotated[
    str,
    Path(
        description="the address, URL-encoded (`%2B` for `+`): an email or an E.164 number",
        min_length=1,
        max_length=320,
    ),
]


def encode_cursor(last: Suppression) -> str:
    """The cursor after ``last``: its channel and address, base64url."""
    raw = f"{last.channel}\n{last.address}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Channel, str]:
    """(channel, address) of a cursor this API returned; a 422 naming ``cursor`` otherwise."""
    try:
        padded = cursor.encode("ascii") + b"=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        channel, address = raw.split("\n", 1)
        if not address:
            raise ValueError("empty address")
        return Channel(channel), address
    except (binascii.Error, UnicodeError, ValueError):
        raise errors.HubError("cursor is not one this API returned", field="cursor") from None


async def page(
    request: Request,
    tenant: str,
    channel: Channel | None,
    limit: int,
    cursor: str | None,
) -> SuppressionPage:
    """One page of ``tenant``'s suppressions (shared with the admin API)."""
    after = decode_cursor(cursor) if cursor else None
    found = await hub(request).receipts.list(tenant, channel=channel, limit=limit + 1, after=after)
    items = found[:limit]
    more = len(found) > limit
    return SuppressionPage(
        items=[SuppressionView.of(s) for s in items],
        next_cursor=encode_cursor(items[-1]) if more and items else None,
    )


@router.get(
    "/suppressions",
    response_model=SuppressionPage,
    responses={**COMMON_ERRORS, 422: {**_PROBLEM, "description": "invalid query parameter"}},
    summary="List the tenant's suppressed recipients",
)
async def list_suppressions(
    request: Request,
    tenant: Caller,
    channel: Annotated[Channel | None, Query(description="only this channel")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: str | None = None,
) -> SuppressionPage:
    """The caller's suppression list, by channel and address, with cursor pagination."""
    return await page(request, tenant.id, channel, limit, cursor)


@router.delete(
    "/suppressions/{channel}/{address:path}",
    status_code=204,
    responses={
        **COMMON_ERRORS,
        403: {
            **_PROBLEM,
            "description": "the key belongs to another tenant, or only the operator may lift"
            " this suppression (the problem's `reason` says why it was added)",
        },
        404: {**_PROBLEM, "description": "the address is not on the list"},
        422: {**_PROBLEM, "description": "invalid channel or address"},
    },
    summary="Lift a suppression (e.g. the recipient re-subscribed)",
)
async def remove_suppression(
    request: Request, tenant: Caller, channel: Channel, address: AddressPath
) -> Response:
    """Lift one of the caller's suppressions; an operator-added one only the operator lifts."""
    await hub(request).receipts.lift(tenant.id, channel, address, by=Lifter.TENANT)
    return Response(status_code=204)
