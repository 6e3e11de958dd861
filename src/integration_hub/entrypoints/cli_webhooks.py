"""``ihub webhooks``: a tenant's webhook endpoints, as the operator.

The same operations as /v1/webhooks (``service.webhooks.manage``), for any tenant.
A signing secret is printed by ``create`` and ``rotate-secret`` only, once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from integration_hub.bootstrap import Hub
from integration_hub.domain import webhooks
from integration_hub.domain.webhooks import Delivery, Endpoint
from integration_hub.entrypoints.api.schemas import (
    WebhookDeliveryView,
    WebhookEndpointView,
)
from integration_hub.entrypoints.cli_common import Database, console, settings_for, with_hub
from integration_hub.entrypoints.tenant_admin import TenantAdmin
from integration_hub.service.webhooks.manage import KEEP, Keep, WebhookService

T = TypeVar("T")

webhooks_app = typer.Typer(
    help="A tenant's webhook endpoints (signed status callbacks).", no_args_is_help=True
)

TenantOption = Annotated[str, typer.Option("--tenant", "-t", metavar="TENANT", help="tenant id")]
EndpointArg = Annotated[str, typer.Argument(metavar="ENDPOINT_ID", help="ep_...")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON on stdout")]
EventTypes = Annotated[
    list[str] | None,
    typer.Option(
        "--event-type",
        "-e",
        help="receive only this event type (repeat for several; default: every type)",
    ),
]


def _run(database: str | None, tenant: str, fn: Callable[[WebhookService], Awaitable[T]]) -> T:
    async def run(hub: Hub) -> T:
        await TenantAdmin(hub).get(tenant)  # an unknown tenant is an error, not an empty list
        return await fn(hub.webhook_service)

    return with_hub(settings_for(database), run)


def _endpoint(e: Endpoint) -> dict[str, object]:
    return WebhookEndpointView.of(e).model_dump(mode="json")


def _delivery(d: Delivery) -> dict[str, object]:
    return WebhookDeliveryView.of(d).model_dump(mode="json")


def _when(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _show(e: Endpoint) -> None:
    table = Table("field", "value", show_header=False)
    view = WebhookEndpointView.of(e).model_dump(mode="json")
    for name, value in view.items():
        if name == "event_types":
            value = "all" if value is None else ", ".join(value)
        table.add_row(name, "" if value is None else str(value))
    console.print(table)


def _print_secret(secret: str) -> None:
    console.print("signing secret (shown this once, store it now):")
    # Plain, unwrapped: the operator copies it.
    typer.echo(secret)


@webhooks_app.command("list")
def webhooks_list(tenant: TenantOption, as_json: AsJson = False, database: Database = None) -> None:
    """The tenant's endpoints, oldest first."""
    found = _run(database, tenant, lambda s: s.endpoints(tenant))
    if as_json:
        typer.echo(json.dumps([_endpoint(e) for e in found]))
        return
    # Operators copy ids and URLs into other commands: never wrap or cut one.
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("url", no_wrap=True)
    for name in ("enabled", "events", "failures", "description"):
        table.add_column(name)
    for e in found:
        state = "yes" if e.enabled else f"no ({e.disabled_reason})"
        events = "all" if e.event_types is None else ", ".join(sorted(e.event_types))
        table.add_row(e.id, e.url, state, events, str(e.consecutive_failures), e.description)
    console.print(table)


@webhooks_app.command("create")
def webhooks_create(
    tenant: TenantOption,
    url: Annotated[str, typer.Option("--url", help="https:// URL of the tenant's receiver")],
    description: Annotated[str, typer.Option("--description", help="one line")] = "",
    event_type: EventTypes = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="create it disabled")] = False,
    as_json: AsJson = False,
    database: Database = None,
) -> None:
    """Create an endpoint and print its signing secret (this once)."""
    created = _run(
        database,
        tenant,
        lambda s: s.create(
            tenant, url, description=description, event_types=event_type, enabled=not disabled
        ),
    )
    if as_json:
        typer.echo(json.dumps({**_endpoint(created.endpoint), "secret": created.secret}))
        return
    console.print(f"created {created.endpoint.id} for {tenant}: {created.endpoint.url}")
    _print_secret(created.secret)


@webhooks_app.command("show")
def webhooks_show(
    tenant: TenantOption,
    endpoint_id: EndpointArg,
    as_json: AsJson = False,
    database: Database = None,
) -> None:
    """One endpoint (never its secret)."""
    found = _run(database, tenant, lambda s: s.get(tenant, endpoint_id))
    if as_json:
        typer.echo(json.dumps(_endpoint(found)))
        return
    _show(found)


@webhooks_app.command("update")
def webhooks_update(
    tenant: TenantOption,
    endpoint_id: EndpointArg,
    url: Annotated[str | None, typer.Option("--url", help="a new URL")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    event_type: EventTypes = None,
    all_events: Annotated[
        bool, typer.Option("--all-events", help="receive every event type again")
    ] = False,
    enabled: Annotated[
        bool | None,
        typer.Option("--enable/--disable", help="enabling again clears its failures"),
    ] = None,
    as_json: AsJson = False,
    database: Database = None,
) -> None:
    """Change an endpoint; what is not given is kept."""
    if all_events and event_type:
        raise typer.BadParameter("--all-events or --event-type, not both")
    types: list[str] | Keep | None = KEEP
    if all_events:
        types = None
    elif event_type:
        types = event_type
    changed = _run(
        database,
        tenant,
        lambda s: s.update(
            tenant,
            endpoint_id,
            url=url,
            description=description,
            event_types=types,
            enabled=enabled,
        ),
    )
    if as_json:
        typer.echo(json.dumps(_endpoint(changed)))
        return
    _show(changed)


@webhooks_app.command("delete")
def webhooks_delete(
    tenant: TenantOption, endpoint_id: EndpointArg, database: Database = None
) -> None:
    """Delete an endpoint and its pending deliveries."""
    _run(database, tenant, lambda s: s.delete(tenant, endpoint_id))
    console.print(f"deleted {endpoint_id} of {tenant}")


@webhooks_app.command("rotate-secret")
def webhooks_rotate(
    tenant: TenantOption,
    endpoint_id: EndpointArg,
    as_json: AsJson = False,
    database: Database = None,
) -> None:
    """A new signing secret (printed this once); the old one signs too for the overlap."""
    rotated = _run(database, tenant, lambda s: s.rotate_secret(tenant, endpoint_id))
    until = _when(rotated.previous_valid_until) or None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "id": rotated.endpoint.id,
                    "secret": rotated.secret,
                    "previous_secret_valid_until": until,
                }
            )
        )
        return
    console.print(
        f"rotated the secret of {endpoint_id}; "
        + (f"the old one signs too until {until}" if until else "the old one no longer signs")
    )
    _print_secret(rotated.secret)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    tenant: TenantOption,
    endpoint_id: EndpointArg,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: AsJson = False,
    database: Database = None,
) -> None:
    """The endpoint's latest deliveries, newest first, with their attempts."""
    found = _run(database, tenant, lambda s: s.deliveries(tenant, endpoint_id, limit=limit))
    if as_json:
        typer.echo(json.dumps([_delivery(d) for d in found]))
        return
    table = Table()
    table.add_column("id", no_wrap=True)
    for name in ("event", "status", "attempts", "last status", "last error", "next retry"):
        table.add_column(name)
    for d in found:
        table.add_row(
            d.id,
            str(d.event.type),
            str(d.status),
            str(d.attempt_count),
            "" if d.last_status_code is None else str(d.last_status_code),
            d.last_error or "",
            _when(d.next_attempt_at),
        )
    console.print(table)


@webhooks_app.command("retry")
def webhooks_retry(
    tenant: TenantOption,
    endpoint_id: EndpointArg,
    delivery_id: Annotated[str, typer.Argument(metavar="DELIVERY_ID", help="dlv_...")],
    as_json: AsJson = False,
    database: Database = None,
) -> None:
    """Retry a finished delivery now, with a fresh schedule."""
    again = _run(database, tenant, lambda s: s.retry(tenant, endpoint_id, delivery_id))
    if as_json:
        typer.echo(json.dumps(_delivery(again)))
        return
    console.print(f"{again.id} is due again ({again.status})")


@webhooks_app.command("test")
def webhooks_test(
    tenant: TenantOption,
    endpoint_id: EndpointArg,
    as_json: AsJson = False,
    database: Database = None,
) -> None:
    """Send a webhook.test event to the endpoint."""
    ping = _run(database, tenant, lambda s: s.send_test(tenant, endpoint_id))
    if as_json:
        typer.echo(json.dumps({"event_id": ping.id, "type": str(ping.type)}))
        return
    console.print(f"sent {ping.type} {ping.id} to {endpoint_id}")


@webhooks_app.command("replay")
def webhooks_replay(
    tenant: TenantOption,
    endpoint_id: EndpointArg,
    since: Annotated[
        str, typer.Option("--since", help="RFC 3339 with offset (2026-01-31T12:00:00Z) or Unix s")
    ],
    event_type: Annotated[
        list[str] | None,
        typer.Option("--event-type", "-e", help="only this type (repeat; default: its own)"),
    ] = None,
    as_json: AsJson = False,
    database: Database = None,
) -> None:
    """Send the tenant's events since a time to the (enabled) endpoint again."""

    async def replay(s: WebhookService) -> int:
        return await s.replay(tenant, endpoint_id, webhooks.parse_since(since), event_type)

    count = _run(database, tenant, replay)
    if as_json:
        typer.echo(json.dumps({"replayed": count}))
        return
    console.print(f"replaying {count} events to {endpoint_id}")
