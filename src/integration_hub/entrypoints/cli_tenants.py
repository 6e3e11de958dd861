"""``ihub tenants``, ``ihub keys`` and ``ihub providers``: tenant administration."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from integration_hub.adapters.providers import registry
from integration_hub.bootstrap import Hub, master_key_path
from integration_hub.domain.delivery import ProviderCheck
from integration_hub.domain.errors import HubError, ProviderNotConfigured
from integration_hub.domain.routing import Channel
from integration_hub.domain.tenants import ApiKeyRecord, Tenant, TenantStatus
from integration_hub.entrypoints.cli_common import Database, console, err, settings_for, with_hub
from integration_hub.entrypoints.tenant_admin import TenantAdmin, TenantLimits, key_view
from integration_hub.service.tenants import NewTenant

# The provider kinds a tenant can configure (registry.KINDS), for the help texts.
PROVIDERS = ", ".join(registry.KINDS)

tenants_app = typer.Typer(help="Manage tenants.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys and the master key.", no_args_is_help=True)
providers_app = typer.Typer(help="Check tenants' provider configuration.", no_args_is_help=True)

TenantArg = Annotated[str, typer.Argument(metavar="TENANT", help="tenant id")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON on stdout")]


@tenants_app.command("create")
def tenants_create(
    tenant_id: Annotated[str, typer.Argument(metavar="NAME", help="tenant id (a slug)")],
    display_name: Annotated[str | None, typer.Option("--name", help="display name")] = None,
    as_json: AsJson = False,
    database: Database = None,
) -> None:
    """Create a tenant and print its API key (shown this once)."""

    async def run(hub: Hub) -> NewTenant:
        return await TenantAdmin(hub).create(tenant_id, display_name)

    created = with_hub(settings_for(database), run)
    if as_json:
        typer.echo(json.dumps({"tenant": created.tenant.id, "api_key": created.api_key}))
        return
    console.print(f"created tenant [bold]{created.tenant.id}[/bold]")
    console.print(f"API key (store it now, it is not shown again): {created.api_key}")


@tenants_app.command("list")
def tenants_list(as_json: AsJson = False, database: Database = None) -> None:
    """List tenants."""

    async def run(hub: Hub) -> list[Tenant]:
        return await TenantAdmin(hub).list_tenants()

    found = with_hub(settings_for(database), run)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "tenant": t.id,
                        "name": t.name,
                        "status": str(t.status),
                        "created_at": t.created_at.isoformat(),
                    }
                    for t in found
                ]
            )
        )
        return
    table = Table("tenant", "name", "status", "created")
    for t in found:
        table.add_row(t.id, t.name, str(t.status), t.created_at.isoformat(timespec="seconds"))
    console.print(table)


@tenants_app.command("show")
def tenants_show(tenant_id: TenantArg, as_json: AsJson = False, database: Database = None) -> None:
    """A tenant's routing, limits and configured providers (credentials never shown)."""

    async def run(hub: Hub) -> dict[str, Any]:
        return await TenantAdmin(hub).view(tenant_id)

    shown = with_hub(settings_for(database), run)
    if as_json:
        typer.echo(json.dumps(shown))
        return
    console.print(f"[bold]{shown['tenant']}[/bold] ({shown['name']}) status={shown['status']}")
    limits = ", ".join(f"{k}={'default' if v is None else v}" for k, v in shown["limits"].items())
    console.print(f"limits: {limits}")
    configured = shown["configured_providers"]
    table = Table("country", "channel", "provider", "configured")
    for country, route in shown["routes"].items():
        ready = route["provider"] == "sandbox" or route["provider"] in configured
        table.add_row(
            country,
            route["channel"],
            route["provider"],
            "yes" if ready else "[red]no credentials[/red]",
        )
    console.print(table)


def _set_status(tenant_id: str, status: TenantStatus, database: str | None) -> None:
    async def run(hub: Hub) -> Tenant:
        return await TenantAdmin(hub).set_status(tenant_id, status)

    with_hub(settings_for(database), run)
    console.print(f"{tenant_id}: {status}")


@tenants_app.command("disable")
def tenants_disable(tenant_id: TenantArg, database: Database = None) -> None:
    """Refuse the tenant's keys at once; its queued notifications end FAILED, unsent."""
    _set_status(tenant_id, TenantStatus.DISABLED, database)


@tenants_app.command("enable")
def tenants_enable(tenant_id: TenantArg, database: Database = None) -> None:
    """Accept the tenant's keys again."""
    _set_status(tenant_id, TenantStatus.ACTIVE, database)


@tenants_app.command("set-route")
def tenants_set_route(
    tenant_id: TenantArg,
    country: Annotated[str, typer.Argument(help="ISO 3166-1 alpha-2 (UK = GB)")],
    channel: Annotated[Channel, typer.Argument(help="email, sms or whatsapp")],
    provider: Annotated[str, typer.Option(help="provider for this country")] = "sandbox",
    database: Database = None,
) -> None:
    """Route one country of a tenant to a channel and provider."""

    async def run(hub: Hub) -> str:
        return await TenantAdmin(hub).set_route(tenant_id, country, channel, provider)

    code = with_hub(settings_for(database), run)
    console.print(f"{tenant_id}: {code} -> {channel} via {provider}")


@tenants_app.command("set-provider")
def tenants_set_provider(
    tenant_id: TenantArg,
    channel: Annotated[Channel, typer.Argument(help="email, sms or whatsapp")],
    provider: Annotated[str, typer.Argument(help=f"{PROVIDERS}, sandbox")],
    database: Database = None,
) -> None:
    """Use ``provider`` for every country a tenant routes to ``channel`` by default."""

    async def run(hub: Hub) -> None:
        await TenantAdmin(hub).set_channel_provider(tenant_id, channel, provider)

    with_hub(settings_for(database), run)
    console.print(f"{tenant_id}: {channel} via {provider}")


@tenants_app.command("set-limits")
def tenants_set_limits(
    tenant_id: TenantArg,
    countries: Annotated[
        str | None, typer.Option(help="comma-separated countries it may send to; 'all' resets")
    ] = None,
    max_attempts: Annotated[int | None, typer.Option(help="attempt budget")] = None,
    backoff_base: Annotated[float | None, typer.Option(help="first retry ceiling, s")] = None,
    backoff_cap: Annotated[float | None, typer.Option(help="largest retry delay, s")] = None,
    rate_limit: Annotated[int | None, typer.Option(help="notifications per second")] = None,
    daily_quota: Annotated[int | None, typer.Option(help="notifications per UTC day")] = None,
    database: Database = None,
) -> None:
    """Set a tenant's countries, retry budget and quotas (options not given keep their value)."""
    given: dict[str, Any] = {
        "max_attempts": max_attempts,
        "backoff_base_seconds": backoff_base,
        "backoff_cap_seconds": backoff_cap,
        "rate_limit_per_second": rate_limit,
        "daily_quota": daily_quota,
    }
    fields = {k: v for k, v in given.items() if v is not None}
    if countries is not None:
        fields["enabled_countries"] = (
            None if countries == "all" else [c for c in countries.split(",") if c.strip()]
        )
    try:
        limits = TenantLimits.model_validate(fields)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None

    async def run(hub: Hub) -> dict[str, Any]:
        admin = TenantAdmin(hub)
        await admin.set_limits(tenant_id, limits)
        return await admin.view(tenant_id)

    shown = with_hub(settings_for(database), run)
    console.print(f"{tenant_id}: {shown['limits']}")


@tenants_app.command("set-credentials")
def tenants_set_credentials(
    tenant_id: TenantArg,
    provider: Annotated[str, typer.Argument(help=PROVIDERS)],
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="JSON file with the provider settings")
    ] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="read the JSON from stdin")] = False,
    database: Database = None,
) -> None:
    """Store a provider's settings for a tenant: validated, encrypted, never echoed."""
    if (from_file is None) == (not stdin):
        err.print("give either --from-file FILE or --stdin")
        raise typer.Exit(2)
    text = sys.stdin.read() if from_file is None else from_file.read_text()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error:[/red] not JSON: {exc.msg} at line {exc.lineno}")
        raise typer.Exit(1) from None
    if not isinstance(config, dict):
        err.print("[red]error:[/red] the settings must be a JSON object")
        raise typer.Exit(1)

    async def run(hub: Hub) -> None:
        await TenantAdmin(hub).set_credentials(tenant_id, provider, config)

    with_hub(settings_for(database), run)
    console.print(f"{tenant_id}: {provider} configured (takes effect within seconds)")


@keys_app.command("create")
def keys_create(tenant_id: TenantArg, as_json: AsJson = False, database: Database = None) -> None:
    """Another API key for a tenant (keys rotate without downtime); shown once."""

    async def run(hub: Hub) -> str:
        return await TenantAdmin(hub).create_key(tenant_id)

    key = with_hub(settings_for(database), run)
    if as_json:
        typer.echo(json.dumps({"tenant": tenant_id, "api_key": key}))
        return
    console.print(f"API key for {tenant_id} (store it now, it is not shown again): {key}")


@keys_app.command("list")
def keys_list(tenant_id: TenantArg, as_json: AsJson = False, database: Database = None) -> None:
    """A tenant's keys: ids and dates only."""

    async def run(hub: Hub) -> list[ApiKeyRecord]:
        return await TenantAdmin(hub).list_keys(tenant_id)

    keys = [key_view(k) for k in with_hub(settings_for(database), run)]
    if as_json:
        typer.echo(json.dumps(keys))
        return
    table = Table("key id", "created", "revoked")
    for k in keys:
        table.add_row(k["key_id"], k["created_at"], k["revoked_at"] or "-")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    tenant_id: TenantArg,
    key_id: Annotated[str, typer.Argument(help="the id shown by 'ihub keys list'")],
    database: Database = None,
) -> None:
    """Revoke a key: API processes refuse it within IHUB_TENANT_CACHE_SECONDS."""

    async def run(hub: Hub) -> None:
        await TenantAdmin(hub).revoke_key(tenant_id, key_id)

    with_hub(settings_for(database), run)
    console.print(f"{tenant_id}: key {key_id} revoked")


@keys_app.command("rotate-master")
def keys_rotate_master(
    generate: Annotated[
        bool,
        typer.Option(
            "--generate/--no-generate",
            help="add a new primary key to the key file first (not with IHUB_MASTER_KEY)",
        ),
    ] = True,
    database: Database = None,
) -> None:
    """Re-wrap every tenant data key under the primary master key, while the hub serves.

    With a key file, a new key is added as primary (old keys stay, so every
    process keeps decrypting) and every data key is re-wrapped. With
    IHUB_MASTER_KEY, put the new key first in the list on every process, then run
    this with --no-generate.
    """
    settings = settings_for(database)
    if generate:
        if settings.master_key is not None:
            err.print("IHUB_MASTER_KEY is set: put the new key first there and use --no-generate")
            raise typer.Exit(2)
        path = master_key_path(settings)
        if path is None or not path.exists():
            err.print("no master key file to rotate (set IHUB_MASTER_KEY_FILE)")
            raise typer.Exit(1)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from integration_hub.adapters.crypto.local import KeyFile, new_key_id

        key_file = KeyFile(path)
        _, keys = key_file.load()
        kid = new_key_id()
        key_file.save(kid, {**keys, kid: AESGCM.generate_key(bit_length=256)})
        console.print(f"new primary master key {kid} added to {path}")

    async def run(hub: Hub) -> Any:
        return await hub.credentials.rotate_master()

    result = with_hub(settings, run)
    console.print(
        f"re-wrapped {result.rewrapped} data keys under {result.primary};"
        f" {result.already_current} were already current"
    )


@providers_app.command("check")
def providers_check(
    tenant_id: Annotated[str, typer.Option("--tenant", help="tenant to check")],
    database: Database = None,
) -> None:
    """Verify each provider a tenant uses or configured, without sending anything."""

    async def run(hub: Hub) -> list[tuple[str, list[str], ProviderCheck]]:
        tenant = await TenantAdmin(hub).get(tenant_id)
        used: dict[str, set[Channel]] = {}
        for country in tenant.supported_countries():
            route = tenant.route(country)
            used.setdefault(route.provider, set()).add(route.channel)
        for name in await hub.credentials.list_credentials(tenant_id):
            kind = registry.KINDS.get(name)
            used.setdefault(name, set(kind.channels) if kind else set())
        results = []
        for name, channels in sorted(used.items()):
            try:
                channel = min(channels) if channels else Channel.EMAIL
                provider = await hub.providers.get(tenant_id, channel, name)
                result = await provider.check()
            except (ProviderNotConfigured, HubError) as exc:
                result = ProviderCheck(False, f"configuration: {exc.message}")
            results.append((name, sorted(str(c) for c in channels), result))
        return results

    results = with_hub(settings_for(database), run)
    table = Table("provider", "channels", "status", "detail")
    for name, channels, result in results:
        status = "[green]ok[/green]" if result.ok else "[red]failing[/red]"
        table.add_row(name, ", ".join(channels), status, result.detail)
    console.print(table)
    if not all(result.ok for _, _, result in results):
        raise typer.Exit(1)
