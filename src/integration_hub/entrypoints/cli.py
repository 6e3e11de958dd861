"""The ``ihub`` command."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from integration_hub.adapters.providers import registry
from integration_hub.bootstrap import ConfigurationError, Hub, build_hub
from integration_hub.config import Settings
from integration_hub.domain import routing
from integration_hub.domain.delivery import ProviderCheck
from integration_hub.domain.errors import HubError, NotFound, ProviderNotConfigured
from integration_hub.domain.routing import Channel
from integration_hub.domain.tenants import Tenant
from integration_hub.ports import DeadLetter
from integration_hub.service import redrive as redrive_service
from integration_hub.service import tenants as tenant_service

T = TypeVar("T")

app = typer.Typer(
    help="Integration Hub: multi-country, multi-tenant notifications.", no_args_is_help=True
)
tenants_app = typer.Typer(help="Manage tenants.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect and redrive dead letters.", no_args_is_help=True)
providers_app = typer.Typer(help="Check tenants' provider configuration.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(dlq_app, name="dlq")
app.add_typer(providers_app, name="providers")

console = Console()
err = Console(stderr=True)

Database = Annotated[
    str | None,
    typer.Option("--database", "-d", help="database URL (default: IHUB_DATABASE_URL)"),
]
Host = Annotated[str | None, typer.Option(help="bind address (default: IHUB_HOST)")]
Port = Annotated[int | None, typer.Option(help="port (default: IHUB_PORT)")]


def settings_for(database: str | None = None, **overrides: object) -> Settings:
    """Settings from the environment, with command-line options on top."""
    update = {k: v for k, v in overrides.items() if v is not None}
    if database:
        update["database_url"] = database
    settings = Settings()
    return settings.model_copy(update=update) if update else settings


def with_hub(settings: Settings, fn: Callable[[Hub], Awaitable[T]]) -> T:
    """Run ``fn`` against a wired hub, closing it afterwards; errors become exit 1."""

    async def run() -> T:
        hub = await build_hub(settings)
        try:
            return await fn(hub)
        finally:
            await hub.close()

    try:
        return asyncio.run(run())
    except (HubError, ConfigurationError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


@app.command()
def serve(database: Database = None, host: Host = None, port: Port = None) -> None:
    """Run the API and a worker in one process (the embedded deployment)."""
    from integration_hub.entrypoints.runner import serve as run_serve

    settings = settings_for(database, host=host, port=port)
    _logging(settings)
    asyncio.run(run_serve(settings, api=True, worker=True))


@app.command()
def api(database: Database = None, host: Host = None, port: Port = None) -> None:
    """Run the API only."""
    from integration_hub.entrypoints.runner import serve as run_serve

    settings = settings_for(database, host=host, port=port)
    _logging(settings)
    asyncio.run(run_serve(settings, api=True, worker=False))


@app.command()
def worker(
    database: Database = None,
    concurrency: Annotated[int | None, typer.Option(help="attempts in flight")] = None,
) -> None:
    """Run a worker only."""
    from integration_hub.entrypoints.runner import serve as run_serve

    settings = settings_for(database, worker_concurrency=concurrency)
    _logging(settings)
    asyncio.run(run_serve(settings, api=False, worker=True))


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="keep the demo database afterwards")] = False,
) -> None:
    """Start a hub on a temporary SQLite file and send to every channel."""
    from integration_hub.entrypoints.demo import run_demo

    ok = asyncio.run(run_demo(console, keep=keep))
    raise typer.Exit(0 if ok else 1)


@app.command()
def status(notification_id: str, database: Database = None) -> None:
    """Show a notification and its attempts (any tenant: an operator command)."""

    async def run(hub: Hub) -> None:
        n = await hub.store.get_notification(None, notification_id)
        if n is None:
            err.print(f"no notification {notification_id}")
            raise typer.Exit(1)
        console.print(
            f"[bold]{n.id}[/bold] tenant={n.tenant} country={n.country} channel={n.channel}"
            f" provider={n.provider} status=[bold]{n.status}[/bold]"
        )
        if n.last_error:
            console.print(f"last error: {n.last_error}")
        table = Table("#", "started", "provider", "outcome", "error", "latency ms")
        for a in n.attempts:
            error = f"{a.error_class or ''} {a.error_code or ''} {a.message or ''}".strip()
            table.add_row(
                str(a.number),
                a.started_at.isoformat(timespec="seconds"),
                a.provider,
                str(a.outcome),
                error,
                f"{a.latency_ms:.1f}",
            )
        console.print(table)

    with_hub(settings_for(database), run)


@app.command()
def outbox(
    database: Database = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
) -> None:
    """What the sandbox provider delivered, newest first."""

    async def run(hub: Hub) -> None:
        entries = await hub.outbox.list_outbox(tenant, limit=limit)
        if as_json:
            typer.echo(
                json.dumps(
                    [
                        {
                            "seq": e.seq,
                            "notification_id": e.notification_id,
                            "tenant": e.tenant,
                            "channel": str(e.channel),
                            "recipient": e.recipient,
                            "subject": e.subject,
                            "body": e.body,
                            "attempt": e.attempt,
                            "provider_message_id": e.provider_message_id,
                            "delivered_at": e.delivered_at.isoformat(),
                        }
                        for e in entries
                    ]
                )
            )
            return
        table = Table("#", "delivered", "tenant", "channel", "to", "subject / body", "attempt")
        for e in entries:
            text = (e.subject + " / " if e.subject else "") + e.body
            table.add_row(
                str(e.seq),
                e.delivered_at.isoformat(timespec="seconds"),
                e.tenant,
                str(e.channel),
                e.recipient,
                text[:60],
                str(e.attempt),
            )
        console.print(table)

    with_hub(settings_for(database), run)


@tenants_app.command("create")
def tenants_create(
    tenant_id: Annotated[str, typer.Argument(metavar="NAME", help="tenant id (a slug)")],
    display_name: Annotated[str | None, typer.Option("--name", help="display name")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
    database: Database = None,
) -> None:
    """Create a tenant and print its API key (shown this once)."""

    async def run(hub: Hub) -> tenant_service.NewTenant:
        return await tenant_service.create_tenant(hub.store, hub.clock, tenant_id, display_name)

    created = with_hub(settings_for(database), run)
    if as_json:
        typer.echo(json.dumps({"tenant": created.tenant.id, "api_key": created.api_key}))
        return
    console.print(f"created tenant [bold]{created.tenant.id}[/bold]")
    console.print(f"API key (store it now, it is not shown again): {created.api_key}")


@tenants_app.command("list")
def tenants_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
    database: Database = None,
) -> None:
    """List tenants."""

    async def run(hub: Hub) -> list[Tenant]:
        return await hub.store.list_tenants()

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
def tenants_show(
    tenant_id: Annotated[str, typer.Argument(metavar="TENANT")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
    database: Database = None,
) -> None:
    """A tenant's effective routing and configured providers (credentials never shown)."""

    async def run(hub: Hub) -> tuple[Tenant, list[str]]:
        tenant = await hub.store.get_tenant(tenant_id)
        if tenant is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        return tenant, await hub.credentials.list_credentials(tenant_id)

    tenant, configured = with_hub(settings_for(database), run)
    table = {c: tenant.route(c) for c in routing.routing_table(tenant.routes)}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "tenant": tenant.id,
                    "name": tenant.name,
                    "status": str(tenant.status),
                    "max_attempts": tenant.max_attempts,
                    "routes": {
                        c: {"channel": str(r.channel), "provider": r.provider}
                        for c, r in sorted(table.items())
                    },
                    "configured_providers": configured,
                }
            )
        )
        return
    console.print(
        f"[bold]{tenant.id}[/bold] ({tenant.name}) status={tenant.status}"
        f" max_attempts={tenant.max_attempts or 'default'}"
    )
    view = Table("country", "channel", "provider", "configured")
    for country, route in sorted(table.items()):
        ready = route.provider == "sandbox" or route.provider in configured
        view.add_row(
            country,
            str(route.channel),
            route.provider,
            "yes" if ready else "[red]no credentials[/red]",
        )
    console.print(view)


@tenants_app.command("set-route")
def tenants_set_route(
    tenant_id: Annotated[str, typer.Argument(metavar="TENANT")],
    country: Annotated[str, typer.Argument(help="ISO 3166-1 alpha-2 (UK = GB)")],
    channel: Annotated[Channel, typer.Argument(help="email, sms or whatsapp")],
    provider: Annotated[str, typer.Option(help="provider for this country")] = "sandbox",
    database: Database = None,
) -> None:
    """Route one country of a tenant to a channel and provider."""
    check_provider_serves(provider, channel)
    code = routing.normalize_country(country)

    async def run(hub: Hub) -> None:
        tenant = await _tenant(hub, tenant_id)
        tenant.routes[code] = routing.Route(channel, provider)
        await hub.store.update_tenant(tenant)

    with_hub(settings_for(database), run)
    console.print(f"{tenant_id}: {code} -> {channel} via {provider}")


@tenants_app.command("set-provider")
def tenants_set_provider(
    tenant_id: Annotated[str, typer.Argument(metavar="TENANT")],
    channel: Annotated[Channel, typer.Argument(help="email, sms or whatsapp")],
    provider: Annotated[str, typer.Argument(help="smtp, ses, twilio, whatsapp_cloud, sandbox")],
    database: Database = None,
) -> None:
    """Use ``provider`` for every country a tenant routes to ``channel`` by default."""
    check_provider_serves(provider, channel)

    async def run(hub: Hub) -> None:
        tenant = await _tenant(hub, tenant_id)
        if provider == "sandbox":
            tenant.channel_providers.pop(channel, None)
        else:
            tenant.channel_providers[channel] = provider
        await hub.store.update_tenant(tenant)

    with_hub(settings_for(database), run)
    console.print(f"{tenant_id}: {channel} via {provider}")


@tenants_app.command("set-credentials")
def tenants_set_credentials(
    tenant_id: Annotated[str, typer.Argument(metavar="TENANT")],
    provider: Annotated[str, typer.Argument(help="smtp, ses, twilio or whatsapp_cloud")],
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="JSON file with the provider settings")
    ] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="read the JSON from stdin")] = False,
    database: Database = None,
) -> None:
    """Store a tenant's configuration of a provider, validated first; never echoed."""
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
        await _tenant(hub, tenant_id)
        await registry.build(provider, config).close()  # validates; makes no connection
        await hub.credentials.put_credentials(tenant_id, provider, config)

    with_hub(settings_for(database), run)
    console.print(f"{tenant_id}: {provider} configured (takes effect within seconds)")


@providers_app.command("check")
def providers_check(
    tenant_id: Annotated[str, typer.Option("--tenant", help="tenant to check")],
    database: Database = None,
) -> None:
    """Verify each provider a tenant uses or configured, without sending anything."""

    async def run(hub: Hub) -> list[tuple[str, list[str], ProviderCheck]]:
        tenant = await _tenant(hub, tenant_id)
        used: dict[str, set[Channel]] = {}
        for country in routing.routing_table(tenant.routes):
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
            except ProviderNotConfigured as exc:
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


async def _tenant(hub: Hub, tenant_id: str) -> Tenant:
    tenant = await hub.store.get_tenant(tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    return tenant


def check_provider_serves(provider: str, channel: Channel) -> None:
    """Exit 2 unless ``provider`` can send on ``channel``."""
    if provider == "sandbox":
        return
    kind = registry.KINDS.get(provider)
    if kind is None or channel not in kind.channels:
        known = [n for n, k in sorted(registry.KINDS.items()) if channel in k.channels]
        err.print(
            f"[red]error:[/red] {provider!r} cannot send {channel};"
            f" use one of: sandbox, {', '.join(known)}"
        )
        raise typer.Exit(2)


@dlq_app.command("list")
def dlq_list(
    database: Database = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
) -> None:
    """Dead letters, newest first."""

    async def run(hub: Hub) -> list[DeadLetter]:
        return await hub.store.list_dead_letters(tenant, limit=1000)

    letters = with_hub(settings_for(database), run)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": d.notification_id,
                        "tenant": d.tenant,
                        "reason": d.reason,
                        "dead_lettered_at": d.dead_lettered_at.isoformat(),
                    }
                    for d in letters
                ]
            )
        )
        return
    table = Table("notification", "tenant", "dead-lettered", "reason")
    for d in letters:
        table.add_row(
            d.notification_id, d.tenant, d.dead_lettered_at.isoformat(timespec="seconds"), d.reason
        )
    console.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    notification_id: Annotated[str | None, typer.Argument(metavar="[ID]")] = None,
    redrive_all: Annotated[bool, typer.Option("--all", help="every dead letter")] = False,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None,
    database: Database = None,
) -> None:
    """Put dead letters back in the queue with a fresh attempt budget."""
    if bool(notification_id) == redrive_all:
        err.print("give either an ID or --all")
        raise typer.Exit(2)

    async def run(hub: Hub) -> list[str]:
        if notification_id:
            done = await redrive_service.redrive(hub.store, hub.queue, tenant, notification_id)
            return [notification_id] if done else []
        return await redrive_service.redrive_all(hub.store, hub.queue, tenant)

    done = with_hub(settings_for(database), run)
    if notification_id and not done:
        err.print(f"no dead letter {notification_id}")
        raise typer.Exit(1)
    console.print(f"redriven: {len(done)}")
    for nid in done:
        console.print(f"  {nid}")


def _is_postgres(settings: Settings) -> bool:
    return settings.database_url.split(":", 1)[0].lower() in ("postgres", "postgresql")


@app.command()
def migrate(database: Database = None) -> None:
    """Create or upgrade the database schema and print its version."""

    async def run(hub: Hub) -> int:
        if _is_postgres(hub.settings):
            from integration_hub.adapters.postgres.store import PostgresStore

            if not isinstance(hub.store, PostgresStore):
                raise ConfigurationError(f"not a PostgreSQL store: {type(hub.store).__name__}")
            return await hub.store.db.migrate()
        from importlib import resources

        # SQLite applies every packaged script (each idempotent) when it opens,
        # so its schema is at the newest one.
        scripts = resources.files("integration_hub.adapters.sqlite").joinpath("migrations")
        return max(
            int(f.name.split("_", 1)[0]) for f in scripts.iterdir() if f.name.endswith(".sql")
        )

    # Opening the hub migrates: SQLite always, PostgreSQL when told to here.
    version = with_hub(settings_for(database, auto_migrate=True), run)
    console.print(f"schema version: {version}")


@app.command()
def purge(
    database: Database = None,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            min=0,
            metavar="SECONDS",
            help="delete what finished longer ago (default: IHUB_RETENTION_FINISHED_SECONDS)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
) -> None:
    """Delete old finished notifications (with their history) and expired Idempotency-Keys."""
    settings = settings_for(database)
    seconds = settings.retention_finished_seconds if older_than is None else older_than

    async def run(hub: Hub) -> dict[str, int]:
        if _is_postgres(hub.settings):
            from integration_hub.adapters.postgres import retention as pg_retention

            return await pg_retention.purge(hub.store, older_than_seconds=seconds)
        from integration_hub.adapters.sqlite import retention as sqlite_retention

        return await sqlite_retention.purge(hub.store, older_than_seconds=seconds)

    counts = with_hub(settings, run)
    if as_json:
        typer.echo(json.dumps(counts))
        return
    table = Table("table", "deleted")
    for name, count in counts.items():
        table.add_row(name, str(count))
    console.print(table)


def main() -> None:
    """Console entry point."""
    app()
