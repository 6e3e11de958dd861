"""``ihub suppressions``: a tenant's suppression list, as the operator.

What the operator adds (reason ``operator``) only the operator lifts; the
operator may lift any entry (``domain.receipts.may_lift``).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from integration_hub.bootstrap import Hub
from integration_hub.domain.receipts import Lifter
from integration_hub.domain.routing import Channel
from integration_hub.entrypoints.api.schemas import SuppressionView
from integration_hub.entrypoints.cli_common import Database, console, settings_for, with_hub
from integration_hub.entrypoints.tenant_admin import TenantAdmin
from integration_hub.ports import Suppression

suppressions_app = typer.Typer(
    help="A tenant's suppression list (recipients it does not send to).", no_args_is_help=True
)

TenantOption = Annotated[str, typer.Option("--tenant", "-t", metavar="TENANT", help="tenant id")]
ChannelOption = Annotated[Channel, typer.Option("--channel", "-c", help="email, sms or whatsapp")]
AddressOption = Annotated[
    str, typer.Option("--address", "-a", help="an email address or an E.164 phone number")
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON on stdout")]


def _view(s: Suppression) -> dict[str, object]:
    return SuppressionView.of(s).model_dump(mode="json")


@suppressions_app.command("list")
def suppressions_list(
    tenant: TenantOption,
    channel: Annotated[
        Channel | None, typer.Option("--channel", "-c", help="only this channel")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 1000,
    as_json: AsJson = False,
    database: Database = None,
) -> None:
    """The tenant's suppressions, by channel and address."""

    async def run(hub: Hub) -> list[Suppression]:
        await TenantAdmin(hub).get(tenant)
        return await hub.receipts.list(tenant, channel=channel, limit=limit)

    found = with_hub(settings_for(database), run)
    if as_json:
        typer.echo(json.dumps([_view(s) for s in found]))
        return
    table = Table("channel")
    # Operators copy addresses into `remove`: never wrap or cut one.
    table.add_column("address", no_wrap=True)
    for name in ("reason", "added", "source", "note"):
        table.add_column(name)
    for s in found:
        when = s.created_at.isoformat(timespec="seconds")
        table.add_row(str(s.channel), s.address, str(s.reason), when, s.source or "", s.note or "")
    console.print(table)


@suppressions_app.command("add")
def suppressions_add(
    tenant: TenantOption,
    channel: ChannelOption,
    address: AddressOption,
    note: Annotated[str | None, typer.Option("--note", help="why (shown to the tenant)")] = None,
    as_json: AsJson = False,
    database: Database = None,
) -> None:
    """Suppress a recipient for the tenant (reason operator: only the operator lifts it)."""

    async def run(hub: Hub) -> Suppression:
        await TenantAdmin(hub).get(tenant)
        return await hub.receipts.add(tenant, channel, address, note=note)

    added = with_hub(settings_for(database), run)
    if as_json:
        typer.echo(json.dumps(_view(added)))
        return
    console.print(f"suppressed {added.address} on {added.channel} for {tenant} ({added.reason})")


@suppressions_app.command("remove")
def suppressions_remove(
    tenant: TenantOption,
    channel: ChannelOption,
    address: AddressOption,
    database: Database = None,
) -> None:
    """Lift a suppression of the tenant, whoever added it (as the operator)."""

    async def run(hub: Hub) -> None:
        await TenantAdmin(hub).get(tenant)
        await hub.receipts.lift(tenant, channel, address, by=Lifter.OPERATOR)

    with_hub(settings_for(database), run)
    console.print(f"lifted the {channel} suppression of {address} for {tenant}")
