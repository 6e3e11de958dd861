"""The ``ihub`` command."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table

from integration_hub.bootstrap import Hub
from integration_hub.config import Settings
from integration_hub.domain.errors import InvariantBreach
from integration_hub.entrypoints import (
    cli_common,
    cli_dlq,
    cli_suppressions,
    cli_tenants,
    cli_webhooks,
)
from integration_hub.entrypoints.api.schemas import OperatorNotificationView
from integration_hub.entrypoints.cli_common import (
    Database,
    Host,
    Port,
    console,
    err,
    settings_for,
    with_hub,
)

app = typer.Typer(
    help="Integration Hub: multi-country, multi-tenant notifications.", no_args_is_help=True
)
app.add_typer(cli_tenants.tenants_app, name="tenants")
app.add_typer(cli_tenants.keys_app, name="keys")
app.add_typer(cli_tenants.providers_app, name="providers")
app.add_typer(cli_dlq.dlq_app, name="dlq")
app.add_typer(cli_suppressions.suppressions_app, name="suppressions")
app.add_typer(cli_webhooks.webhooks_app, name="webhooks")


def _run(settings: Settings, role: str, *, api: bool, worker: bool, webhooks: bool = False) -> None:
    from integration_hub.entrypoints.observability import setup
    from integration_hub.entrypoints.runner import serve as run_serve

    observability = setup(settings, role)
    try:
        asyncio.run(run_serve(settings, api=api, worker=worker, webhooks=webhooks))
    finally:
        observability.shutdown()


@app.command()
def serve(database: Database = None, host: Host = None, port: Port = None) -> None:
    """Run the API and a worker in one process (the embedded deployment)."""
    settings = settings_for(database, host=host, port=port)
    _run(settings, "serve", api=True, worker=True)


@app.command()
def api(database: Database = None, host: Host = None, port: Port = None) -> None:
    """Run the API only."""
    settings = settings_for(database, host=host, port=port)
    _run(settings, "api", api=True, worker=False)


@app.command()
def worker(
    database: Database = None,
    concurrency: Annotated[int | None, typer.Option(help="attempts in flight")] = None,
) -> None:
    """Run a worker only."""
    settings = settings_for(database, worker_concurrency=concurrency)
    _run(settings, "worker", api=False, worker=True)


@app.command("webhooks-worker")
def webhooks_worker(
    database: Database = None,
    concurrency: Annotated[
        int | None, typer.Option(help="webhook requests in flight (IHUB_WEBHOOKS_CONCURRENCY)")
    ] = None,
) -> None:
    """Run the webhook delivery loop only (set IHUB_WEBHOOKS_IN_WORKER=false on workers)."""
    settings = settings_for(database, webhooks_concurrency=concurrency)
    _run(settings, "webhooks-worker", api=False, worker=False, webhooks=True)


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="keep the demo database afterwards")] = False,
) -> None:
    """Start a hub on a temporary SQLite file and send to every channel."""
    from integration_hub.entrypoints.demo import run_demo

    ok = asyncio.run(run_demo(console, keep=keep))
    raise typer.Exit(0 if ok else 1)


@app.command()
def status(
    notification_id: str,
    database: Database = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
) -> None:
    """Show a notification and its attempts (any tenant: an operator command)."""

    async def run(hub: Hub) -> None:
        n = await hub.store.get_notification(None, notification_id)
        if n is None:
            err.print(f"no notification {notification_id}")
            raise typer.Exit(1)
        events = await hub.store.delivery_events(n.tenant, n.id) if n.delivery_state else []
        if as_json:
            typer.echo(OperatorNotificationView.full(n, events).model_dump_json())
            return
        console.print(
            f"[bold]{n.id}[/bold] tenant={n.tenant} country={n.country} channel={n.channel}"
            f" provider={n.provider} status=[bold]{n.status}[/bold]"
        )
        if n.last_error:
            console.print(f"last error: {n.last_error}")
        if n.delivery_state is not None:
            receipts = ", ".join(f"{e.provider}:{e.raw_status}" for e in events)
            console.print(f"delivery: [bold]{n.delivery_state}[/bold] ({receipts or 'no receipt'})")
        if n.traceparent:  # 00-<trace id>-<span id>-<flags>: the trace to open (runbook)
            console.print(f"trace id: {n.traceparent.split('-')[1]}")
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


@app.command()
def migrate(database: Database = None) -> None:
    """Create or upgrade the database schema and print its version."""

    async def run(hub: Hub) -> int | None:
        assert hub.backend is not None
        return await hub.backend.migrate()

    # Opening the hub migrates: SQLite always, PostgreSQL when told to here.
    version = with_hub(settings_for(database, auto_migrate=True), run)
    if version is None:
        console.print("nothing to migrate: this backend's tables come from its deployment")
        return
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
    """Delete old finished notifications (with their history) and expired Idempotency-Keys;
    notifications still ``sent`` after IHUB_RECEIPT_TIMEOUT_HOURS become ``expired``."""
    settings = settings_for(database)
    seconds = settings.retention_finished_seconds if older_than is None else older_than

    async def run(hub: Hub) -> dict[str, int]:
        counts = dict(await hub.purge(seconds))
        counts["expired_deliveries"] = await hub.receipts.expire()
        return counts

    counts = with_hub(settings, run)
    if as_json:
        typer.echo(json.dumps(counts))
        return
    table = Table("table", "deleted")
    for name, count in counts.items():
        table.add_row(name, str(count))
    console.print(table)


@app.command()
def reconcile(
    database: Database = None,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            min=0,
            metavar="SECONDS",
            help="re-enqueue what is RECEIVED longer (default: IHUB_RECONCILE_AFTER_SECONDS)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
) -> None:
    """DynamoDB: re-enqueue notifications an SQS send lost (the scheduled reconciler, once)."""
    settings = settings_for(database)
    seconds = settings.reconcile_after_seconds if older_than is None else older_than

    async def run(hub: Hub) -> int | None:
        assert hub.backend is not None
        return await hub.backend.reconcile(seconds)

    sent = with_hub(settings, run)
    if sent is None:
        # SQLite and PostgreSQL enqueue in the transaction that accepts.
        err.print("only the DynamoDB backend needs a reconciler")
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps({"reenqueued": sent}))
        return
    console.print(f"re-enqueued: {sent}")


@app.command()
def top(
    url: Annotated[
        list[str] | None,
        typer.Option(help="a /metrics URL; repeat for an API and its workers (default: the API)"),
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="IHUB_METRICS_TOKEN", help="the metrics bearer token")
    ] = None,
    interval: Annotated[float, typer.Option(min=0.1, help="seconds between scrapes")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="print one frame and exit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="with --once: JSON on stdout")] = False,
) -> None:
    """Throughput, queue, dead letters and provider errors of a running hub, live."""
    from integration_hub.entrypoints import top as top_view

    settings = Settings()
    urls = url or [top_view.default_url(settings.host, settings.port)]
    try:
        shown = top_view.run(
            urls,
            token,
            interval=interval,
            once=once or as_json,
            console=None if as_json else console,
        )
    except top_view.ScrapeError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(top_view.as_dict(shown)))


def main() -> None:
    """Console entry point."""
    try:
        app()
    except InvariantBreach as exc:  # commands outside ``with_hub`` (serve, demo)
        raise SystemExit(cli_common.broken(exc).exit_code) from None
